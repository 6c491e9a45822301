"""`s2ray run` end to end on a small toy workload (real Ray Data + vLLM, Ray Train + DeepSpeed, eval), stage reuse
on rerun, and the leakage guard: gold labels in the distillation inputs cannot change the distill set or the model
trained on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from s2ray.tasks import TASKS, make_rows

SMALL = ["generate.rows_per_task=40", "generate.num_samples=4", "generate.min_valid=2", "train.max_steps=20", "train.warmup_steps=5",
         "train.checkpoint_every=10", "eval.num_examples=20"]


def cli(*args, timeout=1500):
    done = subprocess.run([sys.executable, "-m", "s2ray.cli", *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_run_all_stages_then_rerun_reuses_them(tmp_path, toy_model):
    out = tmp_path / "run"
    first = cli("run", "--out", str(out), *SMALL)
    report = json.loads((out / "report.json").read_text())
    for task, per in report["tasks"].items():
        assert set(per) >= {"system1", "system2", "distilled"}, task
        assert per["distilled"]["n"] == 20 and per["distilled"]["method"] == "direct"
    for stage in ("generate", "train", "eval"):
        assert (out / stage / "DONE").exists()
    assert (out / "report.md").exists() and (out / "plot.png").stat().st_size > 0
    assert "distilled" in first
    second = cli("run", "--out", str(out), *SMALL)
    assert second.count("done already") == 3  # nothing recomputed
    assert json.loads((out / "report.json").read_text())["tasks"] == report["tasks"]


def model_tensors(model_dir):
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_gold_labels_cannot_reach_the_distill_set_or_the_model(tmp_path, toy_model):
    """Same inputs with right labels, wrong labels and no labels -> byte-identical distill sets (greedy sampling);
    the models trained on the right-label and wrong-label runs' outputs are identical, tensor for tensor."""
    rows = [r for name in ("last_letter", "pair_judge") for r in make_rows(TASKS[name], "unlabelled", 16, seed=3)]
    variants = {
        "right": rows,
        "wrong": [{**r, "label": "zz" if r["task"] == "last_letter" else ("B" if r["label"] == "A" else "A")}
                  for r in rows],
        "none": [{k: v for k, v in r.items() if k != "label"} for r in rows],
    }
    distill = {}
    for name, variant in variants.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in variant))
        cli("generate", "--input", str(path), "--out", str(tmp_path / name), "generate.num_samples=1",
            "generate.temperature=0", "generate.min_valid=1", "generate.agreement=1.0")
        distill[name] = (tmp_path / name / "distill.jsonl").read_bytes()
    assert distill["right"], "greedy generation kept nothing: the guard would be vacuous"
    assert distill["right"] == distill["wrong"] == distill["none"]

    # one worker: its shard is the whole distill set in file order, so training is deterministic given the data
    models = {}
    for name in ("right", "wrong"):
        cli("train", "--data", str(tmp_path / name / "distill.jsonl"), "--out", str(tmp_path / f"train-{name}"),
            "train.num_workers=1", "train.max_steps=4", "train.warmup_steps=1", "train.checkpoint_every=4",
            "train.replay_fraction=0")
        models[name] = model_tensors(tmp_path / f"train-{name}" / "model")
    base = model_tensors(Path(toy_model))
    assert any(k not in base or not base[k].equal(v) for k, v in models["right"].items()), "training changed nothing"
    assert models["right"].keys() == models["wrong"].keys()
    assert all(models["right"][k].equal(models["wrong"][k]) for k in models["right"])
