#!/usr/bin/env python3
"""Random-weight bf16 checkpoints with real models' shapes, made on the cpu for the real-size
CPU benchmark (the GPU script `tests/gpu/make_gpu_models.py` makes the same on a device).

    ~/venv-hf/bin/python tests/bench/make_real_size.py OUT_DIR [--only olmoe|qwen3] [--qwen3-layers N]

- `OUT_DIR/olmoe-1b-7b-shaped`: OLMoE-1B-7B's exact shapes (16 layers, hidden 2048, 64 experts
  top-8, expert width 1024, vocabulary 50304): 6.92 B parameters, 13.8 GB.
- `OUT_DIR/qwen3-30b-a3b-shaped-slice`: Qwen3-30B-A3B's exact layer shapes (hidden 2048, 128
  experts top-8, expert width 768, 32 heads / 4 kv heads, vocabulary 151936), `--qwen3-layers`
  of its 48 layers (default 8: 5.5 B parameters, 11 GB), so that either engine fits in 24 GiB.

Weights are created directly in bf16 (never an f32 copy of the whole model), so making the
OLMoE-shaped checkpoint needs about 15 GB of memory and 14 GB of disk.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "gpu"))
from make_bench_model import save_checkpoint  # noqa: E402
from make_gpu_models import olmoe, qwen3  # noqa: E402


def write(out: Path, cls, config):
    start = time.time()
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    model = cls(config)
    print(f"built {out.name} in {time.time() - start:.0f} s", flush=True)
    save_checkpoint(model, out)
    print(f"saved {out} in {time.time() - start:.0f} s", flush=True)
    del model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--only", choices=["olmoe", "qwen3"])
    ap.add_argument("--qwen3-layers", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.only in (None, "olmoe"):
        write(args.out / "olmoe-1b-7b-shaped", *olmoe())
    if args.only in (None, "qwen3"):
        write(args.out / "qwen3-30b-a3b-shaped-slice", *qwen3(args.qwen3_layers))


if __name__ == "__main__":
    main()
