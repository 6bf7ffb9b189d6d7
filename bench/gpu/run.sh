#!/usr/bin/env bash
# One entry point for work on the GPU machine (see docs/gpu-workflow.md). Stages run in the order
# given; logs and results go to $OUT (the device tool brings them back).
#
#   bash bench/gpu/run.sh golden test train-quick
#
# Binaries come prebuilt in .carry/bin (built on the development machine: `make gpu-carry`), or
# are built here when EAQ_BUILD_HERE=1.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/.device-out}
mkdir -p "$OUT"
BIN=${EAQ_BIN:-$ROOT/.carry/bin}
export EAQ_SOURCE_DIR=$ROOT EAQ_BINARY=$BIN/eaq PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
status=0
# Binaries travel xz-compressed (the working tree that travels is limited to 64 MiB); Python's
# lzma unpacks them where the xz tool is missing.
for f in "$BIN"/*.xz; do
  [ -e "$f" ] || continue
  python3 -c 'import lzma, os, sys; src = sys.argv[1]; open(src[:-3], "wb").write(lzma.open(src).read()); os.remove(src)' "$f"
done
for f in "$BIN"/*.gz; do [ -e "$f" ] && gunzip -f "$f"; done
chmod +x "$BIN"/* 2>/dev/null

note() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

# A same-binary A/B on the GPT-2 124M shape: `eaq measure` with the environment variable $1 set to
# 0, then to 1 (or to each of EAQ_AB_VALUES); EAQ_AB_ROUNDS (default 1) repeats the pair. $1 may
# name several variables, comma-separated, and each value then sets them in order ("1,0").
# $2 names the logs ($OUT/$2-r<round>-<value>.log) and result folders, $3 says what the switch is;
# the rest are measure's options (new tokens, precisions, batch sizes, duration).
gpt2_ab() {
  local var=$1 name=$2 what=$3
  shift 3
  [ -d /tmp/eaq-models/gpt2 ] || python3 bench/gpu/make_random_models.py --out /tmp/eaq-models --which gpt2 | tail -1
  rm -rf "/tmp/$name"
  local round value log vars values settings i
  IFS=, read -ra vars <<< "$var"
  for round in $(seq 1 "${EAQ_AB_ROUNDS:-1}"); do
    for value in ${EAQ_AB_VALUES:-0 1}; do
      IFS=, read -ra values <<< "$value"
      settings=()
      for i in "${!vars[@]}"; do settings+=("${vars[$i]}=${values[$i]}"); done
      log="$OUT/$name-r$round-${value//,/}.log"
      env "${settings[@]}" "$BIN/eaq" measure --model /tmp/eaq-models/gpt2 --task generation --prompt-len 128 \
        --num_iters 100 --warmup_steps 20 --idle-seconds 1 "$@" \
        --results-dir "/tmp/$name/r$round/${var//,/-}-${value//,/-}" > "$log" 2>&1 || status=1
      echo "$what $value (round $round):"
      # Each result row's decode numbers, from the run's CSV files.
      python3 - "/tmp/$name/r$round/${var//,/-}-${value//,/-}" <<'PY'
import csv, glob, sys
for path in sorted(glob.glob(sys.argv[1] + "/**/*.csv", recursive=True)):
    for row in csv.DictReader(open(path)):
        print("  %s batch %s: %s tokens/s, %s mJ per token (%s above idle), idle %s W" % tuple(
            row.get(k, "?") for k in ("precision", "batch_size", "decode_tokens_per_s",
                                      "energy_per_inference_mj", "dynamic_energy_per_inference_mj",
                                      "idle_power_w")))
PY
    done
  done
}

# gpt2_ab of switch(es) $1 (comma-separated) as stage $2: fp16 (EAQ_GPT2_PRECISIONS) at batch 1,
# prompt 128, 256 new tokens, each run's line labelled "$1 = value".
batch1_switch_ab() {
  gpt2_ab "$1" "$2" "$1 =" --new-tokens 256 --precision "${EAQ_GPT2_PRECISIONS:-fp16}" \
    --batch-size 1 --min-duration-s 2
}

stage_info() {
  note "machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.sm,temperature.gpu --format=csv
  "$BIN/eaq" info || status=1
  git -C "$ROOT" log -1 --format='commit %h %s' 2>/dev/null || true
}

stage_golden() {
  note "golden fixtures (tools/make_golden.py)"
  python3 tools/make_golden.py --out tests/golden --pack "$OUT" 2>&1 | tail -25 || status=1
}

stage_tokenizer_fixture() {
  note "tokenizer parity fixture (tools/make_tokenizer_fixture.py)"
  python3 tools/make_tokenizer_fixture.py --out tests/golden/tokenizer 2>&1 | tail -15
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  tar czf "$OUT/tokenizer-fixture.tar.gz" tests/golden/tokenizer || status=1
}

