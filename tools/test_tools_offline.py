#!/usr/bin/env python3
"""Offline tests for the parts of the tools/ scripts that need no transformers/tokenizers:
the perplexity window bookkeeping (against the doc's literal loop on a toy causal LM), padding and
position ids, MLM masking, data readers, text splitting, baselines and packing.

Needs torch and numpy (CPU is enough; Debian's python3-torch works). Run from the repo root:
    python3 tools/test_tools_offline.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import math
import struct
import subprocess
import sys
import tempfile
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_utils  # noqa: E402
import make_golden  # noqa: E402
import train_bundled_models as tbm  # noqa: E402

import torch  # noqa: E402


class ToyCausalLM(torch.nn.Module):
    """Causal LM stand-in with Hugging Face's call signature: logits at t depend on tokens <= t
    (and on position ids), loss is HF's shifted mean cross-entropy over labels != -100."""

    def __init__(self, vocab: int = 50, dim: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, dim)
        self.pos = torch.nn.Embedding(512, dim)
        self.out = torch.nn.Linear(dim, vocab)

    def forward(self, input_ids, attention_mask=None, position_ids=None, labels=None, use_cache=False):
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1])[None].expand_as(input_ids)
        x = self.emb(input_ids) + self.pos(position_ids)
        if attention_mask is not None:
            x = x * attention_mask[..., None]
        counts = torch.arange(1, input_ids.shape[1] + 1, dtype=x.dtype)[None, :, None]
        logits = self.out(torch.tanh(x.cumsum(1) / counts))
        loss = None
        if labels is not None:
            shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
            shift_labels = labels[:, 1:].reshape(-1)
            loss = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100)
        return types.SimpleNamespace(logits=logits, loss=loss)


FAILURES = []


def check(cond: bool, what: str) -> None:
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILURES.append(what)


def test_sliding_windows() -> None:
    w = hf_utils.sliding_windows(300, 64, 32)
    check([x["begin"] for x in w] == list(range(0, 257, 32)), "window begins 0..256 step 32")
    check(w[-1]["end"] == 300 and w[-1]["trg_len"] == 12, "last window is partial (trg_len 12)")
    check(w[0]["score_begin"] == 1 and w[0]["doc_weight"] == 63, "first window scores 1..63, weight 63")
    check(all(x["score_count"] == x["trg_len"] for x in w[1:]), "later windows score trg_len tokens")
    scored = sorted(g for x in w for g in range(x["score_begin"], x["end"]))
    check(scored == list(range(1, 300)), "every token 1..299 scored exactly once")
    w = hf_utils.sliding_windows(100, 64, 64)
    check([(x["begin"], x["end"], x["score_begin"]) for x in w] == [(0, 64, 1), (64, 100, 65)],
          "stride == context: disjoint windows, first token of each unscored")
    try:
        hf_utils.sliding_windows(100, 32, 64)
        check(False, "stride > context rejected")
    except ValueError:
        check(True, "stride > context rejected")


def test_perplexity_case() -> None:
    model = ToyCausalLM(vocab=make_golden.VOCAB, dim=8).eval()
    ids = torch.randint(0, make_golden.GPT2_EOS, (1, make_golden.PPL_LEN), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ppl = make_golden.perplexity_case(model, ids)
    check(abs(ppl["doc_ppl"] - ppl["doc_ppl_literal"]) < 1e-4 * ppl["doc_ppl"], "doc formula == literal doc loop")
    check(ppl["exact_n_tokens"] == make_golden.PPL_LEN - 1, "exact method scores seq_len-1 tokens")
    check(ppl["doc_n_tokens"] == 63 + 31 * 7 + 11, "doc token count = sum(trg_len-1)")
    check(abs(math.exp(float(ppl["token_nll"].double().mean())) - ppl["exact_ppl"]) < 1e-3 * ppl["exact_ppl"],
          "exact ppl == exp(mean token nll)")
    # Batched window NLLs (train_bundled_models) equal the per-window ones (make_golden).
    windows = hf_utils.sliding_windows(make_golden.PPL_LEN, make_golden.PPL_CONTEXT, make_golden.PPL_STRIDE)
    batched = hf_utils.combine_window_nll(windows, tbm.window_token_nll(model, ids[0].tolist(), windows,
                                                                         torch.device("cpu"), batch=3))
    check(abs(batched["exact_ppl"] - ppl["exact_ppl"]) < 1e-4 * ppl["exact_ppl"] and
          abs(batched["doc_ppl"] - ppl["doc_ppl"]) < 1e-4 * ppl["doc_ppl"], "batched window NLL == per-window")


def test_padding_positions() -> None:
    ids, mask, pos = make_golden.left_pad([[5, 6, 7], [8]], 4, 99)
    check(ids.tolist() == [[99, 5, 6, 7], [99, 99, 99, 8]], "left padding with the pad id")
    check(mask.tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]], "attention mask zero on padding")
    check(pos.tolist() == [[1, 0, 1, 2], [1, 1, 1, 0]], "position ids cumsum-1, 1 on padding")
    model = ToyCausalLM(vocab=100).eval()
    with torch.no_grad():
        toks, rows, margins = make_golden.greedy_manual(model, ids, mask, 5)
    check(toks.shape == (2, 5) and rows.shape == (2, 5, 100) and bool((margins >= 0).all()),
          "greedy_manual shapes and non-negative margins")
    enc = make_golden.encoder_inputs(torch.Generator().manual_seed(0), with_token_types=True)
    lengths = enc["attention_mask"].sum(1).tolist()
    check(lengths == make_golden.ENC_LENGTHS, "encoder rows have the planned lengths")
    check(all(enc["input_ids"][r, n - 1] == make_golden.SEP_ID and enc["input_ids"][r, 0] == make_golden.CLS_ID
              for r, n in enumerate(lengths)), "encoder rows are [CLS] ... [SEP]")
    check(int(enc["token_type_ids"].sum()) == (16 - 9) + (13 - 7), "segment B typed 1 in the pair rows")


