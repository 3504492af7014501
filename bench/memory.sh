#!/usr/bin/env bash
# bench/memory.sh — viewgate's memory: RSS per idle client, and RSS growth while streaming a
# result of about 1 GiB.
#
# Why: the targets are ≤ 100 KiB of RSS per idle client connection and < 32 MiB of RSS growth
# while a 1 GiB result streams through (results must stream, never be buffered whole).
#
# What it does: builds viewgate (release), starts a throwaway Postgres with room for
# $IDLE_CLIENTS connections and viewgate in front of it, all on 127.0.0.1.
#  (a) Reads viewgate's VmRSS (after $WARMUP_CLIENTS connections opened and closed, so that
#      one-time allocations are in the baseline), opens $IDLE_CLIENTS idle sessions through it
#      with bench/idle_clients.py (raw sockets, full startup, TLS when TLS says so), reads
#      VmRSS again and reports KiB per connection; then closes them and reads VmRSS once more.
#  (b) Restarts viewgate (so memory freed in (a) cannot mask growth), runs `COPY (SELECT repeat('x', $ROW_BYTES) FROM generate_series(1, $ROWS)) TO STDOUT`
#      through viewgate with psql, counting the bytes, while sampling viewgate's VmRSS every
#      $SAMPLE_INTERVAL s; reports the largest growth over the pre-transfer RSS and the
#      throughput, with the same COPY run directly against Postgres for reference.
# Prints a Markdown report and writes it to bench/results/memory-<date>.md (gitignored).
#
# How to run (as root or as a user that can run initdb; needs psql, python3):
#   bench/memory.sh
#   IDLE_CLIENTS=200 ROWS=100000 bench/memory.sh      # a quicker, smaller run
#   TLS=both bench/memory.sh                          # TLS on both sides (bench/lib.sh)
# start_viewgate takes optional settings, not the script's arguments:
# shellcheck disable=SC2119
set -euo pipefail

IDLE_CLIENTS="${IDLE_CLIENTS:-500}"
WARMUP_CLIENTS="${WARMUP_CLIENTS:-20}"
SETTLE_SECONDS="${SETTLE_SECONDS:-1}"     # pause before reading RSS after opening/closing
ROWS="${ROWS:-1100000}"                   # rows of the streamed result
ROW_BYTES="${ROW_BYTES:-1000}"            # bytes per row (plus a newline in COPY text)
SAMPLE_INTERVAL="${SAMPLE_INTERVAL:-0.1}" # seconds between VmRSS samples during the stream
RSS_PER_CLIENT_TARGET_KIB=100
STREAM_GROWTH_TARGET_KIB=$((32 * 1024))
DB_NAME=postgres

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init

build_viewgate
start_postgres $((IDLE_CLIENTS + WARMUP_CLIENTS + 20))
start_viewgate

# hold_clients COUNT: opens COUNT idle sessions through viewgate and keeps them until
# release_clients. The holder reads its stdin from a FIFO this shell keeps open on fd 3.
hold_clients() {
    local fifo="$WORK_DIR/clients.fifo" ready="$WORK_DIR/clients.ready"
    rm -f "$fifo" "$ready"
    mkfifo "$fifo"
    PGSSLMODE="$CLIENT_SSLMODE" python3 "$BENCH_DIR/idle_clients.py" "$LOOPBACK" "$VG_PORT" "$1" "$PG_SUPERUSER" "$DB_NAME" \
        <"$fifo" >"$ready" &
    HOLDER_PID=$!
    EXTRA_PIDS+=("$HOLDER_PID")
    exec 3>"$fifo"
    while ! grep -q '^ready' "$ready"; do
        if ! kill -0 "$HOLDER_PID" 2>/dev/null; then
            echo "idle_clients.py failed" >&2
            return 1
        fi
        sleep 0.1
    done
}

release_clients() {
    exec 3>&-
    wait "$HOLDER_PID"
}

# --- (a) RSS per idle client -------------------------------------------------------------
log "warm-up: $WARMUP_CLIENTS connections"
hold_clients "$WARMUP_CLIENTS"
release_clients
sleep "$SETTLE_SECONDS"
rss_before="$(rss_kib "$VG_PID")"
log "opening $IDLE_CLIENTS idle connections (RSS before: $rss_before KiB)"
started=$SECONDS
hold_clients "$IDLE_CLIENTS"
open_seconds=$((SECONDS - started))
sleep "$SETTLE_SECONDS"
rss_held="$(rss_kib "$VG_PID")"
release_clients
sleep "$SETTLE_SECONDS"
rss_after="$(rss_kib "$VG_PID")"
per_client_kib="$(awk -v a="$rss_before" -v b="$rss_held" -v n="$IDLE_CLIENTS" \
    'BEGIN { printf "%.1f", (b - a) / n }')"
