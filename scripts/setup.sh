#!/usr/bin/env bash
# Fresh-machine setup: a virtual environment with s2ray and the right extra (cpu or gpu), plus dev tools.
#   EXTRA=cpu bash scripts/setup.sh      (default; EXTRA=gpu on CUDA machines)
set -euo pipefail
VENV=${VENV:-.venv}
EXTRA=${EXTRA:-cpu}
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "s2ray needs Python >= 3.11"'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
if [ "$EXTRA" = cpu ]; then
  # torch first, pinned: the CPU wheel; otherwise a resolver may pull the CUDA build from the registry.
  "$VENV/bin/pip" install -q "torch==2.13.0"
fi
"$VENV/bin/pip" install -q -e ".[$EXTRA,dev]"
if [ "$EXTRA" = cpu ]; then
  # The registry's torchvision/torchaudio/torchcodec target CUDA torch and break `import transformers` here.
  "$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
if [ "$EXTRA" = cpu ] && ! ldconfig -p 2>/dev/null | grep -q libtcmalloc; then
  # vLLM's CPU guide preloads tcmalloc; engine.malloc=auto does when it is here (the toy's engine: 10-18% faster).
  # Optional: without it (no root, no apt) the engines use the system malloc.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get install -y -q libtcmalloc-minimal4 || { apt-get update -q && apt-get install -y -q libtcmalloc-minimal4; }; } \
      >/dev/null 2>&1 || echo "setup: could not install libtcmalloc-minimal4; engines use the system malloc"
  else
    echo "setup: no tcmalloc; for faster CPU engines: apt-get install libtcmalloc-minimal4 (engines use the system malloc)"
  fi
fi
"$VENV/bin/python" -c "import s2ray, transformers, vllm, ray; print('s2ray environment ready:', '$VENV')"
