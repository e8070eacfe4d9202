#!/usr/bin/env python3
"""A random-weight checkpoint with DeepSeek-V3's routing at full breadth, for the GUI's
screenshots and hand checks at real sizes: 61 MoE layers × 256 routed experts (8 groups, best
4, top 8, one shared expert), tiny width (hidden 64), so it loads in a second.

    ~/venv-hf/bin/python docs/gui/make_wide_model.py OUT_DIR

Every layer is an MoE layer (DeepSeek-V3 keeps its first three dense; here all 61 are routed,
the widest grid a real model needs). The tokenizer is the parity fixtures' small one.
"""

import shutil
import sys
from pathlib import Path

import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "deepseek_v3_routing"


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
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Routers far from uniform, so layers differ and some experts stand out.
            if name.endswith(".gate.weight"):
                p.normal_(0.0, 0.5)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        shutil.copy(FIXTURE / f, out / f)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}: {n / 1e6:.1f} M parameters")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/moescope-wide-model"))
