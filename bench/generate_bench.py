"""Bench 2: generation speed, batch 1, greedy, GPT-2 124M shape, against the book's loop and Hugging Face.

    python bench/generate_bench.py                 # 100 and 400 new tokens
    python bench/generate_bench.py --tokens 100    # quicker

All sides run the same weights (a seeded random GPT-2 124M: q/k/v bias, tied
head), copied into each implementation's layout, from the same prompt:

- the chapter-5 ``generate_text_simple`` loop (no cache: the whole window per token);
- Hugging Face ``GPT2LMHeadModel.generate`` (KV cache, fp32, as installed);
- gpt-tui's ``stream_generate`` in fp32 and with ``prepare_for_inference``'s
  default (bf16 weights where the CPU has AMX).

Time to first token is the wall time until the first new token is known
(prefill included). The fp32 sides must produce the same greedy tokens.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from common import emit_result, load_average, machine_line, now, run_worker, table, warn_if_busy  # noqa: E402

PROMPT = "Every effort moves you"
SEED = 123


def _gpt_tui_model():
    import torch

    from gpt_tui.engine.model import GPTModel, get_preset

    torch.manual_seed(SEED)
    return GPTModel(get_preset("gpt2-small", qkv_bias=True, tie_weights=True, drop_rate=0.0)).eval()


def _prompt_ids():
    from gpt_tui.engine.tokenizer import text_to_token_ids

    return text_to_token_ids(PROMPT)


def _hf_model(state):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config).eval()
    hf = {"transformer.wte.weight": state["tok_emb.weight"], "transformer.wpe.weight": state["pos_emb.weight"],
          "transformer.ln_f.weight": state["ln_f.weight"], "transformer.ln_f.bias": state["ln_f.bias"]}
    for i in range(12):
        p, q = f"blocks.{i}.", f"transformer.h.{i}."
        for ours, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
            hf[q + theirs + ".weight"] = state[p + ours + ".weight"]
            hf[q + theirs + ".bias"] = state[p + ours + ".bias"]
        for ours, theirs in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
            hf[q + theirs + ".weight"] = state[p + ours + ".weight"].t().contiguous()  # Conv1D stores (in, out)
            hf[q + theirs + ".bias"] = state[p + ours + ".bias"]
    missing, unexpected = model.load_state_dict(hf, strict=False)
    missing = [k for k in missing if not k.endswith(".attn.bias") and k != "lm_head.weight"]
    if missing or unexpected:
        raise SystemExit(f"weight mapping to transformers is off: missing {missing}, unexpected {unexpected}")
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 50256
    return model


def worker(kind: str, new_tokens: int) -> None:
    import torch

    model = _gpt_tui_model()
    prompt = _prompt_ids()
    tokens: list[int] = []
    if kind == "reference":
        from reference import ReferenceGPT, from_gpt_tui_state, generate_text_simple, reference_config

        ref = ReferenceGPT(reference_config(context_length=1024, drop_rate=0.0, qkv_bias=True)).eval()
        from_gpt_tui_state(ref, model.state_dict())
        del model
        start = time.perf_counter()
        generate_text_simple(ref, prompt, 1, 1024)
        first = time.perf_counter() - start
        start = time.perf_counter()
        out = generate_text_simple(ref, prompt, new_tokens, 1024)
        total = time.perf_counter() - start
        tokens = out[0, prompt.shape[1]:].tolist()
    elif kind == "transformers":
        hf = _hf_model(model.state_dict())
        del model
        with torch.inference_mode():
            start = time.perf_counter()
            hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=1, min_new_tokens=1, do_sample=False)
            first = time.perf_counter() - start
            start = time.perf_counter()
            out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
            total = time.perf_counter() - start
        tokens = out[0, prompt.shape[1]:].tolist()
    else:
        from gpt_tui.engine.generation import SamplingConfig, prepare_for_inference, stream_generate

        precision = kind.split(":")[1]
        fast = prepare_for_inference(model, precision)
        sampling = SamplingConfig(max_new_tokens=new_tokens)
        stream = stream_generate(fast, prompt, sampling)  # one warm-up call, as the others get
        next(stream)
        stream.close()
        start = time.perf_counter()
        first = None
        for token in stream_generate(fast, prompt, sampling):
            if first is None:
                first = time.perf_counter() - start
            tokens.append(int(token[0]))
        total = time.perf_counter() - start
    emit_result({"first": first, "total": total, "tokens": tokens, "threads": torch.get_num_threads()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", default="100,400", help="comma-separated numbers of new tokens")
    parser.add_argument("--skip-reference", action="store_true", help="leave out the slow no-cache loop")
    parser.add_argument("--worker", nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker[0], int(args.worker[1]))
        return
    script = Path(__file__).resolve()
    print(f"Bench 2, generation on CPU, batch 1, greedy, GPT-2 124M shape — {now()}")
    print(machine_line())
    print(f"load average at start: {load_average()}")
    warn_if_busy()
    kinds = ["gpt-tui:auto", "gpt-tui:fp32", "transformers"] + ([] if args.skip_reference else ["reference"])
    labels = {
        "gpt-tui:auto": "gpt-tui (default: prepare_for_inference auto)",
        "gpt-tui:fp32": "gpt-tui fp32",
        "transformers": "transformers generate (fp32, cache)",
        "reference": "chapter-5 loop (fp32, no cache)",
    }
    from gpt_tui.engine.precision import resolve_precision

    import torch

    labels["gpt-tui:auto"] += f" [{resolve_precision(torch.device('cpu'), 'auto')}]"
    rows, verdicts = [], []
    for n in [int(x) for x in args.tokens.split(",")]:
        results = {kind: run_worker(script, [kind, str(n)]) for kind in kinds}
        rates = {kind: n / r["total"] for kind, r in results.items()}
        same = results["gpt-tui:fp32"]["tokens"] == results["transformers"]["tokens"]
        if "reference" in results:
            same = same and results["reference"]["tokens"] == results["gpt-tui:fp32"]["tokens"]
        agree = sum(a == b for a, b in zip(results["gpt-tui:auto"]["tokens"], results["gpt-tui:fp32"]["tokens"]))
        for kind in kinds:
            r = results[kind]
            vs_ref = f"{rates[kind] / rates['reference']:.1f}x" if "reference" in rates else "-"
            rows.append([n, labels[kind], f"{r['total']:.2f}", f"{rates[kind]:.1f}", f"{1000 * r['first']:.0f}",
                         vs_ref, f"{rates[kind] / rates['transformers']:.2f}x"])
        print(f"  {n} tokens: fp32 greedy tokens identical across implementations: {same}; "
              f"bf16 agrees with fp32 on {agree}/{n} tokens")
        hf_ratio = rates["gpt-tui:auto"] / rates["transformers"]
        verdicts.append(f"{n} tokens: gpt-tui default >= 1.8x transformers: {hf_ratio:.2f}x -> {'MET' if hf_ratio >= 1.8 else 'MISSED'}")
        if "reference" in rates and n >= 400:
            ref_ratio = rates["gpt-tui:auto"] / rates["reference"]
            verdicts.append(f"{n} tokens: gpt-tui default >= 10x the no-cache loop: {ref_ratio:.1f}x -> "
                            f"{'MET' if ref_ratio >= 10 else 'MISSED'}")
    print()
    print(table(["new tokens", "implementation", "seconds", "tokens/s", "first token ms", "vs chapter 5", "vs transformers"], rows))
    print()
    print("tokens/s = new tokens / wall time of the whole call (prefill included); each side warmed up once.")
    for line in verdicts:
        print(line)
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
