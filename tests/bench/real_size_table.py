#!/usr/bin/env python3
"""Turns the JSON lines of `tests/bench/real_size.sh` into the Markdown table of BENCHMARKS.md,
with each engine's batch-1 decode as a share of the bandwidth roofline: the bytes a decoded
token reads (every weight but the embedding table, and only top_k of each layer's routed
experts; from the safetensors headers and config.json) over the probe's read bandwidth.

    python3 tests/bench/real_size_table.py results.jsonl
"""

import json
import os
import re
import struct
import sys


def decode_bytes_per_token(model_dir):
    """Weight bytes one decoded token reads at batch 1, or None when the folder is not there."""
    config_path = os.path.join(model_dir, "config.json")
    if not os.path.exists(config_path):
        return None
    config = json.load(open(config_path))
    top_k = config.get("num_experts_per_tok")
    experts = next((config[k] for k in ("num_experts", "n_routed_experts", "num_local_experts")
                    if k in config), None)
    sizes = {}
    for name in sorted(os.listdir(model_dir)):
        if name.endswith(".safetensors"):
            with open(os.path.join(model_dir, name), "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(length))
            for tensor, info in header.items():
                if tensor != "__metadata__":
                    sizes[tensor] = info["data_offsets"][1] - info["data_offsets"][0]
    has_lm_head = any("lm_head" in t for t in sizes)
    total = 0.0
    for tensor, size in sizes.items():
        if tensor.endswith("embed_tokens.weight") and has_lm_head:
            continue  # one row of it per token
        if re.search(r"\.experts\.", tensor) and top_k and experts:
            total += size * top_k / experts
        else:
            total += size
    return total


def main(path):
    runs = [json.loads(line) for line in open(path) if line.startswith("{")]
    roof = next((r for r in runs if "read_gb_s" in r), None)
    rows = [r for r in runs if "prefill_tok_s" in r]
    print("| workload | engine | prefill tok/s | decode tok/s | prefill, capture | decode, capture | peak memory |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    pairs = {}
    for r in rows:
        key = (r["batch"], r["prompt_len"], r["decode_tokens"])
        pairs.setdefault(key, []).append(r)
        mem = (f'{r["peak_anon_bytes"] / 1e9:.2f} GB anon, {r["peak_rss_bytes"] / 1e9:.2f} GB RSS'
               if "peak_anon_bytes" in r else f'{r["peak_rss_bytes"] / 1e9:.2f} GB RSS')
        engine = "moescope" if r["engine"] == "moescope" else r["engine"]
        print(f'| batch {key[0]}, prompt {key[1]}, decode {key[2]} | {engine} | {r["prefill_tok_s"]:.1f} '
              f'| {r["decode_tok_s"]:.2f} | {r["prefill_tok_s_capture"]:.1f} | {r["decode_tok_s_capture"]:.2f} | {mem} |')
    print()
    for key, rs in pairs.items():
        ours = next((r for r in rs if r["engine"] == "moescope"), None)
        ref = next((r for r in rs if r["engine"] != "moescope"), None)
        if ours and ref:
            print(f'- batch {key[0]}, prompt {key[1]}: prefill {ours["prefill_tok_s"] / ref["prefill_tok_s"]:.2f}×, '
                  f'decode {ours["decode_tok_s"] / ref["decode_tok_s"]:.2f}× transformers; capture overhead '
                  f'{(ours["prefill_tok_s"] / ours["prefill_tok_s_capture"] - 1) * 100:+.1f}% prefill, '
                  f'{(ours["decode_tok_s"] / ours["decode_tok_s_capture"] - 1) * 100:+.1f}% decode')
    if roof:
        print(f'- roofline probe: read {roof["read_gb_s"]:.1f} GB/s, torch bf16 matmul '
              f'{roof["bf16_matmul_gflop_s"]:.0f} GFLOP/s, f32 {roof["f32_matmul_gflop_s"]:.0f} GFLOP/s')
        per_token = decode_bytes_per_token(rows[0]["model"]) if rows else None
        if per_token:
            bound = roof["read_gb_s"] * 1e9 / per_token
            print(f'- a decoded token reads {per_token / 1e9:.2f} GB of weights, so the read bandwidth '
                  f'bounds batch-1 decode at {bound:.2f} tok/s')
            for r in rows:
                if r["batch"] == 1:
                    print(f'  - {r["engine"]}, prompt {r["prompt_len"]}: {r["decode_tok_s"] / bound * 100:.0f}% '
                          f'of it ({r["decode_tok_s_capture"] / bound * 100:.0f}% with capture)')


if __name__ == "__main__":
    main(sys.argv[1])
