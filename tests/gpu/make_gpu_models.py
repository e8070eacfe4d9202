#!/usr/bin/env python3
"""Random-weight bf16 checkpoints shaped like OLMoE-1B-7B and Qwen3-30B-A3B, for the GPU
benchmark. Made on the GPU machine with HF transformers (weights initialised on the GPU) and
saved once, so moescope and transformers read the same files.

    python tests/gpu/make_gpu_models.py OUT_DIR [--qwen3-layers N]

Qwen3-30B-A3B has 48 layers (61 GB in bf16), more than the machine's disk holds beside
everything else; `--qwen3-layers` (default 12) keeps its per-layer shapes and cuts the depth.
Per-layer throughput and the roofline are computed for the checkpoint as written.
"""

import argparse
import sys
from pathlib import Path

import torch
from transformers import OlmoeConfig, OlmoeForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from make_bench_model import save_checkpoint  # noqa: E402


def olmoe():
    return OlmoeForCausalLM, OlmoeConfig(
        vocab_size=50304, hidden_size=2048, intermediate_size=1024, num_hidden_layers=16,
        num_attention_heads=16, num_key_value_heads=16, num_experts=64, num_experts_per_tok=8,
        max_position_embeddings=4096, clip_qkv=None, norm_topk_prob=False, eos_token_id=2,
    )


def qwen3(layers):
    return Qwen3MoeForCausalLM, Qwen3MoeConfig(
        vocab_size=151936, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
        num_hidden_layers=layers, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
        num_experts=128, num_experts_per_tok=8, norm_topk_prob=True, max_position_embeddings=8192,
        tie_word_embeddings=False, eos_token_id=2,
    )


def write(out, cls, config):
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = cls(config).to(torch.bfloat16)
    save_checkpoint(model, out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--qwen3-layers", type=int, default=12)
    args = ap.parse_args()
    write(args.out / "olmoe-1b-7b-shaped", *olmoe())
    write(args.out / "qwen3-30b-a3b-shaped", *qwen3(args.qwen3_layers))


if __name__ == "__main__":
    main()
