"""The pure DeepSpeed config / Ray scaling builders, and the shipped train profiles (no GPU, no cluster needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from s2ray.config import ConfigError, TrainConfig, load_config
from s2ray.train.deepspeed_config import (
    backend,
    deepspeed_config,
    offload_memory_gib,
    precision,
    scaling_kwargs,
    threads_per_worker,
)


def test_toy_profile_builds_a_cpu_zero2_fp32_config():
    t = load_config("local-cpu").train
    ds = deepspeed_config(t)
    assert ds["zero_optimization"]["stage"] == 2 and not ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    assert ds["optimizer"]["params"]["torch_adam"] is True  # no FusedAdam (CUDA-only) on CPU
    assert ds["train_micro_batch_size_per_gpu"] == t.micro_batch_size
    assert ds["gradient_accumulation_steps"] == t.grad_accum_steps and ds["gradient_clipping"] == t.grad_clip
    sched = ds["scheduler"]["params"]
    assert ds["scheduler"]["type"] == "WarmupCosineLR"
    assert sched["total_num_steps"] == t.max_steps and sched["warmup_num_steps"] == t.warmup_steps
    assert "offload_optimizer" not in ds["zero_optimization"]
    assert backend(t) == "gloo" and precision(t) == "fp32"
    assert scaling_kwargs(t) == {"num_workers": 2, "use_gpu": False, "resources_per_worker": {"CPU": 1},
                                 "placement_strategy": "PACK"}
    assert threads_per_worker(t) == 1
    assert 0 < t.replay_fraction < 1


def test_70b_profile_builds_deepspeed_and_ray_scaling_config_without_gpu():
    cfg = load_config("llama2-70b")
    t = cfg.train
    ds = deepspeed_config(t)
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3 and ds["bf16"]["enabled"] and backend(t) == "nccl"
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": True} and "offload_param" not in zero
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert "torch_adam" not in ds["optimizer"]["params"]  # offload: DeepSpeedCPUAdam
    assert t.gradient_checkpointing and t.replay_fraction == 0 and cfg.model.startswith("meta-llama/Llama-2-70b")
    scaling = scaling_config_of(t)
    assert scaling.num_workers == 16 and scaling.use_gpu and scaling.placement_strategy == "PACK"
    assert scaling.resources_per_worker["GPU"] == 1
    assert t.num_workers // t.workers_per_node == 2  # 2 nodes x 8 GPUs
    # the offload memory written in the profile's comments and memory resource
    need = offload_memory_gib(t, 68.98e9)
    assert need == {"cpu_per_node": 770.9, "gpu_per_worker": 8.0}
    assert t.resources_per_worker["memory"] * t.workers_per_node >= need["cpu_per_node"] * 2**30


def scaling_config_of(t: TrainConfig):
    from s2ray.train.deepspeed_config import scaling_config

    return scaling_config(t)


def test_zero3_with_param_offload_and_lora_settings():
    t = TrainConfig(zero_stage=3, offload_optimizer=True, offload_params=True, warmup_steps=0,
                    lora={"enabled": True, "target_modules": ["q_proj"]})
    ds = deepspeed_config(t)
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_optimizer"]["pin_memory"] is False  # no pinned memory without CUDA
    assert ds["scheduler"]["params"]["warmup_num_steps"] == 1  # DeepSpeed refuses 0
    assert "torch_adam" not in ds["optimizer"]["params"]


@pytest.mark.parametrize("override, field", [
    ("train.offload_params=true", "train.offload_params"),
    ("train.precision=bf16", "train.precision"),
    ("train.zero_stage=1", "train.zero_stage"),
    ("train.replay_fraction=1.0", "train.replay_fraction"),
    ("train.warmup_steps=700", "train.warmup_steps"),
    ("train.block_size=1024", "train.block_size"),
    ("train.lora.target_modules=[]", "train.lora.target_modules"),
    ("train.micro_batch_size=0", "train.micro_batch_size"),
])
def test_bad_train_settings_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("local-cpu", [override])


def test_replay_needs_the_toy_model():
    with pytest.raises(ConfigError, match=r"train\.replay_fraction"):
        load_config("llama2-70b", ["train.replay_fraction=0.5"])


def test_pure_train_modules_import_no_heavy_packages():
    code = ("import sys; import s2ray.train, s2ray.train.deepspeed_config, s2ray.train.data, s2ray.train.export; "
            "heavy = [m for m in ('ray', 'vllm', 'torch', 'deepspeed', 'transformers', 'peft') if m in sys.modules]; "
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
