#!/usr/bin/env python3
"""Golden fixtures for eaq's parity tests: tiny random Hugging Face models and their outputs.

Each fixture folder under --out (default tests/golden) holds what `save_pretrained` wrote
(config.json + model.safetensors, fp32) and `reference.safetensors` with the inputs and the
outputs Hugging Face computed. Its `__metadata__` says what every tensor is, the library versions,
the seed, the config and the checks this script made. Everything runs on the CPU in fp32 with
eager attention, so the numbers do not depend on a GPU.

Every parameter is perturbed off its initial value (LayerNorm weights are not 1, biases not 0),
and weights use initializer_range 0.2 so that activations are large enough for the config fields
that change the math (activation, layer-norm epsilon) to move the outputs well beyond the 1e-4
test tolerance. Where that is not enough by itself, a fixture moves the FFN into GELU's negative
tail (gelu vs gelu_new) or scales the embeddings down (layer_norm_eps); each fixture records in its
metadata how far each such config change moves its outputs ("probes").

Usage (repository root, on a machine with torch + transformers):
    python3 tools/make_golden.py --out tests/golden
    python3 tools/make_golden.py --self-check          # build all in a temp dir, keep nothing
    python3 tools/make_golden.py --only gpt2_tiny      # one fixture
    python3 tools/make_golden.py --out /tmp/golden --pack $OUT   # on the device machine
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_utils  # noqa: E402

SEED = 20251126
VOCAB = 1000
MATRIX_SIGMA = 0.05  # noise added to every matrix / embedding entry
VECTOR_SIGMA = 0.1   # noise added to every bias and LayerNorm weight/bias
INIT_RANGE = 0.2     # initializer_range: large enough that activations leave the linear region
TOLERANCE = 1e-4     # what the C++ tests demand: max|ours - HF| / max|HF|
# gelu and gelu_new differ by ~0.02% of their value near 0 but by ~0.5% in the negative tail, so
# fixtures that must tell them apart shift the FFN pre-activations into the tail and scale up the
# FFN output so that it still matters next to the residual stream.
GELU_TAIL_SHIFT = -2.5
GELU_TAIL_OUT_SCALE = 8.0
FFN_NAMES = {  # (FFN input bias, FFN output weight) parameter-name patterns per family
    "distilbert": (r"ffn\.lin1\.bias$", r"ffn\.lin2\.weight$"),
    "bert": (r"layer\.\d+\.intermediate\.dense\.bias$", r"layer\.\d+\.output\.dense\.weight$"),
    "gpt2": (r"mlp\.c_fc\.bias$", r"mlp\.c_proj\.weight$"),
}

# Encoder inputs: right-padded rows of different lengths (BERT-style special ids).
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 100, 101, 102, 103
FIRST_WORD_ID = 104
ENC_LENGTHS = [16, 11, 6, 2, 13]
ENC_WIDTH = 16
# Sentence pairs for BERT token types: (row, first position of segment B).
ENC_PAIRS = [(0, 9), (4, 7)]

# GPT-2: the last id is <|endoftext|> (bos = eos = pad for generation, as for real GPT-2).
GPT2_EOS = VOCAB - 1
GEN_NEW_TOKENS = 20
GEN_MIN_MARGIN = 1e-3  # greedy steps whose top-2 logits are closer than this are ambiguous
PPL_LEN, PPL_CONTEXT, PPL_STRIDE = 300, 64, 32


def fixture_specs() -> list[dict]:
    """Every fixture: name, family, HF class name, config kwargs, sensitivity probes, options."""
    distil = dict(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64, activation="gelu",
                  max_position_embeddings=64, sinusoidal_pos_embds=False, initializer_range=INIT_RANGE,
                  pad_token_id=PAD_ID)
    distil_var = dict(vocab_size=VOCAB, dim=24, n_layers=3, n_heads=3, hidden_dim=40, activation="relu",
                      max_position_embeddings=48, sinusoidal_pos_embds=True, initializer_range=INIT_RANGE,
                      pad_token_id=PAD_ID)
    bert = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, hidden_act="gelu", type_vocab_size=2, layer_norm_eps=1e-12,
                max_position_embeddings=64, initializer_range=INIT_RANGE, pad_token_id=PAD_ID)
    bert_var = dict(vocab_size=VOCAB, hidden_size=24, num_hidden_layers=3, num_attention_heads=2,
                    intermediate_size=48, hidden_act="gelu_new", type_vocab_size=2, layer_norm_eps=1e-5,
                    max_position_embeddings=48, initializer_range=INIT_RANGE, pad_token_id=PAD_ID)
    gpt2 = dict(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                activation_function="gelu_new", layer_norm_epsilon=1e-5, initializer_range=INIT_RANGE,
                bos_token_id=GPT2_EOS, eos_token_id=GPT2_EOS, tie_word_embeddings=True)
    gpt2_var = dict(vocab_size=VOCAB, n_positions=32, n_embd=48, n_layer=3, n_head=3, n_inner=80,
                    activation_function="relu", layer_norm_epsilon=1e-3, initializer_range=INIT_RANGE,
                    bos_token_id=GPT2_EOS, eos_token_id=GPT2_EOS, tie_word_embeddings=False)
    return [
        dict(name="distilbert_tiny", family="distilbert", cls="DistilBertForSequenceClassification",
             config={**distil, "num_labels": 3},
             probes=[("activation gelu->relu", {"activation": "relu"})]),
        dict(name="distilbert_tiny_relu_sinusoidal", family="distilbert",
             cls="DistilBertForSequenceClassification", config={**distil_var, "num_labels": 2},
             probes=[("activation relu->gelu", {"activation": "gelu"})]),
        dict(name="distilbert_tiny_bare", family="distilbert", cls="DistilBertModel", config=distil,
             probes=[("activation gelu->relu", {"activation": "relu"})]),
        dict(name="bert_tiny", family="bert", cls="BertForSequenceClassification",
             config={**bert, "num_labels": 2}, gelu_tail=True,
             probes=[("hidden_act gelu->gelu_new", {"hidden_act": "gelu_new"})]),
        # Embeddings scaled down so the embedding LayerNorm's input variance (~1e-5) is comparable
        # to layer_norm_eps: a wrong epsilon then moves the logits far beyond the tolerance.
        dict(name="bert_tiny_gelu_new", family="bert", cls="BertForSequenceClassification",
             config={**bert_var, "num_labels": 4}, embedding_scale=0.0015, gelu_tail=True,
             probes=[("hidden_act gelu_new->gelu", {"hidden_act": "gelu"}),
                     ("layer_norm_eps 1e-5->1e-12", {"layer_norm_eps": 1e-12})]),
        dict(name="bert_tiny_bare", family="bert", cls="BertModel", config=bert, gelu_tail=True,
             probes=[("hidden_act gelu->gelu_new", {"hidden_act": "gelu_new"})]),
        dict(name="gpt2_tiny", family="gpt2", cls="GPT2LMHeadModel", config=gpt2, full_suite=True, gelu_tail=True,
             probes=[("activation gelu_new->gelu", {"activation_function": "gelu"}),
                     ("layer_norm_epsilon 1e-5->1e-3", {"layer_norm_epsilon": 1e-3})]),
        dict(name="gpt2_tiny_variant", family="gpt2", cls="GPT2LMHeadModel", config=gpt2_var,
             full_suite=False,
             probes=[("activation relu->gelu_new", {"activation_function": "gelu_new"}),
                     ("layer_norm_epsilon 1e-3->1e-5", {"layer_norm_epsilon": 1e-5})]),
    ]


# ---------------------------------------------------------------------------------------------
# Model construction
# ---------------------------------------------------------------------------------------------


def config_class(family: str):
    import transformers

    return {"distilbert": transformers.DistilBertConfig, "bert": transformers.BertConfig,
            "gpt2": transformers.GPT2Config}[family]


def make_model(spec: dict, overrides: dict | None = None):
    import transformers

    cfg = config_class(spec["family"])(**{**spec["config"], **(overrides or {})})
    model_cls = getattr(transformers, spec["cls"])
    return hf_utils.build_model(model_cls, cfg, "eager").eval()


def sinusoid_table(n_pos: int, dim: int):
    """DistilBERT's create_sinusoidal_embeddings, recomputed here in float64 then cast."""
    import torch

    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.empty(n_pos, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.to(torch.float32)


def perturb_all_parameters(model, gen) -> list[str]:
    """Add Gaussian noise to every parameter (tied parameters are visited once)."""
    import torch

    names = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            sigma = VECTOR_SIGMA if p.dim() == 1 else MATRIX_SIGMA
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * sigma)
            names.append(name)
    # No LayerNorm weight may stay 1 and no bias 0: that would hide a missing load in C++.
    for name, p in model.named_parameters():
        if p.dim() == 1 and (bool((p == 1).any()) or bool((p == 0).any())):
            raise RuntimeError(f"parameter {name} still has exact 0/1 entries after perturbation")
    return names


