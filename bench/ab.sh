#!/usr/bin/env bash
# bench/ab.sh — A/B comparison of viewgate builds or runtime settings under `pgbench -S`.
#
# Why: on a shared or noisy machine, two numbers taken minutes apart differ by more than most
# optimisations are worth. This runs the variants on the same Postgres, alternating them
# round by round, and reports the median TPS and proxy CPU per transaction of each, with user
# and system CPU apart (most of a proxy's CPU is the kernel's TCP work on its behalf).
#
# What it does: starts a throwaway Postgres (pgbench -i -s $SCALE) and one viewgate per
# variant, then for $ROUNDS rounds runs `pgbench -S -M $MODE -c $CLIENTS -T $DURATION`
# against each variant in turn, reading the variant's utime/stime from /proc/PID/stat.
# Prints a Markdown table and writes it to bench/results/ab-<date>.md (gitignored).
#
# How to run: each argument is one variant, `BINARY[,NAME=VALUE...]` (environment for that
# proxy); `-` as BINARY means the current release build (built first).
#   bench/ab.sh - -,TOKIO_WORKER_THREADS=1           # runtime knob, same build
#   bench/ab.sh - -,UPSTREAM_SOCKET=unix             # upstream over a Unix socket
#   cp target/release/viewgate /tmp/viewgate-before  # build comparison:
#   (apply the change) && bench/ab.sh /tmp/viewgate-before -
#   ROUNDS=5 DURATION=10 CLIENTS=32 MODE=prepared bench/ab.sh ...
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CLIENTS="${CLIENTS:-8}"
MODE="${MODE:-simple}"
THREADS="${THREADS:-2}"
SCALE="${SCALE:-10}"
WARMUP="${WARMUP:-3}"
DB_NAME=postgres

if (($# < 2)); then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
fi

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init

build_viewgate
CURRENT_BUILD="$VG_BIN"
start_postgres 200
log "pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" -h "$LOOPBACK" -p "$PG_PORT" -U "$PG_SUPERUSER" "$DB_NAME" \
    >"$WORK_DIR/pgbench-init.log" 2>&1

NAMES=()
PORTS=()
PIDS=()
for spec in "$@"; do
    IFS=, read -r -a parts <<<"$spec"
    binary="${parts[0]}"
    [[ "$binary" == - ]] && binary="$CURRENT_BUILD"
    if [[ ! -x "$binary" ]]; then
        echo "not an executable: $binary" >&2
        exit 1
    fi
    VG_BIN="$binary"
    start_viewgate "${parts[@]:1}"
    EXTRA_PIDS+=("$VG_PID")
    NAMES+=("$spec")
    PORTS+=("$VG_PORT")
    PIDS+=("$VG_PID")
done

# run VARIANT_INDEX SECONDS -> "tps transactions utime_ticks stime_ticks"
run() {
    local i="$1" seconds="$2" out="$WORK_DIR/pgbench-$1.log" user0 sys0 user1 sys1
    read -r user0 sys0 <<<"$(cpu_ticks_split "${PIDS[$i]}")"
    "$PGBENCH" -n -S -M "$MODE" -c "$CLIENTS" -j "$((THREADS < CLIENTS ? THREADS : CLIENTS))" \
        -T "$seconds" -h "$LOOPBACK" -p "${PORTS[$i]}" -U "$PG_SUPERUSER" "$DB_NAME" >"$out" 2>&1 ||
        { cat "$out" >&2; return 1; }
    read -r user1 sys1 <<<"$(cpu_ticks_split "${PIDS[$i]}")"
    echo "$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -n 1)" \
        "$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")" \
        "$((user1 - user0))" "$((sys1 - sys0))"
}

if ((WARMUP > 0)); then
    for i in "${!NAMES[@]}"; do
        log "warm-up ${NAMES[$i]}"
        run "$i" "$WARMUP" >/dev/null
    done
fi

CSV="$WORK_DIR/ab.csv"
: >"$CSV"
for ((round = 1; round <= ROUNDS; round++)); do
    for i in "${!NAMES[@]}"; do
        log "round $round/$ROUNDS: ${NAMES[$i]}"
        result="$(run "$i" "$DURATION")"
        echo "$i $round $result" >>"$CSV"
    done
done

mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/ab-$(date +%Y%m%d-%H%M%S).md"
{
    echo "# viewgate A/B: pgbench -S -M $MODE -c $CLIENTS, $ROUNDS × ${DURATION}s alternating ($(date -Is))"
    echo
    machine_summary
    echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| variant | median TPS | TPS per round | median µs CPU/txn | user µs/txn | sys µs/txn | CPU (cores) |"
    echo "|---|---:|---|---:|---:|---:|---:|"
    for i in "${!NAMES[@]}"; do
        awk -v i="$i" -v name="${NAMES[$i]}" -v tck="$CLK_TCK" -v dur="$DURATION" '
            function median(a, n,   j, k, t) {
                for (j = 2; j <= n; j++) for (k = j; k > 1 && a[k - 1] > a[k]; k--) { t = a[k]; a[k] = a[k - 1]; a[k - 1] = t }
                return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            }
            $1 == i {
                n++; tps[n] = $3; rounds = rounds (n > 1 ? ", " : "") sprintf("%.0f", $3)
                us[n] = ($5 + $6) / tck / $4 * 1e6; user[n] = $5 / tck / $4 * 1e6; sys[n] = $6 / tck / $4 * 1e6
                cores[n] = ($5 + $6) / tck / dur
            }
            END {
                printf "| `%s` | %.0f | %s | %.1f | %.1f | %.1f | %.2f |\n", name, median(tps, n), rounds,
                    median(us, n), median(user, n), median(sys, n), median(cores, n)
            }' "$CSV"
    done
} >"$REPORT"
cat "$REPORT"
log "written to $REPORT"
