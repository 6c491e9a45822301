"""One row through sampling + vote + filter, driven by a scripted engine; input-line parsing."""

import asyncio
import json

from s2ray.config import load_config
from s2ray.generate import parse_line, recorded_ids
from s2ray.methods.scripted import ScriptedEngine
from s2ray.sampling import RECORD_FIELDS, sample_row

CFG = load_config("local-cpu", ["generate.num_samples=4", "generate.min_valid=2", "generate.agreement=0.75"])


def sample(row, reply):
    return asyncio.run(sample_row(ScriptedEngine(reply), CFG, row))


def test_consistent_samples_are_kept_with_system1_prompt_and_target():
    row = {"id": "r1", "task": "last_letter", "words": ["apple", "river", "stone"]}
    rec = sample(row, lambda p, i: "join 3 words" if p.startswith("rephrase.") else "x. answer: ere")
    assert set(rec) == set(RECORD_FIELDS)
    assert rec["status"] == "kept" and rec["target"] == "ere" and rec["prompt"] == "last letters: apple river stone"
    assert json.loads(rec["votes"]) == ["ere"] * 4 and rec["samples"] == 4 and rec["method"] == "rar2"


def test_inconsistent_samples_are_dropped_with_reason():
    row = {"id": "r2", "task": "arithmetic", "expression": "1+2+3"}
    rec = sample(row, lambda p, i: f"answer: {i}")
    assert rec["status"] == "dropped" and rec["target"] == "" and "agreement 0.25" in rec["reason"]


def test_judging_rows_use_order_swap():
    row = {"id": "r3", "task": "pair_judge", "question": "q?", "answer_a": "x", "answer_b": "y"}
    # a judge that always says "A" (position bias) is inconsistent under swapping: dropped
    biased = sample(row, lambda p, i: "c" if p.startswith("branch") else "answer: A")
    assert biased["status"] == "dropped" and "order-swap inconsistent" in biased["reason"]
    # a judge that follows the content ("x" is better wherever it stands) is kept
    def fair(p, i):
        if p.startswith("branch"):
            return "correct"
        if p.startswith("merge"):
            return "answer: A" if "winner A" in p else "answer: B"
        return "winner A" if "A: x" in p else "winner B"
    kept = sample(row, fair)
    assert kept["status"] == "kept" and kept["target"] == "A" and len(json.loads(kept["votes"])) == 8
    # the kept verdict also enters the distill set in the other order: B is x there
    assert kept["swapped_prompt"] == "judge. q: q? A: y B: x" and biased["swapped_prompt"] == ""
    plain = load_config("local-cpu", ["generate.num_samples=4", "generate.min_valid=2", "generate.both_orders=false"])
    assert asyncio.run(sample_row(ScriptedEngine(fair), plain, row))["swapped_prompt"] == ""


def test_error_rows_and_too_long_prompts_become_error_records():
    bad = sample({"id": "b", "task": "arithmetic", "error": "rows.jsonl:3: missing field"}, lambda p, i: "")
    assert bad["status"] == "error" and "missing field" in bad["reason"]

    class TooLong(ScriptedEngine):
        async def generate(self, prompt, sampling):
            from s2ray.methods.base import PromptTooLong
            raise PromptTooLong("prompt is 900 tokens; the context holds 512")

    rec = asyncio.run(sample_row(TooLong(lambda p, i: ""), CFG, {"id": "l", "task": "arithmetic", "expression": "1+2"}))
    assert rec["status"] == "error" and "context holds 512" in rec["reason"]


def test_parse_line_strips_labels_and_names_bad_lines():
    ok = parse_line(1, b'{"id": "a", "task": "arithmetic", "expression": "1+2", "label": "3"}', "in.jsonl")
    assert ok["id"] == "a" and "label" not in json.loads(ok["row"])
    bad = json.loads(parse_line(2, b'{"id": "b", "task": "arithmetic"}', "in.jsonl")["row"])
    assert bad["id"] == "b" and bad["error"] == "in.jsonl:2: missing field 'expression'"
    assert "invalid UTF-8" in json.loads(parse_line(3, b'{"id": "\xff"}', "in.jsonl")["row"])["error"]
    junk = parse_line(4, b"{oops", "in.jsonl")
    assert junk["id"] == "<in.jsonl:4>" and "invalid JSON" in json.loads(junk["row"])["error"]


