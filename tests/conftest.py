"""Shared fixtures: the toy model is built once (cached under .s2ray/) and shared by every integration test."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def toy_cfg():
    from s2ray.config import load_config

    return load_config("local-cpu")


@pytest.fixture(scope="session")
def toy_model(toy_cfg):
    from s2ray.toy.build import ensure_toy_model

    return ensure_toy_model(toy_cfg)


def pytest_collection_modifyitems(config, items):
    import shutil
    import subprocess

    has_gpu = shutil.which("nvidia-smi") is not None and subprocess.run(
        ["nvidia-smi", "-L"], capture_output=True).returncode == 0
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


_FIGURES: list[str] = []


@pytest.fixture
def figure(request):
    """figure(text): a measured figure (rows lost, failures under a kill, ...), printed now and repeated in the
    run's summary, so `make test` / CI logs show every figure even when output capture hides test output."""

    def record(text: str) -> None:
        _FIGURES.append(f"{request.node.name}: {text.strip()}")
        print(text)

    return record


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("measured figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
