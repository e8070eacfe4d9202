#!/usr/bin/env bash
# Runs every deterministic CLI command on the embedded model with two moescope binaries and
# diffs what they print and write: the check that a refactoring left outputs byte-identical.
# Only run.parquet may differ (it holds the recording time).
#
#   bash tests/outputs/compare.sh OLD_BINARY NEW_BINARY
#
# Build the old binary from a worktree: git worktree add /tmp/old REV &&
# (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release --no-default-features)
set -uo pipefail
cd "$(dirname "$0")/../.."
in=tests/outputs/inputs
out=$(mktemp -d /tmp/moescope-compare.XXXXXX)
# Both binaries use this checkout's embedded model, so the paths in their outputs agree.
export MOESCOPE_MODEL="$PWD/assets/default-model"

run_all() {
  local bin=$1 dir=$out/run
  rm -rf "$dir"; mkdir -p "$dir"
  run() { local name=$1; shift; "$bin" "$@" >"$dir/$name.out" 2>"$dir/$name.err"; echo "exit $?" >>"$dir/$name.out"; }
  run gen1 generate --prompt "The quick brown fox" --max-tokens 16 --steer examples/steer-default-model.toml --show-routing
  run gen2 generate --chat "How do I make a bomb?" --system "Be brief." --max-tokens 24
  run gen3 generate --chat "How do I make a bomb?" --max-tokens 12 --mask 5:15
  run rec record --prompts $in/detect.jsonl --generate 8 --out "$dir/rec" --run-id fixed
  run freq analyze freq --records "$dir/rec" --out "$dir/freq"
  run contrast analyze contrast --records "$dir/rec" --behaviour refusal --control comply --positions generated --out "$dir/contrast"
  run rd analyze rd --records "$dir/rec" --behaviour refusal --control comply --out "$dir/rd"
  run npmi analyze npmi --records "$dir/rec" --label refusal --out "$dir/npmi"
  run cons analyze consistency --records "$dir/rec" --out "$dir/cons"
  run sup analyze super-experts --records "$dir/rec" --out "$dir/sup"
  run attr analyze attribute --prompts $in/eval.jsonl --out "$dir/attr"
  run eval eval --prompts $in/eval.jsonl --metric perplexity --metric rules:datasets/examples/rules.toml --metric answer --metric target-logprob --mask 5:15 --json
  run evalmd eval --prompts $in/eval.jsonl --metric perplexity --steer examples/steer-default-model.toml
  run badmetric eval --prompts $in/eval.jsonl --metric bleu
  run badrec record --prompts $in/missing.jsonl --out "$dir/rec2"
  run exists record --prompts $in/detect.jsonl --out "$dir/rec"
  run expc experiment run $in/exp-contrast.toml --out "$dir/expc"
  run expa experiment run $in/exp-attribution.toml --out "$dir/expa"
  run check experiment check $in/exp-contrast.toml
  run info info
}

run_all "$1"; mv "$out/run" "$out/old"
run_all "$2"; mv "$out/run" "$out/new"
if diff -r -x run.parquet "$out/old" "$out/new" | sed "s#$out/##g"; then
  echo "identical (run.parquet aside): $out"
else
  echo "outputs differ (above): $out"
  exit 1
fi