def test_recorded_ids_cuts_a_torn_last_line(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "tas')
    assert recorded_ids(path) == {"a", "b"}
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n'


def test_error_kinds_for_the_summary():
    from s2ray.generate import error_kind

    assert error_kind("in.jsonl:3: invalid UTF-8 (invalid start byte at byte 4)") == "invalid_utf8"
    assert error_kind("in.jsonl:4: missing field 'words'") == "missing_field"
    assert error_kind("in.jsonl:5: field 'flips'[0] must be bool, got str") == "wrong_type"
    assert error_kind("in.jsonl:6: field 'expression' is empty") == "empty_field"
    assert error_kind("prompt is 900 tokens; the context holds 512") == "too_long"
    assert error_kind("something else") == "other"


def test_distill_set_holds_judging_verdicts_in_both_orders(tmp_path):
    from s2ray.generate import finish
    from s2ray.sampling import error_record

    judged = {**error_record("j", "pair_judge", ""), "status": "kept", "reason": "kept", "prompt": "judge. q: q? A: x B: y",
              "target": "A", "swapped_prompt": "judge. q: q? A: y B: x"}
    word = {**error_record("w", "last_letter", ""), "status": "kept", "reason": "kept", "prompt": "last letters: ab",
            "target": "b"}
    dropped = {**error_record("d", "pair_judge", ""), "status": "dropped", "reason": "order-swap inconsistent"}
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (judged, word, dropped)))
    summary = finish(tmp_path, {"kept": 2, "dropped": 1, "error": 0, "duplicate": 0}, 0, 1.0, resumed=0)
    distill = [json.loads(line) for line in open(tmp_path / "distill.jsonl")]
    assert {d["id"]: (d["prompt"], d["target"]) for d in distill} == {
        "j": ("judge. q: q? A: x B: y", "A"), "j#swapped": ("judge. q: q? A: y B: x", "B"), "w": ("last letters: ab", "b")}
    assert summary["rows_kept"] == 2 and summary["distill_rows"] == 3


def test_toy_inputs_follow_each_tasks_rows_weight_and_carry_no_labels(tmp_path):
    from s2ray.generate import toy_inputs

    cfg = load_config("local-cpu", ["generate.rows_per_task=10", "tasks.pair_judge.rows_weight=2.0",
                                    "tasks.opinion_qa.rows_weight=1.0"])
    rows = [json.loads(line) for line in open(toy_inputs(cfg, tmp_path))]
    counts = {name: sum(r["task"] == name for r in rows) for name in cfg.tasks}
    assert counts == {name: 20 if name == "pair_judge" else 10 for name in cfg.tasks}
    assert not any("label" in r for r in rows)


class Overflowing(ScriptedEngine):
    """Raises PromptTooLong for any prompt holding "LONG", as VLLMEngine does for prompts over the context."""

    async def generate(self, prompt, sampling):
        if "LONG" in prompt:
            from s2ray.methods.base import PromptTooLong

            raise PromptTooLong("prompt is 600 tokens; the context holds 512")
        return await super().generate(prompt, sampling)


def test_a_chain_whose_next_prompt_is_too_long_abstains_and_the_row_goes_on():
    row = {"id": "c", "task": "last_letter", "words": ["apple", "river", "stone"]}
    def reply(p, i):  # rar2: sample 3's rephrase is too long to answer from; the other three answer
        return ("LONG" if i == 3 else "join 3 words") if p.startswith("rephrase.") else "x. answer: ere"
    rec = asyncio.run(sample_row(Overflowing(reply), CFG, row))
    assert rec["status"] == "kept" and rec["target"] == "ere", rec["reason"]
    assert json.loads(rec["votes"]) == ["ere", "ere", "ere", None] and rec["valid"] == 3
    assert rec["generated_tokens"] == 3 * 3 + 1 + 3 * 3  # every first step's tokens ("LONG" too): words here


USC = load_config("local-cpu", ["generate.num_samples=4", "generate.min_valid=2", "generate.filter=usc"])
OPINION = {"id": "o", "task": "opinion_qa", "question": "What is 2 + 3?", "opinion": "I think it is 7."}


def test_usc_drops_rows_with_too_few_valid_answers_without_a_call():
    def reply(p, i):  # s2a: rewrite (sample 0 differs), then answer: one valid answer of 4; min_valid is 2
        if p.startswith("rewrite"):
            return "good" if i == 0 else "bad"
        return "answer: 5" if p == "good" else ""
    engine = ScriptedEngine(reply)
    rec = asyncio.run(sample_row(engine, USC, OPINION))
    assert rec["status"] == "dropped" and "valid" in rec["reason"], rec["reason"]
    assert not any(p.startswith("I have generated") for p, _ in engine.calls)


def test_usc_falls_back_to_the_majority_vote_when_its_prompt_does_not_fit():
    def reply(p, i):  # s2a: rewrite, then answer; the k answers are too long together for the USC prompt
        return "what is 2 + 3?" if p.startswith("rewrite") else "LONG answer: 5"
    rec = asyncio.run(sample_row(Overflowing(reply), USC, OPINION))
    assert rec["status"] == "kept" and rec["target"] == "5" and "majority vote" in rec["reason"], rec


def test_lines_python_cannot_hold_and_a_byte_order_mark():
    for raw in (b"[" * 5000, b'{"id": "x", "n": ' + b"9" * 5000 + b"}"):
        bad = parse_line(7, raw, "in.jsonl")  # used to raise out of the read: the job failed on every rerun
        assert bad["id"] == "<in.jsonl:7>" and "invalid JSON" in json.loads(bad["row"])["error"]
    bom = parse_line(1, b'\xef\xbb\xbf{"id": "a", "task": "arithmetic", "expression": "1+2"}', "in.jsonl")
    assert bom["id"] == "a" and "error" not in json.loads(bom["row"])


