"""Request checks of the OpenAI-compatible API: each bad request is a 4xx naming what was wrong."""

import json
import logging
import subprocess
import sys

import pytest

from s2ray.serve import protocol
from s2ray.serve.protocol import RequestError

MODELS = protocol.catalogue("system1", ["rar2", "cot"])
LIMITS = {"max_n": 8, "max_tokens_cap": 511, "default_max_tokens": 256}


def error(fn, *args, **kwargs) -> RequestError:
    with pytest.raises(RequestError) as e:
        fn(*args, **kwargs)
    return e.value


def test_serve_pure_modules_import_no_heavy_packages():
    code = ("import sys; import s2ray.serve, s2ray.serve.protocol, s2ray.serve.router, s2ray.serve.systems, "
            "s2ray.serve.models; heavy = [m for m in ('ray', 'vllm', 'torch', 'fastapi') if m in sys.modules]; "
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_catalogue_has_system1_router_and_a_system2_name_per_method():
    assert list(MODELS) == ["system1", "router", "system2/rar2", "system2/cot"]
    assert protocol.resolve("system2/cot", MODELS) == protocol.Target("system2", "cot")
    e = error(protocol.resolve, "gpt-4", MODELS)
    assert e.status == 404 and e.param == "model" and "system2/rar2" in e.message
    assert error(protocol.resolve, None, MODELS).status == 404


@pytest.mark.parametrize("header", [None, "", "Bearer wrong", "Basic c2VjcmV0", "secret"])
def test_api_key_missing_or_wrong_is_401(header):
    assert error(protocol.check_api_key, header, "secret").status == 401


def test_api_key_right_or_not_configured_passes():
    protocol.check_api_key("Bearer secret", "secret")
    protocol.check_api_key("bearer  secret ", "secret")
    protocol.check_api_key(None, None)


def test_body_must_be_a_json_object_under_the_limit():
    assert protocol.parse_body(b'{"model": "system1"}', 100) == {"model": "system1"}
    assert error(protocol.parse_body, b"x" * 101, 100).status == 413
    bad = error(protocol.parse_body, b'{"model": ', 100)
    assert bad.status == 400 and "not valid JSON" in bad.message and "column" in bad.message
    assert "JSON object" in error(protocol.parse_body, b"[1, 2]", 100).message
    assert "UTF-8" in error(protocol.parse_body, b'{"a": "\xff"}', 100).message


@pytest.mark.parametrize("raw", [b"[" * 5000, b'{"n": ' + b"9" * 5000 + b"}"])
def test_json_that_python_cannot_hold_is_400_not_a_server_error(raw):
    e = error(protocol.parse_body, raw, 10**6)  # nested past the recursion limit; an int past 4,300 digits
    assert e.status == 400 and "not valid JSON" in e.message


@pytest.mark.parametrize("field,value", [("stop", ["\n"]), ("logprobs", 2), ("logit_bias", {"1": 2}),
                                         ("seed", 3), ("echo", True), ("logprobs", True), ("logprobs", 1),
                                         ("seed", 0), ("seed", 1), ("top_logprobs", 1), ("best_of", True),
                                         ("presence_penalty", 0.5), ("frequency_penalty", -1), ("top_k", 5),
                                         ("repetition_penalty", 1.2), ("min_p", 0.1), ("min_tokens", 3)])
def test_unsupported_parameters_are_refused_by_name(field, value):
    e = error(protocol.check_supported, {field: value})  # true is not 1 and 0 is not false: seed 0 is a seed
    assert e.status == 400 and e.param == field and field in e.message


def test_defaults_of_unsupported_parameters_pass():
    protocol.check_supported({"stop": [], "logprobs": None, "echo": False, "best_of": 1, "top_logprobs": 0,
                              "presence_penalty": 0.0, "frequency_penalty": 0, "repetition_penalty": 1.0,
                              "top_k": -1, "min_p": 0, "min_tokens": 0, "seed": None})


def test_task_is_one_of_the_tasks_or_absent():
    tasks = {"last_letter": 1, "coin_flip": 2}
    assert protocol.task_of({}, tasks) is None
    assert protocol.task_of({"task": "coin_flip"}, tasks) == "coin_flip"
    for bad in ("nope", ["last_letter"], {"a": 1}, 3):
        e = error(protocol.task_of, {"task": bad}, tasks)  # a list used to reach a dict lookup: a 500
        assert e.status == 400 and e.param == "task" and "last_letter" in e.message


def test_prompt_is_one_non_empty_string():
    assert protocol.question_of_prompt("last letters: a b") == "last letters: a b"
    assert protocol.question_of_prompt(["q"]) == "q"
    for bad in (None, 3, ["a", "b"], [1, 2], "  "):
        assert error(protocol.question_of_prompt, bad).param == "prompt"


def test_messages_are_exactly_one_user_message():
    assert protocol.question_of_messages([{"role": "user", "content": "hi"}]) == "hi"
    assert protocol.question_of_messages([{"role": "user", "content": [{"type": "text", "text": "h"},
                                                                         {"type": "text", "text": "i"}]}]) == "hi"
    for bad in (None, [], "hi", [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}],
                [{"role": "assistant", "content": "hi"}], [{"role": "user", "content": ""}],
                [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]):
        assert error(protocol.question_of_messages, bad).param == "messages", bad


def test_sampling_defaults_to_greedy_with_the_default_cap():
    s = protocol.sampling_of({}, **LIMITS)
    assert (s.n, s.temperature, s.top_p, s.max_tokens) == (1, 0.0, 1.0, 256)
    s = protocol.sampling_of({"n": 3, "temperature": 0.7, "top_p": 0.9, "max_completion_tokens": 9}, **LIMITS)
    assert (s.n, s.temperature, s.top_p, s.max_tokens) == (3, 0.7, 0.9, 9)


@pytest.mark.parametrize("field,value", [("n", 0), ("n", 9), ("n", 1.5), ("temperature", -1), ("temperature", 3),
                                         ("temperature", "hot"), ("top_p", 0), ("top_p", 1.5), ("max_tokens", 0),
                                         ("max_tokens", 512), ("max_tokens", True), ("temperature", float("nan")),
                                         ("top_p", float("nan")), ("temperature", float("inf"))])
def test_bad_sampling_parameters_are_400_naming_the_parameter(field, value):
    e = error(protocol.sampling_of, {field: value}, **LIMITS)
    assert e.status == 400 and e.param == field and field in e.message


def collect(events) -> list[str]:
    import asyncio

    async def run():
        return [e async for e in protocol.guarded(events, logging.getLogger("test"))]
    return asyncio.run(run())


def test_a_stream_that_fails_midway_ends_with_an_openai_error_event_and_done():
    async def failing():
        yield "data: 1\n\n"
        raise RuntimeError("engine died")

    events = collect(failing())
    assert events[0] == "data: 1\n\n" and events[-1] == "data: [DONE]\n\n" and len(events) == 3
    error_ = json.loads(events[1].removeprefix("data: "))["error"]
    assert error_["code"] == 500 and "engine died" in error_["message"]


def test_a_stream_that_ends_well_passes_through_unchanged():
    async def fine():
        yield "data: 1\n\n"
        yield "data: [DONE]\n\n"

    assert collect(fine()) == ["data: 1\n\n", "data: [DONE]\n\n"]


def test_error_body_is_openai_shaped():
    body = RequestError(400, "bad n", "n").body()
    assert json.loads(json.dumps(body)) == {"error": {"message": "bad n", "type": "invalid_request_error",
                                                      "param": "n", "code": 400}}
