"""The Serve app end to end: real local Ray, real Serve over HTTP on 127.0.0.1, the real vLLM CPU engine on the toy
model, and the official `openai` client (streaming included). One app serves every test of this module.

Correctness is checked against the served model itself: a System 2 program replayed client-side through the
served System 1 model (the base model until a distilled one exists, greedy) must give what `system2/<method>`
answered, and the router must answer exactly like System 2 whenever it says it escalated.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
from types import SimpleNamespace

import httpx
import openai
import pytest

from s2ray.methods import Completion, Sampling, get_method
from s2ray.serve.systems import task_module
from s2ray.tasks import get_task, make_rows

KEY_ENV = "S2RAY_TEST_SERVE_KEY"
LAST_LETTERS = "last letters: apple river stone"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(toy_model):
    import ray
    from ray import serve

    from s2ray.config import load_config
    from s2ray.serve.app import run_app, start_ray

    key = secrets.token_hex(12)
    os.environ[KEY_ENV] = key  # set before Ray starts: the replicas inherit it
    if ray.is_initialized():
        ray.shutdown()
    # 4 samples at 0.7 and min_agreement 1.0: any disagreement among them escalates (both router paths get used;
    # the profile's one-greedy-sample log-probability rule is unit-tested and measured by bench/serving.py)
    cfg = load_config("local-cpu", [f"serve.port={free_port()}", f"serve.api_key_env={KEY_ENV}",
                                    "serve.router.samples=4", "serve.router.temperature=0.7",
                                    "serve.router.min_agreement=1.0", "serve.router.min_token_logprob=null"])
    start_ray(cfg, num_cpus=2, include_dashboard=False)  # with the profile's serve.ingress flags
    try:
        url = run_app(cfg, blocking=False)
        yield SimpleNamespace(url=url, key=key, cfg=cfg, root=url.removesuffix("/v1"))
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.pop(KEY_ENV, None)


def client(server, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key or server.key, max_retries=0, timeout=120)


def post(server, path: str, body, key: str | None = "default") -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {server.key if key == 'default' else key}"
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(server.url + path, content=content, headers=headers, timeout=120)


class ViaServedSystem1:
    """The methods' Engine protocol over the served System 1 model, greedy: replays System 2 programs client-side."""

    def __init__(self, c: openai.OpenAI):
        self.c = c

    async def generate(self, prompt: str, sampling: Sampling) -> list[Completion]:
        r = self.c.completions.create(model="system1", prompt=prompt, max_tokens=sampling.max_tokens, temperature=0)
        return [Completion(r.choices[0].text, r.usage.prompt_tokens, r.usage.completion_tokens)]


# --- the three model names ---------------------------------------------------------------------------------------

def test_models_lists_system1_router_and_system2_per_method(server):
    ids = [m.id for m in client(server).models.list()]
    assert ids[:2] == ["system1", "router"]
    assert {f"system2/{m}" for m in server.cfg.serve.system2_methods} == set(ids[2:])


def test_system1_chat_completions_and_streams_agree(server):
    c = client(server)
    chat = c.chat.completions.create(model="system1", messages=[{"role": "user", "content": LAST_LETTERS}])
    text = c.completions.create(model="system1", prompt=LAST_LETTERS)
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].finish_reason in ("stop", "length")
    assert chat.choices[0].message.content and chat.choices[0].message.content == text.choices[0].text
    assert chat.usage.completion_tokens >= 1 and chat.usage.total_tokens == chat.usage.prompt_tokens + \
        chat.usage.completion_tokens

    chunks = list(c.chat.completions.create(model="system1", messages=[{"role": "user", "content": LAST_LETTERS}],
                                            stream=True, stream_options={"include_usage": True}))
    deltas = [ch.choices[0].delta.content or "" for ch in chunks if ch.choices]
    assert "".join(deltas) == chat.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.completion_tokens == chat.usage.completion_tokens
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] in ("stop", "length")

    streamed = "".join(ch.choices[0].text for ch in c.completions.create(model="system1", prompt=LAST_LETTERS,
                                                                         stream=True))
    assert streamed == text.choices[0].text


