#!/usr/bin/env bash
# scripts/crash-soak.sh [CYCLES]: the kill -9 crash test (tests/clients/test_crash.py) for many
# cycles (default 100), plus the idle-connection test at 10 000 connections and longer storage
# and cluster simulations. Needs what scripts/test.sh installs (.venv, the debug binary); run
# that first. Environment: SLUICE_CRASH_SEED (reproduce a run), SLUICE_SIM_SEEDS (default 200,
# ~5 min), SLUICE_NETSIM_SEEDS (default 2000 x 1000 steps, ~3 min), SLUICE_NETSIM_SEED.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CYCLES="${1:-100}"
cargo build --locked --bin sluice
TARGET_DIR="$(cargo metadata --locked --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
export SLUICE_BIN="$TARGET_DIR/debug/sluice"
[[ -x .venv/bin/python ]] || { echo "no .venv: run scripts/test.sh first" >&2; exit 1; }
SLUICE_CRASH_CYCLES="$CYCLES" .venv/bin/python -m pytest tests/clients/test_crash.py -v -s
SLUICE_IDLE_CONNECTIONS=10000 .venv/bin/python -m pytest tests/clients/test_hostile_scale.py -v -s \
    -k idle_connections
SLUICE_SIM_SEEDS="${SLUICE_SIM_SEEDS:-200}" cargo test --locked --test it sim:: -- --nocapture
SLUICE_NETSIM_SEEDS="${SLUICE_NETSIM_SEEDS:-2000}" SLUICE_NETSIM_STEPS="${SLUICE_NETSIM_STEPS:-1000}" \
    SLUICE_NETSIM_SEED="${SLUICE_NETSIM_SEED:-$RANDOM$RANDOM}" RUST_LOG=off \
    cargo test --locked --test it simcluster::simulated_cluster_keeps -- --nocapture
