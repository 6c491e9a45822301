"""Run folders: runs/<timestamp>/ for each run, runs/latest pointing at the newest."""

from __future__ import annotations

import os
import time
from pathlib import Path


def new_run_dir(runs_dir: Path) -> Path:
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run, i = runs_dir / stamp, 1
    while run.exists():
        run, i = runs_dir / f"{stamp}-{i}", i + 1
    run.mkdir()
    latest = runs_dir / "latest"
    tmp = runs_dir / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run.name)
    tmp.replace(latest)  # atomic: readers never see a missing `latest`
    return run
