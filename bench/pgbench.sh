#!/usr/bin/env bash
# bench/pgbench.sh — throughput and proxy CPU cost of viewgate against direct Postgres and
# PgBouncer, with pgbench's select-only workload.
#
# Why: the targets for the proxy are relative (viewgate ≥ 1.25× PgBouncer's TPS and ≥ 0.8× a
# direct connection at 8 clients; ≤ 10 µs of proxy CPU per transaction). Measuring all three
# targets in one run, interleaved, on the same cluster keeps the ratios honest on a noisy box.
#
# What it does: builds viewgate (release), starts a throwaway Postgres (fsync=off,
# max_connections=200) on a free loopback port, `pgbench -i -s $SCALE`, starts viewgate and
# PgBouncer (session pooling, trust) in front of it, then for each protocol mode × client count
# runs `pgbench -S` against direct / viewgate / pgbouncer in turn. For each proxy run it reads
# the proxy's utime+stime from /proc/PID/stat before and after and divides by the number of
# transactions: µs of proxy CPU per transaction. Prints a Markdown table and writes it to
# bench/results/pgbench-<date>.md (gitignored). Everything is stopped and deleted on exit.
#
# How to run (as root or as a user that can run initdb; needs pgbench, python3):
#   bench/pgbench.sh                           # defaults: 15 s per run, about 5½ minutes
#   DURATION=5 CLIENTS="8" MODES=simple bench/pgbench.sh
# start_viewgate takes optional settings, not the script's arguments:
# shellcheck disable=SC2119
set -euo pipefail

DURATION="${DURATION:-15}"              # seconds per pgbench run
CLIENTS="${CLIENTS:-1 8 32}"            # pgbench -c values
MODES="${MODES:-simple prepared}"       # pgbench -M values
TARGETS="${TARGETS:-direct viewgate pgbouncer}"
THREADS="${THREADS:-2}"                 # pgbench -j (clamped to the client count)
SCALE="${SCALE:-10}"                    # pgbench -i -s
WARMUP="${WARMUP:-3}"                   # seconds of untimed pgbench per target before the runs
PG_MAX_CONNECTIONS="${PG_MAX_CONNECTIONS:-200}"
PGB_MAX_CLIENT_CONN="${PGB_MAX_CLIENT_CONN:-200}"
PGB_POOL_SIZE="${PGB_POOL_SIZE:-50}"    # must be ≥ the largest client count
DB_NAME=postgres

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init

for c in $CLIENTS; do
    if ((c > PGB_POOL_SIZE)); then
        echo "PGB_POOL_SIZE=$PGB_POOL_SIZE is below CLIENTS value $c" >&2
        exit 1
    fi
done

build_viewgate
start_postgres "$PG_MAX_CONNECTIONS"
log "pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" -h "$LOOPBACK" -p "$PG_PORT" -U "$PG_SUPERUSER" "$DB_NAME" \
    >"$WORK_DIR/pgbench-init.log" 2>&1
start_viewgate
start_pgbouncer "$PGB_MAX_CLIENT_CONN" "$PGB_POOL_SIZE"

port_of() {
    case "$1" in
    direct) echo "$PG_PORT" ;;
    viewgate) echo "$VG_PORT" ;;
    pgbouncer) echo "$PGB_PORT" ;;
    esac
}

pid_of() {
    case "$1" in
    direct) echo "" ;;
    viewgate) echo "$VG_PID" ;;
    pgbouncer) echo "$PGB_PID" ;;
    esac
}

# run_pgbench TARGET MODE CLIENTS SECONDS
#   -> prints "tps transactions utime_ticks stime_ticks latency_ms" (ticks of the proxy)
run_pgbench() {
    local target="$1" mode="$2" clients="$3" seconds="$4"
    local port pid threads out user0=0 sys0=0 user1=0 sys1=0
    port="$(port_of "$target")"
    pid="$(pid_of "$target")"
    threads=$((THREADS < clients ? THREADS : clients))
    out="$WORK_DIR/pgbench-$target-$mode-$clients.log"
    [[ -n "$pid" ]] && read -r user0 sys0 <<<"$(cpu_ticks_split "$pid")"
    if ! "$PGBENCH" -n -S -M "$mode" -c "$clients" -j "$threads" -T "$seconds" \
        -h "$LOOPBACK" -p "$port" -U "$PG_SUPERUSER" "$DB_NAME" >"$out" 2>&1; then
        echo "pgbench against $target failed:" >&2
        cat "$out" >&2
        return 1
    fi
    [[ -n "$pid" ]] && read -r user1 sys1 <<<"$(cpu_ticks_split "$pid")"
    local tps txns latency
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -n 1)"
    txns="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")"
    latency="$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out")"
    echo "$tps $txns $((user1 - user0)) $((sys1 - sys0)) ${latency:-nan}"
}

