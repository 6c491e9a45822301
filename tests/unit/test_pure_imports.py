"""The pure layer must not pull in ray, vllm or torch (fast imports, testable without the heavy stack)."""

import subprocess
import sys

PURE = ("s2ray.tasks, s2ray.methods, s2ray.config, s2ray.report, s2ray.runs, s2ray.toy.corpus, "
        "s2ray.methods.scripted, s2ray.filters, s2ray.sampling, s2ray.train.deepspeed_config, s2ray.serve.router, "
        "s2ray.serve.ingress")


def test_pure_modules_import_no_heavy_packages():
    code = (f"import sys; import {PURE}; "
            "heavy = [m for m in ('ray', 'vllm', 'torch', 'deepspeed', 'transformers') if m in sys.modules]; "
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
