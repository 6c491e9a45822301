"""Distill-set reading rules, chat-template encoding with prompt masking, replay mixing and packing (no Ray)."""

from __future__ import annotations

import itertools
import json

import pytest

from s2ray.train.data import IGNORE, check_row, collate, distill_files, encode_pair, mixed, pack
from s2ray.train.export import prompt_record


@pytest.fixture(scope="module")
def tokenizer():
    from s2ray.toy.build import make_tokenizer

    return make_tokenizer()


def test_encode_pair_masks_the_prompt_and_ends_with_eos(tokenizer):
    ids, prompt_len = encode_pair(tokenizer, "last letters: apple river stone", "ere")
    assert tokenizer.decode(ids) == "<s>Q: last letters: apple river stone\nA: ere</s>"
    assert tokenizer.decode(ids[prompt_len:]) == "ere</s>"  # loss on the reply and EOS only
    assert ids[-1] == tokenizer.eos_token_id


def test_collate_labels_only_targets_and_blocks_attend_within_an_example(tokenizer):
    a, b = encode_pair(tokenizer, "x", "yes"), encode_pair(tokenizer, "coin", "no")
    batch = collate([[a, b], [b]], block_size=32, pad_id=tokenizer.pad_token_id)
    labels, mask, pos = batch["labels"], batch["attention_mask"][:, 0], batch["position_ids"]
    la, lb = len(a[0]), len(b[0])
    kept = labels[0][labels[0] != IGNORE].tolist()
    assert kept == a[0][a[1]:] + b[0][b[1]:]  # both replies + EOS, no prompt tokens, no padding
    assert batch["target_tokens"] == 2 * (lb - b[1]) + (la - a[1]) and batch["tokens"] == la + 2 * lb
    assert pos[0, la].item() == 0 and pos[0, la + 1].item() == 1  # positions restart per example
    assert not mask[0, la, la - 1] and mask[0, la + 1, la] and not mask[0, 0, 1]  # no cross-example, causal
    assert (labels[1, lb:] == IGNORE).all()


def test_pack_fills_blocks_and_drops_examples_longer_than_a_block():
    examples = [([1] * 5, 2), ([1] * 40, 2), ([1] * 4, 1), ([1] * 7, 3)]
    dropped = [0]
    blocks = next(pack(itertools.cycle(examples), block_size=10, rows=2, dropped=dropped))
    assert [[len(e[0]) for e in block] for block in blocks] == [[5, 4], [7]]
    assert dropped == [1]


def test_mixed_interleaves_replay_at_the_configured_share():
    distill = [([i], 0) for i in range(10)]
    replay = iter(([-1], 0) for _ in itertools.count())
    stream = list(itertools.islice(mixed(distill, replay, 0.5, "s"), 400))
    assert sum(e[0] == [-1] for e in stream) == 200
    first_epoch = [e[0][0] for e in itertools.islice(mixed(distill, None, 0.0, "s"), 10)]
    assert sorted(first_epoch) == list(range(10))  # every distill example once per epoch, shuffled


def test_distill_files_prefers_distill_parquet_in_a_generate_folder(tmp_path):
    (tmp_path / "records.jsonl").write_text("{}\n")
    (tmp_path / "distill.jsonl").write_text("{}\n")
    (tmp_path / "distill.parquet").write_bytes(b"")
    assert distill_files(tmp_path) == ("parquet", [str(tmp_path / "distill.parquet")])
    assert distill_files(tmp_path / "distill.jsonl") == ("json", [str(tmp_path / "distill.jsonl")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        distill_files(tmp_path / "missing")
    with pytest.raises(ValueError, match="no .jsonl or .parquet"):
        distill_files(tmp_path / "empty") if (tmp_path / "empty").mkdir() is None else None


def test_bad_rows_name_the_row_and_field():
    with pytest.raises(ValueError, match=r"row 'r7': field 'target'"):
        check_row({"id": "r7", "prompt": "last letters: a b", "target": " "})


def test_prompt_record_holds_the_system1_template():
    rec = prompt_record("chat", "meta-llama/Llama-2-70b-chat-hf", ["last_letter"])
    assert rec["system1_template"].startswith("{question}") and json.dumps(rec)


def test_cli_train_refuses_a_missing_distill_set_before_starting_anything(tmp_path, capsys):
    from s2ray.cli import main

    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert "distill set" in capsys.readouterr().err and not (tmp_path / "out").exists()
