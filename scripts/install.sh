#!/usr/bin/env bash
# Creates .venv (if missing) and installs hwloop with everything it needs, idempotently.
# Called by `make`; the Makefile re-runs it only when this file or pyproject.toml change.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PYTHON_BIN=${PYTHON_BIN:-$(command -v python3.11 || command -v python3)}
TORCH_SPEC="torch==2.13.0"
AIHWKIT_SPEC="aihwkit==1.2.0"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# aihwkit's C++ tiles link against OpenBLAS.
if ! dpkg -s libopenblas-dev >/dev/null 2>&1; then
    echo "[setup] installing libopenblas-dev (needed to build aihwkit)"
    as_root apt-get update -qq
    as_root apt-get install -y -qq libopenblas-dev
fi

# The browser tests of `hwloop view` drive Debian's headless Chromium (no browser download).
# Best effort: without it those tests skip with the reason.
if ! command -v chromium >/dev/null 2>&1; then
    echo "[setup] installing chromium (browser tests of hwloop view)"
    { as_root apt-get update -qq && as_root apt-get install -y -qq chromium; } \
        || echo "[setup] chromium not installed: the browser tests will skip"
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $PYTHON_BIN"
    "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)
[ -d /opt/wheels ] && PIP+=(--find-links /opt/wheels)

# A constraints file keeps every later install from replacing the CPU torch with a CUDA build.
CONSTRAINTS="$VENV/constraints.txt"
echo "$TORCH_SPEC" > "$CONSTRAINTS"

"${PIP[@]}" --upgrade pip
"${PIP[@]}" -c "$CONSTRAINTS" "$TORCH_SPEC"

# aihwkit 1.2.0 has no cp311 wheel that works with torch 2.13: build the sdist against the installed torch.
# pip caches the built wheel, so this takes ~8 min once per machine and seconds afterwards.
if ! "$PY" -c "import aihwkit, sys; sys.exit(aihwkit.__version__ != '1.2.0')" 2>/dev/null; then
    echo "[setup] building $AIHWKIT_SPEC from source (about 8 minutes on 2 cores the first time)"
    "${PIP[@]}" -c "$CONSTRAINTS" 'cmake>=4.2.1' 'scikit-build>=0.18.1' 'pybind11>=3.0.1' ninja setuptools wheel mypy
    "${PIP[@]}" -c "$CONSTRAINTS" scipy scikit-learn tqdm requests protobuf
    # The build calls mypy's stubgen from PATH, so the venv's bin must be on it.
    PATH="$PWD/$VENV/bin:$PATH" "${PIP[@]}" --no-build-isolation --no-deps "$AIHWKIT_SPEC"
fi

"${PIP[@]}" -c "$CONSTRAINTS" -e '.[dev]'

"$PY" - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), f"unexpected torch {torch.__version__}"
assert not torch.version.cuda, "a CUDA torch was installed; expected the CPU build"
PY
echo "[setup] ready: $VENV"
