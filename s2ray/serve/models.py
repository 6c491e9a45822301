"""Which folders Serve loads, and the System 1 prompt format, read back from the distilled model's folder.

Training writes `s2ray_prompt.json` next to the distilled checkpoint: {"prompt_style": "toy"|"chat",
"system1_template": "...{question}...", "base_model": path, "tasks": [...]}. Serve formats System 1 prompts with
that template and runs System 2 on that base model, so serving cannot drift from training. Without a distilled
model (`serve.model: null`), the base model is served as System 1 with the `direct` method's template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from s2ray.methods import get_method

PROMPT_FILE = "s2ray_prompt.json"


@dataclass(frozen=True)
class ServedModels:
    system1: str  # folder of the System 1 model (distilled, or the base model)
    base: str  # folder of the base model (System 2 programs run here)
    prompt_style: str  # method prompt formats: "toy" or "chat"
    system1_template: str  # the System 1 prompt around the user's text, with a {question} slot

    @property
    def shared_engine(self) -> bool:
        """No distilled model: one engine serves System 1 and System 2."""
        return self.system1 == self.base

    def system1_prompt(self, question: str) -> str:
        return self.system1_template.replace("{question}", question)


def read_prompt_spec(folder: str | Path) -> dict | None:
    """The distilled model's prompt spec, or None when the folder has none (a base model)."""
    path = Path(folder) / PROMPT_FILE
    if not path.exists():
        return None
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
    if spec.get("prompt_style") not in ("toy", "chat"):
        raise ValueError(f"{path}: field 'prompt_style' must be 'toy' or 'chat', got {spec.get('prompt_style')!r}")
    template = spec.get("system1_template", "{question}")
    if not isinstance(template, str) or "{question}" not in template:
        raise ValueError(f"{path}: field 'system1_template' must be a string with a {{question}} slot")
    return spec


def served_models(base: str | Path, system1: str | Path | None, prompt_style: str) -> ServedModels:
    """`system1` = the distilled folder (None: serve `base`); its prompt spec wins over the profile's style."""
    direct_template = get_method("direct").PROMPTS[prompt_style]["answer"]
    if system1 is None or Path(system1).resolve() == Path(base).resolve():
        return ServedModels(str(base), str(base), prompt_style, direct_template)
    if not Path(system1).is_dir():
        raise ValueError(f"serve.model: {system1} is not a model folder")
    spec = read_prompt_spec(system1)
    if spec is None:
        return ServedModels(str(system1), str(base), prompt_style, direct_template)
    trained_base = spec.get("base_model")
    if trained_base and Path(trained_base).is_dir() and Path(trained_base).resolve() != Path(base).resolve():
        base = trained_base  # System 2 runs on the model the distilled one was trained from
    return ServedModels(str(system1), str(base), spec["prompt_style"],
                        spec.get("system1_template", "{question}"))
