"""Request checks for the OpenAI-compatible API, as pure functions: each failure is a RequestError naming the field.

The JSON schemas themselves are vLLM's (`CompletionRequest`, `ChatCompletionRequest`, parsed in s2ray.serve.app);
this module adds what s2ray needs on top: the model catalogue, one question per request, sampling limits, API keys.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from s2ray.methods import Sampling

# Parameters the OpenAI API (and vLLM's extensions of it) has that s2ray does not honour: refused with 400 unless
# absent or at their default, rather than silently ignored. Defaults beyond None/false/empty, by parameter:
UNSUPPORTED = ("stop", "logit_bias", "suffix", "tools", "functions", "response_format", "seed",
               "best_of", "logprobs", "top_logprobs", "prompt_logprobs", "echo", "presence_penalty",
               "frequency_penalty", "repetition_penalty", "top_k", "min_p", "min_tokens")
DEFAULTS = {"best_of": (1,), "top_logprobs": (0,), "presence_penalty": (0,), "frequency_penalty": (0,),
            "repetition_penalty": (1,), "top_k": (0, -1), "min_p": (0,), "min_tokens": (0,)}


class RequestError(Exception):
    """A client mistake: HTTP `status` with a message that names the field (`param`) that was wrong."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


@dataclass(frozen=True)
class Target:
    """What a model name runs: kind 'system1', 'system2' (with a method) or 'router'."""

    kind: str
    method: str | None = None


def catalogue(system1_name: str, system2_methods: list[str]) -> dict[str, Target]:
    models = {system1_name: Target("system1"), "router": Target("router")}
    models.update({f"system2/{m}": Target("system2", m) for m in system2_methods})
    return models


def resolve(name: Any, models: dict[str, Target]) -> Target:
    if not isinstance(name, str) or name not in models:
        raise RequestError(404, f"model {name!r} does not exist; models: {', '.join(models)}", "model",
                           "model_not_found")
    return models[name]


def check_api_key(authorization: str | None, expected: str | None) -> None:
    """401 unless `Authorization: Bearer <key>` matches (no key configured: everything passes)."""
    if expected is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise RequestError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", None,
                           "authentication_error")


def parse_body(raw: bytes, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object; 413 when too large, 400 when not UTF-8 JSON or not an object."""
    if len(raw) > max_bytes:
        raise RequestError(413, f"request body is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RequestError(400, f"request body is not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise RequestError(400, f"request body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") \
            from None
    except RecursionError:
        raise RequestError(400, "request body is not valid JSON (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer of over 4,300 digits
        raise RequestError(400, f"request body is not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise RequestError(400, f"request body must be a JSON object, got {type(body).__name__}")
    return body


def is_default(name: str, value: Any) -> bool:
    """Absent, null, false, empty, or the parameter's own default number (true is not 1, nor false 0)."""
    if value is None or value is False or (isinstance(value, (str, list, dict)) and not value):
        return True
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and value in DEFAULTS.get(name, ()))


def check_supported(body: dict[str, Any]) -> None:
    for name in UNSUPPORTED:
        if not is_default(name, body.get(name)):
            raise RequestError(400, f"parameter {name!r} is not supported by this server (got {body[name]!r})", name)


def task_of(body: dict[str, Any], tasks: Any) -> str | None:
    """The optional body field `task`: one of `tasks` (a task's answer extraction and method), or None."""
    task = body.get("task")
    if task is not None and (not isinstance(task, str) or task not in tasks):
        raise RequestError(400, f"field 'task' must be one of {', '.join(tasks)}, got {task!r}", "task")
    return task


async def guarded(events: AsyncIterator[str], logger: logging.Logger) -> AsyncIterator[str]:
    """Server-sent events as they come; if making them fails once the status line is out, an error event in the
    OpenAI format (the `openai` client raises it as an APIError) and `[DONE]`, instead of a cut connection."""
    try:
        async for event in events:
            yield event
    except Exception as e:  # the client hears of it in the stream; the log keeps the traceback
        logger.exception("stream failed after its first byte")
        error = RequestError(500, f"the stream failed: {type(e).__name__}: {e}", None, "internal_server_error")
        yield f"data: {json.dumps(error.body())}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        await events.aclose()


def question_of_prompt(prompt: Any) -> str:
    """/v1/completions: the prompt is the question (one string; a list of one string is accepted)."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestError(400, "field 'prompt' must be one string (batches of prompts and token ids are not "
                                "supported)", "prompt")
    if not prompt.strip():
        raise RequestError(400, "field 'prompt' is empty", "prompt")
    return prompt


def question_of_messages(messages: Any) -> str:
    """/v1/chat/completions: s2ray models answer one question, so exactly one message, with role 'user'."""
    if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
        raise RequestError(400, "field 'messages' must hold exactly one message, {'role': 'user', 'content': ...} "
                                "(s2ray models answer one question; no system prompt or history)", "messages")
    message = messages[0]
    if message.get("role") != "user":
        raise RequestError(400, f"messages[0].role must be 'user', got {message.get('role')!r}", "messages")
    content = message.get("content")
    if isinstance(content, list):  # content parts: text only
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            raise RequestError(400, "messages[0].content parts must all be {'type': 'text', 'text': ...}",
                               "messages")
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str) or not content.strip():
        raise RequestError(400, "messages[0].content must be non-empty text", "messages")
    return content


def sampling_of(body: dict[str, Any], *, max_n: int, max_tokens_cap: int, default_max_tokens: int,
                token_field: str = "max_tokens") -> Sampling:
    """Sampling settings from a request, with a 400 naming the parameter out of range (greedy by default)."""
    def number(name: str, default: float, low: float, high: float, *, integer: bool = False, open_low=False):
        value = body.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            raise RequestError(400, f"parameter {name!r} must be {'an integer' if integer else 'a number'}, "
                                    f"got {value!r}", name)
        if not math.isfinite(value):  # JSON parsers take NaN and Infinity; NaN passes every comparison
            raise RequestError(400, f"parameter {name!r} must be a finite number, got {value!r}", name)
        if value < low or value > high or (open_low and value == low):
            bounds = f"{'(' if open_low else '['}{low}, {high}]"
            raise RequestError(400, f"parameter {name!r} must be in {bounds}, got {value!r}", name)
        return value

    max_tokens = body.get("max_completion_tokens") if body.get("max_completion_tokens") is not None else None
    name = "max_completion_tokens" if max_tokens is not None else token_field
    return Sampling(
        n=number("n", 1, 1, max_n, integer=True),
        temperature=float(number("temperature", 0.0, 0.0, 2.0)),
        top_p=float(number("top_p", 1.0, 0.0, 1.0, open_low=True)),
        max_tokens=number(name, default_max_tokens, 1, max_tokens_cap, integer=True))
