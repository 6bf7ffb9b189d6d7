#!/usr/bin/env bash
# Regenerates the bundled pre-tokenized datasets in datasets/ with `eaq tokenize`:
#   sentiment-small (50), sentiment-standard (500), sentiment-large (1000), and
#   sentiment-calibration (256, from yelp.tsv: int8-static calibration)
# all from data/sentiment/imdb.tsv (the held-out test set, see data/README.md), balanced
# between the two labels, bert-base-uncased vocabulary, max length 128.
# The same seed for all three makes them nested: small is in standard, standard in large.
# Deterministic: the same eaq build gives the same bytes (the metadata names the build).
#
# Usage: scripts/make_datasets.sh [EAQ_BINARY]     (default: build/eaq; run from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."
eaq="${1:-build/eaq}"
[ -x "$eaq" ] || { echo "make_datasets: $eaq not found; build first (make build)" >&2; exit 1; }
echo "make_datasets: using $("$eaq" --version)"

make_one() {
  local name="$1" count="$2"
  "$eaq" tokenize --tokenizer data/tokenizers/bert-base-uncased --input data/sentiment/imdb.tsv \
    --output "datasets/$name" --max-length 128 --limit "$count" --balance --shuffle-seed 0 \
    --label-names negative,positive
}

make_one sentiment-small 50
make_one sentiment-standard 500
make_one sentiment-large 1000

# Calibration data for int8-static: training-distribution sentences (yelp.tsv, part of the bundled
# model's training data), never the imdb test sentences.
"$eaq" tokenize --tokenizer data/tokenizers/bert-base-uncased --input data/sentiment/yelp.tsv \
  --output datasets/sentiment-calibration --max-length 128 --limit 256 --balance --shuffle-seed 0 \
  --label-names negative,positive
