"""The Ray Serve application: an OpenAI-compatible API (FastAPI ingress) over s2ray's vLLM engine.

    s2ray serve [--config local-cpu] [--model DISTILLED_DIR] [a.b=value ...]   # library: run_app(cfg, model)
    serve deploy jobs/serve_config.yaml                                        # builder: app_builder(args)

Deployments:
- `S2RayServer` (ingress, `serve.system1` replicas): HTTP, checks, and the System 1 engine in-process, so a System 1
  request makes no extra hop (the custom deployment measured 2x faster than a separate ingress on CPU).
- `BaseEngine` (`serve.system2` replicas): the base model's engine for `system2/<method>` and router escalations,
  only when a distilled model is served (without one, the ingress's engine is the base model and serves all).
Both autoscale on ongoing requests per replica and answer Serve's health checks by probing their engine.
JSON schemas are vLLM's OpenAI protocol models; see s2ray.serve.protocol for what s2ray checks on top.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from ray import serve

from s2ray.config import Config, EngineConfig, ReplicaConfig, format_errors, load_config
from s2ray.engine import engine_env
from s2ray.methods.base import PromptTooLong, Sampling
from s2ray.serve import protocol, systems
from s2ray.serve.ingress import check_ingress, free_port, ingress_env
from s2ray.serve.models import ServedModels, served_models
from s2ray.tasks import TASKS

logger = logging.getLogger("ray.serve")
api = FastAPI(title="s2ray", description="System 1 (distilled), System 2 and a router, OpenAI-compatible.")


def _error(e: protocol.RequestError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


class RemoteEngine:
    """The methods' Engine protocol over a Serve handle to a BaseEngine deployment."""

    def __init__(self, handle):
        self.handle = handle

    async def generate(self, prompt: str, sampling: Sampling):
        try:
            return await self.handle.generate.remote(prompt, sampling)
        except Exception as e:  # a client's too-long prompt must stay a 400 across the Ray hop
            cause = getattr(e, "cause", e)
            if isinstance(cause, PromptTooLong):
                raise PromptTooLong(str(cause)) from None
            raise


class _Chunks:
    """Server-sent events in the OpenAI streaming format, built from vLLM's protocol models."""

    def __init__(self, model: str, chat: bool):
        from vllm.utils import random_uuid

        self.model, self.chat = model, chat
        self.id, self.created = f"{'chatcmpl' if chat else 'cmpl'}-{random_uuid()}", int(time.time())

    def delta(self, index: int, text: str, finish_reason: str | None, first: bool) -> str:
        if self.chat:
            from vllm.entrypoints.generate.base.protocol import DeltaMessage
            from vllm.entrypoints.openai.chat_completion.protocol import (
                ChatCompletionResponseStreamChoice,
                ChatCompletionStreamResponse,
            )

            delta = DeltaMessage(role="assistant", content=text) if first else DeltaMessage(content=text)
            chunk = ChatCompletionStreamResponse(id=self.id, created=self.created, model=self.model, choices=[
                ChatCompletionResponseStreamChoice(index=index, delta=delta, finish_reason=finish_reason)])
        else:
            from vllm.entrypoints.openai.completion.protocol import (
                CompletionResponseStreamChoice,
                CompletionStreamResponse,
            )

            chunk = CompletionStreamResponse(id=self.id, created=self.created, model=self.model, choices=[
                CompletionResponseStreamChoice(index=index, text=text, finish_reason=finish_reason)])
        return f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"

    def usage(self, prompt_tokens: int, completion_tokens: int) -> str:
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionStreamResponse
        from vllm.entrypoints.openai.completion.protocol import CompletionStreamResponse
        from vllm.entrypoints.serve.engine.protocol import UsageInfo

        usage = UsageInfo(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          total_tokens=prompt_tokens + completion_tokens)
        kind = ChatCompletionStreamResponse if self.chat else CompletionStreamResponse
        chunk = kind(id=self.id, created=self.created, model=self.model, choices=[], usage=usage)
        return f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"


