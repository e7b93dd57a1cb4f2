#!/usr/bin/env bash
# GPU evidence for docs/deep-nets.md, section "Deep nets on a GPU" (issue 16), in < 10 minutes
# on one H200: (1) the GPU code paths are correct (vmap = loop and channels_last = NCHW in
# float64 on the device, the GPU engine = the CPU engine, bf16 / fp16 autocast train, crop/flip of
# device images = the CPU draws); (2) benchmarks/deep_gpu.py: images/s of the engine vs a plain
# PyTorch loop (target >= 0.95x) for fp32 / channels_last / bf16 autocast / torch.compile, their
# effects, the evaluation overhead at the paper's cadence (target <= 15%) and the batched-seeds
# ratio (R = 4 runs as one vmap computation vs the loop over runs).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]     # default OUT_DIR: gpu-check/
#
# Writes OUT_DIR/gpu_check.txt (everything printed) and OUT_DIR/deep_gpu.json (the numbers,
# saved after every measurement, so a time limit keeps what was done). Needs a CUDA build of
# torch; installs nothing, downloads nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu-check}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.txt"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_WAIT_POLICY=PASSIVE MPLBACKEND=Agg
date -u +"date: %Y-%m-%d %H:%M UTC" | tee "$LOG"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$LOG"
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible to torch $(python -c 'import torch; print(torch.__version__)'): nothing measured" | tee -a "$LOG"
    exit 1
fi
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name(0))" | tee -a "$LOG"

echo "== 1. correctness of the GPU paths (about a minute)" | tee -a "$LOG"
timeout 240 python -m pytest -q -p no:cacheprovider tests/test_deep_fast.py -k "cuda or augmentation" 2>&1 | tail -15 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" = 0 ] || echo "correctness checks FAILED or timed out (see above); measuring anyway" | tee -a "$LOG"

echo "== 2. throughput table (about 5 minutes; compile rows last)" | tee -a "$LOG"
timeout 450 python benchmarks/deep_gpu.py --device cuda --json "$OUT/deep_gpu.json" 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" = 0 ] || echo "benchmark FAILED or hit its 450 s limit; partial numbers in $OUT/deep_gpu.json" | tee -a "$LOG"
echo "done: $LOG, $OUT/deep_gpu.json" | tee -a "$LOG"
