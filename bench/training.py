"""Step time of Ray Train + DeepSpeed against a plain single-process torch loop on the same batches, and 1 vs 2 workers.

    flock /tmp/s2ray-heavy.lock .venv/bin/python bench/training.py [--out FILE] [--steps 30] [--zero-stage 2]

Same toy model, same packed blocks (toy corpus, block_size x micro_batch_size tokens per worker step), same
optimizer settings (AdamW, clipping), same CPU threads per process (1). Step time = forward + backward + optimizer
step, median over the timed steps after warm-up; the Ray Train loop also reports metrics every 10 steps as the real
loop does. With 2 workers each worker gets its own blocks, so the global batch doubles: compare tokens/s.
Prints one JSON object (ratio_vs_torch = Ray Train + DeepSpeed 1-worker step time / torch step time).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

WARMUP = 5


def make_blocks(model_dir: str, cfg, count: int) -> list:
    """`count` micro-batches of packed blocks (token lists), deterministic, shared by every contender."""
    import itertools

    from s2ray.train.data import pack, replay_examples

    stream = replay_examples(model_dir, cfg.toy_model.teach, "bench")
    return list(itertools.islice(pack(stream, cfg.train.block_size, cfg.train.micro_batch_size), count))


def torch_loop(model_dir: str, cfg, blocks: list) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from s2ray.train.data import collate, load_tokenizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    t = cfg.train
    pad = load_tokenizer(model_dir).pad_token_id
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=t.weight_decay)
    times, tokens = [], 0
    for i, micro in enumerate(blocks):
        batch = collate(micro, t.block_size, pad)
        n = batch.pop("tokens")
        batch.pop("target_tokens")
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
            tokens += n
    return {"step_s": statistics.median(times), "tokens_per_s": tokens / sum(times), "last_loss": loss.item()}


def ray_worker(config: dict) -> dict:
    import ray.train
    import torch

    from s2ray.train.data import collate, load_tokenizer
    from s2ray.train.loop import _build_engine

    cfg, model_dir, blocks = config["cfg"], config["model_dir"], config["blocks"]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    engine, _ = _build_engine(cfg, model_dir)
    pad = load_tokenizer(model_dir).pad_token_id
    times, tokens = [], 0
    for i, micro in enumerate(blocks):
        batch = collate(micro, cfg.train.block_size, pad)
        n = batch.pop("tokens")
        batch.pop("target_tokens")
        start = time.perf_counter()
        loss = engine(**batch).loss
        engine.backward(loss)
        engine.step()
        if (i + 1) % 10 == 0:
            ray.train.report({"step": i + 1, "loss": loss.item()})
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
            tokens += n
    totals = torch.tensor([tokens, sum(times)], dtype=torch.float64)
    torch.distributed.all_reduce(totals)
    world = ray.train.get_context().get_world_size()
    return {"step_s": statistics.median(times), "tokens_per_s": totals[0].item() / (totals[1].item() / world),
            "last_loss": loss.item()}  # rank 0's return value is the Result's return_value


def ray_run(model_dir: str, cfg, blocks: list, workers: int, storage: Path) -> dict:
    from ray.train import RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from s2ray.train.deepspeed_config import scaling_config

    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"num_workers": workers})})
    trainer = TorchTrainer(ray_worker, train_loop_config={"cfg": cfg, "model_dir": model_dir, "blocks": blocks},
                           scaling_config=scaling_config(cfg.train), torch_config=TorchConfig(backend="gloo"),
                           run_config=RunConfig(name=f"bench-{workers}w", storage_path=str(storage)))
    return trainer.fit().return_value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per contender (after 5 warm-up steps)")
    parser.add_argument("--zero-stage", type=int, default=2, choices=(2, 3))
    args = parser.parse_args()

    import tempfile

    import ray

    from s2ray.config import load_config
    from s2ray.toy.build import ensure_toy_model

    cfg = load_config("local-cpu", [f"train.zero_stage={args.zero_stage}"])
    model_dir = str(ensure_toy_model(cfg))
    blocks = make_blocks(model_dir, cfg, WARMUP + args.steps)
    print(f"[bench] {len(blocks)} micro-batches of {cfg.train.micro_batch_size} x {cfg.train.block_size} tokens",
          file=sys.stderr)
    result: dict = {"model": model_dir, "zero_stage": args.zero_stage, "steps": args.steps,
                    "micro_batch_size": cfg.train.micro_batch_size, "block_size": cfg.train.block_size,
                    "threads_per_process": 1, "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpus"}
    result["torch"] = torch_loop(model_dir, cfg, blocks)
    print(f"[bench] torch: {result['torch']}", file=sys.stderr)
    ray.init(num_cpus=2, include_dashboard=False)
    with tempfile.TemporaryDirectory() as storage:
        for workers in (1, 2):
            result[f"ray_deepspeed_{workers}w"] = ray_run(model_dir, cfg, blocks, workers, Path(storage))
            print(f"[bench] ray+deepspeed {workers}w: {result[f'ray_deepspeed_{workers}w']}", file=sys.stderr)
    ray.shutdown()
    one, two = result["ray_deepspeed_1w"], result["ray_deepspeed_2w"]
    result["ratio_vs_torch"] = round(one["step_s"] / result["torch"]["step_s"], 3)
    result["step_time_2w_vs_1w"] = round(two["step_s"] / one["step_s"], 3)
    result["tokens_per_s_2w_vs_1w"] = round(two["tokens_per_s"] / one["tokens_per_s"], 3)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
