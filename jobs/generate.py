"""System 2 sampling as a Ray job: Ray Data streams rows through autoscaling vLLM actor pools -> distill set.

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python jobs/generate.py --config llama2-70b --out /mnt/shared/runs/R/generate
    python jobs/generate.py                               # the toy profile on this machine

Same arguments as `s2ray generate` ([--config P] [--input F] [--out DIR] [a.b=value ...]). On a cluster --out must
be shared storage (the driver writes it; train reads it from other nodes).
"""

import sys

from s2ray.cli import main

if __name__ == "__main__":  # vLLM spawns its engine core: the guard keeps the child from re-running the job
    sys.exit(main(["generate", *sys.argv[1:]]))
