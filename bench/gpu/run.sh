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

note() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

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
  python3 tools/make_tokenizer_fixture.py 2>&1 | tail -15 || status=1
  tar czf "$OUT/tokenizer-fixture.tar.gz" tests/golden/tokenizer || status=1
}

stage_test() {
  note "unit tests, GPU included"
  "$BIN/eaq_tests" --gtest_brief=1 2>&1 | tee "$OUT/tests.log" | grep -E "^\[ (attention|encoder|default|decoder|quant) |FAILED|PASSED|SKIPPED|Failure|error|Which is|Expected|actual" | head -150
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}

stage_gemm() {
  note "GEMM micro-benchmark of the quantized paths (eaq_gemm_bench)"
  "$BIN/eaq_gemm_bench" 2>&1 | tee "$OUT/gemm_bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
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

for stage in "$@"; do
  case "$stage" in
    info) stage_info ;;
    golden) stage_golden ;;
    tokenizer-fixture) stage_tokenizer_fixture ;;
    test) stage_test ;;
    quant-test) stage_quant_test ;;
    gemm) stage_gemm ;;
    train-quick) stage_train quick ;;
    train-sentiment) stage_train sentiment ;;
    train-gpt2) stage_train gpt2 ;;
    *) echo "unknown stage: $stage"; status=2 ;;
  esac
done
note "done, status $status"
exit $status