def scale_embeddings(model, factor: float) -> list[str]:
    """Multiply every embedding table (word/position/token type) by factor."""
    import torch

    scaled = []
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Embedding):
                module.weight.mul_(factor)
                scaled.append(name + ".weight")
    return scaled


def shift_into_gelu_tail(model, family: str) -> list[str]:
    """Move FFN pre-activations into GELU's negative tail and scale the FFN output up (see
    GELU_TAIL_SHIFT). Returns the changed parameter names; empty if the names did not match."""
    import torch

    bias_pat, out_pat = (re.compile(p) for p in FFN_NAMES[family])
    changed = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if bias_pat.search(name):
                p.add_(GELU_TAIL_SHIFT)
                changed.append(name)
            elif out_pat.search(name):
                p.mul_(GELU_TAIL_OUT_SCALE)
                changed.append(name)
    return changed


def apply_adjustments(spec: dict, model, notes: list, log) -> None:
    """Per-fixture changes after perturbation that make a config field's effect visible."""
    if spec.get("gelu_tail"):
        changed = shift_into_gelu_tail(model, spec["family"])
        if len(changed) < 2:
            log(f"    WARNING: FFN parameter names not found for the GELU-tail shift: {changed}")
        notes.append(f"FFN input biases {GELU_TAIL_SHIFT:+} and FFN output weights x{GELU_TAIL_OUT_SCALE} "
                     f"after perturbation (GELU tail, so gelu vs gelu_new is visible): {changed}")
    if spec.get("embedding_scale"):
        scaled = scale_embeddings(model, spec["embedding_scale"])
        notes.append(f"embedding tables {scaled} scaled by {spec['embedding_scale']} after perturbation "
                     "so that layer_norm_eps matters")


