"""Distillation fine-tuning: Ray Train + DeepSpeed (ZeRO-2/3, offload), optional LoRA, HF export.

    from s2ray.train import train
    model_dir = train(cfg, distill_set, base_model, out_dir)

Modules: deepspeed_config (pure: DeepSpeed config and Ray scaling from TrainConfig), data (distill set, encoding,
packing), loop (the Ray Train worker loop and the driver), export (HF folder + s2ray_prompt.json).
"""

from __future__ import annotations

from pathlib import Path


def train(cfg, distill_set_path: str | Path, base_model_path: str | Path, out_dir: str | Path) -> Path:
    """See s2ray.train.loop.train (imported lazily: this package stays importable without torch/ray)."""
    from s2ray.train.loop import train as run

    return run(cfg, distill_set_path, base_model_path, out_dir)


__all__ = ["train"]
