"""Training data: the distill set as a Ray Dataset, chat-template encoding with prompt masking, replay, packing.

Distill set schema (what `s2ray generate` writes): JSONL or Parquet rows {id, task, prompt, target}, where
`prompt` is the System 1 user message (`direct.prompt(task, fields, style)`) and `target` the final answer.
Each pair is encoded with the tokenizer's chat template as [user: prompt, assistant: target]; the loss covers only
the assistant tokens and the end-of-sequence token. Examples are packed into blocks of `block_size` tokens, each
example attending only to itself (block-diagonal causal mask, positions restarting at 0), so padding stays small.

Ray is imported inside `read_distill_set` / `encode_distill_set` only; the rest needs torch for tensors.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

IGNORE = -100  # label of tokens that carry no loss (prompt, padding)
COLUMNS = ("id", "task", "prompt", "target")
SUFFIXES = {".jsonl": "json", ".parquet": "parquet"}


def distill_files(path: str | Path) -> tuple[str, list[str]]:
    """('json' | 'parquet', files) of a distill set: one file, or a folder. In a folder, files named distill*
    win over other data files (`s2ray generate` writes records.jsonl beside them), and Parquet wins over JSONL
    (it writes the same rows in both)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"distill set {p} does not exist (pass --data PATH, a .jsonl/.parquet file or folder)")
    if p.is_file():
        if p.suffix not in SUFFIXES:
            raise ValueError(f"distill set {p}: expected a .jsonl or .parquet file")
        return SUFFIXES[p.suffix], [str(p)]
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES)
    files = [f for f in files if f.name.startswith("distill")] or files
    files = [f for f in files if f.suffix == ".parquet"] or files
    if not files:
        raise ValueError(f"distill set {p}: no .jsonl or .parquet files in this folder")
    return SUFFIXES[files[0].suffix], [str(f) for f in files]


def read_distill_set(path: str | Path):
    """The distill set as a Ray Dataset of {id, task, prompt, target}."""
    import ray.data

    kind, files = distill_files(path)
    ds = ray.data.read_json(files) if kind == "json" else ray.data.read_parquet(files)
    missing = [c for c in COLUMNS if c not in (ds.columns() or [])]
    if missing:
        raise ValueError(f"distill set {path}: missing column(s) {missing}; rows need {list(COLUMNS)}")
    return ds.select_columns(list(COLUMNS))


@functools.lru_cache(maxsize=4)
def load_tokenizer(model_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


def _ids(encoded: Any) -> list[int]:
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def encode_pair(tokenizer, prompt: str, target: str) -> tuple[list[int], int]:
    """(token ids of the whole chat, number of prompt tokens): loss goes on ids[prompt_len:] (reply + EOS)."""
    user = [{"role": "user", "content": prompt}]
    head = _ids(tokenizer.apply_chat_template(user, tokenize=True, add_generation_prompt=True))
    full = _ids(tokenizer.apply_chat_template(user + [{"role": "assistant", "content": target}], tokenize=True))
    if full[:len(head)] != head:  # a template that re-tokenizes across the boundary: build the reply by hand
        full = head + tokenizer.encode(target, add_special_tokens=False)
    if full[-1] != tokenizer.eos_token_id:
        full.append(tokenizer.eos_token_id)
    return full, len(head)


def check_row(row: dict[str, Any]) -> None:
    for name in ("prompt", "target"):
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"distill set row {row.get('id')!r}: field {name!r} must be a non-empty string, "
                             f"got {value!r}")


def encode_batch(batch: dict[str, Any], model_path: str) -> dict[str, Any]:
    """Ray Data map_batches function: {id, task, prompt, target} -> {id, task, input_ids, prompt_len}."""
    tokenizer = load_tokenizer(model_path)
    out: dict[str, list] = {"id": [], "task": [], "input_ids": [], "prompt_len": []}
    for i in range(len(batch["id"])):
        row = {c: batch[c][i] for c in COLUMNS}
        check_row(row)
        ids, prompt_len = encode_pair(tokenizer, row["prompt"], row["target"])
        for c, v in (("id", str(row["id"])), ("task", str(row["task"])), ("input_ids", ids),
                     ("prompt_len", prompt_len)):
            out[c].append(v)
    return out


