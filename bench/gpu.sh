#!/usr/bin/env bash
# GPU benchmark of the gpu and hq profiles: training steps per second and swap frames per
# second on one CUDA device, in well under 10 minutes. Runs on a machine whose python3
# has torch, numpy and opencv; the repository itself is made importable as "facegraft".
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=$(mktemp -d)
ln -s "$PWD" "$pkg/facegraft"
export PYTHONPATH="$pkg${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${OUT:-out/bench}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
for batch in 8 32; do
  python3 bench/train.py --device cuda --profiles gpu,hq --seconds 15 --batch-size "$batch" \
    | tee -a "$out/gpu.txt"
done
python3 bench/swap.py --device cuda --profiles gpu,hq --seconds 10 --batch-size 32 \
  | tee -a "$out/gpu.txt"
