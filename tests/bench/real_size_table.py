#!/usr/bin/env python3
"""Turns the JSON lines of `tests/bench/real_size.sh` into the Markdown table of BENCHMARKS.md.

    python3 tests/bench/real_size_table.py results.jsonl
"""

import json
import sys


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


if __name__ == "__main__":
    main(sys.argv[1])
