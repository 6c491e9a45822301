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
"$VENV/bin/python" -c "import s2ray, transformers, vllm, ray; print('s2ray environment ready:', '$VENV')"
