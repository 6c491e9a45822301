"""Every YAML under cluster/ and jobs/ parses, the cluster manifests fit the llama2-70b profile, and nothing is exposed.

    .venv/bin/python -m pytest tests/unit/test_cluster_manifests.py -q

Resources are read from `load_config("llama2-70b")` (engine, generate, train, serve), never restated here: change the
profile and these tests say which manifest no longer fits it.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from s2ray.config import CONFIG_DIR, REPO_ROOT, load_config

CLUSTER = REPO_ROOT / "cluster"
YAML_FILES = sorted([*CLUSTER.glob("*.yaml"), *(REPO_ROOT / "jobs").rglob("*.yaml")])
PRIVATE_PORTS = {6379, 8265, 10001}  # GCS, dashboard/job API, Ray client
SECRET_NAME = re.compile(r"(^|_)(TOKEN|KEY|SECRET|PASSWORD)(_|$)")  # HF_TOKEN, S2RAY_API_KEY; not TOKENIZERS_*


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d is not None]


def kind(name: str, k: str) -> dict[str, Any]:
    (doc,) = [d for d in docs(name) if d.get("kind") == k]
    return doc


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) of every mapping entry in a parsed document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def quantity(q: Any) -> float:
    """A Kubernetes quantity ("180", "500m", "1800Gi", "64G") as a number (bytes for memory)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    assert match and match.group(2) in ("", *units), f"not a Kubernetes quantity: {q!r}"
    return float(match.group(1)) * units.get(match.group(2), 1)


def group(spec: dict[str, Any], name: str) -> dict[str, Any]:
    (g,) = [g for g in spec["workerGroupSpecs"] if g["groupName"] == name]
    return g


def pod_limits(template: dict[str, Any]) -> dict[str, float]:
    (container,) = template["spec"]["containers"]
    return {k: quantity(v) for k, v in container["resources"]["limits"].items()}


@pytest.fixture(scope="module")
def cfg():
    return load_config("llama2-70b")


def need(cfg, section: str):
    if section not in type(cfg).model_fields:
        pytest.skip(f"the config has no `{section}:` section yet")
    return getattr(cfg, section)


# ---- every file parses ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_yaml_parses_into_mappings(path):
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents and all(isinstance(d, dict) for d in documents), f"{path}: expected YAML mappings"
    for _, key, value in walk(documents):  # YAML held in strings (serveConfigV2, runtimeEnvYAML) parses too
        if key in ("serveConfigV2", "runtimeEnvYAML"):
            assert isinstance(yaml.safe_load(value), dict), f"{path}: {key} is not a YAML mapping"


def test_the_cluster_folder_has_every_piece():
    for name in ("raycluster.yaml", "rayjob.yaml", "rayservice.yaml", "ray-up.yaml", "README.md", "Dockerfile"):
        assert (CLUSTER / name).exists(), f"cluster/{name} is missing"


def test_ray_versions_agree_with_the_installed_ray():
    ray_version = version("ray")
    for name, k in (("raycluster.yaml", "RayCluster"), ("rayservice.yaml", "RayService")):
        spec = kind(name, k)["spec"]
        spec = spec.get("rayClusterConfig", spec)
        assert spec["rayVersion"] == ray_version, f"cluster/{name}: rayVersion {spec['rayVersion']} != ray {ray_version}"
    assert f"rayproject/ray:{ray_version}-" in (CLUSTER / "Dockerfile").read_text(), "cluster/Dockerfile: Ray base tag"


def test_every_node_runs_the_same_image():
    images = {value for name in ("raycluster.yaml", "rayjob.yaml", "rayservice.yaml") for d in docs(name)
              for _, key, value in walk(d) if key == "image"}
    images.add(docs("ray-up.yaml")[0]["docker"]["image"])
    assert len(images) == 1, f"head, workers and submitters must run one image (one Ray version): {images}"


# ---- resources vs the 70B profile ----------------------------------------------------------------------------------

