#!/usr/bin/env bash
# Creates the Python venv with the stock OpenAI client that crates/server/tests/openai_python.rs
# drives against a real gateway. Idempotent; `cargo xtask test` can call it before the suite.
#
#   crates/server/tests/python/setup-venv.sh [VENV_DIR]
#
# VENV_DIR defaults to $CREWGATE_OPENAI_VENV, else <workspace>/target/openai-venv (where the test
# looks). Needs python3 with the venv module and access to PyPI.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../../.." && pwd)"
venv="${1:-${CREWGATE_OPENAI_VENV:-$root/target/openai-venv}}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'openai>=1.40,<3'
"$venv/bin/python" -c 'import openai, sys; print(f"openai {openai.__version__} ready in {sys.prefix}")'
