"""bench/generation.py: its pure helpers (steady-state window, ratios, rows, prompts) and a cheap import."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.generation import (
    bench_rows,
    distrust_faster_than_the_engine,
    format_table,
    goals,
    headline,
    in_flight_share,
    parse_args,
    rar1_prompt,
    ratios,
    steady_state,
    system_result,
)


def test_steady_state_skips_the_first_batch():
    s = steady_state([(30.0, 100), (32.0, 50), (34.0, 150)])
    assert s == {"batches": 3, "first_batch_s": 30.0, "seconds": 4.0, "tokens": 200, "tokens_per_s": 50.0}


def test_steady_state_without_a_window():
    assert steady_state([])["tokens_per_s"] is None
    one = steady_state([(5.0, 80)])
    assert one["tokens"] == 0 and one["seconds"] is None and one["tokens_per_s"] is None


def test_in_flight_share():
    assert in_flight_share(2, 17) == 0.062 and in_flight_share(8, 3) == 1.0 and in_flight_share(2, 1) is None


def test_system_result_both_clocks():
    r = system_result(1000, 20.0, 800, 4.0, sequences=8)
    assert r["tokens_per_s_end_to_end"] == 50.0 and r["tokens_per_s_steady"] == 200.0 and r["sequences"] == 8
    assert system_result(10, 0.0, 0, None)["tokens_per_s_steady"] is None


def test_ratios_and_goals():
    systems = {"vllm": system_result(1000, 10, 1000, 1.0), "s2ray": system_result(950, 20, 900, 1.0),
               "ray_data_llm": system_result(600, 20, 500, 1.0), "step_sync": system_result(100, 2, 100, 1.0),
               "async": system_result(80, 2, 80, 1.0)}
    steady = ratios(systems)
    assert steady == {"ratio_vs_vllm": 0.9, "ratio_vs_ray_data_llm": 1.8, "ratio_async_vs_step_sync": 0.8,
                      "split_ratio_vs_vllm": None, "split_ratio_vs_ray_data_llm": None,
                      "rar2_ratio_vs_ray_data_llm": None, "ratio_vs_vllm_in_actor": None,
                      "vllm_in_actor_vs_vllm": None}
    assert ratios(systems, "end_to_end")["ratio_vs_vllm"] == 0.475
    assert goals(steady) == {"ratio_vs_vllm_ge_0.9": True, "ratio_vs_ray_data_llm_ge_1.5": True}
    table = format_table(systems, steady, ratios(systems, "end_to_end"))
    assert "(b) s2ray" in table and "1.800" in table


def test_untrusted_windows_stay_out_of_the_steady_ratios():
    burst = system_result(1000, 100.0, 990, 5.0, batches=200, steady_in_flight_bound=0.035)  # all at the end
    few = system_result(1000, 100.0, 750, 40.0, batches=4, steady_in_flight_bound=1.0)
    good = system_result(1000, 100.0, 500, 50.0, batches=200, steady_in_flight_bound=0.035)
    assert not burst["steady_trusted"] and not few["steady_trusted"] and good["steady_trusted"]
    vllm = system_result(1000, 20.0, 1000, 10.0)
    assert vllm["steady_trusted"]
    assert ratios({"vllm": vllm, "s2ray": few})["ratio_vs_vllm"] is None
    assert ratios({"vllm": vllm, "s2ray": good})["ratio_vs_vllm"] == 0.1
    assert ratios({"vllm": vllm, "s2ray": few}, "end_to_end")["ratio_vs_vllm"] == 0.2
    assert "(untrusted)" in format_table({"s2ray": burst}, {}, {})


def test_headline_falls_back_to_end_to_end():
    vllm = system_result(1000, 20.0, 1000, 10.0)
    one_block = system_result(1000, 40.0, 0, None, batches=1, steady_in_flight_bound=None)
    rdl = system_result(1000, 50.0, 900, 30.0, batches=100, steady_in_flight_bound=0.07)
    systems = {"vllm": vllm, "s2ray": one_block, "ray_data_llm": rdl}
    values, clocks = headline(ratios(systems), ratios(systems, "end_to_end"))
    assert values["ratio_vs_vllm"] == 0.5 and clocks["ratio_vs_vllm"] == "end_to_end"
    assert values["ratio_vs_ray_data_llm"] == 1.25 and clocks["ratio_async_vs_step_sync"] is None
    systems["s2ray"] = system_result(1000, 40.0, 800, 20.0, batches=16, steady_in_flight_bound=0.067)
    values, clocks = headline(ratios(systems), ratios(systems, "end_to_end"))
    assert values["ratio_vs_vllm"] == 0.4 and clocks["ratio_vs_vllm"] == "steady"


def test_missing_systems_give_no_ratio():
    partial = {"s2ray": system_result(10, 1, 10, 1.0)}
    assert ratios(partial)["ratio_vs_vllm"] is None
    assert goals(ratios(partial))["ratio_vs_vllm_ge_0.9"] is None
    assert "not run" in format_table(partial, ratios(partial), ratios(partial, "end_to_end"))


def test_rows_are_interleaved_unlabelled_and_fixed():
    rows = bench_rows(5, seed=0)
    assert [r["task"] for r in rows] == ["last_letter", "coin_flip", "last_letter", "coin_flip", "last_letter"]
    assert all("label" not in r for r in rows) and len({r["id"] for r in rows}) == 5
    assert rows == bench_rows(5, seed=0)
    assert rar1_prompt(rows[0], "toy").startswith("rephrase and respond. last letters: ")


def test_args_quick_and_bounds():
    args = parse_args(["--quick"])
    assert (args.rows, args.k, args.only) == (32, 4, {"a", "b", "c", "d", "e"})
    assert parse_args(["--rows", "64", "--only", "a,b"]).only == {"a", "b"}
    assert parse_args(["--only", "a,a2,b"]).only == {"a", "a2", "b"}
    with pytest.raises(AssertionError):
        parse_args(["--only", "x"])


def test_import_and_help_are_cheap():
    code = ("import sys; import bench.generation; "
            "heavy = [m for m in ('ray', 'vllm', 'torch', 'transformers') if m in sys.modules]; assert not heavy, heavy")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=False).returncode == 0
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "generation.py"), "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and "ray.data.llm" in done.stdout


def test_s2ray_batches_are_timed_from_generates_progress_bar(tmp_path, monkeypatch):
    """run_s2ray reads batch arrivals off generate's progress bar and their tokens off records.jsonl (stubbed)."""
    import json

    import s2ray.generate as gen
    from bench import generation
    from s2ray.config import load_config

    seen = {}

    def fake_generate(cfg, model, out, input_path):
        seen["input"] = Path(input_path)
        out.mkdir(parents=True)
        bar = gen.tqdm(desc="generate")
        with open(out / "records.jsonl", "w") as f:
            for batch in ([10, 20], [30], [40, 50]):
                f.writelines(json.dumps({"generated_tokens": t, "prompt_tokens": 8, "samples": 2}) + "\n"
                             for t in batch)
                bar.update(len(batch))
        bar.close()
        return {"this_run": {"generated_tokens": 150, "seconds": 1.0, "kept": 5, "dropped": 0, "error": 0}}

    monkeypatch.setattr(gen, "generate", fake_generate)
    cfg = load_config("local-cpu", ["generate.batch_size=2"])
    rows = bench_rows(5, seed=0)
    r = generation.run_s2ray(cfg, "model", rows, tmp_path / "split", split=True)
    assert sorted(p.name for p in seen["input"].iterdir()) == ["part-00000.jsonl", "part-00001.jsonl",
                                                               "part-00002.jsonl"]
    assert r["generated_tokens"] == 150 and r["batches"] == 3 and r["steady_tokens"] == 120
    assert r["mean_prompt_tokens"] == 4.0 and gen.tqdm is not generation._BatchClock
    one = generation.run_s2ray(cfg, "model", rows, tmp_path / "file", split=False)
    assert seen["input"].is_file() and one["generated_tokens"] == 150


