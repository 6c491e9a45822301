"""System 1 vs System 2 evaluation as a Ray job: one vLLM engine in the driver, report.json in the run folder.

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml --entrypoint-num-gpus 8 -- \
        python jobs/eval.py --config llama2-70b --out /mnt/shared/runs/R/eval
    python jobs/eval.py eval.num_examples=100              # the toy profile on this machine

Same arguments as `s2ray eval` ([--config P] [--out DIR] [a.b=value ...]). The engine runs in the driver process,
so on GPUs ask for engine.tensor_parallel_size GPUs with --entrypoint-num-gpus (the driver then lands on a GPU node).
"""

import sys

from s2ray.cli import main

if __name__ == "__main__":  # vLLM spawns its engine core: the guard keeps the child from re-running the job
    sys.exit(main(["eval", *sys.argv[1:]]))
