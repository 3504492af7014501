#!/usr/bin/env bash
# bench/profile.sh — where viewgate's CPU goes under `pgbench -S`: CPU and syscalls per
# transaction, hardware counters, and a sampled call-graph profile.
#
# Why: pgbench.sh says how much proxy CPU a transaction costs; this says what it is spent on,
# so that changes to the session loop or the runtime can be judged by their effect.
#
# What it does: builds viewgate (release), starts a throwaway Postgres (pgbench -i -s $SCALE)
# and viewgate in front of it on 127.0.0.1, then runs `pgbench -S -M $MODE -c $CLIENTS` for
# $SECONDS seconds per step:
#   1. plain run: TPS and proxy CPU µs per transaction (/proc/PID/stat utime+stime);
#   2. `perf stat -p PID`: instructions, cycles, context switches per transaction;
#   3. `strace -c -f -p PID`: syscalls per transaction (strace slows the proxy down a lot;
#      the counts per transaction stay meaningful, the TPS of that step does not);
#   4. `perf record --call-graph dwarf -p PID`: top symbols, self and inclusive.
# Steps whose tool is missing are skipped (apt-get install linux-perf strace).
# Writes everything to bench/results/profile-<date>/ (gitignored) and prints the summary.
# The viewgate process inherits the environment, so runtime knobs can be compared without
# code changes, e.g. TOKIO_WORKER_THREADS=1 bench/profile.sh.
#
# How to run (as root, or with perf_event_paranoid ≤ 1 and ptrace allowed):
#   bench/profile.sh
#   CLIENTS=32 MODE=prepared SECONDS_PER_STEP=5 bench/profile.sh
#   PROXY=pgbouncer bench/profile.sh     # the same measurements of PgBouncer, for comparison
#   TLS=client bench/profile.sh          # with TLS (bench/lib.sh)
# start_viewgate takes optional settings, not the script's arguments:
# shellcheck disable=SC2119
set -euo pipefail

PROXY="${PROXY:-viewgate}"               # viewgate or pgbouncer
CLIENTS="${CLIENTS:-8}"
MODE="${MODE:-simple}"
THREADS="${THREADS:-2}"
SCALE="${SCALE:-10}"
SECONDS_PER_STEP="${SECONDS_PER_STEP:-10}"
WARMUP="${WARMUP:-3}"
PERF_FREQUENCY="${PERF_FREQUENCY:-499}"  # samples per second per thread for perf record
PERF_TOP_SYMBOLS="${PERF_TOP_SYMBOLS:-40}"
DB_NAME=postgres

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init

build_viewgate
start_postgres 200
log "pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" -h "$LOOPBACK" -p "$PG_PORT" -U "$PG_SUPERUSER" "$DB_NAME" \
    >"$WORK_DIR/pgbench-init.log" 2>&1
case "$PROXY" in
viewgate)
    start_viewgate
    PROXY_PID="$VG_PID" PROXY_PORT="$VG_PORT"
    ;;
pgbouncer)
    start_pgbouncer 200 50
    PROXY_PID="$PGB_PID" PROXY_PORT="$PGB_PORT"
    ;;
*)
    echo "PROXY must be viewgate or pgbouncer" >&2
    exit 1
    ;;
esac

OUT_DIR="$RESULTS_DIR/profile-$PROXY-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT_DIR"

# pgbench_through SECONDS LOGFILE: select-only pgbench through the proxy; prints transactions.
pgbench_through() {
    PGSSLMODE="$CLIENT_SSLMODE" "$PGBENCH" -n -S -M "$MODE" -c "$CLIENTS" -j "$((THREADS < CLIENTS ? THREADS : CLIENTS))" \
        -T "$1" -h "$LOOPBACK" -p "$PROXY_PORT" -U "$PG_SUPERUSER" "$DB_NAME" >"$2" 2>&1
    sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$2"
}