for target in $TARGETS; do
    if ((WARMUP > 0)); then
        log "warm-up: $target, ${WARMUP}s"
        run_pgbench "$target" simple 8 "$WARMUP" >/dev/null
    fi
done

RESULTS_CSV="$WORK_DIR/results.csv"
echo "mode,clients,target,tps,transactions,utime_ticks,stime_ticks,latency_ms" >"$RESULTS_CSV"
for mode in $MODES; do
    for clients in $CLIENTS; do
        for target in $TARGETS; do
            log "pgbench -S -M $mode -c $clients -T $DURATION -> $target"
            result="$(run_pgbench "$target" "$mode" "$clients" "$DURATION")"
            read -r tps txns user sys latency <<<"$result"
            echo "$mode,$clients,$target,$tps,$txns,$user,$sys,$latency" >>"$RESULTS_CSV"
        done
    done
done

# One table row per mode × clients: TPS per target, ratios, µs of proxy CPU per transaction
# ((utime + stime) ticks / CLK_TCK / transactions) and the proxy's average CPU use in cores.
render_table() {
    awk -F, -v tck="$CLK_TCK" -v dur="$DURATION" '
        NR == 1 { next }
        {
            key = $1 "," $2
            if (!(key in seen)) { seen[key] = 1; order[++n] = key }
            tps[key, $3] = $4
            if ($3 != "direct" && $5 > 0) {
                us[key, $3] = ($6 + $7) / tck / $5 * 1e6
                cores[key, $3] = ($6 + $7) / tck / dur
            }
        }
        function num(v, fmt) { return v == "" ? "–" : sprintf(fmt, v) }
        function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "–" : sprintf("%.2f", a / b) }
        END {
            print "| mode | clients | direct TPS | viewgate TPS | pgbouncer TPS | vg/direct | vg/pgbouncer | vg µs CPU/txn | pgb µs CPU/txn | vg CPU (cores) | pgb CPU (cores) |"
            print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, part, ",")
                d = tps[k, "direct"]; v = tps[k, "viewgate"]; p = tps[k, "pgbouncer"]
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", part[1], part[2],
                    num(d, "%.0f"), num(v, "%.0f"), num(p, "%.0f"), ratio(v, d), ratio(v, p),
                    num(us[k, "viewgate"], "%.1f"), num(us[k, "pgbouncer"], "%.1f"),
                    num(cores[k, "viewgate"], "%.2f"), num(cores[k, "pgbouncer"], "%.2f")
            }
        }' "$RESULTS_CSV"
}

# Proxy CPU per transaction split into user and system (kernel) time.
render_cpu_split() {
    awk -F, -v tck="$CLK_TCK" '
        NR == 1 || $3 == "direct" || $5 == 0 { next }
        { printf "| %s | %s | %s | %.1f | %.1f | %.1f |\n", $1, $2, $3,
              $6 / tck / $5 * 1e6, $7 / tck / $5 * 1e6, ($6 + $7) / tck / $5 * 1e6 }
        BEGIN {
            print "| mode | clients | proxy | user µs/txn | system µs/txn | total µs/txn |"
            print "|---|---:|---|---:|---:|---:|"
        }' "$RESULTS_CSV"
}

mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/pgbench-$(date +%Y%m%d-%H%M%S).md"
{
    echo "# pgbench -S: direct vs viewgate vs PgBouncer ($(date -Is))"
    echo
    machine_summary
    echo "- PgBouncer: $(pgbouncer --version | head -n 1), session pooling, default_pool_size=$PGB_POOL_SIZE"
    echo "- pgbench: scale $SCALE, -S -n, -j min($THREADS, clients), ${DURATION}s per run, ${WARMUP}s warm-up per target"
    echo "- CPU: proxy utime+stime from /proc/PID/stat (CLK_TCK=$CLK_TCK), per transaction processed"
    echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    render_table
    echo
    render_cpu_split
    echo
    echo "Raw results (CSV):"
    echo
    echo '```'
    cat "$RESULTS_CSV"
    echo '```'
} >"$REPORT"
cat "$REPORT"
log "written to $REPORT"
