#!/usr/bin/env bash
# Runs on the GPU machine, in one `device` call: checks the CUDA build, runs parity on the GPU
# in f32 and bf16, measures the roofline, builds the two benchmark checkpoints and benchmarks
# moescope against HF transformers on them. Results go to $OUT (or ./gpu-results).
#
#   device run, carry [".gpu-carry"]:  bash tests/gpu/run-on-device.sh
#
# Needs what tests/gpu/build-cuda.sh packed into .gpu-carry/, and the machine's PyTorch and
# transformers (whose CUDA 13 libraries the binary links against).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-gpu-results}
mkdir -p "$out" /tmp/moescope-gpu
log() { echo "== $*" | tee -a "$out/log.txt"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$out/log.txt"
for f in .gpu-carry/*.xz; do xz -dc "$f" >"/tmp/moescope-gpu/$(basename "$f" .xz)"; done
chmod +x /tmp/moescope-gpu/*
# cuBLAS, cuRAND and the runtime come with the machine's PyTorch wheels.
libs=$(python3 -c 'import nvidia, os; print(":".join(os.path.join(p, "cu13", "lib") for p in nvidia.__path__))')
export LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}"
bin=/tmp/moescope-gpu/moescope

log "build check"
$bin info --device cuda:0 --dtype bf16 2>&1 | tee -a "$out/log.txt"

log "parity on the GPU: f32, then bf16"
export MOESCOPE_REPO=$PWD MOESCOPE_TEST_DEVICE=cuda:0
/tmp/moescope-gpu/parity 2>&1 | tail -n 25 | tee -a "$out/log.txt"
/tmp/moescope-gpu/parity_bf16 --nocapture 2>&1 | tail -n 25 | tee -a "$out/log.txt"

log "roofline"
python3 tests/gpu/roofline.py | tee "$out/roofline.json"

log "benchmark checkpoints"
models=/tmp/moescope-gpu-models
[ -d "$models/qwen3-30b-a3b-shaped" ] || python3 tests/gpu/make_gpu_models.py "$models" 2>&1 | tail -n 3

for m in olmoe-1b-7b-shaped qwen3-30b-a3b-shaped; do
  for b in 1 32; do
    log "$m batch $b"
    $bin bench --model "$models/$m" --device cuda:0 --dtype bf16 --batch $b \
      --prompt-len 2048 --decode-tokens 64 --repeats 3 --json | tee -a "$out/bench.jsonl"
    python3 tests/bench/hf_bench.py "$models/$m" --device cuda --dtype bf16 --batch $b \
      --prompt-len 2048 --decode-tokens 64 --repeats 3 | tee -a "$out/bench.jsonl"
  done
done
