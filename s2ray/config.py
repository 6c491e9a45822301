"""Typed, validated configuration: pydantic models loaded from YAML in jobs/configs/ with `a.b=value` overrides.

    from s2ray.config import load_config
    cfg = load_config("local-cpu", ["eval.num_examples=100"])

An invalid field raises ConfigError naming the field, what was given and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from s2ray.methods import METHODS, STYLES
from s2ray.tasks import TASKS

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "jobs" / "configs"


class ConfigError(ValueError):
    """A bad config file or override; the message names the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ToyModelConfig(Strict):
    """The project-built base model of the embedded default (a small Llama; toy-world words are single tokens, the
    rest characters)."""

    seed: int = Field(0, description="Seed for weights and the synthetic corpus; same seed, same model.")
    hidden_size: int = Field(128, gt=0, description="Transformer width.")
    num_layers: int = Field(4, gt=0, description="Transformer blocks.")
    num_heads: int = Field(4, gt=0, description="Attention heads (head size = hidden_size / num_heads).")
    steps: int = Field(900, gt=0, description="Optimizer steps of pretraining on the synthetic corpus.")
    batch_size: int = Field(28, gt=0, description="Packed rows per step.")
    block_size: int = Field(128, gt=0, description="Tokens per packed row (examples never span rows; longer ones "
                            "are dropped).")
    learning_rate: float = Field(3e-3, gt=0, description="Peak AdamW learning rate (cosine decay after warm-up).")
    warmup_steps: int = Field(50, ge=0, description="Linear warm-up steps.")
    max_position_embeddings: int = Field(512, gt=0, description="Longest sequence the model can take.")
    threads: int = Field(2, gt=0, description="torch CPU threads while training.")
    word_tokens: bool = Field(True, description="Toy-world words are single tokens (else characters only).")
    bf16: bool = Field(True, description="bf16 autocast while training (faster on CPUs with AVX512-BF16).")
    onednn_max_isa: str | None = Field(
        "AVX512_CORE_BF16", description="oneDNN's highest CPU instruction set while training (ONEDNN_MAX_CPU_ISA), "
        "so that CPUs with AMX train with the same bf16 kernels as the rest (an AMX build: last_letter System 2 "
        "47.6%; capped, on the same CPU: 96.2%); null: whatever the CPU has.")
    teach: dict[str, list[str]] = Field(
        default_factory=lambda: {"last_letter": ["rar1", "rar2"], "coin_flip": ["rar1", "rar2"],
                                 "opinion_qa": ["s2a"], "pair_judge": ["bsm"], "arithmetic": ["cot"]},
        description="Which System 2 methods' step formats the corpus teaches, per task (direct is always taught).")

    @model_validator(mode="after")
    def _check(self) -> "ToyModelConfig":
        if self.block_size > self.max_position_embeddings:
            raise ValueError(f"block_size ({self.block_size}) must be <= max_position_embeddings "
                             f"({self.max_position_embeddings})")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        for task, methods in self.teach.items():
            _known_task(task)
            for m in methods:
                _known_method(m)
        return self

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:12]


