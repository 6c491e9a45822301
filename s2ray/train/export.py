"""Export the trained model as an HF folder vLLM loads directly, with the System 1 prompt format saved beside it.

    model/
      config.json, generation_config.json, model.safetensors   weights (LoRA adapters merged in)
      tokenizer.json, tokenizer_config.json, chat_template.jinja
      s2ray_prompt.json    {"prompt_style", "system1_template", "base_model", "tasks"}: what Serve reads back,
                           so serving cannot drift from the prompt format the model was trained on
      adapter/             LoRA runs only: the adapter alone (PEFT format)

Called on rank 0 of the training workers with a consolidated state dict (ZeRO-3 shards gathered first).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from s2ray.methods import direct

PROMPT_FILE = "s2ray_prompt.json"


def prompt_record(prompt_style: str, base_model: str, tasks: list[str]) -> dict[str, Any]:
    return {"prompt_style": prompt_style, "system1_template": direct.PROMPTS[prompt_style]["answer"],
            "base_model": base_model, "tasks": list(tasks)}


def write_prompt_record(out: Path, prompt_style: str, base_model: str, tasks: list[str]) -> Path:
    path = out / PROMPT_FILE
    path.write_text(json.dumps(prompt_record(prompt_style, base_model, tasks), indent=1) + "\n")
    return path


def export_full(module, state_dict: dict, tokenizer, out: Path) -> Path:
    """A fully fine-tuned model: the module's config with the gathered weights, as safetensors."""
    module.save_pretrained(out, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def export_lora(peft_module, state_dict: dict, tokenizer, base_model: str, out: Path, merge: bool) -> Path:
    """A LoRA run: save the adapter, then (merge=True) fold it into a fresh copy of the base weights."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = out / "adapter"
    peft_module.save_pretrained(adapter, state_dict=state_dict)
    tokenizer.save_pretrained(adapter)
    if not merge:
        return adapter
    dtype = next((t.dtype for t in state_dict.values() if t.is_floating_point()), torch.float32)
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def finish_export(out: Path, base_model: str, prompt_style: str, tasks: list[str]) -> Path:
    """Copy the base model's generation config when the export lacks one, and write the prompt record."""
    source = Path(base_model) / "generation_config.json"
    if source.exists() and not (out / "generation_config.json").exists():
        shutil.copy(source, out / "generation_config.json")
    write_prompt_record(out, prompt_style, base_model, tasks)
    return out
