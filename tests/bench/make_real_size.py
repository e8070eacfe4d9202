#!/usr/bin/env python3
"""Random-weight bf16 checkpoints with real models' shapes, made on the cpu for the real-size
CPU benchmark (the GPU script `tests/gpu/make_gpu_models.py` makes the same on a device).

    ~/venv-hf/bin/python tests/bench/make_real_size.py OUT_DIR [--only olmoe|qwen3] [--qwen3-layers N] [--fp8]

- `OUT_DIR/olmoe-1b-7b-shaped`: OLMoE-1B-7B's exact shapes (16 layers, hidden 2048, 64 experts
  top-8, expert width 1024, vocabulary 50304): 6.92 B parameters, 13.8 GB.
- `OUT_DIR/qwen3-30b-a3b-shaped-slice`: Qwen3-30B-A3B's exact layer shapes (hidden 2048, 128
  experts top-8, expert width 768, 32 heads / 4 kv heads, vocabulary 151936), `--qwen3-layers`
  of its 48 layers (default 8: 5.5 B parameters, 11 GB), so that either engine fits in 24 GiB.

- with `--fp8`, also `OUT_DIR/qwen3-30b-a3b-fp8-shaped-slice`: the Qwen3 slice as
  Qwen3-30B-A3B-FP8 stores it (every attention and MLP projection FP8 e4m3 with an f32
  `weight_scale_inv` per 128 × 128 block; router, norms, embeddings and LM head bf16), converted
  shard by shard from the bf16 slice.
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
sys.path.insert(0, str(HERE.parent / "fixtures"))
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


def write_fp8(src: Path, out: Path, block=(128, 128)):
    """`src` with every projection FP8-quantized (see make_fixtures.quantize_fp8), one shard at
    a time."""
    import json
    import shutil
    from safetensors.torch import load_file, save_file
    from make_fixtures import is_fp8_projection, quantize_fp8

    start = time.time()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, out / f.name)
    index_path = src / "model.safetensors.index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else None
    for shard in sorted(src.glob("*.safetensors")):
        tensors = load_file(str(shard))
        for name in [n for n, t in tensors.items() if is_fp8_projection(n, t)]:
            q, scale = quantize_fp8(tensors[name], block)
            tensors[name] = q
            scale_name = name.removesuffix(".weight") + ".weight_scale_inv"
            tensors[scale_name] = scale
            if index:
                index["weight_map"][scale_name] = shard.name
        save_file(tensors, str(out / shard.name), metadata={"format": "pt"})
        print(f"  {shard.name} converted ({time.time() - start:.0f} s)", flush=True)
        del tensors
    if index:
        (out / index_path.name).write_text(json.dumps(index, indent=2))
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3",
                                     "activation_scheme": "dynamic",
                                     "weight_block_size": list(block)}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    print(f"saved {out} in {time.time() - start:.0f} s", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--only", choices=["olmoe", "qwen3"])
    ap.add_argument("--qwen3-layers", type=int, default=8)
    ap.add_argument("--fp8", action="store_true", help="also the FP8 form of the Qwen3 slice")
    ap.add_argument("--reuse", action="store_true", help="keep checkpoints already written")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.only in (None, "olmoe"):
        write(args.out / "olmoe-1b-7b-shaped", *olmoe())
    if args.only in (None, "qwen3"):
        slice_dir = args.out / "qwen3-30b-a3b-shaped-slice"
        if not (args.reuse and (slice_dir / "config.json").exists()):
            write(slice_dir, *qwen3(args.qwen3_layers))
        if args.fp8:
            write_fp8(slice_dir, args.out / "qwen3-30b-a3b-fp8-shaped-slice")


if __name__ == "__main__":
    main()
