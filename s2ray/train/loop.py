"""Distillation fine-tuning on Ray Train: a TorchTrainer whose workers run DeepSpeed ZeRO-2/3 on the distill set.

    s2ray train --data runs/latest/distill.jsonl                 # toy profile: 2 CPU workers, gloo
    s2ray train --config llama2-70b --data s3-or-nfs/distill/    # 16 GPU workers, NCCL, ZeRO-3 bf16

    from s2ray.train import train
    model_dir = train(cfg, distill_set, base_model, out_dir)     # -> out_dir/model (HF, loads in vLLM)

Each worker builds the model (ZeRO-3: partitioned while loading), wraps it in LoRA adapters when configured,
initialises DeepSpeed from `deepspeed_config(cfg.train)`, resumes from Ray Train's latest checkpoint if there is one,
then runs optimizer steps over packed blocks of its shard. Every `checkpoint_every` steps all ranks save their ZeRO
shards into one Ray Train checkpoint; `FailureConfig` restarts a crashed worker group from it. Rank 0 prints a
progress line and appends metrics (loss, tokens/s, lr) to out_dir/progress.jsonl; the driver writes
out_dir/train.json. out_dir must be on storage every node sees (NFS) when the workers span nodes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from s2ray.config import Config
from s2ray.train.deepspeed_config import backend, deepspeed_config, precision, scaling_config, threads_per_worker

DS_TAG = "ds"  # DeepSpeed checkpoint tag inside each Ray Train checkpoint
STATE = "s2ray_state.json"  # {"step": N} beside the DeepSpeed shards
PROGRESS = "progress.jsonl"
WORKERS = "workers.jsonl"  # one line per worker start: rank, pid, step it started from (fault tests read it)


def _say(line: str) -> None:
    """A progress line on the worker's real stdout (Ray forwards it to the driver); Ray Train's patched print would
    show it twice."""
    print(line, file=sys.__stdout__, flush=True)


def _append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _build_engine(cfg: Config, base_model: str):
    """The model (LoRA-wrapped when configured) inside a DeepSpeed engine."""
    import deepspeed
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.integrations.deepspeed import HfDeepSpeedConfig

    t = cfg.train
    ds_config = deepspeed_config(t)
    # kept alive through from_pretrained: with ZeRO-3 it makes transformers load weights already partitioned,
    # so no rank ever holds the whole model (70B in bf16 is 140 GB)
    hf_ds = HfDeepSpeedConfig(ds_config) if t.zero_stage == 3 else None
    dtype = torch.bfloat16 if precision(t) == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype)
    model.config.use_cache = False
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if t.lora.enabled:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=t.lora.r, lora_alpha=t.lora.alpha, lora_dropout=t.lora.dropout,
                                                 target_modules=t.lora.target_modules, task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    engine, _, _, scheduler = deepspeed.initialize(model=model, model_parameters=params, config=ds_config)
    del hf_ds
    return engine, scheduler


def _gathered_state_dict(engine, zero_stage: int, rank: int) -> dict | None:
    """The full state dict on rank 0 (ZeRO-3 gathers the shards: a collective every rank must enter)."""
    if zero_stage == 3:
        return engine._zero3_consolidated_16bit_state_dict()  # the API DeepSpeed's own save_16bit_model uses
    return engine.module.state_dict() if rank == 0 else None


def _window_metrics(engine, scheduler, window: dict[str, float], seconds: float, step: int) -> dict[str, float]:
    """Loss averaged over all ranks' micro-batches since the last report; tokens/s over all ranks."""
    import torch
    import torch.distributed as dist

    totals = torch.tensor([window["loss"], window["micro"], window["tokens"], window["targets"]],
                          dtype=torch.float64, device=engine.device)
    dist.all_reduce(totals)
    loss, micro, tokens, targets = totals.tolist()
    return {"step": step, "loss": round(loss / max(micro, 1), 5), "lr": float(scheduler.get_last_lr()[0]),
            "tokens_per_s": round(tokens / max(seconds, 1e-9), 1), "target_tokens": int(targets),
            "step_time_s": round(seconds / max(window["steps"], 1), 4)}


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs (rank 0 also exports the model at the end)."""
    import ray.train
    import torch

    from s2ray.train.data import collate, load_tokenizer, mixed, pack, replay_examples
    from s2ray.train.export import export_full, export_lora, finish_export

    cfg: Config = config["cfg"]
    t, base, record = cfg.train, config["base_model"], Path(config["record_dir"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if not t.use_gpu:
        torch.set_num_threads(threads_per_worker(t))
    torch.manual_seed(t.seed)
    engine, scheduler = _build_engine(cfg, base)
    tokenizer = load_tokenizer(base)

    step, checkpoint = 0, ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            engine.load_checkpoint(d, tag=DS_TAG)
            step = json.loads((Path(d) / STATE).read_text())["step"]
    _append(record / WORKERS, {"rank": rank, "pid": os.getpid(), "start_step": step, "time": time.time()})
    if rank == 0:
        _append(record / PROGRESS, {"event": "start", "step": step, "resumed": checkpoint is not None,
                                    "world_size": world})
        _say(f"[train] {'resumed from checkpoint at' if checkpoint else 'starting at'} step {step}/{t.max_steps} "
             f"on {world} workers (ZeRO-{t.zero_stage}, {precision(t)}, {backend(t)})")

    # The whole shard in memory, cycled locally: workers never wait on each other at Ray Data epoch boundaries,
    # and every worker runs the same number of micro-batches (packing fixes blocks per micro-batch).
    shard = [([int(x) for x in r["input_ids"]], int(r["prompt_len"]))
             for r in ray.train.get_dataset_shard("train").iter_rows()]
    fits = [e for e in shard if len(e[0]) <= t.block_size]
    if not fits:
        raise ValueError(f"worker {rank}: none of its {len(shard)} distill examples fit train.block_size="
                         f"{t.block_size} (or the shard is empty: fewer rows than train.num_workers={world})")
    seed = f"{t.seed}:{rank}:{step}"  # a resumed run draws fresh shuffles rather than replaying the same order
    replay = replay_examples(base, cfg.toy_model.teach, seed) if t.replay_fraction > 0 else None
    dropped = [0]
    blocks = pack(mixed(fits, replay, t.replay_fraction, seed), t.block_size, t.micro_batch_size, dropped)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    engine.train()
    first, window, clock = step + 1, dict.fromkeys(("loss", "micro", "tokens", "targets", "steps"), 0.0), time.time()
    while step < t.max_steps:
        for _ in range(t.grad_accum_steps):
            batch = collate(next(blocks), t.block_size, pad_id)
            window["tokens"] += batch.pop("tokens")
            window["targets"] += batch.pop("target_tokens")
            loss = engine(**{k: v.to(engine.device) for k, v in batch.items()}).loss
            engine.backward(loss)
            engine.step()  # DeepSpeed steps the optimizer only at the accumulation boundary
            window["loss"] += loss.item()
            window["micro"] += 1
        step, window["steps"] = step + 1, window["steps"] + 1
        save = step % t.checkpoint_every == 0 and step < t.max_steps
        if step % t.log_every == 0 or step == first or step == t.max_steps or save:
            metrics = _window_metrics(engine, scheduler, window, time.time() - clock, step)
            metrics["dropped_too_long"] = dropped[0] + len(shard) - len(fits)
            if rank == 0:
                _append(record / PROGRESS, metrics)
                _say(f"[train] step {step}/{t.max_steps} loss {metrics['loss']:.4f} lr {metrics['lr']:.2e} "
                     f"tokens/s {metrics['tokens_per_s']:.0f}")
            if save:
                with tempfile.TemporaryDirectory() as d:
                    engine.save_checkpoint(d, tag=DS_TAG)
                    if rank == 0:
                        (Path(d) / STATE).write_text(json.dumps({"step": step}))
                    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d),
                                     checkpoint_dir_name=f"step-{step:06d}")
                if rank == 0:
                    _append(record / PROGRESS, {"event": "checkpoint", "step": step})
            else:
                ray.train.report(metrics)
            window, clock = dict.fromkeys(window, 0.0), time.time()

    state = _gathered_state_dict(engine, t.zero_stage, rank)
    if rank == 0:
        out = Path(config["model_dir"])
        if t.lora.enabled:
            export_lora(engine.module, state, tokenizer, base, out, t.lora.merge)
        else:
            export_full(engine.module, state, tokenizer, out)
        finish_export(out, base, cfg.prompt_style, config["tasks"])
        _append(record / PROGRESS, {"event": "exported", "step": step, "model_dir": str(out)})
        _say(f"[train] exported {out}")
    torch.distributed.barrier()


def train(cfg: Config, distill_set_path: str | Path, base_model_path: str | Path, out_dir: str | Path) -> Path:
    """Fine-tune `base_model_path` on the distill set; returns the exported HF model folder (out_dir/model)."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from s2ray.train.data import distill_files, encode_distill_set

    distill_files(distill_set_path)  # a missing or empty distill set fails here, before any cluster work
    t = cfg.train
    # workers run in other folders (and on other nodes): local paths must be absolute
    base_model_path = Path(base_model_path).resolve() if Path(base_model_path).exists() else base_model_path
    distill_set_path = Path(distill_set_path).resolve()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_dir = out / "model"
    if not ray.is_initialized():  # under `ray job submit` this joins the cluster; alone it starts a local one
        ray.init(**({} if os.environ.get("RAY_ADDRESS") else {"include_dashboard": False}))
    start = time.time()
    dataset = encode_distill_set(distill_set_path, base_model_path)
    rows = dataset.count()
    tasks = sorted(dataset.unique("task"))
    print(f"[train] distill set {distill_set_path}: {rows} rows, tasks {tasks}; {t.num_workers} workers, "
          f"ZeRO-{t.zero_stage}, {'LoRA' if t.lora.enabled else 'full'} fine-tuning, {t.max_steps} steps", flush=True)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg, "base_model": str(base_model_path), "record_dir": str(out),
                           "model_dir": str(model_dir), "tasks": tasks},
        scaling_config=scaling_config(t),
        torch_config=TorchConfig(backend=backend(t)),
        run_config=RunConfig(name="s2ray-train", storage_path=str(out / "ray"),
                             failure_config=FailureConfig(max_failures=t.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=t.num_checkpoints_kept)),
        datasets={"train": dataset},
    )
    result = trainer.fit()
    records = [json.loads(line) for line in (out / PROGRESS).read_text().splitlines()]
    summary = {
        "profile": cfg.name, "distill_set": str(distill_set_path), "rows": rows, "tasks": tasks,
        "base_model": str(base_model_path), "model_dir": str(model_dir), "seconds": round(time.time() - start, 1),
        "last_checkpoint": result.checkpoint.path if result.checkpoint else None,
        "starts": [r for r in records if r.get("event") == "start"],
        "history": [r for r in records if "event" not in r],
        "train": t.model_dump(),
    }
    (out / "train.json").write_text(json.dumps(summary, indent=1) + "\n")
    if not (model_dir / "config.json").exists():
        raise RuntimeError(f"training finished but no model was exported to {model_dir}; see {out / PROGRESS}")
    return model_dir