def find_tensor(model, name: str):
    """A parameter or buffer by its state-dict name, and which of the two it is."""
    params = dict(model.named_parameters())
    if name in params:
        return params[name], "parameter"
    buffers = dict(model.named_buffers())
    if name in buffers:
        return buffers[name], "buffer"
    raise RuntimeError(f"model has no parameter or buffer named {name}")


# ---------------------------------------------------------------------------------------------
# Forward helpers
# ---------------------------------------------------------------------------------------------


def rel_diff(a, b) -> float:
    """max|a-b| / max|b| in float64; inf if either holds a non-finite value."""
    import torch

    a = a.double()
    b = b.double()
    if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
        return float("inf")
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def zero_padded(logits, mask):
    """Logits at padded (mask 0) query positions are implementation-defined (all their keys are
    masked): store zeros there so that nobody compares them by accident."""
    return logits.masked_fill(mask[..., None] == 0, 0.0)


def encoder_inputs(gen, with_token_types: bool) -> dict:
    import torch

    batch = len(ENC_LENGTHS)
    ids = torch.full((batch, ENC_WIDTH), PAD_ID, dtype=torch.int64)
    mask = torch.zeros((batch, ENC_WIDTH), dtype=torch.int64)
    types = torch.zeros((batch, ENC_WIDTH), dtype=torch.int64)
    for row, n in enumerate(ENC_LENGTHS):
        ids[row, 0] = CLS_ID
        ids[row, 1:n - 1] = torch.randint(FIRST_WORD_ID, VOCAB, (n - 2,), generator=gen)
        ids[row, n - 1] = SEP_ID
        mask[row, :n] = 1
    if with_token_types:
        for row, b_start in ENC_PAIRS:
            ids[row, b_start - 1] = SEP_ID
            types[row, b_start:ENC_LENGTHS[row]] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if with_token_types:
        out["token_type_ids"] = types
    return out


def encoder_outputs(model, inputs: dict, bare: bool) -> dict:
    """Main outputs plus debug tensors (embedding output and last hidden state) when available."""
    import torch

    with torch.no_grad():
        try:
            out = model(**inputs, output_hidden_states=True)
            hidden = out.hidden_states
        except TypeError:
            out = model(**inputs)
            hidden = None
    result = {}
    if bare:
        result["last_hidden_state"] = out.last_hidden_state
        pooler = getattr(out, "pooler_output", None)
        if pooler is not None:
            result["pooler_output"] = pooler
    else:
        result["logits"] = out.logits
    if hidden:
        result["debug_embeddings_output"] = hidden[0]
        if not bare:
            result["debug_last_hidden_state"] = hidden[-1]
    return result


def left_pad(rows: list, width: int, pad_id: int):
    """Left-pad token lists to width; returns ids, attention_mask, position_ids as HF generate
    computes them: cumsum(mask) - 1, with 1 at padded positions."""
    import torch

    batch = len(rows)
    ids = torch.full((batch, width), pad_id, dtype=torch.int64)
    mask = torch.zeros((batch, width), dtype=torch.int64)
    for r, toks in enumerate(rows):
        n = len(toks)
        ids[r, width - n:] = torch.as_tensor(toks, dtype=torch.int64)
        mask[r, width - n:] = 1
    return ids, mask, position_ids_from_mask(mask)


def position_ids_from_mask(mask):
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def gpt2_logits(model, ids, mask=None, pos=None):
    import torch

    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits


def gpt2_kv_run(model, ids, mask, pos, prefill: int):
    """Prefill ids[:, :prefill] with a KV cache, then feed the remaining tokens one at a time.
    Returns prefill logits [B, prefill, V] and per-step logits [B, steps, V]."""
    import torch

    with torch.no_grad():
        out = model(input_ids=ids[:, :prefill], attention_mask=mask[:, :prefill],
                    position_ids=pos[:, :prefill], use_cache=True)
        prefill_logits = out.logits
        cache = out.past_key_values
        steps = []
        for t in range(prefill, ids.shape[1]):
            out = model(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :t + 1],
                        position_ids=pos[:, t:t + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(out.logits[:, -1, :])
    return prefill_logits, torch.stack(steps, dim=1)


def greedy_manual(model, ids, mask, steps: int):
    """Greedy decoding by full recomputation (no cache); returns tokens [B, steps], the chosen
    logits rows [B, steps, V] and the top-1 minus top-2 margins [B, steps]."""
    import torch

    tokens, rows, margins = [], [], []
    for _ in range(steps):
        logits = gpt2_logits(model, ids, mask, position_ids_from_mask(mask))[:, -1, :]
        top = logits.topk(2, dim=-1)
        nxt = top.indices[:, 0]
        tokens.append(nxt)
        rows.append(logits)
        margins.append(top.values[:, 0] - top.values[:, 1])
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return torch.stack(tokens, 1), torch.stack(rows, 1), torch.stack(margins, 1)


def greedy_hf(model, ids, mask, steps: int):
    import torch

    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                             max_new_tokens=steps, pad_token_id=GPT2_EOS)
    sequences = out.sequences if hasattr(out, "sequences") else out
    return sequences[:, ids.shape[1]:]