def test_sinusoid() -> None:
    import numpy as np

    n, dim = 48, 24
    # HF's original numpy formula.
    enc = np.array([[p / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for p in range(n)])
    ref = torch.empty(n, dim)
    ref[:, 0::2] = torch.FloatTensor(np.sin(enc[:, 0::2]))
    ref[:, 1::2] = torch.FloatTensor(np.cos(enc[:, 1::2]))
    check(float((make_golden.sinusoid_table(n, dim) - ref).abs().max()) < 1e-6, "sinusoid table == HF formula")


def test_text_and_data(data: Path | None) -> None:
    text = "Hello world.  Two  spaces\n\nNew para " + "word " * 2000 + "end"
    pieces = tbm.split_pieces(text, 100)
    check("".join(pieces) == text, "split_pieces concatenates back to the text")
    check(all(p.startswith(" ") and p[1].isalpha() for p in pieces[1:]), "cuts only before ' <letter>'")
    check(len(pieces) > 10, "long text is cut into many pieces")
    check(tbm.split_pieces("", 100) == [], "empty text has no pieces")
    check(tbm.bow_features("Not bad, NOT bad!") == {"not", "bad", "not bad", "bad not"}, "bow features")
    check(tbm.majority_label([1, 0, 1, 0]) == 0 and tbm.majority_label([1, 1, 0]) == 1, "majority label")
    rows = [(f"s{i}", i % 2) for i in range(100)]
    tr, va = tbm.stratified_split(rows, 0.1, 7)
    check(len(va) == 10 and sum(y for _, y in va) == 5 and not set(tr) & set(va), "stratified split")
    check(tbm.stratified_split(rows, 0.1, 7) == (tr, va), "split is deterministic")
    check(abs(tbm.lr_at(0, 100, 10, 1.0, 0.0, "linear") - 0.1) < 1e-12 and tbm.lr_at(100, 100, 10, 1.0, 0.1, "cosine")
          == 0.1 and abs(tbm.lr_at(55, 100, 10, 1.0, 0.0, "cosine") - 0.5) < 1e-9, "lr schedule")
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "bad.tsv"
        bad.write_text("sentence\tlabel\nfine\t1\nbroken line\n")
        try:
            tbm.read_sentiment_tsv(bad)
            check(False, "ragged TSV row rejected")
        except ValueError as e:
            check("bad.tsv:3" in str(e), "ragged TSV row rejected with file:line")
    if data is None:
        return
    for name in ("amazon", "yelp", "imdb"):
        rows = tbm.read_sentiment_tsv(data / f"sentiment/{name}.tsv")
        check(len(rows) == 1000 and sum(y for _, y in rows) == 500, f"{name}.tsv: 1000 rows, 500 positive")
    files = tbm.corpus_files(data)
    check(any(f.as_posix().endswith(tbm.HELDOUT_BOOK) for f in files), "held-out book is a corpus file")
    for f in files:
        t = tbm.read_text_file(f)
        if "".join(tbm.split_pieces(t)) != t or "\r" in t:
            check(False, f"split_pieces round trip on {f.name}")
            break
    else:
        check(True, f"split_pieces round trip and no CR on all {len(files)} corpus files")


def test_mlm_masking() -> None:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30522, (64, 128), generator=gen)
    ids[:, 0] = 101
    ids[:, -1] = 102
    inputs, labels = tbm.mask_for_mlm(ids, gen)
    sel = labels != -100
    frac = float(sel.float().mean())
    check(0.13 < frac < 0.17, f"about 15% of tokens selected ({frac:.3f})")
    check(not bool(sel[:, 0].any() or sel[:, -1].any()), "specials never selected")
    check(bool((labels[sel] == ids[sel]).all()), "labels are the original ids")
    masked = float((inputs[sel] == 103).float().mean())
    kept = float((inputs[sel] == ids[sel]).float().mean())
    check(0.75 < masked < 0.85 and 0.07 < kept < 0.14, f"80% [MASK] ({masked:.3f}), ~10% kept ({kept:.3f})")
    check(bool((inputs[~sel] == ids[~sel]).all()), "unselected tokens unchanged")
    import numpy as np

    stream = np.arange(1000, 1000 + 130 * 3, dtype=np.int32)
    chunks = tbm.mlm_chunks(stream, 128)
    check(chunks.shape == (3, 128) and bool((chunks[:, 0] == 101).all() and (chunks[:, -1] == 102).all()),
          "MLM chunks are [CLS] 126 tokens [SEP]")
    joined = tbm.join_documents([np.array([1, 2], np.int32), np.array([3], np.int32)], 9)
    check(joined.tolist() == [1, 2, 9, 3], "documents joined by a separator")


