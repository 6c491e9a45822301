"""`ray job submit` against a real local Ray cluster: the way jobs reach a production cluster, on the toy model.

    flock /tmp/s2ray-heavy.lock .venv/bin/python -m pytest tests/integration/test_ray_job_submit.py -q

Starts a private head on loopback (its own ports and --temp-dir, so Ray clusters of other users of this machine are
never touched), submits jobs/eval.py with the `ray job submit` CLI and jobs/runtime_env.yaml (the working dir is
uploaded without .venv/.s2ray/runs), waits for SUCCEEDED and a report.json, then stops only that head.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RAY = BIN / "ray"
JOB_TIMEOUT_S = 900
TOKEN = secrets.token_hex(32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env() -> dict[str, str]:
    """The venv first on PATH (the job's `python` is the venv's), no address of another cluster, and this head's
    own auth token (token auth on, as on a real cluster; ~/.ray/auth_token of other clusters is not used)."""
    drop = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN_PATH")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN)
    return env


def processes_of(temp_dir: str) -> list[int]:
    """Pids of processes that belong to our head: its temp dir in their command line or working directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if temp_dir in cmdline or cwd.startswith(temp_dir):
            pids.append(int(entry.name))
    return pids


@pytest.fixture()
def local_head(toy_model):
    """A Ray head on 127.0.0.1 with the dashboard (the job server) on a free port; yields (address, temp dir)."""
    if not RAY.exists():
        pytest.skip(f"no ray CLI next to {sys.executable}")
    temp_dir = tempfile.mkdtemp(prefix="s2ray-jobs-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    dashboard_port = free_port()
    ports = {"--port": free_port(), "--dashboard-port": dashboard_port, "--ray-client-server-port": free_port(),
             "--dashboard-agent-listen-port": free_port(), "--dashboard-agent-grpc-port": free_port(),
             "--runtime-env-agent-port": free_port(), "--metrics-export-port": free_port(),
             "--node-manager-port": free_port(), "--object-manager-port": free_port()}
    cmd = [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
           "--include-dashboard=true", "--num-cpus=2", "--num-gpus=0", f"--object-store-memory={256 * 2**20}",
           f"--temp-dir={temp_dir}", "--disable-usage-stats", *(f"{k}={v}" for k, v in ports.items())]
    # --block keeps `ray start` alive as the owner of the head's processes: SIGTERM to it stops this head only
    with open(Path(temp_dir) / "ray-start.log", "w") as log:  # the child keeps its own descriptor
        head = subprocess.Popen(cmd, env=cli_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.time() + 180
        while not _job_server_up(address):
            if head.poll() is not None or time.time() > deadline:
                pytest.fail(f"ray head did not start (exit {head.poll()}):\n{_tail(Path(temp_dir) / 'ray-start.log')}")
            time.sleep(2)
        yield address, Path(temp_dir)
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        time.sleep(2)
        for pid in processes_of(temp_dir):  # anything the head left behind (its workers, the job driver)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)


def _get(url: str, token: str | None = TOKEN) -> int:
    """HTTP status of a GET (0 when nothing answers)."""
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def _job_server_up(address: str) -> bool:
    return _get(f"{address}/api/jobs/") == 200


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def ray_job(address: str, command: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`ray job <command> --address <address> <args>` (the address before `--`, which starts the entrypoint)."""
    return subprocess.run([str(RAY), "job", command, "--address", address, "--log-color", "false", *args], cwd=REPO,
                          env=cli_env(), check=False, capture_output=True, text=True, timeout=timeout)


def test_eval_job_succeeds_on_a_local_cluster(local_head, toy_cfg, toy_model, tmp_path):
    address, temp_dir = local_head
    runs = tmp_path / "runs"
    submission_id = f"s2ray-eval-test-{os.getpid()}-{int(time.time())}"
    entrypoint = ["python", "jobs/eval.py", "--config", "local-cpu", "eval.num_examples=5", f"runs_dir={runs}",
                  # the toy model built by the fixture: .s2ray/ is not uploaded, so point the job at it
                  f"cache_dir={toy_cfg.path(toy_cfg.cache_dir)}"]
    assert _get(f"{address}/api/jobs/", token=None) == 401, "the job API must refuse requests without the token"
    start = time.time()
    submit = ray_job(address, "submit", "--submission-id", submission_id, "--working-dir", ".",
                     "--runtime-env", "jobs/runtime_env.yaml", "--", *entrypoint, timeout=JOB_TIMEOUT_S)
    status = ray_job(address, "status", submission_id)
    print(f"job {submission_id}: {time.time() - start:.1f}s (submit + run)")
    assert f"job '{submission_id}' succeeded" in status.stdout.lower(), (
        f"job {submission_id} did not succeed: {status.stdout}{status.stderr}\n--- submit output ---\n"
        f"{submit.stdout[-6000:]}{submit.stderr[-3000:]}")

    reports = [p for p in runs.glob("*/report.json") if p.parent.name != "latest"]  # runs/latest is a symlink
    assert len(reports) == 1, f"expected one report.json under {runs}, found {reports}"
    report = json.loads(reports[0].read_text())
    assert report["profile"] == "local-cpu"
    assert report["model"] == str(toy_model), f"the job did not reuse the built toy model {toy_model}"

    logs = ray_job(address, "logs", submission_id).stdout
    assert "report:" in logs, logs[-3000:]
    # the upload is the source only (runtime_env.yaml excludes): no venv, model cache or old runs on the node
    uploaded = [p for p in temp_dir.glob("**/runtime_resources/working_dir_files/*") if p.is_dir()]
    assert uploaded and all((p / "s2ray" / "cli.py").exists() for p in uploaded), uploaded
    for p in uploaded:
        assert not any((p / name).exists() for name in (".venv", ".s2ray", "runs", ".git")), sorted(os.listdir(p))
