"""The `s2ray` command: each subcommand parses config and calls the library (one small function each).

    s2ray toy-model [--config local-cpu] [a.b=value ...]   build or reuse the toy base model
    s2ray generate  [--config local-cpu] [--input F] [--out DIR] [a.b=value ...]   System 2 sampling -> distill set
    s2ray train     [--config local-cpu] [--data PATH] [--out DIR] [a.b=value ...]   distill set -> HF model
    s2ray eval      [--config local-cpu] [a.b=value ...]   System 1 vs System 2 on the held-out split
    s2ray serve     [--config local-cpu] [--model DIR] [a.b=value ...]   OpenAI-compatible Ray Serve app
    s2ray run       [--config local-cpu] [a.b=value ...]   the whole pipeline on the profile (default: toy world)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s2ray.config import Config, ConfigError, load_config


def base_model(cfg: Config) -> Path | str:
    if cfg.model != "toy":
        return cfg.model
    from s2ray.toy.build import ensure_toy_model

    return ensure_toy_model(cfg)


def run_folder(cfg: Config, out: str | None) -> Path:
    from s2ray.runs import new_run_dir

    path = Path(out) if out else new_run_dir(cfg.path(cfg.runs_dir))
    path.mkdir(parents=True, exist_ok=True)
    print(f"run folder: {path}")
    return path


def cmd_toy_model(cfg: Config, args: argparse.Namespace) -> int:
    print(base_model(cfg))
    return 0


def cmd_generate(cfg: Config, args: argparse.Namespace) -> int:
    from s2ray.generate import generate, precision_report

    out = run_folder(cfg, args.out)
    generate(cfg, base_model(cfg), out / "generate" if not args.out else out, args.input)
    if not (args.input or cfg.generate.input):  # toy rows: gold is computable, report the kept targets' precision
        print(precision_report(out / "generate" if not args.out else out))
    return 0


def cmd_eval(cfg: Config, args: argparse.Namespace) -> int:
    from s2ray.evaluate import evaluate

    out = run_folder(cfg, args.out)
    evaluate(cfg, base_model(cfg), out)
    print(f"report: {out / 'report.json'}")
    return 0


def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    from s2ray.pipeline import pick_run_dir, run_pipeline

    model = base_model(cfg)
    run_dir = pick_run_dir(cfg, args.out, args.fresh)
    print(f"run folder: {run_dir}")
    run_pipeline(cfg, model, run_dir)
    return 0


def cmd_train(cfg: Config, args: argparse.Namespace) -> int:
    from s2ray.train import train
    from s2ray.train.data import distill_files

    # resolved before run_folder() moves runs/latest to the new run
    data = Path(args.data or args.input or cfg.path(cfg.runs_dir) / "latest" / "generate").resolve()
    try:
        distill_files(data)
    except (OSError, ValueError) as e:
        print(f"s2ray train: {e}", file=sys.stderr)
        return 2
    out = run_folder(cfg, args.out)
    print(f"model: {train(cfg, data, base_model(cfg), out / 'train' if not args.out else out)}")
    return 0


def cmd_serve(cfg: Config, args: argparse.Namespace) -> int:
    from s2ray.serve.app import run_app

    run_app(cfg, args.model, blocking=True)
    return 0


COMMANDS = {
    "toy-model": ("build or reuse the toy base model", cmd_toy_model),
    "generate": ("System 2 sampling + vote + filter over unlabelled rows -> distill set", cmd_generate),
    "train": ("fine-tune on the distill set: Ray Train + DeepSpeed (ZeRO-2/3), optional LoRA, HF export",
              cmd_train),
    "eval": ("evaluate System 1 vs System 2 on held-out data", cmd_eval),
    "serve": ("serve System 1, system2/<method> and the router (OpenAI-compatible, Ray Serve)", cmd_serve),
    "run": ("run the whole pipeline (default: the toy world on this machine)", cmd_run),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2ray", description="Distil System 2 reasoning into System 1, on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", default="local-cpu", help="profile name in jobs/configs/ or a YAML path")
        p.add_argument("--out", default=None, help="output folder (default: a new runs/<time>/)")
        p.add_argument("--input", default=None, help="input rows (JSONL/Parquet), where the command reads any")
        p.add_argument("--model", default=None, help="serve: the distilled model folder (default: serve.model)")
        if name == "run":
            p.add_argument("--fresh", action="store_true", help="start a new run folder, reuse nothing")
        if name == "train":
            p.add_argument("--data", default=None, help="the distill set: .jsonl/.parquet file or folder "
                           "(default: runs/latest/generate)")
        p.add_argument("overrides", nargs="*", help="config overrides, a.b=value")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"s2ray: config error: {e}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command][1](cfg, args)
    except ConfigError as e:  # found while running, e.g. resuming a generation folder written with another k
        print(f"s2ray {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