def test_system1_samples_n_choices(server):
    r = client(server).chat.completions.create(model="system1", n=3, temperature=0.8, max_tokens=8,
                                               messages=[{"role": "user", "content": LAST_LETTERS}])
    assert [ch.index for ch in r.choices] == [0, 1, 2] and all(ch.message.content for ch in r.choices)
    assert 3 <= r.usage.completion_tokens <= 24


@pytest.mark.parametrize("task", ["last_letter", "coin_flip"])
def test_system2_answers_what_its_program_gives_on_the_base_model(server, task):
    c, method = client(server), server.cfg.tasks[task].method
    module = get_task(task)
    for row in make_rows(module, "test", 2, seed=7):
        question = module.question({k: v for k, v in row.items() if k not in ("id", "task", "label")}, "toy")
        r = c.chat.completions.create(model=f"system2/{method}", messages=[{"role": "user", "content": question}],
                                      extra_body={"task": task})
        (replayed,) = asyncio.run(get_method(method).run(ViaServedSystem1(c), task_module(task),
                                                         {"question": question}, Sampling(max_tokens=256), "toy"))
        assert r.choices[0].message.content == replayed.answer, (question, replayed.steps)
        assert r.usage.completion_tokens == replayed.generated_tokens
        assert r.model_extra["s2ray"] == {"method": method, "steps": len(replayed.steps)}


def test_system2_free_text_and_streaming(server):
    c = client(server)
    r = c.completions.create(model="system2/cot", prompt="compute: 2+3+4")
    assert r.choices[0].text and r.usage.completion_tokens > 5  # reasoning tokens are counted, not returned
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(model="system2/cot",
                                                                         prompt="compute: 2+3+4", stream=True))
    assert streamed == r.choices[0].text


def test_router_uses_system1_when_sure_and_system2_otherwise(server):
    c, decisions = client(server), []
    rows = make_rows(get_task("last_letter"), "test", 6, seed=3) + make_rows(get_task("coin_flip"), "test", 6, seed=3)
    for row in rows:
        task = get_task(row["task"])
        question = task.question({k: v for k, v in row.items() if k not in ("id", "task", "label")}, "toy")
        r = c.chat.completions.create(model="router", messages=[{"role": "user", "content": question}],
                                      extra_body={"task": row["task"]})
        info, answer = r.model_extra["s2ray"], r.choices[0].message.content
        decisions.append(info["escalated"])
        if info["escalated"]:
            method = server.cfg.tasks[row["task"]].method
            deep = c.chat.completions.create(model=f"system2/{method}", extra_body={"task": row["task"]},
                                             messages=[{"role": "user", "content": question}])
            assert info["method"] == method and info["agreement"] < 1.0
            assert answer == deep.choices[0].message.content
            assert r.usage.completion_tokens == info["system1_tokens"] + deep.usage.completion_tokens
        else:
            assert info["agreement"] == 1.0 and r.usage.completion_tokens == info["system1_tokens"]
            assert task.extract(answer) is not None
    assert any(decisions) and not all(decisions), decisions  # both paths were exercised


def test_router_sends_system2_tasks_straight_to_system2(server):
    assert server.cfg.serve.router.system2_tasks == ["arithmetic"]  # the toy profile: CoT does not distill
    c = client(server)
    question = "compute: 7+5-3+8"
    r = c.chat.completions.create(model="router", messages=[{"role": "user", "content": question}],
                                  extra_body={"task": "arithmetic"})
    deep = c.chat.completions.create(model="system2/cot", messages=[{"role": "user", "content": question}],
                                     extra_body={"task": "arithmetic"})
    info = r.model_extra["s2ray"]
    assert info["escalated"] and "system2_tasks" in info["reason"] and info["system1_tokens"] == 0
    assert r.choices[0].message.content == deep.choices[0].message.content
    assert r.usage.completion_tokens == deep.usage.completion_tokens