def test_bad_parquet_rows_do_not_share_one_id():
    from s2ray.generate import _parquet_row

    ids = {_parquet_row({"task": "arithmetic", "expression": e})["id"] for e in ("1+2", "2+3", "3+4")}
    assert len(ids) == 3 and all(i.startswith("<parquet row ") for i in ids)


def test_recorded_ids_cuts_a_last_line_without_its_newline_even_when_it_parses(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}')  # the next run would append to it: one line, two records
    assert recorded_ids(path) == {"a"} and path.read_text() == '{"id": "a"}\n'


def test_recorded_ids_skips_bad_middle_lines_and_keeps_what_follows(tmp_path):
    path = tmp_path / "records.jsonl"
    text = '{"id": "a"}\n\n[1]\n{"id": "b", "tas\n{"id": "c"}\n'
    path.write_text(text)
    assert recorded_ids(path) == {"a", "c"} and path.read_text() == text  # "b" is sampled again; nothing cut


def test_resuming_with_other_record_settings_is_refused_naming_them(tmp_path):
    import pytest

    from s2ray.config import ConfigError
    from s2ray.generate import check_resume, record_settings

    settings = record_settings(CFG, "toy-model-path")
    check_resume(tmp_path, settings, resuming=False)
    check_resume(tmp_path, settings, resuming=True)  # the same settings resume
    other = record_settings(load_config("local-cpu", ["generate.num_samples=8", "generate.min_valid=2"]),
                            "toy-model-path")
    with pytest.raises(ConfigError, match=r"generate.num_samples: 4 -> 8"):
        check_resume(tmp_path, other, resuming=True)
    check_resume(tmp_path, other, resuming=False)  # a fresh folder (nothing recorded) takes the new settings


def test_precision_report_applies_the_runs_min_valid_and_order_swap(tmp_path):
    from s2ray.generate import check_resume, precision_report, record_settings
    from s2ray.tasks import get_task, make_rows

    coin, judge = get_task("coin_flip"), get_task("pair_judge")
    flip, pair = make_rows(coin, "unlabelled", 1, 0)[0], make_rows(judge, "unlabelled", 1, 0)[0]
    right, wrong = judge.gold(pair), judge.unswap(judge.gold(pair))

    def record(row, task, votes, status):
        return {"id": row["id"], "task": task.NAME, "votes": json.dumps(votes), "answer": votes[0],
                "target": votes[0], "status": status}

    (tmp_path / "inputs.jsonl").write_text(json.dumps(flip) + "\n" + json.dumps(pair) + "\n")
    records = [record(flip, coin, [coin.gold(flip), None, None, None], "dropped"),  # 1 valid vote of 4
               record(pair, judge, [right, right, right, wrong], "kept")]  # 4 votes in one order: no swap
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = load_config("local-cpu", ["generate.num_samples=4", "generate.min_valid=2", "generate.order_swap=false"])
    check_resume(tmp_path, record_settings(cfg, "toy"), resuming=False)
    rows = {tuple(line.split()[:2]): line.split()[2] for line in precision_report(tmp_path).splitlines()[1:]}
    assert rows[("coin_flip", "0.500")] == "0.0%"  # under min_valid 2, as the run dropped it
    assert rows[("pair_judge", "0.750")] == "100.0%"  # 3 of 4 agree; not split into two "orders" of 2
    assert rows[("pair_judge", "1.000")] == "0.0%"


def test_parquet_inputs_are_recognised_in_local_and_remote_folders(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from s2ray.generate import is_parquet

    (tmp_path / "pq").mkdir()
    (tmp_path / "jsonl").mkdir()
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "pq" / "part-0.parquet")
    (tmp_path / "jsonl" / "part-0.jsonl").write_text('{"id": "a"}\n')
    assert is_parquet(str(tmp_path / "pq")) and is_parquet(f"file://{tmp_path}/pq/")
    assert is_parquet("s3://bucket/rows.parquet")
    assert not is_parquet(str(tmp_path / "jsonl")) and not is_parquet(f"file://{tmp_path}/jsonl")
    assert not is_parquet(f"file://{tmp_path}/jsonl/part-0.jsonl")


def test_the_cli_refuses_a_resume_with_other_settings_with_exit_2(tmp_path, capsys):
    from s2ray.cli import main
    from s2ray.generate import check_resume, record_settings

    model = [f"model={tmp_path / 'model'}", "train.replay_fraction=0"]  # a model path: no toy model to build
    cfg = load_config("local-cpu", [*model, "generate.num_samples=4"])
    check_resume(tmp_path, record_settings(cfg, cfg.model), resuming=False)
    (tmp_path / "records.jsonl").write_text('{"id": "a"}\n')
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "b", "task": "coin_flip"}\n')
    assert main(["generate", "--out", str(tmp_path), "--input", str(rows), *model, "generate.num_samples=8"]) == 2
    err = capsys.readouterr().err  # refused before Ray or an engine starts
    assert err.startswith("s2ray generate: ") and "generate.num_samples: 4 -> 8" in err and "model:" not in err
