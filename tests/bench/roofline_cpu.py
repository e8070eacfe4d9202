#!/usr/bin/env python3
"""The machine numbers the CPU roofline needs, measured with torch on the same threads as the
benchmarks: memory read bandwidth (a sum over 2 GiB of f32, which reads every byte once)
and the dense matmul rate in bf16 and f32 at 4096³ (what oneDNN/MKL reach here; 1024³ where a
dtype runs under 20 GFLOP/s). Prints one
JSON object.

    ~/venv-hf/bin/python tests/bench/roofline_cpu.py --threads 2
"""

import argparse
import json
import time

import torch


def timed(fn, repeats):
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.ones(1 << 29, dtype=torch.float32)
    read_s = timed(lambda: x.sum(), 5)
    rates, sizes = {}, {}
    for name, dtype in [("bf16", torch.bfloat16), ("f32", torch.float32)]:
        # 4096³ where the dtype is fast; a CPU without native bf16 arithmetic runs torch's bf16
        # matmul at ~1 GFLOP/s, where 4096³ would take minutes, so a slow 1024³ probe stands.
        n = 1024
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        rate = 2 * n**3 / timed(lambda: a @ b, 1) / 1e9
        if rate >= 20:
            n = 4096
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            rate = 2 * n**3 / timed(lambda: a @ b, 3) / 1e9
        rates[name], sizes[name] = rate, n
    print(json.dumps({
        "threads": args.threads, "read_gb_s": x.numel() * 4 / read_s / 1e9,
        "bf16_matmul_gflop_s": rates["bf16"], "f32_matmul_gflop_s": rates["f32"],
        "bf16_matmul_n": sizes["bf16"], "f32_matmul_n": sizes["f32"],
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