class EngineConfig(Strict):
    """vLLM engine settings (one engine per sampler actor, per Serve replica, or per eval process)."""

    seed: int = Field(0, description="Engine-level sampling seed (per-request seeds crash the CPU engine).")
    max_model_len: int = Field(512, gt=0, description="Context length; longer prompts are rejected per row.")
    dtype: str = Field("auto", description="Weights dtype: auto, float32, bfloat16 or float16.")
    tensor_parallel_size: int = Field(1, gt=0, description="GPUs per engine (1 on CPU).")
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="Share of device memory (CPU: of RAM).")
    kv_cache_memory_bytes: int | None = Field(256 * 2**20, gt=0, description="KV cache size; null = from utilisation.")
    max_num_seqs: int = Field(256, gt=0, description="Sequences batched at once.")
    enable_prefix_caching: bool = Field(True, description="Share prefill across samples and steps of a prompt.")
    block_size: int | None = Field(None, gt=0, description="Tokens per KV-cache block (null = vLLM's: 16 on GPU, "
                                   "128 on CPU). Prefix caching shares whole blocks only: prompts shorter than a "
                                   "block share nothing. The CPU backend takes multiples of 32.")
    enforce_eager: bool = Field(True, description="Skip graph capture (CUDA graphs / compile); true on CPU.")
    trust_remote_code: bool = Field(False, description="Run model code from the checkpoint; off unless you trust it.")
    executor: Literal["auto", "mp", "uni"] = Field(
        "auto", description="auto: vLLM's choice (on CPU: mp); mp: the model runs in worker processes of its own; "
        "uni: in the engine core process, saving a worker that busy-polls between steps (faster on few CPU cores).")
    cpu_threads: int | None = Field(None, gt=0, description="CPU engines: OpenMP threads of the model process "
                                    "(null = vLLM's default, one per core); 1 suits tiny models on shared cores.")
    core: Literal["auto", "process", "thread"] = Field(
        "auto", description="Where vLLM's engine core runs. process: its own process (vLLM's AsyncLLM); thread: in "
        "the caller's process, stepped by a thread (vLLM's LLMEngine): no second vLLM start-up, no IPC per request "
        "and step. auto: thread for batch work (generate, eval), process for Serve replicas, where the HTTP path "
        "and the engine then run in parallel (each measured faster on 2 cores).")
    malloc: Literal["auto", "tcmalloc", "system"] = Field(
        "auto", description="Allocator of the engine's processes. auto: tcmalloc when this node has it (vLLM's CPU "
        "guide asks for it; the toy's engine is 10-18% faster), else the system's; tcmalloc: required (an error "
        "without it); system: never preload.")

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        allowed = ("auto", "float32", "bfloat16", "float16")
        if v not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return v

    @model_validator(mode="after")
    def _executor(self) -> EngineConfig:
        if self.executor == "uni" and self.tensor_parallel_size != 1:
            raise ValueError(f"executor: 'uni' runs one model process; tensor_parallel_size is "
                             f"{self.tensor_parallel_size} (use 'mp')")
        return self


class TaskConfig(Strict):
    method: str = Field(description="The task's System 2 method (a name in s2ray.methods.METHODS).")
    test_file: str | None = Field(None, description="Labelled JSONL of held-out rows; null = generate toy rows.")
    agreement: float | None = Field(None, gt=0, le=1, description="tau for this task's vote; null = "
                                    "generate.agreement (pick it from the kept/precision table per tau).")
    rows_weight: float = Field(1.0, gt=0, description="This task's toy rows are generate.rows_per_task times "
                               "this (more for tasks whose System 1 needs more examples to learn).")

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return _known_method(v)


class EvalConfig(Strict):
    num_examples: int = Field(500, gt=0, description="Held-out rows per task (toy tasks).")
    seed: int = Field(0, description="Seed of the generated held-out rows.")
    max_tokens: int = Field(256, gt=0, description="Generation cap per engine call.")
    concurrency: int = Field(512, gt=0, description="Programs in flight at once against the engine.")


class GenerateConfig(Strict):
    """System 2 sampling over unlabelled inputs (Ray Data through vLLM actor pools), vote, filter, distill set."""

    input: str | None = Field(None, description="JSONL/Parquet rows (id, task, fields); null = toy unlabelled rows.")
    rows_per_task: int = Field(2000, gt=0, description="Toy unlabelled rows per task when `input` is null.")
    seed: int = Field(0, description="Seed of the toy unlabelled rows.")
    num_samples: int = Field(8, gt=0, description="k: System 2 samples per row (n=k on the first call).")
    temperature: float = Field(0.8, ge=0, description="Sampling temperature of the k samples.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the k samples.")
    max_tokens: int = Field(256, gt=0, description="Generation cap per engine call.")
    agreement: float = Field(0.75, gt=0, le=1, description="tau: share of valid votes the majority answer needs.")
    min_valid: int = Field(4, gt=0, description="Rows with fewer parseable answers are dropped.")
    filter: Literal["majority", "usc"] = Field("majority", description="majority vote, or universal self-consistency.")
    order_swap: bool = Field(True, description="Judging tasks: keep a verdict only if it survives swapping A/B.")
    both_orders: bool = Field(True, description="Judging tasks: a kept verdict enters the distill set in both "
                              "orders (it survived the swap), so System 1 learns to judge without position bias.")
    batch_size: int = Field(64, gt=0, description="Rows per Ray Data batch sent to a sampler actor.")
    concurrency: tuple[int, int] = Field((1, 1), description="(min, max) sampler actors; the pool autoscales.")
    num_cpus: float = Field(1, ge=0, description="CPUs reserved per sampler actor.")
    cpu_threads: int | None = Field(
        None, gt=0, description="CPU engines: OpenMP threads of each sampler actor's model (null: engine.cpu_threads, "
        "else Ray's default, the actor's num_cpus). More than num_cpus lets the engine use cores that Ray's "
        "accounting keeps for the read tasks and the driver, which need little while sampling runs.")
    num_gpus: float = Field(0, ge=0, description="GPUs per sampler actor (= engine.tensor_parallel_size on GPUs).")
    batches_per_actor: int = Field(2, gt=0, description="Batches in flight per actor (keeps its engine busy).")

    @model_validator(mode="after")
    def _check(self) -> "GenerateConfig":
        low, high = self.concurrency
        if not 1 <= low <= high:
            raise ValueError(f"generate.concurrency must be (min, max) with 1 <= min <= max, got {self.concurrency}")
        if self.min_valid > self.num_samples:
            raise ValueError(f"generate.min_valid ({self.min_valid}) cannot exceed num_samples ({self.num_samples})")
        return self