def encode_distill_set(path: str | Path, model_path: str | Path):
    """Read and tokenize the distill set on the cluster, materialized before training (distill sets are small,
    and a finished dataset leaves every CPU to the training workers)."""
    ds = read_distill_set(path).map_batches(encode_batch, fn_kwargs={"model_path": str(model_path)},
                                            batch_format="numpy", batch_size=256)
    return ds.materialize()


def replay_examples(model_path: str, teach: dict[str, list[str]], seed: str) -> Iterator[tuple[list[int], int]]:
    """The toy corpus's System 2 formats encoded like distill pairs, so distillation does not erase System 2.
    Its direct answers are left out: they are the weak System 1 habits that distillation replaces."""
    from s2ray.toy.corpus import examples

    tokenizer = load_tokenizer(model_path)
    for user, reply in examples(teach, seed, direct=False):
        yield encode_pair(tokenizer, user, reply)


def mixed(distill: list[tuple[list[int], int]], replay: Iterator[tuple[list[int], int]] | None,
          replay_fraction: float, seed: str) -> Iterator[tuple[list[int], int]]:
    """Endless stream: the worker's distill examples, reshuffled each epoch, with replay examples interleaved so
    that `replay_fraction` of all examples are replay."""
    assert distill, "no distill examples on this worker"
    rng, credit = random.Random(seed), 0.0
    per_distill = replay_fraction / (1 - replay_fraction) if replay is not None else 0.0
    while True:
        order = list(range(len(distill)))
        rng.shuffle(order)
        for i in order:
            yield distill[i]
            credit += per_distill
            while credit >= 1:
                credit -= 1
                yield next(replay)


def pack(examples: Iterable[tuple[list[int], int]], block_size: int, rows: int,
         dropped: list[int] | None = None) -> Iterator[list[list[tuple[list[int], int]]]]:
    """Group examples into `rows` blocks of at most `block_size` tokens each (greedy, in stream order).
    Examples longer than a block are skipped and counted in `dropped[0]`."""
    it = iter(examples)
    pending: tuple[list[int], int] | None = None
    while True:
        blocks: list[list[tuple[list[int], int]]] = []
        for _ in range(rows):
            block, used = [], 0
            while True:
                if pending is None:
                    pending = next(it)
                    if len(pending[0]) > block_size:
                        if dropped is not None:
                            dropped[0] += 1
                        pending = None
                        continue
                if used + len(pending[0]) > block_size:
                    break
                block.append(pending)
                used += len(pending[0])
                pending = None
            blocks.append(block)
        yield blocks


def collate(blocks: list[list[tuple[list[int], int]]], block_size: int, pad_id: int) -> dict[str, Any]:
    """Tensors of packed blocks: input_ids, labels (prompt and padding masked), position_ids restarting per example,
    and a 4-D block-diagonal causal attention mask. Also the counts of real and target tokens."""
    import torch

    n = len(blocks)
    input_ids = torch.full((n, block_size), pad_id)
    labels = torch.full((n, block_size), IGNORE)
    positions = torch.zeros((n, block_size), dtype=torch.long)
    doc = torch.full((n, block_size), -1)
    tokens = targets = 0
    for row, block in enumerate(blocks):
        used = 0
        for number, (ids, prompt_len) in enumerate(block):
            end = used + len(ids)
            input_ids[row, used:end] = torch.tensor(ids)
            labels[row, used + prompt_len:end] = torch.tensor(ids[prompt_len:])
            positions[row, used:end] = torch.arange(len(ids))
            doc[row, used:end] = number
            used, tokens, targets = end, tokens + len(ids), targets + len(ids) - prompt_len
    causal = torch.tril(torch.ones(block_size, block_size, dtype=torch.bool))
    mask = (doc[:, :, None] == doc[:, None, :]) & causal & (doc[:, :, None] >= 0)
    mask |= torch.eye(block_size, dtype=torch.bool)  # padding attends to itself (no all-masked rows, no NaNs)
    return {"input_ids": input_ids, "labels": labels, "position_ids": positions, "attention_mask": mask[:, None],
            "tokens": tokens, "target_tokens": targets}