log "RSS with $IDLE_CLIENTS idle clients: $rss_held KiB -> $per_client_kib KiB per client"

# --- (b) RSS growth while streaming -------------------------------------------------------
COPY_SQL="COPY (SELECT repeat('x', $ROW_BYTES) FROM generate_series(1, $ROWS)) TO STDOUT"

# stream PORT -> prints "bytes seconds"
stream() {
    local start end bytes
    start="$(date +%s.%N)"
    bytes="$(PGSSLMODE="$CLIENT_SSLMODE" "$PSQL" -X -q -h "$LOOPBACK" -p "$1" -U "$PG_SUPERUSER" -d "$DB_NAME" \
        -v ON_ERROR_STOP=1 -c "$COPY_SQL" | wc -c)"
    end="$(date +%s.%N)"
    echo "$bytes $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }')"
}

# A fresh proxy, so that memory freed by (a) cannot hide growth; one small COPY warms it up.
stop_pid "$VG_PID"
start_viewgate
"$PSQL" -X -q -h "$LOOPBACK" -p "$VG_PORT" -U "$PG_SUPERUSER" -d "$DB_NAME" -v ON_ERROR_STOP=1 \
    -c "COPY (SELECT repeat('x', $ROW_BYTES) FROM generate_series(1, 1000)) TO STDOUT" >/dev/null

log "streaming $ROWS rows of $ROW_BYTES bytes directly (reference)"
read -r direct_bytes direct_seconds <<<"$(stream "$PG_PORT")"

stream_base="$(rss_kib "$VG_PID")"
log "streaming through viewgate, sampling RSS every ${SAMPLE_INTERVAL}s (RSS before: $stream_base KiB)"
stream "$VG_PORT" >"$WORK_DIR/stream.out" &
STREAM_PID=$!
EXTRA_PIDS+=("$STREAM_PID")
stream_max="$stream_base"
samples=0
while kill -0 "$STREAM_PID" 2>/dev/null; do
    rss="$(rss_kib "$VG_PID")"
    ((rss > stream_max)) && stream_max="$rss"
    samples=$((samples + 1))
    sleep "$SAMPLE_INTERVAL"
done
wait "$STREAM_PID"
read -r vg_bytes vg_seconds <"$WORK_DIR/stream.out"
stream_growth=$((stream_max - stream_base))

mib_per_s() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1048576 }'; }
verdict() { if awk -v v="$1" -v t="$2" 'BEGIN { exit !(v <= t) }'; then echo met; else echo "NOT met"; fi; }

mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/memory-$(date +%Y%m%d-%H%M%S).md"
{
    echo "# viewgate memory ($(date -Is))"
    echo
    machine_summary
    echo
    echo "## RSS per idle client"
    echo
    echo "| idle clients | RSS before | RSS with clients | RSS after closing | per client | target | verdict |"
    echo "|---:|---:|---:|---:|---:|---:|---|"
    echo "| $IDLE_CLIENTS | $rss_before KiB | $rss_held KiB | $rss_after KiB | $per_client_kib KiB | ≤ $RSS_PER_CLIENT_TARGET_KIB KiB | $(verdict "$per_client_kib" "$RSS_PER_CLIENT_TARGET_KIB") |"
    echo
    echo "Opening the $IDLE_CLIENTS connections (sequential full startups) took about ${open_seconds}s."
    echo
    echo "## RSS growth while streaming"
    echo
    echo "| path | bytes | seconds | MiB/s | RSS before | max RSS (${SAMPLE_INTERVAL}s samples: $samples) | growth | target | verdict |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    echo "| direct | $direct_bytes | $direct_seconds | $(mib_per_s "$direct_bytes" "$direct_seconds") | – | – | – | – | – |"
    echo "| viewgate | $vg_bytes | $vg_seconds | $(mib_per_s "$vg_bytes" "$vg_seconds") | $stream_base KiB | $stream_max KiB | $stream_growth KiB | < $STREAM_GROWTH_TARGET_KIB KiB | $(verdict "$stream_growth" "$((STREAM_GROWTH_TARGET_KIB - 1))") |"
    echo
    echo "Query: \`$COPY_SQL\` through \`psql -c ... | wc -c\`."
} >"$REPORT"
cat "$REPORT"
log "written to $REPORT"