class LoraConfig(Strict):
    """PEFT LoRA: train low-rank adapters instead of all weights; merged into a full checkpoint on export."""

    enabled: bool = Field(False, description="Train LoRA adapters (true) or all weights (false).")
    r: int = Field(8, gt=0, description="Adapter rank.")
    alpha: int = Field(16, gt=0, description="Adapter scale numerator (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
                                      description="Module names that get adapters (Llama: q/k/v/o/gate/up/down_proj).")
    merge: bool = Field(True, description="Export the base weights with adapters merged (what vLLM serves).")

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        if not v or any(not m.strip() for m in v):
            raise ValueError("must list at least one non-empty module name")
        return v


class TrainConfig(Strict):
    """Distillation fine-tuning: Ray Train TorchTrainer workers running DeepSpeed ZeRO on the distill set."""

    num_workers: int = Field(2, gt=0, description="Training workers (one per GPU on GPU nodes).")
    use_gpu: bool = Field(False, description="One GPU per worker, NCCL; false = CPU workers, gloo.")
    resources_per_worker: dict[str, float] = Field(default_factory=lambda: {"CPU": 1},
                                                   description="Ray resources each worker reserves (CPU, GPU, memory).")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="How workers spread over nodes (PACK fills a node's GPUs first).")
    workers_per_node: int = Field(1, gt=0, description="Workers on one node; sizes the CPU memory offload needs.")
    zero_stage: Literal[2, 3] = Field(2, description="DeepSpeed ZeRO stage: 2 shards optimizer+grads, 3 also params.")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto = bf16 on GPU, fp32 on CPU.")
    offload_optimizer: bool = Field(False, description="Keep optimizer states in CPU memory (DeepSpeedCPUAdam).")
    offload_params: bool = Field(False, description="ZeRO-3 only: keep parameters in CPU memory between uses.")
    micro_batch_size: int = Field(8, gt=0, description="Packed blocks per worker per forward/backward.")
    grad_accum_steps: int = Field(1, gt=0, description="Micro-batches accumulated per optimizer step.")
    block_size: int = Field(256, gt=0, description="Tokens per packed block; longer examples are dropped (counted).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward (large models).")
    max_steps: int = Field(300, gt=0, description="Optimizer steps; the distill set is cycled as needed.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine decay floor as a share of the peak rate.")
    warmup_steps: int = Field(20, ge=0, description="Linear warm-up steps from 0 to the peak rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the global gradient norm to this (0 = off).")
    replay_fraction: float = Field(0.0, ge=0, lt=1, description="Share of training examples drawn from the toy "
                                   "corpus, so the model keeps its System 2 formats (toy model only).")
    checkpoint_every: int = Field(50, gt=0, description="Steps between checkpoints reported to Ray Train.")
    num_checkpoints_kept: int = Field(2, gt=0, description="Newest checkpoints kept in storage.")
    max_failures: int = Field(2, ge=0, description="Worker-group restarts from the last checkpoint before giving up.")
    log_every: int = Field(10, gt=0, description="Steps between metric reports (loss, tokens/s, learning rate).")
    seed: int = Field(0, description="Seed of shuffling, replay examples and adapter init.")
    lora: LoraConfig = Field(default_factory=LoraConfig)

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("train.offload_params needs train.zero_stage=3 (ZeRO-2 keeps parameters on the device)")
        if self.precision == "bf16" and not self.use_gpu:
            raise ValueError("train.precision: bf16 needs train.use_gpu=true (DeepSpeed on CPU trains in fp32)")
        if self.use_gpu and self.resources_per_worker.get("GPU", 1) != 1:
            raise ValueError("train.resources_per_worker.GPU must be 1 when use_gpu (one GPU per worker)")
        if self.warmup_steps >= self.max_steps:
            raise ValueError(f"train.warmup_steps ({self.warmup_steps}) must be < train.max_steps ({self.max_steps})")
        return self


