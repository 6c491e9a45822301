"""The toy world end to end on real components: the built model in transformers and vLLM, and `s2ray eval`.

The accuracy check is the foundation's acceptance: on 500 held-out rows per task (greedy), System 2 beats
System 1 by >= 25 points on last_letter, coin_flip, opinion_qa and pair_judge.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from s2ray.toy.build import DONE


def test_toy_model_is_hf_format_and_answers_in_transformers(toy_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (toy_model / "model.safetensors").exists() and (toy_model / DONE).exists()
    tokenizer = AutoTokenizer.from_pretrained(toy_model)
    model = AutoModelForCausalLM.from_pretrained(toy_model)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "step by step. compute: 2+3+4"}],
                                        tokenize=True, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=40, do_sample=False)
    text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert text.startswith("2+3=5, 5+4=9.") and text.endswith("answer: 9"), text


def test_eval_cli_system2_beats_system1_by_25_points(tmp_path, toy_model):
    done = subprocess.run([sys.executable, "-m", "s2ray.cli", "eval", f"runs_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stdout)
    report = json.loads((tmp_path / "latest" / "report.json").read_text())
    assert set(report["tasks"]) == {"last_letter", "coin_flip", "opinion_qa", "pair_judge", "arithmetic"}
    for task, per in report["tasks"].items():
        for system in ("system1", "system2"):
            assert per[system]["n"] == 500
            assert 0 <= per[system]["accuracy"] <= 1 and per[system]["mean_generated_tokens"] > 0
        assert per["system2"]["mean_generated_tokens"] > per["system1"]["mean_generated_tokens"]
    for task in ("last_letter", "coin_flip", "opinion_qa", "pair_judge"):
        s1, s2 = (report["tasks"][task][s]["accuracy"] for s in ("system1", "system2"))
        assert s2 >= s1 + 0.25, f"{task}: system2 {s2:.3f} vs system1 {s1:.3f}"
    predictions = (tmp_path / "latest" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 5 * 2 * 500


def test_cli_rejects_a_bad_override_naming_the_field():
    done = subprocess.run([sys.executable, "-m", "s2ray.cli", "eval", "eval.num_examples=zero"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "field eval.num_examples" in done.stderr


@pytest.mark.gpu
def test_toy_model_on_gpu_vllm(toy_model):
    from s2ray.config import EngineConfig
    from s2ray.engine import VLLMEngine

    engine = VLLMEngine(toy_model, EngineConfig(dtype="float32", enforce_eager=True))
    engine.shutdown()
