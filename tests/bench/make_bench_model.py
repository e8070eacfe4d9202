"""Writes the CPU benchmark checkpoint: a random Qwen3-MoE with 4 layers, hidden 512,
16 experts top-2 (expert width 512), vocabulary 32000, stored in f32.

    ~/.venvs/moescope-fx/bin/python tests/bench/make_bench_model.py /tmp/moescope-bench-model

The tokenizer is the parity fixtures' (smaller than the vocabulary, which is allowed).
"""

import shutil
import sys
from pathlib import Path

import torch
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "qwen3_moe"


def main(out: Path):
    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        vocab_size=32000, hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
        num_key_value_heads=4, head_dim=64, intermediate_size=1024, moe_intermediate_size=512,
        num_experts=16, num_experts_per_tok=2, norm_topk_prob=True, max_position_embeddings=4096,
        tie_word_embeddings=False, eos_token_id=2,
    )
    save_checkpoint(Qwen3MoeForCausalLM(config), out)


def save_checkpoint(model, out: Path, router_std: float = 0.1):
    """Spreads routing over the experts (random router weights of standard deviation
    `router_std`), saves `model` to `out` with the parity fixtures' tokenizer."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".gate.weight"):
                p.normal_(0.0, router_std)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        shutil.copy(FIXTURE / f, out / f)
    print(f"wrote {out}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/moescope-bench-model"))
