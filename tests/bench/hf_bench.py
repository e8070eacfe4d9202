"""The HF transformers side of `moescope bench`: the same workloads on the same checkpoint,
same thread count, reported the same way (median of repeats after one warm-up).

    ~/.venvs/moescope-fx/bin/python tests/bench/hf_bench.py MODEL_DIR --threads 2 \
        --prompt-len 128 --decode-tokens 32 --batch 1 --repeats 5 [--device cuda --dtype bf16]

Prefill runs the prompt with the KV cache on and keeps only the last position's logits;
decode feeds the argmax token back one step at a time through the cache. "With routing capture"
adds forward hooks on every router that copy its logits, ids and weights to the host, which is
what the moescope recorder keeps.
"""

import argparse
import json
import resource
import statistics
import time

import torch
from transformers import AutoModelForCausalLM


def routers(model):
    return [m for _, m in model.named_modules() if type(m).__name__.lower().endswith("topkrouter")]


def sync():
    """Waits for queued GPU work, so the clock reads finished work (no-op on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_once(model, prompts, decode_tokens):
    batch, length = prompts.shape
    with torch.inference_mode():
        sync()
        t0 = time.perf_counter()
        out = model(input_ids=prompts, use_cache=True, logits_to_keep=1)
        nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
        sync()
        t1 = time.perf_counter()
        cache = out.past_key_values
        for _ in range(decode_tokens):
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
        sync()
        t2 = time.perf_counter()
    return batch * length / (t1 - t0), batch * decode_tokens / (t2 - t1)


def measure(model, prompts, decode_tokens, repeats):
    """Medians without and with capture; the two alternate within each repetition."""
    store = []

    def keep(_m, _i, out):
        store.append(tuple(t.detach().cpu().clone() for t in out))
        if len(store) > 1024:
            store.clear()

    samples = {False: ([], []), True: ([], [])}
    for rep in range(repeats + 1):
        for capture in (False, True):
            hooks = [r.register_forward_hook(keep) for r in routers(model)] if capture else []
            p, d = run_once(model, prompts, decode_tokens)
            for h in hooks:
                h.remove()
            store.clear()
            if rep > 0:
                samples[capture][0].append(p)
                samples[capture][1].append(d)
    return {c: (statistics.median(p), statistics.median(d)) for c, (p, d) in samples.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).eval().to(args.device)
    vocab = model.config.vocab_size
    ids = torch.tensor([[3 + (i * 7919 + b * 104729) % (vocab - 3) for i in range(args.prompt_len)]
                        for b in range(args.batch)], device=args.device)
    results = measure(model, ids, args.decode_tokens, args.repeats)
    plain, captured = results[False], results[True]
    print(json.dumps({
        "engine": "transformers " + __import__("transformers").__version__,
        "torch": torch.__version__, "threads": args.threads, "batch": args.batch,
        "device": args.device, "dtype": args.dtype,
        "prompt_len": args.prompt_len, "decode_tokens": args.decode_tokens,
        "prefill_tok_s": plain[0], "decode_tok_s": plain[1],
        "prefill_tok_s_capture": captured[0], "decode_tok_s_capture": captured[1],
        # High-water resident set (anonymous memory plus mapped checkpoint pages).
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
