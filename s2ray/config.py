"""Typed, validated configuration: pydantic models loaded from YAML in jobs/configs/ with `a.b=value` overrides.

    from s2ray.config import load_config
    cfg = load_config("local-cpu", ["eval.num_examples=100"])

An invalid field raises ConfigError naming the field, what was given and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
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
    """The project-built base model of the embedded default (a small Llama with a character tokenizer)."""

    seed: int = Field(0, description="Seed for weights and the synthetic corpus; same seed, same model.")
    hidden_size: int = Field(128, gt=0, description="Transformer width.")
    num_layers: int = Field(4, gt=0, description="Transformer blocks.")
    num_heads: int = Field(4, gt=0, description="Attention heads (head size = hidden_size / num_heads).")
    steps: int = Field(900, gt=0, description="Optimizer steps of pretraining on the synthetic corpus.")
    batch_size: int = Field(16, gt=0, description="Packed blocks per step.")
    block_size: int = Field(256, gt=0, description="Tokens per packed block (examples never span blocks).")
    learning_rate: float = Field(3e-3, gt=0, description="Peak AdamW learning rate (cosine decay after warm-up).")
    warmup_steps: int = Field(50, ge=0, description="Linear warm-up steps.")
    max_position_embeddings: int = Field(512, gt=0, description="Longest sequence the model can take.")
    threads: int = Field(2, gt=0, description="torch CPU threads while training.")
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
    enforce_eager: bool = Field(True, description="Skip graph capture (CUDA graphs / compile); true on CPU.")
    trust_remote_code: bool = Field(False, description="Run model code from the checkpoint; off unless you trust it.")

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        allowed = ("auto", "float32", "bfloat16", "float16")
        if v not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return v


class TaskConfig(Strict):
    method: str = Field(description="The task's System 2 method (a name in s2ray.methods.METHODS).")
    test_file: str | None = Field(None, description="Labelled JSONL of held-out rows; null = generate toy rows.")

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return _known_method(v)


class EvalConfig(Strict):
    num_examples: int = Field(500, gt=0, description="Held-out rows per task (toy tasks).")
    seed: int = Field(0, description="Seed of the generated held-out rows.")
    max_tokens: int = Field(256, gt=0, description="Generation cap per engine call.")
    concurrency: int = Field(512, gt=0, description="Programs in flight at once against the engine.")


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
