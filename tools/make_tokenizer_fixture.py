#!/usr/bin/env python3
"""Makes the tokenizer parity fixture with Hugging Face's own tokenizers (offline, from files).

Run on a machine with the `transformers` and `tokenizers` Python packages (the GPU machine), from
the repository root:

    python3 tools/make_tokenizer_fixture.py                  # writes tests/golden/tokenizer/
    python3 tools/make_tokenizer_fixture.py --out $OUT/tokenizer   # on the device machine: copy
                                                                   # the folder's files back into
                                                                   # tests/golden/tokenizer/
Reads (all in this repository):
    tests/golden/tokenizer/texts.jsonl                 the texts (tools/make_tokenizer_texts.py)
    data/tokenizers/bert-base-uncased/                 vocab.txt + tokenizer_config.json
    data/tokenizers/gpt2/                              vocab.json + merges.txt + tokenizer_config.json
Writes, into tests/golden/tokenizer/ (or --out), 7 files:
    bert_ids.jsonl, gpt2_ids.jsonl   one JSON array of ids per text, same order as texts.jsonl:
                                     BERT with [CLS] ... [SEP]; GPT-2 as is (its post-processor
                                     adds nothing); no truncation, no padding
    bert_cases.jsonl, gpt2_cases.jsonl
                                     truncated + padded encodings ("max_length" padding,
                                     truncation=True, i.e. longest-first for pairs):
                                     {"text", "pair", "max_length", "input_ids",
                                      "attention_mask", "token_type_ids"}; GPT-2 pads with
                                     <|endoftext|> (it has no padding token)
    bert/tokenizer.json, gpt2/tokenizer.json
                                     the fast tokenizers as Hugging Face saves them
    fixture_info.json                package versions, classes used, sha256 of texts.jsonl

Checks before writing anything: the transformers tokenizers agree with tokenizers built by hand
from the `tokenizers` package (same pipeline), and with themselves re-loaded from the saved
tokenizer.json. A disagreement is printed and the script exits with status 1 (write anyway with
--allow-mismatch; the transformers ids are the reference).
"""
import argparse
import hashlib
import json
import os
import pathlib
import platform
import sys
import tempfile

# No network, ever: everything comes from the files named above.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = pathlib.Path(__file__).resolve().parent.parent

# (text, pair or None, max_length). Long texts come from the texts file by source (see main).
BERT_CASES = [
    ("hello world", None, 8),
    ("hello world", None, 4),
    ("hello world", None, 3),
    ("", None, 4),
    ("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e", None, 6),
    ("@imdb:2", None, 16),
    ("@imdb:2", None, 128),
    ("@imdb:3", None, 10),
    ("hello world", "how are you?", 16),
    ("hello world", "how are you?", 7),
    ("@imdb:2", "short pair", 16),
    ("short text", "@imdb:2", 16),
    ("@imdb:2", "@imdb:3", 16),
    ("@imdb:2", "@imdb:3", 17),
    ("@imdb:3", "@imdb:2", 128),
    ("", "", 8),
]
GPT2_CASES = [
    ("Hello world", None, 8),
    ("Hello world", None, 2),
    ("", None, 4),
    ("@imdb:2", None, 16),
    ("@imdb:2", None, 128),
    ("before<|endoftext|>after", None, 3),
]


def fail(message):
    print(f"make_tokenizer_fixture: error: {message}", file=sys.stderr)
    sys.exit(1)


def read_texts(path):
    if not path.is_file():
        fail(f"{path} is missing; run tools/make_tokenizer_texts.py first")
    data = path.read_bytes()
    records = []
    # Split on "\n" only: the texts hold characters (U+0085, U+2028) that str.splitlines() breaks on.
    for number, line in enumerate(data.decode("utf-8").split("\n"), start=1):
        if line == "":
            continue
        record = json.loads(line)
        if not isinstance(record.get("text"), str):
            fail(f"{path}:{number}: no 'text' string")
        records.append(record)
    return records, hashlib.sha256(data).hexdigest()


def load_transformers_tokenizer(class_names, folder):
    import transformers

    for name in class_names:
        cls = getattr(transformers, name, None)
        if cls is None:
            continue
        tokenizer = cls.from_pretrained(str(folder), local_files_only=True)
        backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
        if backend is None:
            continue  # a slow (pure Python) tokenizer: not what we compare with
        return tokenizer, backend, name
    fail(f"none of {class_names} gives a fast tokenizer for {folder}")


