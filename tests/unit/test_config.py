"""Every shipped config loads; overrides apply; bad values are named."""

import pytest

from s2ray.config import CONFIG_DIR, ConfigError, load_config

SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def test_profiles_exist():
    assert {"local-cpu", "llama2-70b"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads(name):
    cfg = load_config(name)
    assert cfg.name == name and cfg.tasks


def test_local_cpu_is_the_toy_world_and_70b_is_chat():
    toy, big = load_config("local-cpu"), load_config("llama2-70b")
    assert toy.model == "toy" and toy.prompt_style == "toy" and toy.engine.tensor_parallel_size == 1
    assert big.prompt_style == "chat" and big.engine.tensor_parallel_size == 8 and not big.engine.trust_remote_code


def test_overrides_are_typed():
    cfg = load_config("local-cpu", ["eval.num_examples=7", "engine.enable_prefix_caching=false",
                                    "tasks.coin_flip.method=rar2"])
    assert cfg.eval.num_examples == 7 and cfg.engine.enable_prefix_caching is False
    assert cfg.tasks["coin_flip"].method == "rar2"


@pytest.mark.parametrize("override, message", [
    ("eval.num_examples=0", "field eval.num_examples: Input should be greater than 0"),
    ("engine.dtype=fp8", "field engine.dtype: must be one of"),
    ("toy_model.colour=red", "field toy_model.colour: Extra inputs are not permitted"),
    ("tasks.coin_flip.method=telepathy", "unknown method 'telepathy'"),
    ("tasks.coin_flip.method=bsm", "the toy model is not taught 'bsm' for coin_flip"),
    ("toy_model.num_heads=3", "hidden_size \\(128\\) must be divisible by num_heads \\(3\\)"),
    ("prompt_style=fancy", "field prompt_style"),
    ("eval", "must look like a.b=value"),
    ("engine.executor=ray", "field engine.executor: Input should be 'auto', 'mp' or 'uni'"),
    ("engine.tensor_parallel_size=2", ("field engine: executor: 'uni' runs one model process; "
                                       "tensor_parallel_size is 2")),
    ("engine.cpu_threads=0", "field engine.cpu_threads: Input should be greater than 0"),
    ("engine.core=gpu", "field engine.core: Input should be 'auto', 'process' or 'thread'"),
    ("engine.malloc=jemalloc", "field engine.malloc: Input should be 'auto', 'tcmalloc' or 'system'"),
    ("engine.block_size=0", "field engine.block_size: Input should be greater than 0"),
])
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("local-cpu", [override])


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match="profiles: .*local-cpu"):
        load_config("nope")


def test_toy_fingerprint_tracks_the_toy_config():
    a, b = load_config("local-cpu"), load_config("local-cpu", ["toy_model.steps=10"])
    assert a.toy_model.fingerprint() != b.toy_model.fingerprint()
    assert a.toy_model.fingerprint() == load_config("local-cpu", ["eval.seed=9"]).toy_model.fingerprint()


def test_sampler_threads_reach_the_actor_environment():
    from s2ray.generate import sampler_env

    cfg = load_config("local-cpu", ["engine.malloc=system"])
    assert cfg.generate.cpu_threads == 2 and sampler_env(cfg)["OMP_NUM_THREADS"] == "2"
    # null: engine.cpu_threads, else nothing (Ray sets the actor's num_cpus)
    assert "OMP_NUM_THREADS" not in sampler_env(load_config("local-cpu", ["engine.malloc=system",
                                                                          "generate.cpu_threads=null"]))
    both = load_config("local-cpu", ["engine.malloc=system", "generate.cpu_threads=null", "engine.cpu_threads=3"])
    assert sampler_env(both)["OMP_NUM_THREADS"] == "3"
    with pytest.raises(ValueError, match="cpu_threads"):
        load_config("local-cpu", ["generate.cpu_threads=0"])


def test_toy_build_runs_in_its_own_process_with_the_onednn_cap(monkeypatch, tmp_path):
    import subprocess

    from s2ray.toy import build as toy_build

    calls = []

    def run(args, env, check):
        calls.append((args, env))
        return subprocess.CompletedProcess(args, 0 if len(calls) < 3 else 1)

    monkeypatch.setattr(toy_build.subprocess, "run", run)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    toy = load_config("local-cpu").toy_model
    toy_build.build_in_child(toy, tmp_path / "m")
    args, env = calls[0]
    assert args[1:3] == ["-m", "s2ray.toy.build"] and args[-1] == str(tmp_path / "m")
    assert type(toy).model_validate_json(args[3]) == toy  # the child trains exactly this config
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE_BF16"
    toy_build.build_in_child(toy.model_copy(update={"onednn_max_isa": None}), tmp_path / "m")
    assert "ONEDNN_MAX_CPU_ISA" not in calls[1][1]
    with pytest.raises(RuntimeError, match="toy model build into .*/m failed"):
        toy_build.build_in_child(toy, tmp_path / "m")
