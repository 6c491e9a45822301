"""Pure builders for the training run's DeepSpeed config and Ray Train scaling, from typed `TrainConfig` settings.

    from s2ray.config import load_config
    from s2ray.train.deepspeed_config import deepspeed_config, scaling_kwargs
    cfg = load_config("llama2-70b")
    deepspeed_config(cfg.train)      # the dict passed to deepspeed.initialize(config=...)
    scaling_kwargs(cfg.train)        # the kwargs of ray.train.ScalingConfig

No torch, ray or deepspeed at module top: these run (and are unit-tested) on any machine, GPU or not.
"""

from __future__ import annotations

from typing import Any

from s2ray.config import TrainConfig


def precision(train: TrainConfig) -> str:
    """'bf16' or 'fp32': auto means bf16 on GPUs and fp32 on CPU (DeepSpeed's CPU path trains in fp32)."""
    if train.precision == "auto":
        return "bf16" if train.use_gpu else "fp32"
    return train.precision


def backend(train: TrainConfig) -> str:
    """torch.distributed backend: NCCL between GPUs, gloo between CPU workers (same training code)."""
    return "nccl" if train.use_gpu else "gloo"


def deepspeed_config(train: TrainConfig) -> dict[str, Any]:
    """The DeepSpeed config dict. The global batch is micro_batch_size x grad_accum_steps x world size;
    DeepSpeed derives it from the world size it finds, so the same dict serves 1 worker or 16."""
    offload = {"device": "cpu", "pin_memory": train.use_gpu}
    zero: dict[str, Any] = {
        "stage": train.zero_stage,
        "overlap_comm": train.use_gpu,  # overlap needs CUDA streams; on CPU it only adds buffers
        "contiguous_gradients": True,
        "reduce_bucket_size": 5e8 if train.use_gpu else 5e7,
    }
    if train.offload_optimizer:
        zero["offload_optimizer"] = offload
    if train.zero_stage == 3:
        zero.update({
            # gather the sharded weights into one 16-bit state dict at export (what the HF checkpoint is made of)
            "stage3_gather_16bit_weights_on_model_save": True,
            "stage3_prefetch_bucket_size": 5e8 if train.use_gpu else 5e7,
            "stage3_param_persistence_threshold": 1e6 if train.use_gpu else 1e4,
        })
        if train.offload_params:
            zero["offload_param"] = offload
    else:
        zero["allgather_bucket_size"] = 5e8 if train.use_gpu else 5e7
    optimizer_params: dict[str, Any] = {"lr": train.learning_rate, "betas": [0.9, 0.95], "eps": 1e-8,
                                        "weight_decay": train.weight_decay}
    if not train.use_gpu and not train.offload_optimizer:
        optimizer_params["torch_adam"] = True  # FusedAdam is CUDA-only; offload uses DeepSpeedCPUAdam instead
    return {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.grad_accum_steps,
        "gradient_clipping": train.grad_clip,
        "bf16": {"enabled": precision(train) == "bf16"},
        "fp16": {"enabled": False},
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": optimizer_params},
        "scheduler": {"type": "WarmupCosineLR", "params": {
            "total_num_steps": train.max_steps,
            "warmup_num_steps": max(1, train.warmup_steps),  # DeepSpeed refuses 0
            "warmup_min_ratio": 0.0,
            "cos_min_ratio": train.min_lr_ratio,
            "warmup_type": "linear",
        }},
        "steps_per_print": 10**9,  # our own progress lines instead of DeepSpeed's
        "wall_clock_breakdown": False,
    }


def scaling_kwargs(train: TrainConfig) -> dict[str, Any]:
    """Keyword arguments of ray.train.ScalingConfig (a plain dict, so it is testable without Ray)."""
    resources = dict(train.resources_per_worker)
    if train.use_gpu:
        resources["GPU"] = 1
    else:
        resources.pop("GPU", None)
    return {"num_workers": train.num_workers, "use_gpu": train.use_gpu, "resources_per_worker": resources,
            "placement_strategy": train.placement_strategy}


def scaling_config(train: TrainConfig):
    """The ray.train.ScalingConfig of the run (imports Ray; building it needs no GPU and no cluster)."""
    from ray.train import ScalingConfig

    return ScalingConfig(**scaling_kwargs(train))


def threads_per_worker(train: TrainConfig) -> int:
    """torch CPU threads in a worker: the CPUs it reserved (workers must not fight over the same cores)."""
    return max(1, int(train.resources_per_worker.get("CPU", 1)))


def offload_memory_gib(train: TrainConfig, num_params: float, additional_buffer_factor: float = 1.5) -> dict[str, float]:
    """Per-node CPU and per-GPU memory of model states (GiB), following DeepSpeed's ZeRO-3/ZeRO-2 estimators
    (`estimate_zero3_model_states_mem_needs`, zero_init=True): activations and buffers come on top.

    Bytes per parameter: bf16 weights 2, bf16 grads 2, fp32 master weights + Adam moments 12 (16 with fp32 grads
    kept beside them when offloaded). Offloaded states live in the CPU memory of the worker's node.
    """
    nodes = max(1, train.num_workers // train.workers_per_node)
    gib, world = 2**30, train.num_workers
    if train.lora.enabled:  # frozen base weights only; the trainable adapter states are negligible at 70B
        return {"cpu_per_node": 0.0, "gpu_per_worker": round(2 * num_params / gib / (world if train.zero_stage == 3
                                                                                      else 1), 1)}
    if train.zero_stage == 3 and train.offload_params:
        cpu, gpu = 18 * num_params / nodes * additional_buffer_factor, 0.0
    elif train.offload_optimizer:
        cpu = 16 * num_params / nodes * additional_buffer_factor
        gpu = (2 if train.zero_stage == 3 else 4) * num_params / (world if train.zero_stage == 3 else 1)
    else:
        cpu = 0.0
        gpu = 18 * num_params / world if train.zero_stage == 3 else 2 * num_params + 16 * num_params / world
    return {"cpu_per_node": round(cpu / gib, 1), "gpu_per_worker": round(gpu / gib, 1)}
