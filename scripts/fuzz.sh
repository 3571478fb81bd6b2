#!/usr/bin/env bash
# scripts/fuzz.sh [EXECUTIONS] [SEED]: the stable-toolchain fuzzer of tests/it/fuzz.rs, release
# build, default 10 000 000 executions from a fresh random seed (printed; pass it back as the
# second argument to reproduce). Findings print their seed, case and input: save the input as
# tests/fuzz-corpus/regress-<name>.bin so every later run (and CI) replays it first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export SLUICE_FUZZ_CASES="${1:-10000000}"
export SLUICE_FUZZ_SEED="${2:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}"
echo "fuzz: $SLUICE_FUZZ_CASES executions, SLUICE_FUZZ_SEED=$SLUICE_FUZZ_SEED"
cargo test --locked --release --test it fuzz::fuzz_decoders_and_batch_validation -- --nocapture
