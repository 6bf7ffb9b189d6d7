#!/usr/bin/env python3
"""How many rows of the LM head a bounded greedy head (src/backend/argmax_bounds.hpp) would have to
compute exactly if its copy of the head had fewer bits: for 8 (today's int8 copy) down to 4 bits
a value (symmetric, one scale a row), the proven bound of each row at every greedy step, x
quantized to int8 as the scores kernel does, and the rows whose upper end reaches the largest
lower end. Greedy decoding of a GPT-2 folder (eaq's default prompt, 128 tokens) in f32 on the GPU,
128 steps. Runs on the GPU machine (torch + transformers)."""
import argparse

import torch
import transformers as T

PROMPT = ("It is a truth universally acknowledged, that a single man in possession of a good "
          "fortune, must be in want of a wife. However little known the feelings or views of such a "
          "man may be on his first entering a neighbourhood, this truth is so well fixed in the "
          "minds of the surrounding families, that he is considered the rightful property of some "
          "one or other of their daughters. ")


def quantize_rows(w, bits):
    levels = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=1, keepdim=True) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(w / scale), -levels, levels)
    return q, scale


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="/tmp/eaq-models/gpt2")
    p.add_argument("--steps", type=int, default=128)
    a = p.parse_args()
    dev = "cuda"
    model = T.GPT2LMHeadModel.from_pretrained(a.model).to(dev).float().eval()
    tok = T.AutoTokenizer.from_pretrained(a.model)
    pieces = tok(PROMPT)["input_ids"]
    ids = torch.tensor([[pieces[t % len(pieces)] for t in range(128)]], device=dev)
    w = model.lm_head.weight.detach().float()  # [V, E]
    quant = {}
    for bits in (8, 7, 6, 5, 4):
        q, s = quantize_rows(w, bits)
        sq = q * s
        quant[bits] = (sq, (w - sq).norm(dim=1), sq.norm(dim=1))
    counts = {bits: [] for bits in quant}
    kappa = 2.0 ** -11 * 1.1 + 1e-4  # the f16 logit's rounding and its f32 sum, with room
    wnorm = w.norm(dim=1)
    top_margin = []
    # hidden_states[-1] is ln_f's output in Hugging Face's GPT-2: what the head reads.
    with torch.no_grad():
        out = model(ids, use_cache=True, output_hidden_states=True)
        for step in range(a.steps):
            x = out.hidden_states[-1][0, -1]
            logits = w @ x
            top2 = torch.topk(logits, 2).values
            top_margin.append(float(top2[0] - top2[1]))
            xnorm = x.norm()
            xs = x.abs().max() / 127
            xq = torch.round(x / xs) * xs
            xres = (x - xq).norm()
            for bits, (sq, radius, qnorm) in quant.items():
                approx = sq @ xq
                bound = xnorm * radius + qnorm * xres + kappa * xnorm * wnorm + 1e-6
                lower = (approx - bound).max()
                counts[bits].append(int(((approx + bound) >= lower).sum()))
            nxt = logits.argmax().view(1, 1)
            out = model(nxt, past_key_values=out.past_key_values, use_cache=True,
                        output_hidden_states=True)
    print(f"model {a.model}, {a.steps} greedy steps; logit std at the last step "
          f"{float(logits.std()):.3f}, top-1 minus top-2 median {sorted(top_margin)[len(top_margin)//2]:.3f}")
    print("| bits | copy MB | candidates: median | mean | max |")
    print("|---|---|---|---|---|")
    for bits, c in counts.items():
        cs = sorted(c)
        print(f"| {bits} | {w.shape[0] * w.shape[1] * bits / 8 / 1e6:.1f} | {cs[len(cs)//2]} | "
              f"{sum(cs)/len(cs):.1f} | {cs[-1]} |")


if __name__ == "__main__":
    main()