def find_greedy_case(model, gen, lengths: list[int], log) -> dict:
    """Search prompts until greedy decoding is unambiguous (top-2 margin >= GEN_MIN_MARGIN at
    every step) and emits no <|endoftext|>, so exact token parity is a fair test."""
    import torch

    width = max(lengths)
    for attempt in range(100):
        rows = [torch.randint(0, GPT2_EOS, (n,), generator=gen).tolist() for n in lengths]
        ids, mask, _ = left_pad(rows, width, GPT2_EOS)
        tokens, step_logits, margins = greedy_manual(model, ids, mask, GEN_NEW_TOKENS)
        if bool((tokens == GPT2_EOS).any()) or float(margins.min()) < GEN_MIN_MARGIN:
            continue
        hf_tokens = greedy_hf(model, ids, mask, GEN_NEW_TOKENS)
        agrees = hf_tokens.shape == tokens.shape and bool(torch.equal(hf_tokens, tokens))
        if not agrees:
            # generate() is the reference; keep its tokens but say loudly that our reading of its
            # position/mask convention (cumsum(mask)-1) did not reproduce them.
            log(f"    WARNING: generate() and the manual greedy loop disagree for lengths {lengths}:\n"
                f"      generate: {hf_tokens.tolist()}\n      manual:   {tokens.tolist()}")
        log(f"    greedy case {lengths}: attempt {attempt}, min margin {float(margins.min()):.4g}, "
            f"manual loop agrees with generate(): {agrees}")
        return {"ids": ids, "mask": mask, "tokens": hf_tokens, "step_logits": step_logits,
                "margins": margins, "attempts": attempt + 1, "manual_agrees": agrees}
    raise RuntimeError(f"no unambiguous greedy prompt found for lengths {lengths}")