class ReplicaConfig(Strict):
    """Replicas and resources of one Serve deployment; Serve autoscales it on ongoing requests per replica."""

    min_replicas: int = Field(1, ge=1, description="Fewest replicas (each holds a warm engine).")
    max_replicas: int = Field(1, ge=1, description="Most replicas the autoscaler may start.")
    target_ongoing_requests: float = Field(16, gt=0, description="Ongoing requests per replica the autoscaler aims at.")
    max_ongoing_requests: int = Field(64, gt=0, description="Requests a replica takes at once; the rest queue.")
    upscale_delay_s: float = Field(10, ge=0, description="Load must stay high this long before scaling up.")
    downscale_delay_s: float = Field(300, ge=0, description="Load must stay low this long before scaling down.")
    num_cpus: float = Field(1, ge=0, description="CPUs reserved per replica (fractions share a small machine).")
    num_gpus: float = Field(0, ge=0, description="GPUs per replica (= engine.tensor_parallel_size on GPUs).")

    @model_validator(mode="after")
    def _check(self) -> "ReplicaConfig":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})")
        if self.max_ongoing_requests < self.target_ongoing_requests:
            raise ValueError(f"max_ongoing_requests ({self.max_ongoing_requests}) must be >= "
                             f"target_ongoing_requests ({self.target_ongoing_requests})")
        return self


class RouterConfig(Strict):
    """The `router` model: System 1 first; escalate to System 2 only when System 1 is unsure."""

    method: str = Field("cot", description="System 2 method when the request names no task (else the task's).")
    samples: int = Field(4, gt=0, description="k cheap System 1 samples whose agreement measures certainty.")
    temperature: float = Field(0.7, ge=0, description="Temperature of the k System 1 samples.")
    max_tokens: int = Field(32, gt=0, description="Generation cap of each System 1 sample.")
    min_agreement: float = Field(0.75, ge=0, le=1, description="Escalate when the majority answer's share is below.")
    min_mean_logprob: float | None = Field(None, le=0, description="Escalate when the majority samples' mean "
                                           "per-token log-probability is below; null = agreement only.")
    min_token_logprob: float | None = Field(None, le=0, description="Escalate when the majority samples' least "
                                            "likely token's log-probability is below; null = not used.")
    system2_tasks: list[str] = Field(default_factory=list, description="Tasks (the request's `task`) that go "
                                     "straight to System 2, no System 1 sample: ones System 1 has not learned.")

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if _known_method(v) == "direct":
            raise ValueError("must be a System 2 method, not 'direct'")
        return v

    @field_validator("system2_tasks")
    @classmethod
    def _system2_tasks(cls, v: list[str]) -> list[str]:
        for name in v:
            _known_task(name)
        return v


