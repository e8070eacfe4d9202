#!/usr/bin/env python3
"""A random checkpoint with gpt-oss-20b's shapes and storage, for the real-size memory check of
MXFP4 experts kept compressed: 24 layers, hidden 2880, 32 experts top-4 (expert width 2880),
64 query / 8 key-value heads of 64, vocabulary 201088, alternating 128-token sliding windows;
experts as MXFP4 blocks and scales, everything else bf16 (about 12.8 GB, like the release).

    ~/venv-hf/bin/python tests/bench/make_gpt_oss_shaped.py OUT_DIR

Written tensor by tensor from the shapes of transformers' `GptOssForCausalLM` (built on the
meta device, so no bf16 copy of the 21 B parameters is ever made), one shard per layer.
"""
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import GptOssConfig, GptOssForCausalLM

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "gpt_oss_mxfp4"


def config():
    return GptOssConfig(
        num_hidden_layers=24, hidden_size=2880, intermediate_size=2880, num_local_experts=32,
        num_experts_per_tok=4, num_attention_heads=64, num_key_value_heads=8, head_dim=64,
        vocab_size=201088, sliding_window=128, max_position_embeddings=131072,
        layer_types=["sliding_attention", "full_attention"] * 12,
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0,
                         "beta_fast": 32.0, "beta_slow": 1.0,
                         "original_max_position_embeddings": 4096, "truncate": False},
    )


def tensors_of(shapes, g):
    """Random tensors for `shapes` (name → (shape, dtype)): bf16 N(0, 0.02) (norms 1), MXFP4
    blocks of random nibbles and scales near 2⁻⁶."""
    out = {}
    for name, shape in shapes.items():
        if name.endswith("_blocks"):
            out[name] = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
        elif name.endswith("_scales"):
            out[name] = torch.randint(118, 124, shape, generator=g, dtype=torch.uint8)
        elif "norm" in name:
            out[name] = torch.ones(shape, dtype=torch.bfloat16)
        else:
            out[name] = (torch.randn(shape, generator=g) * 0.02).to(torch.bfloat16)
    return out


def main(out: Path):
    start = time.time()
    cfg = config()
    with torch.device("meta"):
        model = GptOssForCausalLM(cfg)
    shapes = {}
    for name, p in model.state_dict().items():
        if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            # Stored as [E, out, in / 32, 16] blocks and [E, out, in / 32] scales.
            e, n_in, n_out = p.shape
            shapes[name + "_blocks"] = (e, n_out, n_in // 32, 16)
            shapes[name + "_scales"] = (e, n_out, n_in // 32)
        else:
            shapes[name] = tuple(p.shape)
    del model
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    groups = {}
    for name in shapes:
        key = name.split(".")[2] if name.startswith("model.layers.") else "rest"
        groups.setdefault(key, []).append(name)
    g = torch.Generator().manual_seed(0)
    weight_map = {}
    total = 0
    for i, (key, names) in enumerate(sorted(groups.items())):
        file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = tensors_of({n: shapes[n] for n in names}, g)
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        save_file(tensors, str(out / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in names})
        print(f"  {file} ({time.time() - start:.0f} s)", flush=True)
    (out / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    c = cfg.to_dict()
    c["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    c["eos_token_id"] = 2
    (out / "config.json").write_text(json.dumps(c, indent=2))
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        shutil.copy(FIXTURE / f, out / f)
    print(f"wrote {out}: {total / 1e9:.2f} GB in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