def test_a_window_faster_than_the_raw_engine_is_a_burst():
    vllm = system_result(11000 * 25, 27.0, 11000 * 25, 25.0)  # the engine alone: 11,000 tokens/s
    rdl = system_result(280000, 57.7, 279000, 14.9, batches=200, steady_in_flight_bound=0.035)  # 18,725 tokens/s
    s2ray = system_result(280000, 40.0, 262000, 24.7, batches=16, steady_in_flight_bound=0.067)  # 10,607 tokens/s
    assert rdl["steady_trusted"] and s2ray["steady_trusted"]  # both pass the window checks on their own
    systems = {"vllm": vllm, "ray_data_llm": rdl, "s2ray": s2ray}
    distrust_faster_than_the_engine(systems)
    assert not rdl["steady_trusted"] and "burst" in rdl["steady_untrusted_why"]
    assert s2ray["steady_trusted"] and vllm["steady_trusted"]
    assert ratios(systems)["ratio_vs_ray_data_llm"] is None  # the headline falls back to end-to-end
    distrust_faster_than_the_engine({"ray_data_llm": rdl})  # without (a) in the run: nothing to compare with


def test_rounds_take_each_systems_median_round_and_each_ratios_median():
    from bench.generation import combine_rounds, median_ratios

    def round_(vllm, s2ray):
        return {"vllm": system_result(1000, 10, 1000, 1000 / vllm), "s2ray": system_result(900, 20, 900, 900 / s2ray)}

    per_round = [round_(100, 90), round_(50, 40), round_(80, 80)]
    combined = combine_rounds(per_round)
    assert combined["vllm"]["tokens_per_s_steady"] == 80.0 and combined["s2ray"]["tokens_per_s_steady"] == 80.0
    assert [r["tokens_per_s_steady"] for r in combined["vllm"]["rounds"]] == [100.0, 50.0, 80.0]
    # per-round ratios 0.9, 0.8, 1.0 -> 0.9; the ratio of the median rounds (80 / 80) would say 1.0
    assert median_ratios([ratios(s) for s in per_round])["ratio_vs_vllm"] == 0.9
    assert median_ratios([ratios(s) for s in per_round])["ratio_vs_ray_data_llm"] is None
    # an even count takes the lower middle; one round is passed through unchanged (no "rounds" key)
    assert combine_rounds(per_round[:2])["vllm"]["tokens_per_s_steady"] == 50.0
    assert combine_rounds(per_round[:1]) == per_round[0]
    # a round whose steady window is untrusted ranks by its end-to-end rate (90, not its window's 900)
    untrusted = {**system_result(900, 10, 900, 1.0), "steady_trusted": False}
    trusted = {**system_result(900, 30, 900, 90.0), "steady_trusted": True}  # steady 10
    assert combine_rounds([{"s2ray": untrusted}, {"s2ray": trusted}])["s2ray"]["wall_s"] == 30