class ServeConfig(Strict):
    """Ray Serve: an OpenAI-compatible app serving System 1, `system2/<method>` and the `router`."""

    model: str | None = Field(None, description="Distilled System 1 model folder; null = serve the base model.")
    system1_name: str = Field("system1", description="Model name of the System 1 model in the OpenAI API.")
    host: str = Field("127.0.0.1", description="HTTP bind address (0.0.0.0 only behind an auth proxy or API key).")
    port: int = Field(8000, gt=0, lt=65536, description="HTTP port.")
    ingress: Literal["proxy", "haproxy"] = Field(
        "proxy", description="proxy: Ray Serve's Python HTTP proxy forwards each request to a replica; haproxy: "
        "HAProxy on `port` forwards to the ingress replicas, which take HTTP themselves (Serve direct ingress). "
        "haproxy needs Ray started with its flags (s2ray.serve.ingress; `s2ray serve` sets them when it starts Ray).")
    api_key_env: str | None = Field(None, description="NAME of the environment variable holding the API key; "
                                    "null = no key required.")
    max_body_bytes: int = Field(1_000_000, gt=0, description="Larger request bodies get 413.")
    max_n: int = Field(8, gt=0, description="Most completions one request may ask for (n).")
    default_max_tokens: int = Field(256, gt=0, description="Generation cap when a request gives no max_tokens.")
    system2_methods: list[str] = Field(default_factory=lambda: ["cot", "rar1", "rar2", "s2a", "bsm"],
                                       description="Methods exposed as `system2/<method>` on the base model.")
    router: RouterConfig = Field(default_factory=RouterConfig)
    system1: ReplicaConfig = Field(default_factory=ReplicaConfig,
                                   description="The HTTP ingress replicas, each with the System 1 engine.")
    system2: ReplicaConfig = Field(default_factory=ReplicaConfig,
                                   description="Base-model engine replicas (only when a distilled model is served).")
    health_check_period_s: float = Field(10, gt=0, description="Seconds between replica health checks.")
    health_check_timeout_s: float = Field(30, gt=0, description="A health check slower than this fails the replica.")
    access_log: bool = Field(False, description="Log every request in the replicas (costs CPU under load).")

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError("must be the name of an environment variable holding the key (e.g. S2RAY_API_KEY), "
                             "never the key itself")
        return v

    @field_validator("system2_methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        for name in v:
            if _known_method(name) == "direct":
                raise ValueError("'direct' is System 1, not a System 2 method")
        return v


class Config(Strict):
    name: str = Field(description="Profile name.")
    prompt_style: Literal["toy", "chat"] = Field("toy", description="Prompt formats: toy model or chat models.")
    model: str = Field("toy", description="'toy' builds/reuses the toy model; otherwise an HF model path.")
    cache_dir: str = Field(".s2ray", description="Where built models are cached (relative to the repo root).")
    runs_dir: str = Field("runs", description="Where run folders go (relative to the repo root).")
    toy_model: ToyModelConfig = Field(default_factory=ToyModelConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    tasks: dict[str, TaskConfig] = Field(description="Tasks to run, each with its System 2 method.")
    eval: EvalConfig = Field(default_factory=EvalConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: dict[str, TaskConfig]) -> dict[str, TaskConfig]:
        if not v:
            raise ValueError("must name at least one task")
        for name in v:
            _known_task(name)
        return v

    @model_validator(mode="after")
    def _toy_knows_methods(self) -> "Config":
        if self.model == "toy":
            for name, task in self.tasks.items():
                taught = self.toy_model.teach.get(name, [])
                if task.method != "direct" and task.method not in taught:
                    raise ValueError(f"tasks.{name}.method: the toy model is not taught {task.method!r} for "
                                     f"{name} (toy_model.teach.{name} = {taught})")
        if self.train.replay_fraction > 0 and self.model != "toy":
            raise ValueError(f"train.replay_fraction: replay draws from the toy corpus; set it to 0 for model "
                             f"{self.model!r}")
        if self.model == "toy" and self.train.block_size > self.toy_model.max_position_embeddings:
            raise ValueError(f"train.block_size ({self.train.block_size}) must be <= "
                             f"toy_model.max_position_embeddings ({self.toy_model.max_position_embeddings})")
        return self

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else REPO_ROOT / p


def _known_task(name: str) -> str:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return name


def _known_method(name: str) -> str:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return name


assert set(STYLES) == {"toy", "chat"}


def config_path(name_or_path: str) -> Path:
    """A profile name (jobs/configs/<name>.yaml) or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        return p
    candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        known = ", ".join(sorted(x.stem for x in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"no profile {name_or_path!r} in {CONFIG_DIR}; profiles: {known}")
    return candidate


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one `a.b=value` override in place; the value is parsed as YAML (numbers, bools, lists)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like a.b=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {override!r}: empty name in {key!r}")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def load_config(name_or_path: str = "local-cpu", overrides: list[str] | tuple[str, ...] = ()) -> Config:
    path = config_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of fields")
    for override in overrides:
        apply_override(data, override)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{path}: " + format_errors(e)) from None


def format_errors(error: ValidationError) -> str:
    lines = []
    for err in error.errors():
        field = ".".join(str(x) for x in err["loc"])
        given = f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(err["input"], dict) else ""
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"field {field}: {message}{given}" if field else message)
    return "; ".join(lines)
