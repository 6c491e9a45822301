"""Distillation fine-tuning as a Ray job: Ray Train + DeepSpeed on the distill set, HF export for vLLM/Serve.

    ray job submit --working-dir . -- python jobs/train.py --config llama2-70b --data /nfs/runs/R/generate \
        --out /nfs/runs/R/train
    python jobs/train.py --data runs/latest/generate       # the toy profile on this machine (2 CPU workers)

--out must be on storage every node sees (NFS): Ray Train checkpoints and the exported model are written there.
Submitting again with the same --out resumes from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s2ray.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="local-cpu", help="profile name in jobs/configs/ or a YAML path")
    parser.add_argument("--data", required=True, help="the distill set: .jsonl/.parquet file or folder")
    parser.add_argument("--out", default=None, help="output folder (default: a new runs/<time>/train)")
    parser.add_argument("overrides", nargs="*", help="config overrides, a.b=value")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"train: config error: {e}", file=sys.stderr)
        return 2
    from s2ray.cli import base_model
    from s2ray.runs import new_run_dir
    from s2ray.train import train
    from s2ray.train.data import distill_files

    data = Path(args.data).resolve()
    try:
        distill_files(data)
    except (OSError, ValueError) as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else new_run_dir(cfg.path(cfg.runs_dir)) / "train"
    print(f"model: {train(cfg, data, base_model(cfg), out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