def test_baselines() -> None:
    import numpy as np

    good = ["great food", "loved it", "great service", "really great", "loved the staff", "great great"]
    badw = ["awful food", "hated it", "awful service", "really awful", "hated the staff", "awful awful"]
    train = [(t, 1) for t in good] + [(t, 0) for t in badw]
    res = tbm.bow_logistic_regression(train, train, [("great", 1), ("awful", 0)], torch.device("cpu"), print)
    check(res["chosen"]["imdb_acc"] == 1.0, "BoW logistic regression separates a trivial set")
    uni = tbm.unigram_perplexity(np.array([0, 0, 1], dtype=np.int32), [0, 1], 3)
    expected = math.exp(-(math.log(3 / 6) + math.log(2 / 6)) / 2)
    check(abs(uni["perplexity"] - expected) < 1e-12, "add-one unigram perplexity")
    tied = torch.nn.Module()
    tied.a = torch.nn.Embedding(10, 4)
    tied.b = torch.nn.Linear(4, 10, bias=False)
    tied.b.weight = tied.a.weight
    check(tbm.unique_parameter_bytes(tied) == 80, "tied weights counted once")


def test_safetensors_header_and_pack() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        header = b'{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"a":"b"}}'
        (tmp / "t.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
        check(hf_utils.safetensors_summary(tmp / "t.safetensors") == {"x": ("F32", [2])}, "safetensors header")
        root = tmp / "root"
        (root / "models/m").mkdir(parents=True)
        (root / "docs").mkdir()
        payload = bytes(range(256)) * 40000  # ~10 MB, barely compressible after shuffling
        import random

        rnd = random.Random(0)
        blob = bytearray(payload)
        rnd.shuffle(blob)
        (root / "models/m/w.bin").write_bytes(bytes(blob))
        (root / "models/m/a.txt").write_text("hello")
        (root / "docs/log.txt").write_text("log")
        parts, digest = hf_utils.pack_tree(root, ["models/m", "docs/log.txt"], tmp / "out", "b", part_bytes=4 << 20)
        check(len(parts) == 3 and all(p.stat().st_size <= 4 << 20 for p in parts), f"split into {len(parts)} parts")
        dest = tmp / "dest"
        dest.mkdir()
        cmd = f"cat {tmp / 'out'}/b.tar.gz.part-* | tar xzf - -C {dest}"
        subprocess.run(cmd, shell=True, check=True)
        same = all((dest / r).read_bytes() == (root / r).read_bytes()
                   for r in ("models/m/w.bin", "models/m/a.txt", "docs/log.txt"))
        check(same, "cat parts | tar xz restores the files")
        joined = b"".join(p.read_bytes() for p in parts)
        import hashlib

        check(hashlib.sha256(joined).hexdigest() == digest, "sha256 printed matches the parts")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=next((p for p in (".carry/data", "../shared/data", "/work/shared/data")
                                             if Path(p).is_dir()), None))
    args = ap.parse_args()
    test_sliding_windows()
    test_perplexity_case()
    test_padding_positions()
    test_sinusoid()
    test_text_and_data(Path(args.data) if args.data else None)
    test_mlm_masking()
    test_baselines()
    test_safetensors_header_and_pack()
    passed = "FAILED: " + "; ".join(FAILURES) if FAILURES else "all passed"
    print(passed)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
