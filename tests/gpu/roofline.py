#!/usr/bin/env python3
"""The two machine numbers the GPU roofline needs, measured with torch on the GPU: device
memory copy bandwidth (GB/s) and the dense bf16 matmul rate (TFLOP/s). Prints one JSON object.

    python tests/gpu/roofline.py
"""

import json
import time

import torch


def timed(fn, repeats=20):
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main():
    n = 1 << 30  # 2 GiB of bf16
    src = torch.empty(n, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    copy_s = timed(lambda: dst.copy_(src))
    bandwidth = 2 * src.numel() * src.element_size() / copy_s / 1e9  # read + write
    m = 8192
    a = torch.randn(m, m, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(m, m, dtype=torch.bfloat16, device="cuda")
    mm_s = timed(lambda: a @ b)
    print(json.dumps({
        "gpu": torch.cuda.get_device_name(), "copy_gb_s": bandwidth,
        "bf16_matmul_tflop_s": 2 * m ** 3 / mm_s / 1e12, "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
