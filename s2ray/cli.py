"""The `s2ray` command: each subcommand parses config and calls the library.

    s2ray toy-model [--config local-cpu] [a.b=value ...]   build or reuse the toy base model
    s2ray eval      [--config local-cpu] [a.b=value ...]   System 1 vs System 2 on the held-out split
    s2ray run       [--config local-cpu] [a.b=value ...]   the whole pipeline on the profile (default: toy world)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s2ray.config import Config, ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2ray", description="Distil System 2 reasoning into System 1, on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("toy-model", "build or reuse the toy base model"),
                            ("eval", "evaluate System 1 vs System 2 on held-out data"),
                            ("run", "run the whole pipeline (default: the toy world on this machine)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", default="local-cpu", help="profile name in jobs/configs/ or a YAML path")
        p.add_argument("overrides", nargs="*", help="config overrides, a.b=value")
    return parser


def base_model(cfg: Config) -> Path | str:
    if cfg.model != "toy":
        return cfg.model
    from s2ray.toy.build import ensure_toy_model

    return ensure_toy_model(cfg)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"s2ray: config error: {e}", file=sys.stderr)
        return 2
    if args.command == "toy-model":
        print(base_model(cfg))
        return 0
    from s2ray.evaluate import evaluate
    from s2ray.runs import new_run_dir

    model = base_model(cfg)
    run_dir = new_run_dir(cfg.path(cfg.runs_dir))
    print(f"run folder: {run_dir}")
    evaluate(cfg, model, run_dir)
    print(f"report: {run_dir / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
