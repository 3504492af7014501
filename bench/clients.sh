#!/usr/bin/env bash
# bench/clients.sh — 1,000 concurrent, all-active clients through one viewgate (release build).
#
# Why: the proxy must hold a thousand busy sessions with zero errors; this reports its RSS and
# CPU per client (docs/reliability.md). Too heavy for CI (a thousand Postgres backends, a
# minute of both cores), so the test it runs is #[ignore]d there.
#
# What it does: runs tests/thousand_clients.rs in release: a throwaway Postgres with
# max_connections above the client count, the seed example applied (v1 and v2), `viewgate
# serve` in front; CLIENTS sessions (half v1, half v2; half simple, half extended protocol)
# each insert a row and read it back in a loop for SECONDS; asserts zero errors and that every
# acknowledged insert is in the table; prints RSS (idle, connected, peak) and CPU per client.
#
# How to run: bench/clients.sh [CLIENTS] [SECONDS]   (defaults 1000 and 20)
set -euo pipefail
cd "$(dirname "$0")/.."
export VG_BENCH_CLIENTS="${1:-1000}" VG_BENCH_SECONDS="${2:-20}"
ulimit -n "$(( VG_BENCH_CLIENTS * 4 + 1024 ))" 2>/dev/null || true
exec cargo test --release --test integration -- thousand_clients:: --ignored --nocapture