def gpu_node(cfg) -> dict[str, float]:
    """The 8-GPU worker pod of the batch RayCluster, with the memory left to Ray tasks after the object store."""
    gpu = group(kind("raycluster.yaml", "RayCluster")["spec"], "gpu")
    limits = pod_limits(gpu["template"])
    object_store = float(gpu["rayStartParams"].get("object-store-memory", 0.3 * limits["memory"]))
    return {"gpus": limits["nvidia.com/gpu"], "cpus": limits["cpu"], "task_memory": limits["memory"] - object_store,
            "min": gpu["minReplicas"], "max": gpu["maxReplicas"]}


def stage_nodes(cfg) -> dict[str, int]:
    """GPU nodes each stage of the profile needs at most (vLLM tensor parallel stays inside one node)."""
    node = gpu_node(cfg)
    tp = cfg.engine.tensor_parallel_size
    engines_per_node = int(node["gpus"] // tp)
    nodes = {"generate": math.ceil(cfg.generate.concurrency[1] / engines_per_node),
             "eval_driver": 1 if tp > 0 else 0}
    train = getattr(cfg, "train", None)
    if train is not None and train.use_gpu:
        nodes["train"] = math.ceil(train.num_workers / train.workers_per_node)
    serve = getattr(cfg, "serve", None)
    if serve is not None:
        nodes["serve_max"] = sum(math.ceil(r.max_replicas * r.num_gpus / node["gpus"]) for r in (serve.system1,
                                                                                                  serve.system2))
        nodes["serve_min"] = sum(math.ceil(r.min_replicas * r.num_gpus / node["gpus"]) for r in (serve.system1,
                                                                                                  serve.system2))
    return nodes


def test_a_gpu_node_holds_whole_vllm_engines(cfg):
    node, tp = gpu_node(cfg), cfg.engine.tensor_parallel_size
    assert tp > 1, "the 70B profile runs tensor parallel engines"
    assert node["gpus"] >= tp and node["gpus"] % tp == 0, (
        f"engine.tensor_parallel_size {tp} must divide the GPU node's {node['gpus']:.0f} GPUs (no engine across nodes)")


def test_generate_actors_are_one_engine_each_and_fit_the_gpu_group(cfg):
    gen, tp, node = cfg.generate, cfg.engine.tensor_parallel_size, gpu_node(cfg)
    assert gen.num_gpus == tp, f"generate.num_gpus ({gen.num_gpus}) must be engine.tensor_parallel_size ({tp})"
    assert gen.num_cpus <= node["cpus"]
    low, high = gen.concurrency
    assert low < high, "generate.concurrency should let the actor pool autoscale"
    assert node["min"] == 0, "GPU nodes should scale to zero between stages"
    assert node["max"] >= stage_nodes(cfg)["generate"] + 1, (
        f"gpu maxReplicas {node['max']} < {stage_nodes(cfg)['generate']} generate nodes + 1 for the run driver")


def test_train_workers_fit_the_gpu_nodes(cfg):
    train, node = need(cfg, "train"), gpu_node(cfg)
    assert train.use_gpu and train.zero_stage == 3, "the 70B profile trains with ZeRO-3 on GPUs"
    per_node = train.workers_per_node
    res = train.resources_per_worker
    assert per_node <= node["gpus"], f"train.workers_per_node {per_node} > {node['gpus']:.0f} GPUs per node"
    assert per_node * res.get("CPU", 1) <= node["cpus"], (
        f"{per_node} workers x {res.get('CPU')} CPUs do not fit the gpu pod's {node['cpus']:.0f} CPUs")
    assert per_node * res.get("memory", 0) <= node["task_memory"], (
        f"{per_node} workers x {res.get('memory', 0) / 2**30:.0f} GiB do not fit the gpu pod's "
        f"{node['task_memory'] / 2**30:.0f} GiB left after the object store")
    assert stage_nodes(cfg)["train"] >= 2, "ZeRO-3 across nodes: the profile should span >= 2 nodes"
    assert node["max"] >= stage_nodes(cfg)["train"] + 1, "the gpu group cannot hold train + the run driver"


def test_rayjob_runs_the_pipeline_with_an_engine_sized_driver(cfg):
    job = kind("rayjob.yaml", "RayJob")["spec"]
    argv = shlex.split(job["entrypoint"])
    assert argv[0] == "python" and argv[1].endswith("jobs/run.py"), argv
    assert (REPO_ROOT / "jobs" / "run.py").exists()
    assert argv[argv.index("--config") + 1] == "llama2-70b"
    # the eval stage's engine runs in the driver: it needs a whole engine's GPUs where the driver lands
    assert job["entrypointNumGpus"] == cfg.engine.tensor_parallel_size
    assert job["clusterSelector"]["ray.io/cluster"] == kind("raycluster.yaml", "RayCluster")["metadata"]["name"]
    assert job["shutdownAfterJobFinishes"] is False, "clusterSelector jobs must not delete the shared cluster"
    env = yaml.safe_load(job["runtimeEnvYAML"])
    shipped = yaml.safe_load((REPO_ROOT / "jobs" / "runtime_env.yaml").read_text())
    assert env["env_vars"] == shipped["env_vars"], "RayJob env_vars drifted from jobs/runtime_env.yaml"


def test_rayservice_runs_the_serve_app_of_the_profile(cfg):
    serve = need(cfg, "serve")
    spec = kind("rayservice.yaml", "RayService")["spec"]
    app_cfg = yaml.safe_load(spec["serveConfigV2"])
    shipped = yaml.safe_load((REPO_ROOT / "jobs" / "serve_config.yaml").read_text())
    (app,), (shipped_app,) = app_cfg["applications"], shipped["applications"]
    assert app["import_path"] == shipped_app["import_path"]
    module = REPO_ROOT / (app["import_path"].split(":")[0].replace(".", "/") + ".py")
    assert module.exists(), f"serveConfigV2 imports {app['import_path']}, but {module} does not exist"
    assert app["args"]["config"] == cfg.name
    load_config(app["args"]["config"], app["args"].get("overrides", []))
    assert app_cfg["http_options"]["port"] == serve.port

    tp = cfg.engine.tensor_parallel_size
    for name, replicas in (("system1", serve.system1), ("system2", serve.system2)):
        assert replicas.num_gpus == tp, f"serve.{name}.num_gpus ({replicas.num_gpus}) != tensor_parallel_size {tp}"
    gpu = group(spec["rayClusterConfig"], "gpu")
    limits = pod_limits(gpu["template"])
    per_node = int(limits["nvidia.com/gpu"] // tp)
    assert per_node >= 1
    assert per_node * max(serve.system1.num_cpus, serve.system2.num_cpus) <= limits["cpu"]
    nodes = stage_nodes(cfg)
    assert gpu["maxReplicas"] >= nodes["serve_max"], (
        f"serve replicas at most need {nodes['serve_max']} GPU nodes; maxReplicas is {gpu['maxReplicas']}")
    assert gpu["minReplicas"] <= nodes["serve_min"], "minReplicas holds more GPU nodes than the minimum replicas use"


def test_ray_up_node_types_fit_batch_and_serve_together(cfg):
    up = docs("ray-up.yaml")[0]
    types = up["available_node_types"]
    gpu, head = types["gpu_worker"], types[up["head_node_type"]]
    tp = cfg.engine.tensor_parallel_size
    assert head["resources"].get("GPU", 0) == 0 and head["resources"].get("CPU", 0) == 0, "keep work off the head"
    assert gpu["resources"]["GPU"] >= tp and gpu["resources"]["GPU"] % tp == 0
    assert gpu["min_workers"] == 0
    nodes = stage_nodes(cfg)
    batch = nodes["eval_driver"] + max(nodes["generate"], nodes.get("train", 0))
    assert gpu["max_workers"] >= batch + nodes.get("serve_max", 0), (
        f"gpu_worker max_workers {gpu['max_workers']} < {batch} batch + {nodes.get('serve_max', 0)} serve nodes")
    assert up["max_workers"] >= sum(t.get("max_workers", 0) for t in types.values())
    train = getattr(cfg, "train", None)
    if train is not None and train.use_gpu:
        res = train.resources_per_worker
        assert train.workers_per_node * res.get("memory", 0) <= gpu["resources"]["memory"]
        assert train.workers_per_node * res.get("CPU", 1) <= gpu["resources"]["CPU"]


def test_runtime_env_ships_the_source_only():
    env = yaml.safe_load((REPO_ROOT / "jobs" / "runtime_env.yaml").read_text())
    excluded = {e.strip("/") for e in env["excludes"]}
    assert {".venv", ".s2ray", "runs", ".git"} <= excluded, env["excludes"]
    assert not any(k.startswith("VLLM_CPU_") for k in env.get("env_vars", {})), "CPU-only settings in a GPU env"
    assert not any(SECRET_NAME.search(k) for k in env.get("env_vars", {})), "secrets by value in a shipped file"


# ---- security defaults ---------------------------------------------------------------------------------------------

K8S_FILES = ("raycluster.yaml", "rayjob.yaml", "rayservice.yaml")


@pytest.mark.parametrize("name", K8S_FILES)
def test_no_public_services_host_ports_or_host_network(name):
    for d in docs(name):
        for path, key, value in walk(d):
            if key in ("serviceType", "type") and value in ("LoadBalancer", "NodePort"):
                pytest.fail(f"cluster/{name}{path}: {key}: {value} exposes the cluster outside Kubernetes")
            assert key not in ("hostPort", "nodePort"), f"cluster/{name}{path}: {key} opens a port on the node"
            assert not (key == "hostNetwork" and value), f"cluster/{name}{path}: hostNetwork"
        assert d.get("kind") not in ("Ingress", "Secret"), f"cluster/{name}: {d.get('kind')} belongs outside the repo"


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayservice.yaml"])
def test_head_ports_are_private_to_the_cluster(name):
    cluster = next(d for d in docs(name) if d["kind"] in ("RayCluster", "RayService"))["spec"]
    cluster = cluster.get("rayClusterConfig", cluster)
    head = cluster["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    # 0.0.0.0 here is the pod's own interface (the ClusterIP Service must reach it); a NetworkPolicy then decides
    # who may connect: the head's Ray ports never open to sources outside the cluster.
    (policy,) = [d for d in docs(name) if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"]["ray.io/node-type"] == "head"
    head_labels = {**head["template"]["metadata"]["labels"], "ray.io/node-type": "head"}  # KubeRay adds these two
    if name == "raycluster.yaml":
        head_labels["ray.io/cluster"] = kind(name, "RayCluster")["metadata"]["name"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= head_labels.items(), "the policy misses the head"
    for rule in policy["spec"]["ingress"]:
        ports = {p["port"] for p in rule.get("ports", [])}
        if not rule.get("from"):  # open to any source: only non-Ray ports (Serve's HTTP) may be listed
            assert ports and not ports & PRIVATE_PORTS, f"cluster/{name}: {ports or 'all ports'} open to anyone"


def test_ray_up_binds_the_dashboard_to_loopback_and_limits_ssh():
    up = docs("ray-up.yaml")[0]
    head_start = " ".join(up["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start, "ray up: the dashboard must bind to 127.0.0.1 on the head"
    assert "0.0.0.0" not in head_start
    for rule in up["provider"]["security_group"]["IpPermissions"]:
        ports = set(range(rule["FromPort"], rule["ToPort"] + 1))
        assert not ports & PRIVATE_PORTS, f"ray up: Ray ports {ports & PRIVATE_PORTS} opened to {rule['IpRanges']}"
        for r in rule.get("IpRanges", []):
            assert r["CidrIp"] != "0.0.0.0/0", "ray up: SSH must not be open to the internet"


def test_ray_token_auth_is_on_everywhere():
    for name, k in (("raycluster.yaml", "RayCluster"), ("rayservice.yaml", "RayService")):
        spec = kind(name, k)["spec"]
        spec = spec.get("rayClusterConfig", spec)
        assert spec.get("authOptions", {}).get("mode") == "token", f"cluster/{name}: authOptions.mode must be token"
    (submitter,) = kind("rayjob.yaml", "RayJob")["spec"]["submitterPodTemplate"]["spec"]["containers"]
    env = {v["name"]: v for v in submitter["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token" and "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
    up = docs("ray-up.yaml")[0]
    for commands in (up["head_start_ray_commands"], up["worker_start_ray_commands"]):
        start = " ".join(commands)
        assert "RAY_AUTH_MODE=token" in start and "RAY_AUTH_TOKEN=$(" in start, "ray up: token auth on every node"


@pytest.mark.parametrize("name", K8S_FILES)
def test_secrets_come_from_secret_references(name):
    for d in docs(name):
        for path, key, value in walk(d):
            if key == "env":
                for var in value:
                    if SECRET_NAME.search(var["name"]):
                        assert "value" not in var and "secretKeyRef" in var.get("valueFrom", {}), (
                            f"cluster/{name}{path}: {var['name']} must come from a Secret (valueFrom.secretKeyRef)")


@pytest.mark.parametrize("profile", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_profiles_keep_remote_code_off_and_keys_out(profile):
    c = load_config(profile)
    assert c.engine.trust_remote_code is False, f"{profile}: engine.trust_remote_code must stay off"
    serve = getattr(c, "serve", None)
    if serve is not None and serve.host != "127.0.0.1":
        assert serve.api_key_env, f"{profile}: serve binds {serve.host} without an API key (serve.api_key_env)"


SECRET_PATTERNS = {
    "Hugging Face token": r"\bhf_[A-Za-z0-9]{20,}",
    "OpenAI-style key": r"\bsk-[A-Za-z0-9_-]{20,}",
    "AWS access key": r"\bAKIA[0-9A-Z]{16}\b",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "key/token literal": r"(?i)\b(api[_-]?key|access[_-]?token|hf[_-]?token|token|password|secret)[\"']?\s*[:=]\s*"
                         r"[\"'][A-Za-z0-9+/_.\-]{16,}[\"']",
}
SKIP_DIRS = {".venv", ".git", ".s2ray", "runs", "__pycache__", ".pytest_cache", "build"}


def repo_text_files() -> Iterator[Path]:
    for path in REPO_ROOT.rglob("*"):
        rel = path.relative_to(REPO_ROOT)
        skipped = set(rel.parts) & SKIP_DIRS or rel.parts[0].endswith(".egg-info")
        if path.is_file() and not skipped and path.stat().st_size < 2_000_000:
            yield path


def test_no_secrets_in_the_repo():
    found = []
    for path in repo_text_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for what, pattern in SECRET_PATTERNS.items():
            for m in re.finditer(pattern, text):
                found.append(f"{path.relative_to(REPO_ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {what}")
    assert not found, "secret-looking literals (use a Kubernetes Secret / env var name instead):\n" + "\n".join(found)


def test_the_secret_scan_catches_what_it_should():
    leaks = ['HF_TOKEN = "hf_' + "a" * 30 + '"', 'api_key: "' + "x1" * 12 + '"', "AKIA" + "A" * 16]
    for leak in leaks:
        assert any(re.search(p, leak) for p in SECRET_PATTERNS.values()), leak
    for fine in ['api_key_env: S2RAY_API_KEY', 'check_api_key("Bearer secret", "secret")', "hf_token: null"]:
        assert not any(re.search(p, fine) for p in SECRET_PATTERNS.values()), fine


# ---- jobs/ entry points ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", ["generate", "eval", "run"])
def test_job_entry_points_are_the_cli(stage):
    import subprocess
    import sys

    script = REPO_ROOT / "jobs" / f"{stage}.py"
    assert 'if __name__ == "__main__":' in script.read_text(), f"{script}: vLLM's spawned children re-import it"
    out = subprocess.run([sys.executable, str(script), "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and f"usage: s2ray {stage}" in out.stdout, out.stdout + out.stderr
