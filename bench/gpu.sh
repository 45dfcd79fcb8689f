#!/usr/bin/env bash
# GPU benchmarks on one machine whose python3 has torch, numpy and opencv (no Blender); the
# repository itself is made importable as "facegraft". PARTS picks what runs (default all):
#   throughput  training steps per second and swap frames per second of the gpu and hq
#               profiles on one CUDA device (under 2 minutes)
#   ssim        the time to self-reenactment SSIM 0.90 of the gpu profile
#               (bench/time_to_ssim.py; MINUTES of training, default 7)
#   scaling     training speed from 1 to N GPUs
#
#   bench/gpu.sh                  throughput only
#   bench/gpu.sh SHOT             and scaling on the shot's datasets and textures
#   bench/gpu.sh PACK.tar         the pack's shot (bench/shot_pack.py, made here from the
#                                 self split at 256 px): time to SSIM, then scaling on it
#   PARTS=ssim bench/gpu.sh PACK.tar
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=$(mktemp -d)
ln -s "$PWD" "$pkg/facegraft"
export PYTHONPATH="$pkg${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${OUT:-out/bench}
parts=${PARTS:-throughput,ssim,scaling}
mkdir -p "$out"
wants() { [[ ",$parts," == *",$1,"* ]]; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$out/gpu.txt" || true
if wants throughput; then
  for batch in 8 32; do
    python3 bench/train.py --device cuda --profiles gpu,hq --seconds 15 --batch-size "$batch" \
      | tee -a "$out/gpu.txt"
  done
  python3 bench/swap.py --device cuda --profiles gpu,hq --seconds 10 --batch-size 32 \
    | tee -a "$out/gpu.txt"
fi

shot=${1:-}
if [[ "$shot" == *.tar ]]; then
  unpacked=$(mktemp -d)
  python3 bench/shot_pack.py unpack "$shot" "$unpacked"
  shot=$unpacked
  if wants ssim; then  # trains in the unpacked shot; scaling trains beside it
    python3 bench/time_to_ssim.py "$shot" --profile gpu --minutes "${MINUTES:-7}" \
      | tee "$out/time_to_ssim.txt" | tee -a "$out/gpu.txt"
  fi
fi
wants scaling || exit 0

# Scaling from 1 to N GPUs: the real training (torchrun, DistributedDataParallel over
# NCCL) on a shot whose datasets and textures are made (bench/gpu.sh SHOT; the GPU machine
# needs no Blender for this). Each GPU trains BATCH crops per step; the figure is steps
# per second after the first 20 steps, and crops per second over all GPUs.
if [ -z "$shot" ]; then
  echo "scaling: skipped (give a shot folder with datasets: bench/gpu.sh SHOT)" | tee -a "$out/gpu.txt"
  exit 0
fi
gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
batch=${BATCH:-16}
steps=${STEPS:-120}
for n in 1 2 4 8; do
  [ "$n" -le "$gpus" ] || break
  work=$(mktemp -d)
  ln -s "$(realpath "$shot")/plate" "$work/plate"
  ln -s "$(realpath "$shot")/source" "$work/source"
  python3 -m torch.distributed.run --nproc-per-node "$n" -m facegraft train --shot "$work" \
    --profile "${PROFILE:-gpu}" --steps "$steps" --batch-size "$batch" --progress none \
    --checkpoint-every 100000 --preview-every 100000 > /dev/null
  python3 - "$work/model_${PROFILE:-gpu}/loss.jsonl" "$n" "$batch" <<'PY' | tee -a "$out/gpu.txt"
import json, sys
log, gpus, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
times = [json.loads(line)["seconds"] for line in open(log)]
rate = (len(times) - 20) / (times[-1] - times[19])
print(f"scaling gpus={gpus} batch_per_gpu={batch} steps_per_s={rate:.2f} "
      f"crops_per_s={rate * batch * gpus:.0f}")
PY
  rm -rf "$work"
done
