#!/usr/bin/env python3
"""Train moescope's embedded default model: a small Qwen3-MoE with its own BPE tokenizer.

Input: the corpus folder written by datasets/corpus/build_corpus.py. Output: a standard Hugging
Face checkpoint folder (config.json, model.safetensors in bf16, tokenizer.json,
tokenizer_config.json with the chat template, generation_config.json) plus training_log.json and
loss_curve.png. Seeded; runs on CPU and uses a GPU when one is present.

Usage:
  python datasets/corpus/build_corpus.py --out /tmp/moescope-corpus
  python assets/training/train_default_model.py --corpus /tmp/moescope-corpus \
      --out assets/default-model --steps 2400

With --init-from DIR the run continues a checkpoint written by this script: it keeps that
checkpoint's tokenizer, starts the data order where the first run stopped, and extends its
training log, so two stages give one loss curve.
"""

import argparse
import json
import math
import os
import random
import time

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

SEED = 20261122
VOCAB = 4096
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK = ["<think>", "</think>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(texts, out):
    """Byte-level BPE; chat-role markers are special (hidden when decoding), <think> tags are not."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - len(THINK), special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK])
    assert tok.get_vocab_size() <= VOCAB, tok.get_vocab_size()
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"chat_template": CHAT_TEMPLATE, "eos_token": "<|im_end|>", "bos_token": None,
                   "pad_token": "<|endoftext|>", "model_max_length": 1024}, f, indent=2)
    return tok


def model_config(tok):
    return Qwen3MoeConfig(
        vocab_size=VOCAB, hidden_size=256, num_hidden_layers=6, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, intermediate_size=512, moe_intermediate_size=128,
        num_experts=16, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1,
        mlp_only_layers=[], max_position_embeddings=1024, rope_theta=10000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=True, router_aux_loss_coef=0.02, output_router_logits=True,
        bos_token_id=None, eos_token_id=tok.token_to_id("<|im_end|>"),
        pad_token_id=tok.token_to_id("<|endoftext|>"), torch_dtype="bfloat16")


def token_windows(tok, corpus, seq):
    """All training documents tokenised, shuffled, concatenated and cut into windows."""
    docs = []
    for name in ["train_real.txt", "train_synthetic.txt"]:
        with open(os.path.join(corpus, name), encoding="utf-8") as f:
            docs += [d + "<|endoftext|>" for d in f.read().split("<|endoftext|>") if d.strip()]
    random.Random(SEED).shuffle(docs)
    ids = []
    for enc in tok.encode_batch(docs):
        ids += enc.ids
    n = len(ids) // (seq + 1)
    windows = torch.tensor(ids[: n * (seq + 1)]).view(n, seq + 1)
    return windows[torch.randperm(n, generator=torch.Generator().manual_seed(SEED))], len(ids)


def plot_loss(log, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = [r["step"] for r in log]
    plt.figure(figsize=(6, 3.5))
    plt.plot(steps, [r["lm_loss"] for r in log], label="language-model loss")
    plt.xlabel("step")
    plt.ylabel("cross-entropy (nats/token)")
    plt.yscale("log")
    plt.grid(alpha=0.3)
    plt.legend()
    plt.tight_layout()
    plt.savefig(out, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--init-from", help="continue training this checkpoint (same tokenizer)")
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    os.makedirs(args.out, exist_ok=True)

    texts = []
    for name in ["train_real.txt", "train_synthetic.txt"]:
        with open(os.path.join(args.corpus, name), encoding="utf-8") as f:
            texts += f.read().split("<|endoftext|>")
    prior = None
    if args.init_from:
        import shutil
        for name in ["tokenizer.json", "tokenizer_config.json"]:
            if os.path.abspath(args.init_from) != os.path.abspath(args.out):
                shutil.copy(os.path.join(args.init_from, name), os.path.join(args.out, name))
        tok = Tokenizer.from_file(os.path.join(args.out, "tokenizer.json"))
        with open(os.path.join(args.init_from, "training_log.json")) as f:
            prior = json.load(f)
    else:
        tok = build_tokenizer(texts, args.out)
    windows, corpus_tokens = token_windows(tok, args.corpus, args.seq)
    config = model_config(tok)
    if args.init_from:
        model = Qwen3MoeForCausalLM.from_pretrained(args.init_from, torch_dtype=torch.float32)
        model.config.output_router_logits = True
        model = model.to(device).train()
    else:
        model = Qwen3MoeForCausalLM(config).to(device).train()
    offset = prior["steps"] if prior else 0
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params / 1e6:.2f}M parameters, corpus {corpus_tokens} tokens, {len(windows)} windows")

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 20)

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    log, start = [], time.time()
    for step in range(args.steps):
        at = step + offset
        idx = torch.arange(at * args.batch, (at + 1) * args.batch) % len(windows)
        batch = windows[idx].to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        out = model(input_ids=batch, labels=batch)
        loss = out.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 20 == 0 or step == args.steps - 1:
            lm = loss.item() - config.router_aux_loss_coef * out.aux_loss.item()
            rec = {"step": at, "loss": loss.item(), "lm_loss": lm, "aux_loss": out.aux_loss.item(),
                   "lr": lr_at(step), "elapsed_s": round(time.time() - start, 1)}
            log.append(rec)
            print(json.dumps(rec), flush=True)

    wall = time.time() - start
    model.config.output_router_logits = False
    model.to(torch.bfloat16).save_pretrained(args.out)
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]}, f, indent=2)
    summary = {"parameters": n_params, "steps": offset + args.steps, "batch": args.batch,
               "seq": args.seq, "tokens_seen": (offset + args.steps) * args.batch * args.seq,
               "corpus_tokens": corpus_tokens, "wall_s": round(wall + (prior["wall_s"] if prior else 0), 1),
               "device": device, "threads": args.threads, "torch": torch.__version__,
               "stages": (prior.get("stages", [{"steps": prior["steps"], "lr": None, "wall_s": prior["wall_s"]}]) if prior else [])
               + [{"steps": args.steps, "lr": args.lr, "wall_s": round(wall, 1), "init_from": args.init_from}],
               "log": (prior["log"] if prior else []) + log}
    with open(os.path.join(args.out, "training_log.json"), "w") as f:
        json.dump(summary, f, indent=1)
    plot_loss(summary["log"], os.path.join(args.out, "loss_curve.png"))
    print(f"done in {wall:.0f}s")


if __name__ == "__main__":
    main()