def test_router_streams_its_answer(server):
    c = client(server)
    r = c.completions.create(model="router", prompt=LAST_LETTERS, extra_body={"task": "last_letter"})
    chunks = list(c.completions.create(model="router", prompt=LAST_LETTERS, stream=True,
                                       extra_body={"task": "last_letter"}))
    assert "".join(ch.choices[0].text for ch in chunks) and chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert r.choices[0].text


# --- safety: 401, 4xx with a message naming what was wrong, no 5xx ---------------------------------------------------

@pytest.mark.faults  # reliability: bad requests get 4xx, a missing key 401
def test_without_or_with_a_wrong_key_is_401(server):
    with pytest.raises(openai.AuthenticationError):
        client(server, key="wrong").models.list()
    with pytest.raises(openai.AuthenticationError):
        client(server, key="wrong").chat.completions.create(model="system1",
                                                             messages=[{"role": "user", "content": "hi"}])
    r = post(server, "/completions", {"model": "system1", "prompt": "hi"}, key=None)
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    assert httpx.get(server.url + "/models").status_code == 401


def test_health_endpoints_need_no_key(server):
    assert httpx.get(server.root + "/health").json() == {"status": "ok"}
    assert httpx.get(server.root + "/-/healthz").status_code == 200


BAD_REQUESTS = [
    ("malformed JSON", "/chat/completions", b'{"model": "system1", "messages": [', 400, None, "not valid JSON"),
    ("not an object", "/completions", b"[1, 2]", 400, None, "JSON object"),
    ("unknown model", "/completions", {"model": "gpt-4", "prompt": "hi"}, 404, "model", "does not exist"),
    ("over-long prompt", "/completions", {"model": "system1", "prompt": "x" * 600}, 400, "prompt", "too long"),
    ("over-long System 2 prompt", "/completions", {"model": "system2/cot", "prompt": "x" * 600}, 400, "prompt",
     "too long"),
    ("negative temperature", "/completions", {"model": "system1", "prompt": "hi", "temperature": -1}, 400,
     "temperature", "temperature"),
    ("top_p zero", "/chat/completions", {"model": "router", "messages": [{"role": "user", "content": "hi"}],
                                          "top_p": 0}, 400, "top_p", "top_p"),
    ("n too large", "/completions", {"model": "system1", "prompt": "hi", "n": 99}, 400, "n", "'n'"),
    ("n not a number", "/completions", {"model": "system1", "prompt": "hi", "n": "many"}, 400, "n", "field n"),
    ("max_tokens too large", "/completions", {"model": "system1", "prompt": "hi", "max_tokens": 10**6}, 400,
     "max_tokens", "max_tokens"),
    ("router with n=2", "/completions", {"model": "router", "prompt": "hi", "n": 2}, 400, "n", "one choice"),
    ("unknown task", "/completions", {"model": "router", "prompt": "hi", "task": "chess"}, 400, "task", "task"),
    ("missing prompt", "/completions", {"model": "system1"}, 400, "prompt", "prompt"),
    ("two messages", "/chat/completions", {"model": "system1", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}, 400, "messages", "one"),
    ("unsupported stop", "/completions", {"model": "system1", "prompt": "hi", "stop": ["\n"]}, 400, "stop",
     "not supported"),
    ("body too large", "/completions", {"model": "system1", "prompt": "x" * 1_100_000}, 413, None, "limit"),
    ("JSON nested too deeply", "/completions", b"[" * 5000, 400, None, "not valid JSON"),
    ("NaN temperature", "/completions", b'{"model": "system1", "prompt": "hi", "temperature": NaN}', 400,
     "temperature", "finite"),
    ("task not a string", "/completions", {"model": "router", "prompt": "hi", "task": ["last_letter"]}, 400, "task",
     "task"),
    ("unsupported presence_penalty", "/completions", {"model": "system1", "prompt": "hi", "presence_penalty": 0.5},
     400, "presence_penalty", "not supported"),
    ("seed 0", "/chat/completions", {"model": "system1", "messages": [{"role": "user", "content": "hi"}],
                                      "seed": 0}, 400, "seed", "not supported"),
]


