#!/usr/bin/env bash
# `make demo`: the main job on the bundled default model, offline. Measures the bundled sentiment
# classifier (models/sentiment-distilbert) on the bundled imdb sentences
# (datasets/sentiment-standard) in every precision this machine supports, and prints one table:
# accuracy, latency, throughput, energy per inference ("unavailable" where no energy meter exists).
set -euo pipefail
EAQ=${1:-build/eaq}
cd "$(dirname "$0")/.."
if "$EAQ" info | grep -q "^gpu "; then
  iters=(--num_iters 300 --warmup_steps 50)
else
  # The CPU reference is ~1000x slower than a GPU: fewer iterations keep the demo short.
  iters=(--num_iters 10 --warmup_steps 2 --min-duration-s 0)
fi
exec "$EAQ" measure --device auto --precision all --dataset datasets/sentiment-standard \
  --calibration-dataset datasets/sentiment-calibration --batch-size 32 "${iters[@]}" \
  --results-dir results/demo
