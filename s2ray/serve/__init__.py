"""Serving: Ray Serve hosts an OpenAI-compatible API over the distilled System 1 model, System 2, and a router.

    s2ray serve [--config local-cpu] [--model DISTILLED_DIR] [a.b=value ...]    # http://127.0.0.1:8000/v1
    serve deploy jobs/serve_config.yaml                                         # an existing Ray cluster / KubeRay

Models (GET /v1/models): `system1` (the distilled model, or the base model until one exists), `system2/<method>`
(the System 2 program on the base model) and `router` (System 1 first, System 2 only when System 1 is unsure).
Pure logic (request checks, the router decision, the System 1/2 programs) lives in modules without ray/vllm
imports; `s2ray.serve.app` holds the Ray Serve deployments.
"""