stage_test() {
  note "unit tests, GPU included"
  # EAQ_TEST_FILTER narrows the run (e.g. 'Cuda*' for the GPU tests alone).
  # The log is written whole before it is filtered: a pipe into `head` would end the tests early.
  "$BIN/eaq_tests" --gtest_brief=1 --gtest_filter="${EAQ_TEST_FILTER:-*}" > "$OUT/tests.log" 2>&1 || status=1
  grep -E "^\[ (attention|encoder|default|decoder|quant|fused|split-k|bounded) |FAILED|PASSED|SKIPPED|Failure|error|Which is|Expected|actual" "$OUT/tests.log" | head -150
}

stage_gemm() {
  note "GEMM micro-benchmark of the quantized paths (eaq_gemm_bench)"
  "$BIN/eaq_gemm_bench" 2>&1 | tee "$OUT/gemm_bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}

# Where the energy goes: synthetic kernels (HBM and L2 reads on all or fewer SMs, busy and sleeping
# SMs, launches) between reads of the energy counter (bench/gpu/energy_probe.cpp).
stage_energy_probe() {
  note "energy probe (eaq_energy_probe)"
  "$BIN/eaq_energy_probe" 2>&1 | tee "$OUT/energy_probe.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}

stage_gemv() {
  note "decode GEMVs: eaq vs cuBLASLt (eaq_gemm_bench --only gemv), dependent launch on, then off"
  "$BIN/eaq_gemm_bench" --only gemv 2>&1 | tee "$OUT/gemv_bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  EAQ_DEPENDENT_LAUNCH=0 "$BIN/eaq_gemm_bench" --only gemv 2>&1 | tee "$OUT/gemv_bench_no_pdl.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  note "decode attention (eaq_gemm_bench --only attention)"
  "$BIN/eaq_gemm_bench" --only attention 2>&1 | tee "$OUT/attention_bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}

# A prompt's kernels: the GEMMs at 128-512 rows (eaq split-K vs cuBLASLt) and attention (every
# kernel); then GPT-2's time to first token with the split-K GEMM off (the default) and on
# (EAQ_SPLIT_K_GEMM=1).
stage_prefill() {
  note "prefill GEMMs: eaq split-K vs cuBLASLt (eaq_gemm_bench --only prefill)"
  "$BIN/eaq_gemm_bench" --only prefill 2>&1 | tee "$OUT/prefill_gemm_bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  note "attention kernels (eaq_gemm_bench --only attention)"
  "$BIN/eaq_gemm_bench" --only attention 2>&1 | tee "$OUT/attention_bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  note "GPT-2 124M shape: split-K GEMM off, then on (time to first token)"
  gpt2_ab EAQ_SPLIT_K_GEMM split-k-gpt2 "split-K GEMM" --new-tokens 64 --precision fp16,bf16 \
    --batch-size 1 --min-duration-s 1
}

stage_quant_test() {
  note "quantization tests only (GPU included)"
  "$BIN/eaq_tests" --gtest_brief=1 --gtest_filter='CudaQuant*:CpuInt8*:Quant*:AbsHistogram*:Calibrat*' 2>&1 \
    | tee "$OUT/quant_tests.log" | grep -E "^\[ quant |FAILED|PASSED|SKIPPED|Failure|error|Which is|Expected|actual" | head -150
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}

stage_train() {
  local which=$1
  note "train bundled model: $which"
  local extra=()
  [ "$which" = quick ] && extra=(--quick) || extra=(--only "$which")
  python3 tools/train_bundled_models.py --data .carry/data --out /tmp/bundled-$which "${extra[@]}" --pack "$OUT" 2>&1 | tail -40
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}

# Issue 4/5 benchmark: DistilBERT-default shape (random weights), seq 128, batch 1/32/128, every
# float precision, CUDA graphs on (and off at batch 1), beside the Hugging Face peer.
stage_bench_encoder() {
  note "benchmark: DistilBERT-default shape, eaq"
  python3 bench/gpu/make_random_models.py --out /tmp/eaq-models --which distilbert | tail -2
  local res=/tmp/bench-encoder
  rm -rf "$res"
  "$BIN/eaq" measure --model /tmp/eaq-models/distilbert --dataset datasets/sentiment-large \
    --precision ${EAQ_BENCH_PRECISIONS:-fp32,tf32,fp16,fp16-autocast,bf16,int8,int8-static,int8-wo,fp8} \
    --calibration-dataset datasets/sentiment-calibration --batch-size 1,32,128 \
    --num_iters 200 --warmup_steps 50 --idle-seconds 1 --min-duration-s 3 \
    --results-dir "$res" > "$OUT/bench-encoder.log" 2>&1 || status=1
  tail -20 "$OUT/bench-encoder.log"
  "$BIN/eaq" measure --model /tmp/eaq-models/distilbert --dataset datasets/sentiment-large \
    --precision fp16 --batch-size 1 --no-cuda-graphs --num_iters 200 --warmup_steps 50 \
    --idle-seconds 1 --min-duration-s 3 --results-dir "$res/no-graphs" >> "$OUT/bench-encoder.log" 2>&1 || status=1
  note "benchmark: DistilBERT-default shape, Hugging Face peer (eager)"
  : > "$OUT/peer-encoder.jsonl"
  for p in ${EAQ_PEER_PRECISIONS:-fp16 fp32}; do
    python3 bench/gpu/hf_baseline.py --model distilbert --precision "$p" --batch-sizes 1,32,128 \
      --seq-len 128 --mode eager --min-seconds 2 2>/dev/null | tee -a "$OUT/peer-encoder.jsonl"
  done
  python3 bench/gpu/summarize.py --results "$res" --peer "$OUT/peer-encoder.jsonl" \
    --title "DistilBERT-default shape (random weights), seq 128" | tee "$OUT/bench-encoder.md"
}

# Issue 8 benchmark: GPT-2 124M shape (random weights), prompt 128, 256 new tokens, batch 1 and 32,
# beside the Hugging Face peer (eager attention, cuDNN SDPA off: its best decode here).
stage_bench_gpt2() {
  note "benchmark: GPT-2 124M shape, eaq"
  python3 bench/gpu/make_random_models.py --out /tmp/eaq-models --which gpt2 | tail -1
  local res=/tmp/bench-gpt2
  rm -rf "$res"
  "$BIN/eaq" measure --model /tmp/eaq-models/gpt2 --task generation --prompt-len 128 --new-tokens 256 \
    --precision ${EAQ_GPT2_PRECISIONS:-fp32,tf32,fp16,bf16,int8,int8-wo,fp8} --batch-size 1,32 --num_iters 100 --warmup_steps 20 \
    --idle-seconds 1 --min-duration-s 2 --results-dir "$res" > "$OUT/bench-gpt2.log" 2>&1 || status=1
  "$BIN/eaq" measure --model /tmp/eaq-models/gpt2 --task generation --prompt-len 128 --new-tokens 256 \
    --precision fp16 --batch-size 1 --no-sync-each-iter --num_iters 100 --warmup_steps 20 \
    --idle-seconds 1 --min-duration-s 2 --results-dir "$res/no-sync" >> "$OUT/bench-gpt2.log" 2>&1 || status=1
  grep -A12 "^| precision" "$OUT/bench-gpt2.log" | head -30
  note "benchmark: GPT-2 124M shape, Hugging Face peer (eager attention)"
  python3 bench/gpu/hf_baseline.py --model gpt2 --precision fp16 --prompt-len 128 --new-tokens 256 \
    --mode eager --attn eager --no-cudnn-sdp --min-seconds 2 2>/dev/null | tee "$OUT/peer-gpt2.jsonl"
  python3 bench/gpu/summarize.py --results "$res" --peer "$OUT/peer-gpt2.jsonl" \
    --title "GPT-2 124M shape (random weights), prompt 128, 256 new tokens" | tee "$OUT/bench-gpt2.md"
}

# What programmatic dependent launch buys a decode step: the same binary with it off
# (EAQ_DEPENDENT_LAUNCH=0) and on, fp16 and bf16, batch 1 and 32.
stage_pdl_gpt2() {
  note "GPT-2 124M shape: dependent launch off, then on"
  gpt2_ab EAQ_DEPENDENT_LAUNCH pdl-gpt2 "dependent launch" --new-tokens 256 --precision fp16,bf16 \
    --batch-size 1,32 --min-duration-s 2
}

# The fused decode step (one kernel per step at batch 1, decode_step.cu, opt-in) against the
# default op-by-op step: the same binary with EAQ_FUSED_DECODE=0 and =1, fp16 and bf16, batch 1.
stage_fused_gpt2() {
  note "GPT-2 124M shape: fused decode step off, then on"
  gpt2_ab EAQ_FUSED_DECODE fused-gpt2 "fused decode step" --new-tokens 256 \
    --precision "${EAQ_GPT2_PRECISIONS:-fp16,bf16}" --batch-size 1 --min-duration-s 2
}

# What storing the prompt's K/V inside the prefill attention buys: time to first token with the
# separate cache write (EAQ_PREFILL_KV_STORE=0) and with the store in the kernel, fp16, batch 1.
stage_store_gpt2() {
  note "GPT-2 124M shape: prefill K/V store as a cache write, then in the attention kernel"
  gpt2_ab EAQ_PREFILL_KV_STORE store-gpt2 "K/V store in the attention kernel" --new-tokens 64 \
    --precision fp16,bf16 --batch-size 1 --min-duration-s 1
}

# What timing cuBLASLt's candidates buys over the heuristic's first choice: EAQ_LT_TUNE=0, then 1
# (every precision whose GEMMs are cuBLASLt's at batch 1: tf32 and the quantized ones).
stage_tune_gpt2() {
  note "GPT-2 124M shape: cuBLASLt heuristic's first algorithm, then the fastest timed candidate"
  gpt2_ab EAQ_LT_TUNE tune-gpt2 "cuBLASLt candidates timed" --new-tokens 256 \
    --precision "${EAQ_GPT2_PRECISIONS:-fp16,tf32,int8,fp8}" --batch-size 1 --min-duration-s 2
}

# What the one-kernel LayerNorm + QKV GEMV + attention (qkv_attention.cu) buys a batch-1 decode
# step: EAQ_FUSED_QKV_ATTENTION=0 (two kernels per layer), then 1, fp16 and bf16.
stage_qkv_gpt2() {
  note "GPT-2 124M shape: LayerNorm + QKV GEMV and attention as two kernels, then as one"
  gpt2_ab EAQ_FUSED_QKV_ATTENTION qkv-gpt2 "one-kernel QKV + attention" --new-tokens 256 \
    --precision "${EAQ_GPT2_PRECISIONS:-fp16,bf16}" --batch-size 1 --min-duration-s 2
}

stage_qgemv_gpt2() {
  note "GPT-2 124M shape: quantized decode steps on the GEMM path, then on the quantized GEMV"
  gpt2_ab EAQ_QUANTIZED_GEMV qgemv-gpt2 "quantized GEMV" --new-tokens 256 \
    --precision "${EAQ_GPT2_PRECISIONS:-int8,int8-wo,fp8}" --batch-size 1 --min-duration-s 2
}

# int8 GEMMs of a prompt (and of a batch-32 step) on 128 x 128 tiles, then on 64 x 64 tiles with K
# split over a thread-block cluster (int8_split_k_gemm.cu).
stage_int8split_gpt2() {
  note "GPT-2 124M shape: int8 GEMMs on 128 x 128 tiles, then split-K 64 x 64 tiles"
  gpt2_ab EAQ_INT8_SPLIT_K int8split-gpt2 "int8 split-K GEMM" --new-tokens 64 \
    --precision int8 --batch-size 1,32 --min-duration-s 2
}

stage_bounded_gpt2() {
  note "GPT-2 124M shape: a batch-1 greedy step's LM head as every logit + argmax, then the bounded argmax"
  gpt2_ab EAQ_BOUNDED_ARGMAX bounded-gpt2 "bounded argmax head" --new-tokens 256 \
    --precision "${EAQ_GPT2_PRECISIONS:-fp16,bf16,int8,int8-wo,fp8}" --batch-size 1 --min-duration-s 2
}

stage_scores_gpt2() {
  note "GPT-2 124M shape: the bounded argmax's scores kernel shifting its rows ahead, then unrolled (no moves)"
  gpt2_ab EAQ_SCORES_ROTATE scores-gpt2 "scores kernel unrolled" --new-tokens 256 \
    --precision "${EAQ_GPT2_PRECISIONS:-fp16,int8}" --batch-size 1 --min-duration-s 2
}

stage_stepstart_gpt2() {
  note "GPT-2 124M shape: a decode step's key mask, token and embedding as three launches, then as one dependent kernel"
  gpt2_ab EAQ_STEP_START_KERNEL stepstart-gpt2 "step start in one kernel" --new-tokens 256 \
    --precision "${EAQ_GPT2_PRECISIONS:-fp16,int8}" --batch-size 1 --min-duration-s 2
}

stage_prefillmma_gpt2() {
  note "GPT-2 124M shape: the prompt's attention on the WMMA prefill kernel, then in registers (mma.sync)"
  gpt2_ab EAQ_PREFILL_MMA prefillmma-gpt2 "prefill attention in registers" --new-tokens 64 \
    --precision "${EAQ_GPT2_PRECISIONS:-fp16,bf16}" --batch-size 1 --min-duration-s 2
}

stage_mlppending_gpt2() {
  note "GPT-2 124M shape: a batch-1 step's feed-forward block as two GEMV kernels (the default), then as one that leaves its sum pending"
  gpt2_ab EAQ_MLP_PENDING mlppending-gpt2 "feed-forward block in one kernel" --new-tokens 256 \
    --precision "${EAQ_GPT2_PRECISIONS:-fp16,bf16}" --batch-size 1 --min-duration-s 2
}

stage_earlylaunch_gpt2() {
  note "GPT-2 124M shape: a batch-1 step's kernels letting the next launch after their wait, then before it (the default; EAQ_MLP_PENDING=${EAQ_MLP_PENDING:-0})"
  gpt2_ab EAQ_EARLY_LAUNCH earlylaunch-gpt2 "next kernel launched before the wait" --new-tokens 256 \
    --precision "${EAQ_GPT2_PRECISIONS:-fp16,bf16}" --batch-size 1 --min-duration-s 2
}

stage_splitrow_gpt2() {
  note "GPT-2 124M shape: a batch-1 step's GEMVs with features over a block's warps, then with k split over them (the default)"
  gpt2_ab EAQ_SPLIT_ROW_GEMV splitrow-gpt2 "k split over the warps" --new-tokens 256 \
    --precision "${EAQ_GPT2_PRECISIONS:-fp16,bf16}" --batch-size 1 --min-duration-s 2
}

stage_attnpending_gpt2() {
  note "GPT-2 124M shape: a batch-1 step's attention projection as its own GEMV kernel (the default), then folded into the QKV + attention kernel with its sum left pending"
  gpt2_ab EAQ_ATTENTION_PENDING attnpending-gpt2 "attention projection left pending" --new-tokens 256 \
    --precision "${EAQ_GPT2_PRECISIONS:-fp16,bf16}" --batch-size 1 --min-duration-s 2
}

stage_scoresint8_gpt2() {
  note "GPT-2 124M shape: the bounded head's scores kernel with x in f32, then quantized to int8 (dp4a; the default)"
  gpt2_ab EAQ_SCORES_INT8 scoresint8-gpt2 "scores as int8 x int8" --new-tokens 256 \
    --precision "${EAQ_GPT2_PRECISIONS:-fp16,bf16}" --batch-size 1 --min-duration-s 2
}

# The batch-1 QKV + attention kernel (and the bounded head's scores) reading x once a block
# (EAQ_STAGE_X) and its softmax kept by warps (EAQ_WARP_SOFTMAX): both off, each alone, both on
# (the default), one process each, EAQ_AB_ROUNDS times.
stage_stagex_gpt2() {
  note "GPT-2 124M shape: x read by every warp or once a block, the attention's softmax by the block or by warps"
  EAQ_AB_VALUES="0,0 1,0 0,1 1,1" gpt2_ab EAQ_STAGE_X,EAQ_WARP_SOFTMAX stagex-gpt2 \
    "EAQ_STAGE_X,EAQ_WARP_SOFTMAX =" --new-tokens 256 --precision "${EAQ_GPT2_PRECISIONS:-fp16}" \
    --batch-size 1 --min-duration-s 2
}

# What a warp's sums sharing their shuffles buys (EAQ_SHARED_SHUFFLES; the same bits): the
# one-row GEMVs, the QKV + attention kernel and the bounded head's scores (docs/results.md, the
# twentieth session).
stage_shuffles_gpt2() {
  note "GPT-2 124M shape: a warp's sums one at a time or sharing their shuffles"
  batch1_switch_ab EAQ_SHARED_SHUFFLES shuffles-gpt2
}

# What the one-row GEMVs' products on the tensor cores buy (EAQ_MMA_GEMV; the sums in another
# order): fewer instructions between the wait and the output.
stage_mma_gpt2() {
  note "GPT-2 124M shape: the one-row GEMVs' products on FMAs or on the tensor cores"
  batch1_switch_ab EAQ_MMA_GEMV mma-gpt2
}

# The head's select kernel reading x only in warps with a candidate (EAQ_SELECT_LAZY_X) and
# advancing the step's counters in its last block instead of a kernel of their own
# (EAQ_SELECT_INCREMENT); both the same tokens.
stage_select_gpt2() {
  note "GPT-2 124M shape: the head's select kernel, x read lazily and the counters advanced in it"
  EAQ_AB_VALUES="${EAQ_AB_VALUES:-0,0 1,1}" batch1_switch_ab EAQ_SELECT_LAZY_X,EAQ_SELECT_INCREMENT select-gpt2
}

# The head's select blocks counting their arrival with a release-acquire atomic instead of a
# fence and a relaxed atomic (EAQ_SELECT_ACQ_REL; the same tokens).
stage_acqrel_gpt2() {
  note "GPT-2 124M shape: the select kernel's arrivals behind fences or release-acquire"
  batch1_switch_ab EAQ_SELECT_ACQ_REL acqrel-gpt2
}

# What the step gate buys a loop that syncs after every step (EAQ_STEP_GATE; the same tokens):
# the next step enqueued while the one before runs and held on the device until the host has seen
# it finish, instead of launched after the sync. Then the same steps without a sync, for scale.
stage_gate_gpt2() {
  note "GPT-2 124M shape: each step launched after the sync, or enqueued ahead behind a gate"
  batch1_switch_ab EAQ_STEP_GATE gate-gpt2
  EAQ_AB_VALUES=1 gpt2_ab EAQ_STEP_GATE gate-nosync-gpt2 "no sync per step, EAQ_STEP_GATE =" \
    --new-tokens 256 --precision "${EAQ_GPT2_PRECISIONS:-fp16}" --batch-size 1 --min-duration-s 2 \
    --no-sync-each-iter
}

# How many rows a bounded greedy head would compute exactly with a copy of 8 down to 4 bits a value
# (bench/gpu/head_bits_probe.py: Hugging Face's GPT-2 in f32, eaq's default prompt, 128 steps).
stage_head_bits() {
  note "GPT-2 124M shape: the bounded head's candidates with a copy of fewer bits"
  [ -d /tmp/eaq-models/gpt2 ] || python3 bench/gpu/make_random_models.py --out /tmp/eaq-models --which gpt2 | tail -1
  python3 bench/gpu/head_bits_probe.py --model /tmp/eaq-models/gpt2 2>&1 | grep -v -i "warning\|loading" \
    | tee "$OUT/head-bits.md" || status=1
}

# What loading the one-row GEMV's residual right after the wait buys (EAQ_EARLY_RESIDUAL; the
# same bits): the attention and MLP projections' last barrier no longer waits on an L2 read.
stage_residual_gpt2() {
  note "GPT-2 124M shape: the projections' residual loaded at the end or right after the wait"
  batch1_switch_ab EAQ_EARLY_RESIDUAL residual-gpt2
}

# Where the batch-1 QKV + attention kernel spends its time: EAQ_QKV_TIMELINE=1 prints the mean
# cycles of each of its phases when the process ends (docs/results.md, the nineteenth session).
stage_qkvtimeline_gpt2() {
  note "GPT-2 124M shape: the QKV + attention kernel's phases (EAQ_QKV_TIMELINE=1)"
  [ -d /tmp/eaq-models/gpt2 ] || python3 bench/gpu/make_random_models.py --out /tmp/eaq-models --which gpt2 | tail -1
  local p log
  for p in ${EAQ_GPT2_PRECISIONS:-fp16 int8}; do
    log="$OUT/qkvtimeline-gpt2-$p.log"
    EAQ_QKV_TIMELINE=1 "$BIN/eaq" measure --model /tmp/eaq-models/gpt2 --task generation \
      --prompt-len 128 --new-tokens 256 --num_iters 100 --warmup_steps 20 --idle-seconds 1 \
      --batch-size 1 --min-duration-s 2 --precision "$p" --results-dir "/tmp/qkvtimeline-gpt2/$p" \
      > "$log" 2>&1 || status=1
    grep -A9 "^EAQ_QKV_TIMELINE" "$log"
  done
}

stage_blockquant_gpt2() {
  note "GPT-2 124M shape: the 8-bit precisions' batch-1 MLP projection loading (and quantizing) x in every warp, then staged once per block"
  gpt2_ab EAQ_BLOCK_QUANTIZE_ROW blockquant-gpt2 "the wide row staged once per block" --new-tokens 256 \
    --precision int8,int8-wo,fp8 --batch-size 1 --min-duration-s 2
}

stage_wide_gpt2() {
  note "GPT-2 124M shape: a batch-1 step's MLP projection (k 3072) on the shared-memory GEMV, then the register one"
  gpt2_ab EAQ_WIDE_ROW_GEMV wide-gpt2 "register GEMV for k 3072" --new-tokens 256 \
    --precision "${EAQ_GPT2_PRECISIONS:-fp16,bf16,int8,int8-wo,fp8}" --batch-size 1 --min-duration-s 2
}

# Where the fused decode step spends its time (EAQ_DECODE_TIMELINE=1: the last block's clock per
# phase).
stage_timeline_gpt2() {
  note "GPT-2 124M shape: fused decode step timeline, fp16, batch 1"
  [ -d /tmp/eaq-models/gpt2 ] || python3 bench/gpu/make_random_models.py --out /tmp/eaq-models --which gpt2 | tail -1
  EAQ_FUSED_DECODE=1 EAQ_DECODE_TIMELINE=1 "$BIN/eaq" measure --model /tmp/eaq-models/gpt2 --task generation --prompt-len 128 \
    --new-tokens 256 --precision fp16 --batch-size 1 --num_iters 20 --warmup_steps 5 --idle-seconds 0 \
    --min-duration-s 0 --power-source none --results-dir /tmp/timeline-gpt2 2>&1 | sed -n '/EAQ_DECODE_TIMELINE/,$p' | head -24
}

# Where the GPT-2 prefill and decode graphs spend their GPU time: every kernel's start and end
# recorded by tools/kernel_trace.cpp (CUPTI, injected; graph nodes included), summarized per
# kernel (duration and the gap before it) by graph_timeline.py. fp16 alone, then fp16 as the third
# precision of one process (as in bench-gpt2); EAQ_LT_LOG=1 prints which cuBLASLt candidate each
# layer chose.
stage_trace_gpt2() {
  [ -d /tmp/eaq-models/gpt2 ] || python3 bench/gpu/make_random_models.py --out /tmp/eaq-models --which gpt2 | tail -1
  for precisions in ${EAQ_TRACE_PRECISIONS:-fp16 fp32,tf32,fp16}; do
    local name="trace-gpt2-${precisions//,/-}"
    note "kernel trace: GPT-2 124M shape, --precision $precisions, batch 1"
    EAQ_LT_LOG=1 CUDA_INJECTION64_PATH="$BIN/libeaq_kernel_trace.so" EAQ_KERNEL_TRACE="/tmp/$name.csv" \
      LD_LIBRARY_PATH="$BIN:$LD_LIBRARY_PATH" "$BIN/eaq" measure --model /tmp/eaq-models/gpt2 \
      --task generation --prompt-len 128 --new-tokens 64 --precision "$precisions" --batch-size 1 \
      --num_iters 40 --warmup_steps 5 --idle-seconds 0 --min-duration-s "${EAQ_TRACE_MIN_S:-0}" --power-source none \
      --results-dir "/tmp/$name" > "$OUT/$name.log" 2>&1 || status=1
    grep -E "^cuBLASLt|kernel_trace" "$OUT/$name.log" | head -80
    grep -A8 "^| precision" "$OUT/$name.log" | head -10
    python3 bench/gpu/graph_timeline.py "/tmp/$name.csv" > "$OUT/$name.txt" || status=1
    head -${EAQ_TRACE_LINES:-400} "$OUT/$name.txt"
  done
}

# The bundled classifier on the bundled dataset in every precision this GPU supports (make demo).
stage_demo() {
  note "demo: bundled sentiment model, every precision"
  "$BIN/eaq" measure --dataset datasets/sentiment-standard --precision all --batch-size 32 \
    --calibration-dataset datasets/sentiment-calibration \
    --num_iters 200 --idle-seconds 1 --results-dir /tmp/demo-results > "$OUT/demo.log" 2>&1 || status=1
  tail -15 "$OUT/demo.log"
  python3 bench/gpu/summarize.py --results /tmp/demo-results --title "bundled sentiment-distilbert, sentiment-standard (500 imdb sentences)" | tee "$OUT/demo.md"
}

# Where a forward spends its GPU time: every op timed with CUDA events (graphs off).
stage_profile() {
  note "profile: GPU time per op"
  [ -d /tmp/eaq-models/distilbert ] || python3 bench/gpu/make_random_models.py --out /tmp/eaq-models --which distilbert | tail -1
  for cfg in "fp16 128" "fp16 1" "fp32 128"; do
    set -- $cfg
    echo "--- precision $1, batch $2"
    EAQ_PROFILE_OPS=1 "$BIN/eaq" measure --model /tmp/eaq-models/distilbert --dataset datasets/sentiment-large \
      --precision "$1" --batch-size "$2" --num_iters 20 --warmup_steps 5 --idle-seconds 0 --min-duration-s 0 \
      --power-source none --results-dir /tmp/profile-results 2>&1 | sed -n '/EAQ_PROFILE_OPS/,$p' | head -24
  done
}

stage_profile_gpt2() {
  note "profile: GPT-2 124M shape, fp16, batch 1 (graphs off)"
  [ -d /tmp/eaq-models/gpt2 ] || python3 bench/gpu/make_random_models.py --out /tmp/eaq-models --which gpt2 | tail -1
  EAQ_PROFILE_OPS=1 "$BIN/eaq" measure --model /tmp/eaq-models/gpt2 --task generation --prompt-len 128 \
    --new-tokens 64 --precision fp16 --batch-size 1 --num_iters 64 --warmup_steps 2 --idle-seconds 0 \
    --min-duration-s 0 --power-source none --results-dir /tmp/profile-gpt2 2>&1 | sed -n '/EAQ_PROFILE_OPS/,$p' | head -30
}

# Issue 5's repeatability check: 5 trials of the bundled model (fp16, batch 32); the coefficient of
# variation of energy per inference, and counter vs sample agreement per trial.
stage_trials() {
  note "repeatability: 5 trials, bundled sentiment model, fp16, batch 32"
  rm -rf /tmp/trials
  for i in 1 2 3 4 5; do
    "$BIN/eaq" measure --dataset datasets/sentiment-standard --precision fp16 --batch-size 32 \
      --num_iters 1000 --idle-seconds 1 --min-duration-s 3 --trial $i --results-dir /tmp/trials > /dev/null 2>&1 || status=1
  done
  python3 - <<'PY' | tee "$OUT/trials.md"
import glob, json, statistics
rows = [json.load(open(p)) for p in sorted(glob.glob("/tmp/trials/fp16/*.json"))]
e = [r["metrics"]["energy_per_inference_mj"] for r in rows]
def find(r, key):
    for section in ("metrics", "metadata", "configuration"):
        if key in r.get(section, {}):
            return r[section][key]
    return None
print("| trial | mJ per inference | counter J | samples J | difference | samples/s | seconds | mean W | idle W | SM MHz start/end | temp C start/end | quality |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    m = r["metrics"]
    c, s = m["counter_energy_j"], m["energy_from_samples_j"]
    print(f"| {r['configuration']['trial']} | {m['energy_per_inference_mj']:.4f} | {c:.2f} | {s:.2f} | {100 * (s - c) / c:+.2f}% "
          f"| {find(r, 'throughput'):.0f} | {find(r, 'total_time_s'):.3f} | {find(r, 'mean_power_w'):.1f} | {find(r, 'idle_power_w'):.1f} "
          f"| {find(r, 'sm_clock_mhz_start')}/{find(r, 'sm_clock_mhz_end')} | {find(r, 'temperature_c_start')}/{find(r, 'temperature_c_end')} | {m['energy_quality']} |")
print(f"\ncoefficient of variation of energy per inference over {len(e)} trials: "
      f"{100 * statistics.pstdev(e) / statistics.mean(e):.2f}% (gpu {rows[0]['metadata']['gpu_name']}, commit {rows[0]['metadata']['git_commit']})")
PY
}

for stage in "$@"; do
  case "$stage" in
    info) stage_info ;;
    golden) stage_golden ;;
    tokenizer-fixture) stage_tokenizer_fixture ;;
    test) stage_test ;;
    quant-test) stage_quant_test ;;
    gemm) stage_gemm ;;
    gemv) stage_gemv ;;
    prefill) stage_prefill ;;
    train-quick) stage_train quick ;;
    train-sentiment) stage_train sentiment ;;
    train-gpt2) stage_train gpt2 ;;
    bench-encoder) stage_bench_encoder ;;
    demo) stage_demo ;;
    bench-gpt2) stage_bench_gpt2 ;;
    pdl-gpt2) stage_pdl_gpt2 ;;
    fused-gpt2) stage_fused_gpt2 ;;
    timeline-gpt2) stage_timeline_gpt2 ;;
    store-gpt2) stage_store_gpt2 ;;
    tune-gpt2) stage_tune_gpt2 ;;
    qkv-gpt2) stage_qkv_gpt2 ;;
    qgemv-gpt2) stage_qgemv_gpt2 ;;
    wide-gpt2) stage_wide_gpt2 ;;
    int8split-gpt2) stage_int8split_gpt2 ;;
    bounded-gpt2) stage_bounded_gpt2 ;;
    blockquant-gpt2) stage_blockquant_gpt2 ;;
    scores-gpt2) stage_scores_gpt2 ;;
    stepstart-gpt2) stage_stepstart_gpt2 ;;
    profile) stage_profile ;;
    profile-gpt2) stage_profile_gpt2 ;;
    trace-gpt2) stage_trace_gpt2 ;;
    prefillmma-gpt2) stage_prefillmma_gpt2 ;;
    mlppending-gpt2) stage_mlppending_gpt2 ;;
    earlylaunch-gpt2) stage_earlylaunch_gpt2 ;;
    splitrow-gpt2) stage_splitrow_gpt2 ;;
    attnpending-gpt2) stage_attnpending_gpt2 ;;
    scoresint8-gpt2) stage_scoresint8_gpt2 ;;
    qkvtimeline-gpt2) stage_qkvtimeline_gpt2 ;;
    stagex-gpt2) stage_stagex_gpt2 ;;
    shuffles-gpt2) stage_shuffles_gpt2 ;;
    residual-gpt2) stage_residual_gpt2 ;;
    mma-gpt2) stage_mma_gpt2 ;;
    select-gpt2) stage_select_gpt2 ;;
    acqrel-gpt2) stage_acqrel_gpt2 ;;
    gate-gpt2) stage_gate_gpt2 ;;
    head-bits) stage_head_bits ;;
    energy-probe) stage_energy_probe ;;
    trials) stage_trials ;;
    *) echo "unknown stage: $stage"; status=2 ;;
  esac
done
note "done, status $status"
exit $status
