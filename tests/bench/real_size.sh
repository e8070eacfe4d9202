#!/usr/bin/env bash
# The real-size CPU benchmark: moescope and HF transformers on the same checkpoint, the same
# workloads and the same thread count, alternating engine by engine so that neither sees a
# quieter machine; then the roofline probe. One JSON line per run on stdout.
#
#   bash tests/bench/real_size.sh CHECKPOINT_DIR [PYTHON] > results.jsonl
#
# CHECKPOINT_DIR comes from tests/bench/make_real_size.py; PYTHON is a virtualenv's python with
# torch and transformers (default ~/venv-hf/bin/python). Build moescope first
# (cargo build --release). Only one engine holds the checkpoint in memory at a time.
set -euo pipefail
model=$1
python=${2:-$HOME/venv-hf/bin/python}
here=$(cd "$(dirname "$0")" && pwd)
moescope="$here/../../target/release/moescope"
threads=2
# prompt length, decode tokens, batch, repeats
workloads=("128 32 1 3" "512 8 1 2" "128 16 8 2")
lscpu | grep -E "Model name" >&2
for w in "${workloads[@]}"; do
  read -r prompt decode batch repeats <<<"$w"
  common=(--prompt-len "$prompt" --decode-tokens "$decode" --batch "$batch" --repeats "$repeats")
  RAYON_NUM_THREADS=$threads "$moescope" bench --model "$model" "${common[@]}" --json
  "$python" "$here/hf_bench.py" "$model" --threads $threads --dtype bf16 "${common[@]}" 2>/dev/null
done
"$python" "$here/roofline_cpu.py" --threads $threads
