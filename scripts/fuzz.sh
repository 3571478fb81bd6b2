#!/usr/bin/env bash
# scripts/fuzz.sh [EXECUTIONS] [SEED]
#   The stable-toolchain fuzzer of tests/it/fuzz.rs: default 10 000 000 executions from a fresh
#   random seed (printed; pass it back as SEED to reproduce). Release build; SLUICE_FUZZ_PROFILE=dev
#   runs the debug one (overflow checks on, ~20 000 executions/s here). Findings print seed, case
#   and input: save the input as tests/fuzz-corpus/regress-<name>.bin so every later run (and CI)
#   replays it first.
# scripts/fuzz.sh --libfuzzer [SECONDS]
#   Coverage-guided libFuzzer on the same decoders (fuzz/fuzz_targets/decode_request.rs), for
#   machines with a nightly toolchain and cargo-fuzz; seeded from tests/fuzz-corpus, default 600 s.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ "${1:-}" == "--libfuzzer" ]]; then
    SECONDS_MAX="${2:-600}"
    mkdir -p fuzz/corpus/decode_request
    cp -n tests/fuzz-corpus/*.bin fuzz/corpus/decode_request/ 2>/dev/null || true
    cd fuzz
    exec cargo +nightly fuzz run -O decode_request -- -max_total_time="$SECONDS_MAX" -max_len=65536
fi

export SLUICE_FUZZ_CASES="${1:-10000000}"
export SLUICE_FUZZ_SEED="${2:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}"
echo "fuzz: $SLUICE_FUZZ_CASES executions, SLUICE_FUZZ_SEED=$SLUICE_FUZZ_SEED"
PROFILE_ARGS=(--release)
[[ "${SLUICE_FUZZ_PROFILE:-release}" == dev ]] && PROFILE_ARGS=()
cargo test --locked "${PROFILE_ARGS[@]}" --test it fuzz::fuzz_decoders_and_batch_validation -- --nocapture