def perplexity_case(model, ids) -> dict:
    """HF's documented sliding-window loop, literally, plus the exact per-token NLLs."""
    import torch

    seq_len = ids.shape[1]
    windows = hf_utils.sliding_windows(seq_len, PPL_CONTEXT, PPL_STRIDE)
    # 1) The doc's code as written (float32 tensor accumulation).
    nll_sum = 0.0
    n_tokens = 0
    prev_end = 0
    window_loss = []
    with torch.no_grad():
        for begin in range(0, seq_len, PPL_STRIDE):
            end = min(begin + PPL_CONTEXT, seq_len)
            trg_len = end - prev_end
            input_ids = ids[:, begin:end]
            target_ids = input_ids.clone()
            target_ids[:, :-trg_len] = -100
            neg_log_likelihood = model(input_ids, labels=target_ids, use_cache=False).loss
            window_loss.append(float(neg_log_likelihood))
            num_valid_tokens = (target_ids != -100).sum().item()
            num_loss_tokens = num_valid_tokens - target_ids.size(0)
            nll_sum += neg_log_likelihood * num_loss_tokens
            n_tokens += num_loss_tokens
            prev_end = end
            if end == seq_len:
                break
    doc_ppl_literal = float(torch.exp(nll_sum / n_tokens))
    # 2) Per-token NLLs from log_softmax, combined both ways in float64.
    token_nll = torch.full((seq_len - 1,), float("nan"), dtype=torch.float32)
    per_window = []
    with torch.no_grad():
        for w in windows:
            logits = gpt2_logits(model, ids[:, w["begin"]:w["end"]])[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            nll = []
            for g in range(w["score_begin"], w["end"]):
                v = -float(logp[g - 1 - w["begin"], ids[0, g]])
                nll.append(v)
                token_nll[g - 1] = v
            per_window.append(nll)
    combined = hf_utils.combine_window_nll(windows, per_window)
    if len(window_loss) != len(windows):
        raise RuntimeError("perplexity: window plan differs from the doc loop")
    for w_loss, w_mean in zip(window_loss, combined["window_mean_nll"]):
        if abs(w_loss - w_mean) > 1e-4 * max(1.0, abs(w_mean)):
            raise RuntimeError(f"perplexity: HF window loss {w_loss} != our window mean {w_mean}")
    if abs(doc_ppl_literal - combined["doc_ppl"]) > 1e-4 * combined["doc_ppl"]:
        raise RuntimeError(f"perplexity: doc loop {doc_ppl_literal} != recombined {combined['doc_ppl']}")
    if bool(torch.isnan(token_nll).any()):
        raise RuntimeError("perplexity: some token was never scored")
    return {"windows": windows, "window_loss": window_loss, "token_nll": token_nll,
            "doc_ppl_literal": doc_ppl_literal, "doc_nll_sum_literal": float(nll_sum),
            "doc_n_tokens_literal": int(n_tokens), **combined}


# ---------------------------------------------------------------------------------------------
# Fixture builders
# ---------------------------------------------------------------------------------------------


def probe_sensitivity(spec: dict, model, reference: dict, run, log) -> dict:
    """Rebuild the model with each probe's config change and the same weights; report how far the
    main output moves. A probe below 10x the tolerance means the fixture could not catch that bug."""
    results = {}
    main_key = next(iter(reference))
    for label, overrides in spec.get("probes", []):
        alt = make_model(spec, overrides)
        alt.load_state_dict(model.state_dict())
        moved = rel_diff(run(alt)[main_key], reference[main_key])
        results[label] = moved
        flag = "" if moved > 10 * TOLERANCE else "  WARNING: below 10x tolerance"
        log(f"    probe {label}: {main_key} moves by {moved:.3e} (relative){flag}")
    return results


def reload_check(spec: dict, out_dir: Path, reference: dict, run, log) -> float:
    import transformers

    model_cls = getattr(transformers, spec["cls"])
    tied = {"lm_head.weight"} if spec["config"].get("tie_word_embeddings", False) else set()
    reloaded = hf_utils.load_pretrained_fp32(model_cls, out_dir, "eager", tied_keys=tied)
    again = run(reloaded)
    worst = max(rel_diff(again[k], reference[k]) for k in reference if not k.startswith("debug_"))
    log(f"    reload from disk: worst relative difference {worst:.3e}")
    return worst


def build_encoder_fixture(spec: dict, seed: int, out_dir: Path, log) -> dict:
    import torch

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = make_model(spec)
    bare = not spec["cls"].endswith("ForSequenceClassification")
    notes = []
    sinusoidal = bool(spec["config"].get("sinusoidal_pos_embds", False))
    table_name = ("distilbert." if not bare else "") + "embeddings.position_embeddings.weight"
    init_vs_formula = None
    if sinusoidal:
        table, kind = find_tensor(model, table_name)
        init_vs_formula = float((table.detach() - sinusoid_table(*table.shape)).abs().max())
        log(f"    sinusoidal table is a {kind}; at init vs formula: max abs diff {init_vs_formula:.3e}")
    perturbed = perturb_all_parameters(model, gen)
    apply_adjustments(spec, model, notes, log)
    inputs = encoder_inputs(gen, with_token_types=spec["family"] == "bert")

    def run(m):
        return encoder_outputs(m, inputs, bare)

    reference = run(model)
    hf_utils.save_pretrained_safetensors(model, out_dir)
    sinusoidal_info = {}
    if sinusoidal:
        keys = hf_utils.safetensors_summary(out_dir / "model.safetensors")
        sinusoidal_info["table_saved_in_file"] = table_name in keys
        try:
            worst = reload_check(spec, out_dir, reference, run, log)
            sinusoidal_info["mode"] = "perturbed table saved in the file and used by from_pretrained"
        except Exception as e:  # any reload failure: try the unperturbed table below
            log(f"    reload failed with the perturbed table: {e}")
            worst = float("inf")
        if worst > 1e-6:
            # from_pretrained recomputed the table (or could not load it): restore the exact
            # sinusoid so that the fixture is what HF computes after loading.
            log("    reload changed the outputs: restoring the exact sinusoidal table")
            table, _ = find_tensor(model, table_name)
            with torch.no_grad():
                table.copy_(sinusoid_table(*table.shape))
            reference = run(model)
            shutil.rmtree(out_dir)
            hf_utils.save_pretrained_safetensors(model, out_dir)
            sinusoidal_info["table_saved_in_file"] = table_name in hf_utils.safetensors_summary(
                out_dir / "model.safetensors")
            sinusoidal_info["mode"] = "table restored to the exact sinusoid (HF recomputes it on load)"
        sinusoidal_info["init_vs_formula_max_abs"] = init_vs_formula
        table, _ = find_tensor(model, table_name)
        sinusoidal_info["used_table_vs_formula_max_abs"] = float(
            (table.detach() - sinusoid_table(*table.shape)).abs().max())
        log(f"    sinusoidal: {sinusoidal_info}")
    reload_worst = reload_check(spec, out_dir, reference, run, log)
    if reload_worst > 1e-6:
        raise RuntimeError(f"{spec['name']}: reloaded model differs by {reload_worst:.3e}")
    probes = probe_sensitivity(spec, model, reference, run, log)

    tensors = {**inputs, **reference}
    describe = {
        "input_ids": "I64 [B, L] token ids, right-padded with 0; rows have lengths "
                     f"{ENC_LENGTHS}",
        "attention_mask": "I64 [B, L] 1 for real tokens, 0 for padding",
        "logits": "F32 [B, num_labels] classifier logits (compare all rows)",
        "last_hidden_state": "F32 [B, L, H] encoder output at every position (padded positions "
                             "included: HF computes them from the real keys only)",
        "pooler_output": "F32 [B, H] tanh(dense(hidden[:, 0])) (BERT pooler)",
        "token_type_ids": f"I64 [B, L] segment ids; rows {[r for r, _ in ENC_PAIRS]} are pairs "
                          "[CLS] A [SEP] B [SEP] with B (and its [SEP]) typed 1; padding typed 0",
        "debug_embeddings_output": "F32 [B, L, H] output of the embeddings block (after its "
                                   "LayerNorm): hidden_states[0]",
        "debug_last_hidden_state": "F32 [B, L, H] encoder output fed to the head: hidden_states[-1]",
    }
    return {
        "tensors": tensors,
        "describe": {k: v for k, v in describe.items() if k in tensors},
        "extra_meta": {"perturbed_parameters": perturbed, "probes": probes,
                       "reload_max_rel_diff": reload_worst, "notes": notes,
                       "sinusoidal": sinusoidal_info or None},
    }


def build_gpt2_fixture(spec: dict, seed: int, out_dir: Path, log) -> dict:
    import torch

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = make_model(spec)
    perturbed = perturb_all_parameters(model, gen)
    notes = []
    apply_adjustments(spec, model, notes, log)
    checks = {}
    tensors = {}
    describe = {}

    # (a) Unpadded batch, full-sequence logits.
    full_ids = torch.randint(0, GPT2_EOS, (2, 12), generator=gen)
    tensors["full_input_ids"] = full_ids
    describe["full_input_ids"] = "I64 [2, 12] unpadded batch (no attention mask, positions 0..L-1)"
    # (b) Left-padded batch as generate() sees it.
    pad_lengths = [12, 7, 3]
    pad_rows = [torch.randint(0, GPT2_EOS, (n,), generator=gen).tolist() for n in pad_lengths]
    pad_ids, pad_mask, pad_pos = left_pad(pad_rows, 12, GPT2_EOS)
    tensors.update(padded_input_ids=pad_ids, padded_attention_mask=pad_mask, padded_position_ids=pad_pos)
    describe.update(
        padded_input_ids=f"I64 [3, 12] LEFT-padded with <|endoftext|>={GPT2_EOS}; row lengths {pad_lengths}",
        padded_attention_mask="I64 [3, 12] 0 on the left padding",
        padded_position_ids="I64 [3, 12] attention_mask.cumsum(-1)-1, masked_fill(mask==0, 1) "
                            "(what generate() passes)",
        padded_logits="F32 [3, 12, V]; zero where padded_attention_mask==0 (queries whose keys are "
                      "all masked are implementation-defined): compare only where the mask is 1",
    )

    def run(m):
        return {"full_logits": gpt2_logits(m, full_ids),
                "padded_logits": zero_padded(gpt2_logits(m, pad_ids, pad_mask, pad_pos), pad_mask)}

    reference = run(model)
    describe["full_logits"] = "F32 [2, 12, V] logits for full_input_ids"
    # Padded rows must equal each row run alone: checks the mask/position semantics we store.
    worst = 0.0
    for r, toks in enumerate(pad_rows):
        alone = gpt2_logits(model, torch.as_tensor([toks]))[0]
        worst = max(worst, rel_diff(reference["padded_logits"][r, 12 - len(toks):], alone))
    checks["padded_vs_unpadded_rows_max_rel"] = worst
    log(f"    padded rows vs each row alone: {worst:.3e}")
    if worst > 1e-5:
        raise RuntimeError(f"{spec['name']}: left padding changes valid logits by {worst:.3e}")
    with torch.no_grad():
        try:
            hidden = model(input_ids=full_ids, output_hidden_states=True, use_cache=False).hidden_states
            tensors["debug_full_embeddings"] = hidden[0]
            tensors["debug_full_final_hidden"] = hidden[-1]
            describe["debug_full_embeddings"] = "F32 [2, 12, E] wte+wpe for full_input_ids: hidden_states[0]"
            describe["debug_full_final_hidden"] = "F32 [2, 12, E] hidden_states[-1] (after ln_f in HF GPT-2)"
        except TypeError:
            pass

    if spec.get("full_suite"):
        # (c) KV cache, unpadded: prefill 8 then 8 single-token steps.
        kv_ids = torch.randint(0, GPT2_EOS, (2, 16), generator=gen)
        kv_mask = torch.ones_like(kv_ids)
        kv_prefill, kv_steps = gpt2_kv_run(model, kv_ids, kv_mask, position_ids_from_mask(kv_mask), 8)
        full = gpt2_logits(model, kv_ids)
        checks["kv_vs_full_max_rel"] = max(rel_diff(kv_prefill, full[:, :8]), rel_diff(kv_steps, full[:, 8:]))
        tensors.update(kv_input_ids=kv_ids, kv_prefill_logits=kv_prefill, kv_step_logits=kv_steps)
        describe.update(
            kv_input_ids="I64 [2, 16]: prefill kv_input_ids[:, :8] with a KV cache, then feed "
                         "columns 8..15 one at a time (teacher forcing)",
            kv_prefill_logits="F32 [2, 8, V] logits of the prefill call",
            kv_step_logits="F32 [2, 8, V] logits of each single-token step (step s fed column 8+s)",
        )
        # (c2) KV cache with a left-padded prompt batch: prompt width 8, then 6 steps.
        kvp_rows = [torch.randint(0, GPT2_EOS, (n,), generator=gen).tolist() for n in (8, 5)]
        p_ids, p_mask, _ = left_pad(kvp_rows, 8, GPT2_EOS)
        extra = torch.randint(0, GPT2_EOS, (2, 6), generator=gen)
        kvp_ids = torch.cat([p_ids, extra], 1)
        kvp_mask = torch.cat([p_mask, torch.ones_like(extra)], 1)
        kvp_pos = position_ids_from_mask(kvp_mask)
        kvp_prefill, kvp_steps = gpt2_kv_run(model, kvp_ids, kvp_mask, kvp_pos, 8)
        kvp_prefill = zero_padded(kvp_prefill, p_mask)
        full = gpt2_logits(model, kvp_ids, kvp_mask, kvp_pos)
        valid = kvp_mask.bool()
        checks["kv_padded_vs_full_max_rel"] = max(
            rel_diff(kvp_prefill[valid[:, :8]], full[:, :8][valid[:, :8]]), rel_diff(kvp_steps, full[:, 8:]))
        tensors.update(kvpad_input_ids=kvp_ids, kvpad_attention_mask=kvp_mask, kvpad_position_ids=kvp_pos,
                       kvpad_prefill_logits=kvp_prefill, kvpad_step_logits=kvp_steps)
        describe.update(
            kvpad_input_ids="I64 [2, 14]: columns 0..7 are a LEFT-padded prompt (row lengths 8, 5), "
                            "columns 8..13 are fed one at a time after a cached prefill",
            kvpad_attention_mask="I64 [2, 14] mask over the whole sequence (the step at column t "
                                 "passes attention_mask[:, :t+1])",
            kvpad_position_ids="I64 [2, 14] cumsum(mask)-1, 1 on padding",
            kvpad_prefill_logits="F32 [2, 8, V]; zero at padded positions: compare where attention_mask==1",
            kvpad_step_logits="F32 [2, 6, V] logits of each single-token step",
        )
        log(f"    kv cache vs full: {checks['kv_vs_full_max_rel']:.3e}, padded "
            f"{checks['kv_padded_vs_full_max_rel']:.3e}")
        if max(checks["kv_vs_full_max_rel"], checks["kv_padded_vs_full_max_rel"]) > 1e-5:
            raise RuntimeError(f"{spec['name']}: KV-cache logits differ from full recomputation")
        # (d) Greedy generation: one prompt, and a left-padded batch of two.
        single = find_greedy_case(model, gen, [8], log)
        batch = find_greedy_case(model, gen, [8, 4], log)
        tensors.update(gen_prompt_ids=single["ids"], gen_new_tokens=single["tokens"],
                       gen_step_logits=single["step_logits"], gen_margins=single["margins"],
                       genbatch_prompt_ids=batch["ids"], genbatch_prompt_attention_mask=batch["mask"],
                       genbatch_new_tokens=batch["tokens"], genbatch_margins=batch["margins"])
        describe.update(
            gen_prompt_ids="I64 [1, 8] prompt",
            gen_new_tokens=f"I64 [1, {GEN_NEW_TOKENS}] generate(do_sample=False, num_beams=1, "
                           f"max_new_tokens={GEN_NEW_TOKENS}, pad_token_id={GPT2_EOS}) continuation",
            gen_step_logits=f"F32 [1, {GEN_NEW_TOKENS}, V] next-token logits at each greedy step",
            gen_margins="F32 [1, T] top-1 minus top-2 logit at each step (all >= "
                        f"{GEN_MIN_MARGIN}: the greedy choice is unambiguous)",
            genbatch_prompt_ids=f"I64 [2, 8] LEFT-padded prompts (lengths 8, 4; pad {GPT2_EOS})",
            genbatch_prompt_attention_mask="I64 [2, 8]",
            genbatch_new_tokens=f"I64 [2, {GEN_NEW_TOKENS}] batched greedy continuation "
                                "(positions from cumsum(mask)-1, as generate() does)",
            genbatch_margins="F32 [2, T] top-1 minus top-2 logit at each step",
        )
        # (e) Sliding-window perplexity.
        ppl_ids = torch.randint(0, GPT2_EOS, (1, PPL_LEN), generator=gen)
        ppl = perplexity_case(model, ppl_ids)
        log(f"    perplexity: doc {ppl['doc_ppl']:.6f} (literal loop {ppl['doc_ppl_literal']:.6f}), "
            f"exact {ppl['exact_ppl']:.6f}, windows {len(ppl['windows'])}")
        win = torch.tensor([[w["begin"], w["end"], w["trg_len"], w["score_begin"], w["doc_weight"]]
                            for w in ppl["windows"]], dtype=torch.int64)
        tensors.update(
            ppl_input_ids=ppl_ids, ppl_windows=win,
            ppl_window_loss=torch.tensor(ppl["window_loss"], dtype=torch.float32),
            ppl_token_nll=ppl["token_nll"],
            ppl_context=torch.tensor([PPL_CONTEXT]), ppl_stride=torch.tensor([PPL_STRIDE]),
            ppl_doc=torch.tensor([ppl["doc_ppl"]], dtype=torch.float32),
            ppl_doc_nll_sum=torch.tensor([ppl["doc_nll_sum"]], dtype=torch.float32),
            ppl_doc_n_tokens=torch.tensor([ppl["doc_n_tokens"]]),
            ppl_exact=torch.tensor([ppl["exact_ppl"]], dtype=torch.float32),
            ppl_exact_nll_sum=torch.tensor([ppl["exact_nll_sum"]], dtype=torch.float32),
            ppl_exact_n_tokens=torch.tensor([ppl["exact_n_tokens"]]),
        )
        describe.update(
            ppl_input_ids=f"I64 [1, {PPL_LEN}] token ids evaluated",
            ppl_windows="I64 [W, 5] per window: begin, end (exclusive), trg_len, first scored "
                        "position, doc weight (= trg_len-1 = num_loss_tokens)",
            ppl_window_loss="F32 [W] outputs.loss of each window (mean NLL over its scored tokens)",
            ppl_token_nll=f"F32 [{PPL_LEN - 1}] NLL (nats) of token t+1 in the window that scores it",
            ppl_context="I64 [1] window length (= n_positions)", ppl_stride="I64 [1] stride",
            ppl_doc="F32 [1] perplexity by the doc's formula", ppl_doc_nll_sum="F32 [1]",
            ppl_doc_n_tokens="I64 [1] the doc's token count (sum of trg_len-1)",
            ppl_exact="F32 [1] exp(mean of ppl_token_nll)", ppl_exact_nll_sum="F32 [1]",
            ppl_exact_n_tokens=f"I64 [1] = {PPL_LEN - 1}",
        )
        checks["perplexity"] = {k: v for k, v in ppl.items()
                                if k not in ("windows", "window_loss", "token_nll", "window_mean_nll")}
        checks["perplexity_method"] = hf_utils.PERPLEXITY_METHOD
        checks["greedy_attempts"] = {"single": single["attempts"], "batch": batch["attempts"]}
        checks["greedy_manual_loop_agrees_with_generate"] = {"single": single["manual_agrees"],
                                                             "batch": batch["manual_agrees"]}

    hf_utils.save_pretrained_safetensors(model, out_dir)
    reload_worst = reload_check(spec, out_dir, reference, run, log)
    if reload_worst > 1e-6:
        raise RuntimeError(f"{spec['name']}: reloaded model differs by {reload_worst:.3e}")
    probes = probe_sensitivity(spec, model, reference, run, log)
    tensors.update(reference)
    return {"tensors": tensors, "describe": describe,
            "extra_meta": {"perturbed_parameters": perturbed, "probes": probes, "checks": checks,
                           "reload_max_rel_diff": reload_worst, "notes": notes,
                           "special_ids": {"eos": GPT2_EOS, "bos": GPT2_EOS, "pad_for_generation": GPT2_EOS}}}


def build_fixture(spec: dict, index: int, out_root: Path, versions: dict, log) -> list[Path]:
    seed = SEED + index
    out_dir = out_root / spec["name"]
    if out_dir.exists():
        shutil.rmtree(out_dir)
    log(f"== {spec['name']} ({spec['cls']}, seed {seed})")
    builder = build_gpt2_fixture if spec["family"] == "gpt2" else build_encoder_fixture
    built = builder(spec, seed, out_dir, log)
    missing = [k for k in built["tensors"] if k not in built["describe"]]
    if missing:
        raise RuntimeError(f"{spec['name']}: tensors without a description: {missing}")
    saved = hf_utils.safetensors_summary(out_dir / "model.safetensors")
    metadata = {
        "format": "pt",
        "fixture": spec["name"],
        "model_class": spec["cls"],
        "config_kwargs": spec["config"],
        "seed": seed,
        "versions": versions,
        "attn_implementation": "eager",
        "dtype": "float32 on CPU",
        "perturbation": f"every parameter += N(0, {MATRIX_SIGMA}) (matrices/embeddings) or "
                        f"N(0, {VECTOR_SIGMA}) (biases, LayerNorm) after init with "
                        f"initializer_range={INIT_RANGE}",
        "tolerance": f"max|ours-HF|/max|HF| <= {TOLERANCE} (fp32)",
        "tensors": built["describe"],
        "model_safetensors_keys": {k: [v[0], v[1]] for k, v in sorted(saved.items())},
        **built["extra_meta"],
    }
    hf_utils.write_reference(out_dir / "reference.safetensors", built["tensors"], metadata)
    return sorted(p for p in out_dir.iterdir() if p.is_file())


def parse_args(argv=None):
    names = [s["name"] for s in fixture_specs()]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/golden", help="output folder (default: tests/golden)")
    ap.add_argument("--only", action="append", choices=names, help="build only this fixture (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the fixtures and exit")
    ap.add_argument("--self-check", action="store_true",
                    help="build everything in a temporary folder, run all checks, keep nothing")
    ap.add_argument("--pack", metavar="DIR",
                    help="also write DIR/golden.tar.gz.part-NN holding tests/golden/<fixture>/... "
                         "(the device machine returns at most 8 files)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    specs = fixture_specs()
    if args.list:
        for s in specs:
            print(f"{s['name']:34s} {s['cls']}")
        return 0
    hf_utils.require_modules(["torch", "transformers", "safetensors"], "make_golden.py")
    import torch

    torch.set_grad_enabled(False)
    log = hf_utils.Tee()
    versions = hf_utils.library_versions()
    log(f"versions: {versions}")
    tmp = Path(tempfile.mkdtemp(prefix="golden_")) if args.self_check else None
    out_root = tmp if tmp is not None else Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for index, spec in enumerate(specs):
            if args.only and spec["name"] not in args.only:
                continue
            written.extend(build_fixture(spec, index, out_root, versions, log))
        log("files written:")
        total = 0
        by_folder = {}
        for p in written:
            size = p.stat().st_size
            total += size
            by_folder[p.parent.name] = by_folder.get(p.parent.name, 0) + size
            log(f"  {p}  {hf_utils.human_bytes(size)}")
        for folder, size in by_folder.items():
            flag = "" if size < 1024 * 1024 else "  WARNING: over 1 MiB"
            log(f"  folder {folder}: {hf_utils.human_bytes(size)}{flag}")
        log(f"total {hf_utils.human_bytes(total)} in {len(written)} files under {out_root}")
        if total > 5 * 1024 * 1024:
            log("WARNING: fixtures exceed 5 MiB")
        if args.pack and tmp is None:
            names = sorted({p.parent.name for p in written})
            parts, digest = hf_utils.pack_tree(out_root, names, args.pack, "golden", arc_prefix="tests/golden/")
            for p in parts:
                log(f"packed {p} ({hf_utils.human_bytes(p.stat().st_size)}), sha256 of the archive {digest}")
            log("unpack in the repository root: cat golden.tar.gz.part-* | tar xzf -")
        if tmp is not None:
            log("self-check passed")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            log(f"temporary output {tmp} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
