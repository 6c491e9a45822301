"""The whole pipeline as one Ray job: whatever `s2ray run` does (generate -> train -> eval), on the cluster.

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml --entrypoint-num-gpus 8 -- \
        python jobs/run.py --config llama2-70b runs_dir=/mnt/shared/runs
    python jobs/run.py                                     # the toy world on this machine (same as `s2ray run`)

Same arguments as `s2ray run` ([--config P] [--out DIR] [a.b=value ...]). On a cluster runs_dir must be shared
storage: train reads the distill set and writes the model there from other nodes.
"""

import sys

from s2ray.cli import main

if __name__ == "__main__":  # vLLM spawns its engine core: the guard keeps the child from re-running the job
    sys.exit(main(["run", *sys.argv[1:]]))
