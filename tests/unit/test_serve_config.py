"""The serve section of the config, and the System 1 prompt format read back from a distilled model's folder."""

import json

import pytest

from s2ray.config import ConfigError, load_config
from s2ray.serve.models import PROMPT_FILE, read_prompt_spec, served_models


@pytest.mark.parametrize("profile", ["local-cpu", "llama2-70b"])
def test_shipped_profiles_have_a_serve_section(profile):
    cfg = load_config(profile)
    assert cfg.serve.system1.min_replicas <= cfg.serve.system1.max_replicas
    assert cfg.serve.router.method in cfg.serve.system2_methods


def test_local_cpu_serves_on_loopback_with_fractional_cpus_and_70b_on_8_gpus():
    local, big = load_config("local-cpu").serve, load_config("llama2-70b").serve
    assert local.host == "127.0.0.1" and local.system1.num_cpus + local.system2.num_cpus <= 2
    assert big.system1.num_gpus == big.system2.num_gpus == load_config("llama2-70b").engine.tensor_parallel_size
    assert big.system1.max_replicas > big.system1.min_replicas and big.api_key_env == "S2RAY_API_KEY"


@pytest.mark.parametrize("override,message", [
    ("serve.api_key_env=sk-123secret", "field serve.api_key_env: must be the name of an environment variable"),
    ("serve.system1.min_replicas=3", "field serve.system1: min_replicas (3) must be <= max_replicas (1)"),
    ("serve.router.min_agreement=1.5", "field serve.router.min_agreement"),
    ("serve.router.method=direct", "field serve.router.method: must be a System 2 method"),
    ("serve.system2_methods=[direct]", "field serve.system2_methods"),
    ("serve.port=0", "field serve.port"),
    ("serve.max_body_bytes=0", "field serve.max_body_bytes"),
    ("serve.hots=1", "field serve.hots"),
    ("serve.ingress=nginx", "field serve.ingress: Input should be 'proxy' or 'haproxy'"),
])
def test_bad_serve_values_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config("local-cpu", [override])


def test_no_distilled_model_serves_the_base_model_with_the_direct_template(tmp_path):
    served = served_models(tmp_path, None, "chat")
    assert served.shared_engine and served.system1 == served.base == str(tmp_path)
    assert served.system1_prompt("2+2?") == "2+2?\nGive only the final answer, as 'Answer: <answer>'."
    assert served_models(tmp_path, None, "toy").system1_prompt("last letters: a b") == "last letters: a b"


def test_distilled_model_prompt_spec_wins(tmp_path):
    base, distilled = tmp_path / "base", tmp_path / "distilled"
    base.mkdir(), distilled.mkdir()
    other_base = tmp_path / "trained-from"
    other_base.mkdir()
    (distilled / PROMPT_FILE).write_text(json.dumps({"prompt_style": "toy", "system1_template": "Q {question}",
                                                     "base_model": str(other_base), "tasks": ["last_letter"]}))
    served = served_models(base, distilled, "chat")
    assert not served.shared_engine and served.system1 == str(distilled) and served.base == str(other_base)
    assert served.prompt_style == "toy" and served.system1_prompt("x {y}") == "Q x {y}"


def test_bad_prompt_spec_names_the_field(tmp_path):
    (tmp_path / PROMPT_FILE).write_text(json.dumps({"prompt_style": "fancy"}))
    with pytest.raises(ValueError, match="prompt_style"):
        read_prompt_spec(tmp_path)
    (tmp_path / PROMPT_FILE).write_text(json.dumps({"prompt_style": "toy", "system1_template": "no slot"}))
    with pytest.raises(ValueError, match="system1_template"):
        read_prompt_spec(tmp_path)
    with pytest.raises(ValueError, match="serve.model"):
        served_models(tmp_path, tmp_path / "missing", "toy")


def test_haproxy_ingress_names_the_flags_ray_must_start_with_and_keeps_its_files_per_port():
    from s2ray.serve.ingress import check_ingress, ingress_env

    assert ingress_env("proxy", 8000) == {}
    env = ingress_env("haproxy", 8123)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert all("8123" in v for k, v in env.items() if k.startswith("RAY_SERVE_HAPROXY_"))
    assert ingress_env("haproxy", 8124)["RAY_SERVE_HAPROXY_SOCKET_PATH"] != env["RAY_SERVE_HAPROXY_SOCKET_PATH"]
    check_ingress("haproxy", env)
    check_ingress("proxy", {})
    with pytest.raises(ValueError, match="serve.ingress: 'haproxy' needs RAY_SERVE_ENABLE_DIRECT_INGRESS=1"):
        check_ingress("haproxy", {"RAY_SERVE_ENABLE_HA_PROXY": "1"})
