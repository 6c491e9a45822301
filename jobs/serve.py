"""Deploy the s2ray Serve app from a Ray job and keep it up (the job is the app's owner until stopped).

    ray job submit --working-dir . -- python jobs/serve.py --config llama2-70b [--model DISTILLED_DIR] [a.b=value ...]
    python jobs/serve.py                                   # the toy profile on this machine (http://127.0.0.1:8000/v1)

For a long-lived deployment prefer `serve deploy jobs/serve_config.yaml` (or a KubeRay RayService with the same
config): Serve then owns the app and no job has to stay running.
"""

from __future__ import annotations

import argparse
import sys

from s2ray.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="local-cpu", help="profile name in jobs/configs/ or a YAML path")
    parser.add_argument("--model", default=None, help="the distilled model folder (default: serve.model)")
    parser.add_argument("--no-block", action="store_true", help="deploy and exit (the app stays on the cluster)")
    parser.add_argument("overrides", nargs="*", help="config overrides, a.b=value")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"serve: config error: {e}", file=sys.stderr)
        return 2
    from s2ray.serve.app import run_app

    run_app(cfg, args.model, blocking=not args.no_block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