@pytest.mark.faults  # reliability: bad requests get 4xx, a missing key 401
@pytest.mark.parametrize("name,path,body,status,param,message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_malformed_requests_get_4xx_naming_the_problem(server, name, path, body, status, param, message):
    r = post(server, path, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error["message"] and error["param"] == param, error


@pytest.mark.faults  # reliability: bad requests get 4xx, a missing key 401
def test_openai_client_sees_client_errors_as_4xx_exceptions(server):
    c = client(server)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        c.chat.completions.create(model="system1", temperature=5, messages=[{"role": "user", "content": "hi"}])


# --- entry points (no second engine: these only build or validate) --------------------------------------------------

def test_serve_config_file_is_a_valid_serve_deploy_config():
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from s2ray.config import REPO_ROOT

    config = ServeDeploySchema.model_validate(yaml.safe_load((REPO_ROOT / "jobs" / "serve_config.yaml").read_text())) \
        if hasattr(ServeDeploySchema, "model_validate") else ServeDeploySchema.parse_obj(
            yaml.safe_load((REPO_ROOT / "jobs" / "serve_config.yaml").read_text()))
    (app,) = config.applications
    assert app.import_path == "s2ray.serve.app:app_builder" and app.args["config"] == "llama2-70b"


def test_app_builder_builds_the_deployments_from_the_config(toy_model):
    from s2ray.serve.app import app_builder

    app = app_builder({"config": "local-cpu", "overrides": ["serve.system1.max_replicas=3"]})
    deployment = app._bound_deployment
    assert deployment.name == "S2RayServer" and deployment.ray_actor_options["num_cpus"] == 0.5
    assert deployment._deployment_config.autoscaling_config.max_replicas == 3


def test_serve_entry_points_reject_a_bad_override_naming_the_field():
    for cmd in ([sys.executable, "-m", "s2ray.cli", "serve", "serve.port=http"],
                [sys.executable, "jobs/serve.py", "serve.port=http"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 2 and "field serve.port" in done.stderr, done.stderr


# --- last: redeploy with a distilled model (two deployments: System 1 engine + base-model engine) ----------------

def test_a_distilled_model_is_system1_and_system2_runs_on_its_base(server, toy_model, tmp_path):
    """A copy of the toy model stands in for the distilled one: same weights, so the same answers, but now System 1
    and System 2 run on two engines in two deployments, and the prompt spec next to the model is what Serve reads."""
    import shutil

    from s2ray.serve.app import run_app
    from s2ray.serve.models import PROMPT_FILE

    c = client(server)
    before = {m: c.completions.create(model=m, prompt=LAST_LETTERS, extra_body={"task": "last_letter"})
              for m in ("system1", "system2/rar2")}
    distilled = tmp_path / "distilled"
    shutil.copytree(toy_model, distilled)
    (distilled / PROMPT_FILE).write_text(json.dumps({"prompt_style": "toy", "system1_template": "{question}",
                                                     "base_model": str(toy_model), "tasks": ["last_letter"]}))
    run_app(server.cfg, str(distilled), blocking=False)  # replaces the app in place

    roots = {m.id: m.model_extra["root"] for m in c.models.list()}
    assert roots["system1"] == str(distilled) and roots["system2/rar2"] == str(toy_model)
    for model, old in before.items():
        new = c.completions.create(model=model, prompt=LAST_LETTERS, extra_body={"task": "last_letter"})
        assert new.choices[0].text == old.choices[0].text and new.usage == old.usage, model
    r = post(server, "/completions", {"model": "system2/rar2", "prompt": "x" * 600})  # too long across the Ray hop
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    assert httpx.get(server.root + "/health").json() == {"status": "ok"}  # probes both engines