def hand_built_bert(vocab_txt):
    from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, processors

    tokenizer = Tokenizer(models.WordPiece.from_file(str(vocab_txt), unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    tokenizer.add_special_tokens(
        [AddedToken(t, normalized=False) for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]]
    )
    return tokenizer


def hand_built_gpt2(vocab_json, merges_txt):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tokenizer = Tokenizer(models.BPE.from_file(str(vocab_json), str(merges_txt)))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens(["<|endoftext|>"])
    return tokenizer


def compare(label, texts, reference, other):
    mismatches = [i for i in range(len(texts)) if reference[i] != other[i]]
    for i in mismatches[:10]:
        print(f"  {label}: text {i} {texts[i]!r}\n    transformers: {reference[i]}\n    other:        {other[i]}",
              file=sys.stderr)
    if mismatches:
        print(f"make_tokenizer_fixture: {label}: {len(mismatches)} of {len(texts)} texts differ", file=sys.stderr)
    return len(mismatches)


def resolve(text, by_source):
    if text is not None and text.startswith("@"):
        return by_source[text[1:]]
    return text


def encode_cases(tokenizer, cases, by_source):
    out = []
    for text, pair, max_length in cases:
        text, pair = resolve(text, by_source), resolve(pair, by_source)
        encoded = tokenizer(
            text,
            pair,
            max_length=max_length,
            truncation=True,
            padding="max_length",
            return_attention_mask=True,
            return_token_type_ids=True,
        )
        out.append(
            {
                "text": text,
                "pair": pair,
                "max_length": max_length,
                "input_ids": list(encoded["input_ids"]),
                "attention_mask": list(encoded["attention_mask"]),
                "token_type_ids": list(encoded["token_type_ids"]),
            }
        )
    return out


def write_jsonl(path, rows, compact_arrays):
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for row in rows:
            if compact_arrays:
                out.write(json.dumps(row, separators=(",", ":")) + "\n")
            else:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=pathlib.Path, default=ROOT, help="repository root (default: this script's)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="folder for the fixture files (default: REPO/tests/golden/tokenizer)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="write the fixture even when the cross-checks disagree")
    args = parser.parse_args()
    repo = args.repo.resolve()
    golden = repo / "tests" / "golden" / "tokenizer"
    bert_dir = repo / "data" / "tokenizers" / "bert-base-uncased"
    gpt2_dir = repo / "data" / "tokenizers" / "gpt2"
    for path in [bert_dir / "vocab.txt", gpt2_dir / "vocab.json", gpt2_dir / "merges.txt"]:
        if not path.is_file():
            fail(f"{path} is missing")

    try:
        import tokenizers
        import transformers
    except ImportError as e:
        fail(f"needs the transformers and tokenizers packages ({e})")

    records, texts_sha256 = read_texts(golden / "texts.jsonl")
    out_dir = (args.out or golden).resolve()
    texts = [r["text"] for r in records]
    by_source = {r["source"]: r["text"] for r in records if "source" in r}
    print(f"make_tokenizer_fixture: {len(texts)} texts; transformers {transformers.__version__}, "
          f"tokenizers {tokenizers.__version__}, Python {platform.python_version()}")

    bert, bert_backend, bert_class = load_transformers_tokenizer(["BertTokenizerFast", "BertTokenizer"], bert_dir)
    gpt2, gpt2_backend, gpt2_class = load_transformers_tokenizer(["GPT2TokenizerFast", "GPT2Tokenizer"], gpt2_dir)
    print(f"make_tokenizer_fixture: {bert_class} from {bert_dir}, {gpt2_class} from {gpt2_dir}")

    bert_ids = [list(bert(t, add_special_tokens=True)["input_ids"]) for t in texts]
    gpt2_ids = [list(gpt2(t, add_special_tokens=True)["input_ids"]) for t in texts]

    # Cross-checks: a hand-built pipeline, and the backend re-loaded from its own tokenizer.json.
    from tokenizers import Tokenizer

    problems = 0
    hand_bert = hand_built_bert(bert_dir / "vocab.txt")
    hand_gpt2 = hand_built_gpt2(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt")
    problems += compare("bert vs hand-built", texts, bert_ids, [e.ids for e in hand_bert.encode_batch(texts)])
    problems += compare("gpt2 vs hand-built", texts, gpt2_ids, [e.ids for e in hand_gpt2.encode_batch(texts)])
    with tempfile.TemporaryDirectory() as tmp:
        saved = {}
        for name, backend in [("bert", bert_backend), ("gpt2", gpt2_backend)]:
            path = pathlib.Path(tmp) / f"{name}.json"
            backend.save(str(path), pretty=False)
            saved[name] = path.read_bytes()
            reloaded = Tokenizer.from_file(str(path))
            reloaded.no_truncation()
            reloaded.no_padding()
            reference = bert_ids if name == "bert" else gpt2_ids
            problems += compare(f"{name} vs its tokenizer.json", texts, reference,
                                [e.ids for e in reloaded.encode_batch(texts)])
    if problems and not args.allow_mismatch:
        fail("the cross-checks disagree (see above); nothing written (--allow-mismatch writes anyway)")

    if gpt2.pad_token is None:
        gpt2.pad_token = gpt2.eos_token  # GPT-2 has no padding token; eaq pads with <|endoftext|> too
    bert_cases = encode_cases(bert, BERT_CASES, by_source)
    gpt2_cases = encode_cases(gpt2, GPT2_CASES, by_source)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "bert_ids.jsonl", bert_ids, compact_arrays=True)
    write_jsonl(out_dir / "gpt2_ids.jsonl", gpt2_ids, compact_arrays=True)
    write_jsonl(out_dir / "bert_cases.jsonl", bert_cases, compact_arrays=False)
    write_jsonl(out_dir / "gpt2_cases.jsonl", gpt2_cases, compact_arrays=False)
    for name in ("bert", "gpt2"):
        (out_dir / name).mkdir(exist_ok=True)
        (out_dir / name / "tokenizer.json").write_bytes(saved[name])
    info = {
        "made_by": "tools/make_tokenizer_fixture.py",
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
        "bert_class": bert_class,
        "gpt2_class": gpt2_class,
        "texts": len(texts),
        "texts_sha256": texts_sha256,
        "cross_check_mismatches": problems,
    }
    (out_dir / "fixture_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    for path in sorted(out_dir.rglob("*")):
        if path.is_file() and path.name != "texts.jsonl":
            print(f"make_tokenizer_fixture: wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
