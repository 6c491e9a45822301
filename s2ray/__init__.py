"""s2ray: distil an LLM's System 2 reasoning into its own System 1 answers, on Ray.

Layers (imports flow one way):
  1. pure logic — s2ray.tasks, s2ray.methods, s2ray.config, s2ray.report, s2ray.toy.corpus
  2. engines and Ray plumbing — s2ray.engine (the only vLLM import), s2ray.evaluate, s2ray.toy.build
  3. entry points — s2ray.cli and jobs/*.py
"""

__version__ = "0.1.0"
