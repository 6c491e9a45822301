"""System 2 methods: one module each, same shape (see s2ray.methods.base). A new method is one file plus one line."""

from __future__ import annotations

from types import ModuleType

from s2ray.methods import bsm, cot, direct, rar1, rar2, s2a
from s2ray.methods.base import STYLES, Completion, Engine, Sampling, Step, Trace

METHODS: dict[str, ModuleType] = {m.NAME: m for m in (direct, cot, rar1, rar2, s2a, bsm)}


def get_method(name: str) -> ModuleType:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "STYLES", "Completion", "Engine", "Sampling", "Step", "Trace", "get_method"]