# Everything the ingress methods use must be defined above S2RayServer: `serve.ingress` pickles the FastAPI app
# (and so these methods, by value) when the class is decorated, capturing the module's globals as of then.

@serve.deployment
class BaseEngine:
    """The base model's engine, for System 2 programs, when System 1 is a separate (distilled) model."""

    def __init__(self, model: str, engine: dict[str, Any]):
        from s2ray.serve.streaming import ServingEngine

        self.engine = ServingEngine(model, EngineConfig(**engine))

    async def generate(self, prompt: str, sampling: Sampling):
        return await self.engine.generate(prompt, sampling)

    async def check_health(self) -> None:
        await self.engine.check_health()


@serve.deployment
@serve.ingress(api)
class S2RayServer:
    def __init__(self, config: dict[str, Any], models: dict[str, Any], base=None):
        from s2ray.serve.streaming import ServingEngine

        self.cfg, self.served = Config.model_validate(config), ServedModels(**models)
        check_ingress(self.cfg.serve.ingress, os.environ)  # this node's Ray must have started with its flags
        self.api_key = None
        if self.cfg.serve.api_key_env:
            self.api_key = os.environ.get(self.cfg.serve.api_key_env)
            if not self.api_key:  # refuse to start open when a key is required
                raise RuntimeError(f"serve.api_key_env: environment variable {self.cfg.serve.api_key_env} is not "
                                   f"set on this node")
        self.models = protocol.catalogue(self.cfg.serve.system1_name, self.cfg.serve.system2_methods)
        self.engine = ServingEngine(self.served.system1, self.cfg.engine)
        self.base = self.engine if base is None else RemoteEngine(base)
        self.base_handle = base

    async def check_health(self) -> None:
        await self.engine.check_health()

    # --- routes -------------------------------------------------------------------------------------------------

    @api.get("/health")
    async def health(self) -> Response:
        try:
            await self.engine.check_health()
            if self.base_handle is not None:
                await self.base_handle.check_health.remote()
        except Exception as e:  # noqa: BLE001 - an engine that is down is a 503, not a server bug
            return JSONResponse({"status": "unavailable", "error": f"{type(e).__name__}: {e}"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @api.get("/v1/models")
    async def list_models(self, request: Request) -> Response:
        from vllm.entrypoints.serve.engine.protocol import ModelCard, ModelList

        try:
            protocol.check_api_key(request.headers.get("authorization"), self.api_key)
        except protocol.RequestError as e:
            return _error(e)
        roots = {"system1": self.served.system1, "system2": self.served.base, "router": self.served.system1}
        cards = [ModelCard(id=name, owned_by="s2ray", root=roots[t.kind], max_model_len=self.cfg.engine.max_model_len)
                 for name, t in self.models.items()]
        return JSONResponse(ModelList(data=cards).model_dump())

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        return await self._serve(request, chat=False)

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        return await self._serve(request, chat=True)

    # --- one request ----------------------------------------------------------------------------------------------

    async def _serve(self, request: Request, chat: bool) -> Response:
        try:
            protocol.check_api_key(request.headers.get("authorization"), self.api_key)
            body = protocol.parse_body(await self._read(request), self.cfg.serve.max_body_bytes)
            target = protocol.resolve(body.get("model"), self.models)
            protocol.check_supported(body)
            question = (protocol.question_of_messages(body.get("messages")) if chat
                        else protocol.question_of_prompt(body.get("prompt")))
            parsed = self._parse(body, chat)
            sampling = protocol.sampling_of(body, max_n=self.cfg.serve.max_n,
                                            max_tokens_cap=self.cfg.engine.max_model_len - 1,
                                            default_max_tokens=self.cfg.serve.default_max_tokens)
            task = protocol.task_of(body, TASKS)
            if target.kind == "router" and sampling.n != 1:
                raise protocol.RequestError(400, "the router answers with one choice: 'n' must be 1", "n")
            stream = bool(parsed.stream)
            usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
            if target.kind == "system1" and stream:
                prompt = self.served.system1_prompt(question)
                return self._stream_system1(body["model"], prompt, sampling, chat, usage)
            answer = await self._answer(target, question, sampling, task)
        except protocol.RequestError as e:
            return _error(e)
        except PromptTooLong as e:
            return _error(protocol.RequestError(400, f"{'messages' if chat else 'prompt'} too long: {e}",
                                                "messages" if chat else "prompt", "context_length_exceeded"))
        if stream:
            return StreamingResponse(self._stream_answer(body["model"], answer, chat, usage),
                                     media_type="text/event-stream")
        return self._response(body["model"], answer, chat)

    async def _read(self, request: Request) -> bytes:
        limit = self.cfg.serve.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise protocol.RequestError(413, f"request body is {declared} bytes; the limit is {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise protocol.RequestError(413, f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, body: dict[str, Any], chat: bool):
        """vLLM's OpenAI schema checks the types of every field; a mismatch is a 400 naming the field."""
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        from vllm.entrypoints.openai.completion.protocol import CompletionRequest

        try:  # an id of ours unless the client sent one: vLLM's default is a uuid4 per request
            return (ChatCompletionRequest if chat else CompletionRequest).model_validate(
                body if "request_id" in body else {**body, "request_id": self.engine.request_id()})
        except ValidationError as e:
            loc = e.errors()[0]["loc"]
            raise protocol.RequestError(400, format_errors(e), str(loc[0]) if loc else None) from None

    async def _answer(self, target: protocol.Target, question: str, sampling: Sampling,
                      task: str | None) -> systems.Answer:
        style = self.served.prompt_style
        if target.kind == "system1":
            return await systems.system1(self.engine, self.served.system1_prompt(question), sampling)
        if target.kind == "system2":
            return await systems.system2(self.base, target.method, question, sampling, style, task)
        router = self.cfg.serve.router
        method = self.cfg.tasks[task].method if task in self.cfg.tasks else router.method
        if method == "direct":
            method = router.method
        return await systems.route(self.engine, self.base, self.served.system1_prompt(question), question,
                                   sampling, style, router, method, task)

    # --- responses ------------------------------------------------------------------------------------------------

    def _response(self, model: str, answer: systems.Answer, chat: bool) -> Response:
        from vllm.entrypoints.openai.chat_completion.protocol import (
            ChatCompletionResponse,
            ChatCompletionResponseChoice,
            ChatMessage,
        )
        from vllm.entrypoints.openai.completion.protocol import CompletionResponse, CompletionResponseChoice
        from vllm.entrypoints.serve.engine.protocol import UsageInfo

        usage = UsageInfo(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                          total_tokens=answer.prompt_tokens + answer.completion_tokens)
        if chat:
            choices = [ChatCompletionResponseChoice(index=i, message=ChatMessage(role="assistant", content=text),
                                                    finish_reason=reason)
                       for i, (text, reason) in enumerate(zip(answer.texts, answer.finish_reasons))]
            response = ChatCompletionResponse(id=f"chatcmpl-{self.engine.request_id()}", model=model,
                                              choices=choices, usage=usage)
        else:
            choices = [CompletionResponseChoice(index=i, text=text, finish_reason=reason)
                       for i, (text, reason) in enumerate(zip(answer.texts, answer.finish_reasons))]
            response = CompletionResponse(id=f"cmpl-{self.engine.request_id()}", model=model, choices=choices,
                                          usage=usage)
        if not answer.info:  # System 1: pydantic writes the JSON itself (the hot path: no dict in between)
            return Response(response.model_dump_json(exclude_none=True), media_type="application/json")
        return JSONResponse({**response.model_dump(exclude_none=True), "s2ray": answer.info})

    def _stream_system1(self, model: str, prompt: str, sampling: Sampling, chat: bool, usage: bool) -> Response:
        prompt_tokens, deltas = self.engine.open_stream(prompt, sampling)  # PromptTooLong: before any byte
        chunks = _Chunks(model, chat)

        async def events() -> AsyncIterator[str]:
            generated, started = 0, set()
            async for batch in deltas:
                for d in batch:
                    generated += d.tokens
                    yield chunks.delta(d.index, d.text, d.finish_reason, first=d.index not in started)
                    started.add(d.index)
            if usage:
                yield chunks.usage(prompt_tokens, generated)
            yield "data: [DONE]\n\n"

        return StreamingResponse(protocol.guarded(events(), logger), media_type="text/event-stream")

    async def _stream_answer(self, model: str, answer: systems.Answer, chat: bool, usage: bool) -> AsyncIterator[str]:
        """System 2 and the router decide on the final answer before replying: it comes as one chunk per choice."""
        chunks = _Chunks(model, chat)
        for i, (text, reason) in enumerate(zip(answer.texts, answer.finish_reasons)):
            yield chunks.delta(i, text, reason, first=True)
        if usage:
            yield chunks.usage(answer.prompt_tokens, answer.completion_tokens)
        yield "data: [DONE]\n\n"


# --- building and running the app --------------------------------------------------------------------------------

def deployment_options(replicas: ReplicaConfig, cfg: Config, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "autoscaling_config": {
            "min_replicas": replicas.min_replicas, "max_replicas": replicas.max_replicas,
            "initial_replicas": replicas.min_replicas,
            "target_ongoing_requests": replicas.target_ongoing_requests,
            "upscale_delay_s": replicas.upscale_delay_s, "downscale_delay_s": replicas.downscale_delay_s},
        "max_ongoing_requests": replicas.max_ongoing_requests,
        # the engine's environment from the replica's start (e.g. tcmalloc: preloaded, or not at all)
        "ray_actor_options": {"num_cpus": replicas.num_cpus, "num_gpus": replicas.num_gpus,
                              "runtime_env": {"env_vars": engine_env(cfg.engine)}},
        "health_check_period_s": cfg.serve.health_check_period_s,
        "health_check_timeout_s": cfg.serve.health_check_timeout_s,
        "logging_config": {"enable_access_log": cfg.serve.access_log,
                           "log_level": "INFO" if cfg.serve.access_log else "WARNING"},
    }


def build_app(cfg: Config, model: str | None = None):
    """The Serve application: `model` (or serve.model) is the distilled System 1 folder; None serves the base."""
    from s2ray.cli import base_model

    served = served_models(base_model(cfg), model or cfg.serve.model, cfg.prompt_style)
    base = None
    if not served.shared_engine:
        base = BaseEngine.options(**deployment_options(cfg.serve.system2, cfg, "BaseEngine")).bind(
            served.base, cfg.engine.model_dump())
    return S2RayServer.options(**deployment_options(cfg.serve.system1, cfg, "S2RayServer")).bind(
        cfg.model_dump(), asdict(served), base)


def app_builder(args: dict[str, Any]):
    """For `serve deploy` / KubeRay RayService: args {config: profile, model: path|null, overrides: [a.b=v]}."""
    cfg = load_config(args.get("config", "local-cpu"), list(args.get("overrides", [])))
    return build_app(cfg, args.get("model"))


def start_ray(cfg: Config, **init_args: Any) -> None:
    """Start a local Ray (ray.init(**init_args)) with the flags serve.ingress needs: Serve reads them at start-up."""
    import ray

    env = ingress_env(cfg.serve.ingress, cfg.serve.port)
    if env:  # HAProxy's metrics port (default 9101) must not clash with another local app's
        env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(free_port())
    os.environ.update(env)
    ray.init(**init_args)


def run_app(cfg: Config, model: str | None = None, blocking: bool = True) -> str:
    """Start (or join) Ray, deploy the app on serve.host:serve.port, return the base URL; block if asked."""
    import ray

    if not ray.is_initialized():
        start_ray(cfg)
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    serve.run(build_app(cfg, model), name="s2ray", route_prefix="/")
    url = f"http://{cfg.serve.host}:{cfg.serve.port}/v1"
    logger.info("s2ray serving at %s", url)
    print(f"s2ray: serving at {url} (models: GET {url}/models)", flush=True)
    while blocking:
        time.sleep(3600)
    return url
