#!/usr/bin/env python3
"""Writes tests/golden/tokenizer/texts.jsonl: the texts of the tokenizer parity fixture.

Plain Python 3, no packages; deterministic. Runs anywhere:
    python3 tools/make_tokenizer_texts.py
The texts are every sentence of data/sentiment/imdb.tsv, every 10th sentence of amazon.tsv and
yelp.tsv, and a hand-written list of hard cases (below). One JSON object per line:
{"source": "imdb:12" | "amazon:30" | "hard:5", "text": "..."}.
tools/make_tokenizer_fixture.py (on a machine with Hugging Face tokenizers) turns them into ids.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SENTIMENT = ROOT / "data" / "sentiment"
OUT = ROOT / "tests" / "golden" / "tokenizer" / "texts.jsonl"

LONG_WORD = "pneumonoultramicroscopicsilicovolcanoconiosis" * 3  # 135 letters: over 100 characters
HARD_CASES = [
    # empty, whitespace-only, multiple and trailing whitespace
    "",
    " ",
    "   ",
    "\t",
    "\n",
    "\r\n",
    " \t\n\r ",
    "hello  world",
    "hello   world",
    "  leading spaces",
    "trailing spaces   ",
    "trailing newline\n",
    "tabs\tbetween\twords",
    "new\nlines\n\nand\n\n\nmore",
    "windows\r\nline\r\nends",
    "a \n b",
    "a\t\tb",
    # contractions and apostrophes
    "don't",
    "Don't stop, can't stop, won't stop.",
    "I'm sure you're right, we've seen it, they'll come, he'd go, it's fine.",
    "I'M SURE YOU'RE RIGHT",
    "'s 't 're 've 'm 'll 'd",
    "rock 'n' roll",
    "the cat's toys",
    "\u2018curly quotes\u2019 and \u201cdouble\u201d",
    "it\u2019s a typographic apostrophe",
    # accents and combining marks
    "Caf\u00e9",
    "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e",
    "Cafe\u0301 (combining acute)",
    "na\u00efve co\u00f6perate r\u00e9sum\u00e9 fa\u00e7ade",
    "\u00c0 \u00c1 \u00c2 \u00c3 \u00c4 \u00c5 \u00c6 \u00c7 \u00c8 \u00c9",
    "Stra\u00dfe und Gr\u00fc\u00dfe aus M\u00fcnchen",
    "\u0130stanbul \u0131 I",
    "\u03a3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2 \u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0401\u0436",
    "a\u0300\u0301\u0302\u0303 stacked marks",
    "\u1e9b\u0323 and \u212b and \u2126",
    "\ufb01ne \ufb02ow (ligatures)",
    "\u00bd \u00b2 \u2460 \u2167 (number forms)",
    # CJK and other scripts
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01",
    "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\u30ab\u30bf\u30ab\u30ca",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0645\u0646 \u0627\u0644\u064a\u0645\u064a\u0646",
    "\u05e2\u05d1\u05e8\u05d9\u05ea",
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e",
    "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22",
    "mixed English \u4e2d\u6587 and \u65e5\u672c\u8a9e and \u0440\u0443\u0441\u0441\u043a\u0438\u0439",
    "\U00020000\U0002a700\U0002b820\U0002b920 (CJK extensions)",
    "\uf900\ufa0e (compatibility ideographs)",
    "\u3000ideographic\u3000space\u3000",
    # emoji, ZWJ sequences, flags, skin tones, variation selectors
    "I love it \U0001f60d\U0001f60d\U0001f60d",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family",
    "\U0001f44d\U0001f3fd thumbs up",
    "\U0001f1fa\U0001f1f8 \U0001f1ef\U0001f1f5 flags",
    "\u2764\ufe0f heart with variation selector",
    "\U0001f3f3\ufe0f\u200d\U0001f308 rainbow flag",
    "emoji\U0001f600inside\U0001f600words",
    # control characters, zero-width and special spaces
    "nul\u0000char",
    "bell\u0007and\u001bescape",
    "delete\u007fchar",
    "vertical\u000btab and form\u000cfeed",
    "next\u0085line (NEL)",
    "line\u2028separator and paragraph\u2029separator",
    "non\u00a0breaking\u00a0space",
    "narrow\u202fno-break and figure\u2007space",
    "zero\u200bwidth\u200bspace",
    "zero\u200cwidth\u200dnon-joiner and joiner",
    "byte\ufefforder mark",
    "\ufeffleading BOM",
    "soft\u00adhyphen",
    "left\u200eto\u200fright marks",
    "replacement \ufffd character",
    "private use \ue000\uf8ff",
    "en\u2002em\u2003thin\u2009hair\u200aspaces",
    "ogham\u1680space",
    "information\u001fseparator",
    # long words
    LONG_WORD,
    "the word " + LONG_WORD + " is long",
    "a" * 100,
    "a" * 101,
    "\u00e9" * 101,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "x" * 300,
    # numbers
    "1234567890",
    "3.14159 and 2,718 and 1e-10",
    "$1,000,000.00 or \u20ac99.99 or \u00a35",
    "50% off, 24/7, 9-5, 1st 2nd 3rd 4th",
    "\u0660\u0661\u0662 \u0966\u0967\u0968 (other digits)",
    "phone: +1 (555) 123-4567",
    "2024-01-15T10:30:00Z",
    # URLs, emails, code, symbols
    "https://www.example.com/path?query=1&other=two#anchor",
    "visit http://example.org or www.test.co.uk today",
    "mail me at someone@example.com",
    "#hashtag @mention",
    "def f(x): return x ** 2  # python",
    "if (a <= b && c != d) { return a->b; }",
    "C:\\Users\\name\\file.txt",
    "~!@#$%^&*()_+`-={}|[]\\:\";'<>?,./",
    "\u00a9 \u00ae \u2122 \u00a7 \u00b6 \u2020 \u2021 \u2022 \u2026",
    "\u2014em dash\u2013en dash\u2010hyphen",
    "\u00bfQu\u00e9? \u00a1S\u00ed!",
    "\u00abguillemets\u00bb \u300cbrackets\u300d",
    "math: \u2200x\u2208\u211d, x\u00b2 \u2265 0 \u221e",
    "...!!!???",
    "!!!",
    "a.b.c",
    "U.S.A. e.g. i.e.",
    "____",
    "<html><body>tags</body></html>",
    # special tokens written in the text
    "[CLS] hello [SEP]",
    "[cls] lower-case special",
    "hello[SEP]world",
    "[MASK] is a [PAD] [UNK]",
    "<|endoftext|>",
    "before<|endoftext|>after",
    "two <|endoftext|><|endoftext|> markers",
    "<|endoftext",
    # casing
    "HELLO WORLD",
    "hElLo WoRlD",
    "CamelCaseWordsJoined",
    "snake_case_words",
    "kebab-case-words",
    # repeated and odd punctuation
    "This movie is \"great\"!!!",
    "Well... I don't know -- maybe?",
    "(parenthetical) [bracketed] {braced}",
    "smile :) frown :( wink ;)",
]


def read_tsv(path):
    lines = path.read_text(encoding="utf-8").split("\n")
    header = lines[0].split("\t")
    assert header == ["sentence", "label"], f"{path}: unexpected header {header}"
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if line == "":
            continue
        fields = line.split("\t")
        assert len(fields) == 2, f"{path}:{number}: expected 2 fields"
        rows.append((number, fields[0]))
    return rows


def main():
    records = []
    for number, sentence in read_tsv(SENTIMENT / "imdb.tsv"):
        records.append({"source": f"imdb:{number}", "text": sentence})
    for name in ("amazon", "yelp"):
        for index, (number, sentence) in enumerate(read_tsv(SENTIMENT / f"{name}.tsv")):
            if index % 10 == 0:
                records.append({"source": f"{name}:{number}", "text": sentence})
    for index, text in enumerate(HARD_CASES):
        records.append({"source": f"hard:{index}", "text": text})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} texts to {OUT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