tps_of() { sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$1" | head -n 1; }
per_txn() { awk -v v="$1" -v t="$2" -v s="${3:-1}" 'BEGIN { printf "%.2f", v * s / t }'; }

if ((WARMUP > 0)); then
    log "warm-up ${WARMUP}s"
    pgbench_through "$WARMUP" "$WORK_DIR/warmup.log" >/dev/null
fi

SUMMARY="$OUT_DIR/summary.md"
{
    echo "# $PROXY profile: pgbench -S -M $MODE -c $CLIENTS ($(date -Is))"
    echo
    machine_summary
    echo "- environment: TOKIO_WORKER_THREADS=${TOKIO_WORKER_THREADS:-unset}"
    echo
} >"$SUMMARY"

# 1. Plain run.
log "step 1: plain run, ${SECONDS_PER_STEP}s"
read -r user0 sys0 <<<"$(cpu_ticks_split "$PROXY_PID")"
txns="$(pgbench_through "$SECONDS_PER_STEP" "$OUT_DIR/pgbench-plain.log")"
read -r user1 sys1 <<<"$(cpu_ticks_split "$PROXY_PID")"
ticks=$((user1 - user0 + sys1 - sys0))
us_per_tick=$((1000000 / CLK_TCK))
{
    echo "## Plain run"
    echo
    echo "- TPS: $(tps_of "$OUT_DIR/pgbench-plain.log")"
    echo "- proxy CPU per transaction: $(per_txn "$ticks" "$txns" "$us_per_tick") µs" \
        "(user $(per_txn "$((user1 - user0))" "$txns" "$us_per_tick")," \
        "system $(per_txn "$((sys1 - sys0))" "$txns" "$us_per_tick"))"
    echo "- proxy CPU use: $(awk -v t="$ticks" -v k="$CLK_TCK" -v s="$SECONDS_PER_STEP" 'BEGIN { printf "%.2f", t / k / s }') cores"
    echo
} >>"$SUMMARY"

# 2. Hardware and scheduler counters.
if command -v perf >/dev/null && perf stat -e instructions true >/dev/null 2>&1; then
    log "step 2: perf stat, ${SECONDS_PER_STEP}s"
    perf stat -x, -e task-clock,context-switches,cpu-migrations,cycles,instructions \
        -p "$PROXY_PID" -o "$OUT_DIR/perf-stat.csv" &
    PERF_PID=$!
    EXTRA_PIDS+=("$PERF_PID")
    txns="$(pgbench_through "$SECONDS_PER_STEP" "$OUT_DIR/pgbench-perf-stat.log")"
    kill -INT "$PERF_PID"
    wait "$PERF_PID" || true
    {
        echo "## perf stat (per transaction, $txns transactions)"
        echo
        echo "| counter | total | per transaction |"
        echo "|---|---:|---:|"
        awk -F, -v t="$txns" '$1 ~ /^[0-9.]+$/ { printf "| %s | %s | %.2f |\n", $3, $1, $1 / t }' \
            "$OUT_DIR/perf-stat.csv"
        echo
        echo "(task-clock is in ms, per transaction too. cycles and instructions are missing"
        echo "where the machine, e.g. a VM, exposes no hardware counters.)"
        echo
    } >>"$SUMMARY"
else
    log "step 2 skipped: perf is missing or not permitted"
fi

# 3. Syscalls.
if command -v strace >/dev/null; then
    log "step 3: strace -c, ${SECONDS_PER_STEP}s"
    strace -c -f -p "$PROXY_PID" -o "$OUT_DIR/strace-c.txt" 2>/dev/null &
    STRACE_PID=$!
    EXTRA_PIDS+=("$STRACE_PID")
    sleep 0.5
    txns="$(pgbench_through "$SECONDS_PER_STEP" "$OUT_DIR/pgbench-strace.log")"
    kill -INT "$STRACE_PID"
    wait "$STRACE_PID" || true
    {
        echo "## Syscalls per transaction (strace -c -f, $txns transactions; TPS under strace: $(tps_of "$OUT_DIR/pgbench-strace.log"))"
        echo
        echo "| syscall | calls | per transaction | errors |"
        echo "|---|---:|---:|---:|"
        # strace -c columns: % time, seconds, usecs/call, calls, [errors], syscall.
        awk -v t="$txns" '
            /^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ && $NF != "total" {
                errors = (NF == 6) ? $5 : 0
                printf "| %s | %s | %.2f | %s |\n", $NF, $4, $4 / t, errors
                total += $4
            }
            END { printf "| **total** | %d | %.2f | |\n", total, total / t }' \
            "$OUT_DIR/strace-c.txt"
        echo
    } >>"$SUMMARY"
else
    log "step 3 skipped: strace is missing"
fi

# 4. Sampled profile.
if command -v perf >/dev/null && perf stat -e instructions true >/dev/null 2>&1; then
    log "step 4: perf record, ${SECONDS_PER_STEP}s"
    perf record -q -F "$PERF_FREQUENCY" --call-graph dwarf,16384 -p "$PROXY_PID" \
        -o "$OUT_DIR/perf.data" 2>/dev/null &
    PERF_PID=$!
    EXTRA_PIDS+=("$PERF_PID")
    txns="$(pgbench_through "$SECONDS_PER_STEP" "$OUT_DIR/pgbench-perf-record.log")"
    kill -INT "$PERF_PID"
    wait "$PERF_PID" || true
    # Where samples land: by object (kernel vs viewgate vs libc), by symbol, and for the two
    # hottest kernel symbols, the call chains that lead there. Without hardware counters perf
    # samples on a timer, so kernel time spent with interrupts off shows up at the point they
    # are switched back on (finish_task_switch, _raw_spin_unlock_irqrestore).
    report() { perf report -i "$OUT_DIR/perf.data" --stdio --no-inline "$@" 2>/dev/null | sed 's/ *$//'; }
    report --no-children --sort dso -g none >"$OUT_DIR/perf-dso.txt" || true
    report --no-children --sort dso,sym -g none --percent-limit 0.3 >"$OUT_DIR/perf-self.txt" || true
    report --no-children --sort sym -g caller,0.5,callee,function,percent --percent-limit 5 \
        >"$OUT_DIR/perf-callers.txt" || true
    {
        echo "## Samples by object (perf record, $txns transactions)"
        echo
        echo '```'
        grep -E '^ +[0-9]' "$OUT_DIR/perf-dso.txt"
        echo '```'
        echo
        echo "## Top symbols by self time"
        echo
        echo '```'
        grep -E '^ +[0-9]' "$OUT_DIR/perf-self.txt" | head -n "$PERF_TOP_SYMBOLS"
        echo '```'
        echo
        echo "Call chains of the symbols above 5 %: $OUT_DIR/perf-callers.txt"
        echo
    } >>"$SUMMARY"
fi

cat "$SUMMARY"
log "written to $OUT_DIR (perf.data there: perf report -i $OUT_DIR/perf.data)"
