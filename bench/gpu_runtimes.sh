#!/usr/bin/env bash
# GPU runtimes in one run (< 8 minutes on one GPU): PyTorch fp32/bf16 vs ONNX Runtime CUDA fp32
# and fp16-mixed (IO binding) vs CTranslate2 CUDA, parity checked on the GPU, short table last.
#
#   bench/gpu_runtimes.sh                      # random-init t5-v1_1-base shape
#   bench/gpu_runtimes.sh --bundle BUNDLE      # an exported student (mindmirror export)
#   bench/gpu_runtimes.sh --dry-run            # CPU + tiny model: checks the script, no GPU
#
# It builds its own virtual environment (GPU_BENCH_VENV, default /tmp/mindmirror-gpu-venv) with
# the CUDA builds of torch and onnxruntime-gpu, because onnxruntime-gpu must never share an
# environment with the CPU `onnxruntime` wheel (installing one silently replaces the other).
# Never run the install part in the project's own .venv.
#
# Environment:
#   GPU_BENCH_VENV          where the venv goes (reused if it already works)
#   GPU_BENCH_WHEELHOUSE    install offline from this directory of wheels (pip --no-index)
#   GPU_BENCH_SYSTEM_SITE=1 let the venv see the system's packages (a preinstalled CUDA torch)
#   ONNXRUNTIME_GPU_VERSION onnxruntime-gpu to install (default 1.31.1, the newest GPU wheel
#                           when this was written; the CPU side pins onnxruntime 1.32.0)
#   GPU_BENCH_TIMEOUT_S     limit for the Python part (default 360 s)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
VENV="${GPU_BENCH_VENV:-/tmp/mindmirror-gpu-venv}"
PYTHON="${PYTHON:-python3}"
ORT_GPU="${ONNXRUNTIME_GPU_VERSION:-1.31.1}"
TIMEOUT_S="${GPU_BENCH_TIMEOUT_S:-360}"
START=$SECONDS

DRY_RUN=0
for arg in "$@"; do
  [[ "$arg" == "--dry-run" ]] && DRY_RUN=1
done

say() { printf '[gpu_runtimes %3ds] %s\n' "$((SECONDS - START))" "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

if [[ $DRY_RUN == 1 ]]; then
  # The script's Python part against the project's own environment (CPU wheels): no install.
  PY="${DRY_RUN_PYTHON:-$REPO/.venv/bin/python}"
  [[ -x "$PY" ]] || die "dry run needs the project venv ($PY); run 'make venv'"
  say "dry run on CPU with $PY"
  exec timeout "$TIMEOUT_S" "$PY" "$HERE/gpu_runtimes.py" "$@"
fi

command -v nvidia-smi >/dev/null || die "nvidia-smi not found: this needs a machine with an NVIDIA GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  || die "nvidia-smi cannot talk to the driver"

PIP_SOURCE=()
if [[ -n "${GPU_BENCH_WHEELHOUSE:-}" ]]; then
  [[ -d "$GPU_BENCH_WHEELHOUSE" ]] || die "GPU_BENCH_WHEELHOUSE=$GPU_BENCH_WHEELHOUSE is not a directory"
  PIP_SOURCE=(--no-index --find-links "$GPU_BENCH_WHEELHOUSE")
fi

venv_ready() {
  "$VENV/bin/python" - <<'EOF' 2>/dev/null
import ctranslate2, onnxruntime as ort, optimum.exporters.onnx, torch, transformers  # noqa
assert torch.cuda.is_available(), "torch without CUDA"
assert "CUDAExecutionProvider" in ort.get_available_providers(), "onnxruntime without CUDA"
EOF
}

if [[ -x "$VENV/bin/python" ]] && venv_ready; then
  say "reusing $VENV"
else
  say "creating $VENV"
  rm -rf "$VENV"
  VENV_ARGS=()
  [[ "${GPU_BENCH_SYSTEM_SITE:-0}" == 1 ]] && VENV_ARGS=(--system-site-packages)
  "$PYTHON" -m venv ${VENV_ARGS[@]+"${VENV_ARGS[@]}"} "$VENV" || die "cannot create a venv with $PYTHON"
  PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check ${PIP_SOURCE[@]+"${PIP_SOURCE[@]}"})
  # A CUDA torch unless the system one (GPU_BENCH_SYSTEM_SITE=1) already is.
  if ! "$VENV/bin/python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    say "installing torch 2.13.0 (CUDA build; the large download)"
    "${PIP[@]}" torch==2.13.0 || die "installing torch failed (no network? set GPU_BENCH_WHEELHOUSE)"
  fi
  say "installing the export stack"
  # optimum/optimum-onnx without dependencies: they would pull the CPU `onnxruntime`.
  "${PIP[@]}" transformers==4.57.6 tokenizers==0.22.2 safetensors sentencepiece \
    onnx==1.23.2 ctranslate2==4.8.5 numpy==2.4.6 pydantic==2.14.4 pyyaml tqdm packaging \
    huggingface_hub coloredlogs flatbuffers protobuf sympy ml_dtypes \
    || die "installing the export stack failed"
  "${PIP[@]}" --no-deps optimum==2.1.0 optimum-onnx==0.1.0 || die "installing optimum failed"
  # Last, and forced: whatever came before, the GPU wheel is the one that stays.
  "$VENV/bin/python" -m pip uninstall --quiet --yes onnxruntime >/dev/null 2>&1 || true
  "${PIP[@]}" --force-reinstall --no-deps "onnxruntime-gpu==$ORT_GPU" \
    || die "installing onnxruntime-gpu==$ORT_GPU failed"
  venv_ready || die "the venv is incomplete: $("$VENV/bin/python" -c 'import onnxruntime as o, torch; print(o.get_available_providers(), torch.cuda.is_available())' 2>&1 | tail -1)"
fi

# mindmirror itself is not installed: gpu_runtimes.py puts the checkout on sys.path.
say "running (limit ${TIMEOUT_S}s)"
status=0
timeout "$TIMEOUT_S" "$VENV/bin/python" "$HERE/gpu_runtimes.py" "$@" || status=$?
[[ $status == 124 ]] && die "the benchmark ran past ${TIMEOUT_S}s (raise GPU_BENCH_TIMEOUT_S or lower --budget-s)"
say "done in $((SECONDS - START))s"
exit $status
