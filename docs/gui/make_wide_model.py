#!/usr/bin/env python3
"""A random-weight checkpoint with DeepSeek-V3's routing at full breadth, for the GUI's
screenshots and hand checks at real sizes: 61 MoE layers × 256 routed experts (8 groups, best
4, top 8, one shared expert), tiny width (hidden 64), so it loads in a second.

    ~/venv-hf/bin/python docs/gui/make_wide_model.py OUT_DIR

Every layer is an MoE layer (DeepSeek-V3 keeps its first three dense; here all 61 are routed,
the widest grid a real model needs). The tokenizer is the parity fixtures' small one (vocabulary
320).
"""

import sys
from pathlib import Path

import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "bench"))
from make_bench_model import save_checkpoint  # noqa: E402


def main(out: Path):
    config = DeepseekV3Config(
        vocab_size=320, hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
        rms_norm_eps=1e-6, max_position_embeddings=4096, tie_word_embeddings=False,
        eos_token_id=2, bos_token_id=None, num_hidden_layers=61, intermediate_size=32,
        moe_intermediate_size=8, n_routed_experts=256, n_shared_experts=1, num_experts_per_tok=8,
        first_k_dense_replace=0, q_lora_rank=16, kv_lora_rank=16, qk_nope_head_dim=8,
        qk_rope_head_dim=8, v_head_dim=8, n_group=8, topk_group=4, norm_topk_prob=True,
        routed_scaling_factor=2.5,
    )
    torch.manual_seed(0)
    model = DeepseekV3ForCausalLM(config).to(torch.bfloat16)
    # Routers far from uniform, so layers differ and some experts stand out.
    save_checkpoint(model, out, router_std=0.5)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/moescope-wide-model"))
