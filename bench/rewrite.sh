#!/usr/bin/env bash
# bench/rewrite.sh — what versioned-view rewriting costs, measured with pgbench custom scripts.
#
# Why: with a catalog, viewgate rewrites every Query and Parse that names a managed table
# (`model_metadata` -> `model_metadata_v2 AS model_metadata`, shared/DESIGN.md decision 4). This
# compares the same workload three ways, interleaved on one cluster so the ratios stay honest on
# a noisy machine:
#   direct  pgbench straight to Postgres, SQL written against the view model_metadata_v2
#   off     viewgate without a catalog (a plain proxy), SQL against model_metadata_v2
#   on      viewgate with the catalog (default version v2), SQL against model_metadata,
#           which viewgate rewrites to the v2 view
# "on / off" is the cost of rewriting; "off / direct" is the cost of the proxy itself.
#
# What it does: builds viewgate (release), initdb + starts a throwaway Postgres on a free
# 127.0.0.1 port (fsync off), creates the seed table (examples/model_metadata/schema.sql),
# applies the seed spec with `viewgate views apply`, makes v2 the default version, seeds $ROWS
# rows (half with model_type NULL, which v2 reads as 'neural_network'), starts viewgate twice
# (catalog on / off), checks that "on" really rewrites and "off" really does not, then for each
# script (read, read/write) x protocol mode (simple, prepared) x target runs pgbench
# (-c $CLIENTS -j $THREADS -T $DURATION). For the proxies it also reads their CPU time
# (/proc/PID/stat) before and after: µs of proxy CPU per transaction, steadier than TPS on a
# shared box. Prints a Markdown table and writes it to bench/results/rewrite-<date>.md
# (gitignored). Every process it started is stopped by PID on exit and the temp dir deleted.
# All traffic stays on 127.0.0.1.
#
# How to run (as root, or as a user that can run initdb; needs pgbench and python3):
#   bench/rewrite.sh                          # defaults: about 4 minutes
#   DURATION=5 MODES=simple bench/rewrite.sh  # quick look
# Tunables: DURATION [15] seconds per run, CLIENTS [8], THREADS [2], ROWS [10000],
#   MODES ["simple prepared"], SCRIPTS ["read rw"], WARMUP [3] seconds per target,
#   PG_BIN [newest /usr/lib/postgresql/*/bin], VG_BIN [build target/release/viewgate],
#   PG_SHARED_BUFFERS [128MB], KEEP_WORK_DIR [0] (1 keeps logs and configs); the helpers
#   (Postgres, viewgate, cleanup) are bench/lib.sh's.
# start_viewgate takes optional settings, not the script's arguments:
# shellcheck disable=SC2119
set -euo pipefail

DURATION="${DURATION:-15}"
CLIENTS="${CLIENTS:-8}"
THREADS="${THREADS:-2}"
ROWS="${ROWS:-10000}"
MODES="${MODES:-simple prepared}"
SCRIPTS="${SCRIPTS:-read rw}"
WARMUP="${WARMUP:-3}"
TARGETS="direct off on"
PG_MAX_CONNECTIONS=100
# Read by lib.sh's start_postgres; this benchmark's cluster is smaller than lib.sh's default.
PG_SHARED_BUFFERS="${PG_SHARED_BUFFERS:-128MB}"

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
EXAMPLE="$REPO_DIR/examples/model_metadata"
bench_init

ON_PID=""
OFF_PID=""
ON_PORT=""
OFF_PORT=""

fail() {
    echo "FAILED: $*" >&2
    exit 1
}

# sql PORT SQL [extra psql args]: runs SQL as the superuser, prints unaligned tuples.
sql() {
    local port="$1" query="$2"
    shift 2
    "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -h "$LOOPBACK" -p "$port" -U "$PG_SUPERUSER" -d postgres \
        "$@" -c "$query"
}

# expect WHAT ACTUAL EXPECTED: prints the check, exits non-zero on a mismatch.
expect() {
    if [[ "$2" != "$3" ]]; then
        fail "$1: got '$2', expected '$3'"
    fi
    log "ok $1 ($2)"
}

# --- build, Postgres, catalog, data -----------------------------------------------------
build_viewgate
start_postgres "$PG_MAX_CONNECTIONS"
DATABASE_URL="postgres://$PG_SUPERUSER@$LOOPBACK:$PG_PORT/postgres"

log "seed table, views apply, default version v2, $ROWS rows"
sql "$PG_PORT" "$(cat "$EXAMPLE/schema.sql")" >/dev/null
"$VG_BIN" views apply --spec "$EXAMPLE/viewgate.toml" --database "$DATABASE_URL" \
    >"$WORK_DIR/apply.log" 2>&1 || { cat "$WORK_DIR/apply.log" >&2; fail "viewgate views apply"; }
sql "$PG_PORT" "UPDATE viewgate.settings SET default_version = 'v2'" >/dev/null
sql "$PG_PORT" "INSERT INTO model_metadata (model_name, model_version, model_type, hyperparameters)
    SELECT 'model-' || g, '1', CASE WHEN g % 2 = 0 THEN 'transformer' END, jsonb_build_object('g', g)
    FROM generate_series(1, $ROWS) g" >/dev/null
sql "$PG_PORT" "VACUUM ANALYZE model_metadata" >/dev/null
expect "rows seeded, half with NULL model_type" \
    "$(sql "$PG_PORT" "SELECT count(*) || '/' || count(*) FILTER (WHERE model_type IS NULL) FROM model_metadata")" \
    "$ROWS/$((ROWS / 2))"

# --- the two proxies --------------------------------------------------------------------
# "on" reads the catalog from a config file (VIEWGATE_CONFIG is serve's --config); listen,
# upstream, log level and upstream TLS come from lib.sh's start_viewgate. Each start_viewgate
# overwrites VG_PID, so the first proxy is handed to EXTRA_PIDS for the cleanup on exit.
printf 'catalog = "%s"\n' "$DATABASE_URL" >"$WORK_DIR/viewgate-on.toml"
start_viewgate VIEWGATE_CONFIG="$WORK_DIR/viewgate-on.toml"
ON_PID="$VG_PID" ON_PORT="$VG_PORT"
EXTRA_PIDS+=("$ON_PID")
start_viewgate
OFF_PID="$VG_PID" OFF_PORT="$VG_PORT"
log "viewgate rewriting on: $LOOPBACK:$ON_PORT (pid $ON_PID); off: $LOOPBACK:$OFF_PORT (pid $OFF_PID)"

# "on" really rewrites: model_metadata reads as the v2 view (no NULL model_type); "off" and
# the base table do not.
for ((i = 0; i < 50; i++)); do
    [[ "$(sql "$ON_PORT" "SHOW viewgate.version" 2>/dev/null || true)" == v2 ]] && break
    sleep 0.1
done
expect "on: SHOW viewgate.version" "$(sql "$ON_PORT" "SHOW viewgate.version")" v2
NULLS="SELECT count(*) FILTER (WHERE model_type IS NULL) || '/' || count(*) FILTER (WHERE model_type = 'neural_network') FROM model_metadata"
expect "on: model_metadata is rewritten to the v2 view" "$(sql "$ON_PORT" "$NULLS")" "0/$((ROWS / 2))"
expect "off: model_metadata is the base table" "$(sql "$OFF_PORT" "$NULLS")" "$((ROWS / 2))/0"
expect "direct: model_metadata_v2 reads neural_network" \
    "$(sql "$PG_PORT" "SELECT count(*) FROM model_metadata_v2 WHERE model_type = 'neural_network'")" "$((ROWS / 2))"

# --- pgbench scripts --------------------------------------------------------------------
# write_script NAME TABLE -> path. read: one indexed SELECT; rw: an UPDATE through the view
# (v2's INSTEAD OF trigger writes the base table), then the SELECT.
write_script() {
    local name="$1" table="$2" file="$WORK_DIR/$1-$2.sql"
    {
        echo "\\set id random(1, $ROWS)"
        if [[ "$name" == rw ]]; then
            echo "\\set v random(1, 1000000)"
            echo "UPDATE $table SET model_version = CAST(:v AS text) WHERE id = :id;"
        fi
        echo "SELECT id, model_name, model_type FROM $table WHERE id = :id;"
    } >"$file"
    echo "$file"
}

port_of() { case "$1" in direct) echo "$PG_PORT" ;; off) echo "$OFF_PORT" ;; on) echo "$ON_PORT" ;; esac }
pid_of() { case "$1" in direct) echo "" ;; off) echo "$OFF_PID" ;; on) echo "$ON_PID" ;; esac }
table_of() { case "$1" in on) echo model_metadata ;; *) echo model_metadata_v2 ;; esac }

# run_pgbench SCRIPT TARGET MODE SECONDS -> "tps transactions proxy_ticks latency_ms"
run_pgbench() {
    local script="$1" target="$2" mode="$3" seconds="$4" file pid out t0=0 t1=0
    file="$(write_script "$script" "$(table_of "$target")")"
    pid="$(pid_of "$target")"
    out="$WORK_DIR/pgbench-$script-$target-$mode.log"
    [[ -n "$pid" ]] && t0="$(cpu_ticks "$pid")"
    if ! "$PGBENCH" -n -f "$file" -M "$mode" -c "$CLIENTS" -j "$THREADS" -T "$seconds" \
        -h "$LOOPBACK" -p "$(port_of "$target")" -U "$PG_SUPERUSER" postgres >"$out" 2>&1; then
        cat "$out" >&2
        fail "pgbench $script -M $mode against $target"
    fi
    [[ -n "$pid" ]] && t1="$(cpu_ticks "$pid")"
    local tps txns latency failed
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -n 1)"
    txns="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")"
    failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")"
    latency="$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out")"
    [[ -n "$tps" && -n "$txns" && "$txns" -gt 0 ]] || { cat "$out" >&2; fail "no TPS from pgbench $script $target $mode"; }
    [[ "${failed:-0}" == 0 ]] || { cat "$out" >&2; fail "$failed failed transactions in $script $target $mode"; }
    echo "$tps $txns $((t1 - t0)) ${latency:-nan}"
}

if ((WARMUP > 0)); then
    for target in $TARGETS; do
        log "warm-up: $target, ${WARMUP}s"
        run_pgbench read "$target" simple "$WARMUP" >/dev/null
    done
fi

RESULTS_CSV="$WORK_DIR/results.csv"
for script in $SCRIPTS; do
    for mode in $MODES; do
        for target in $TARGETS; do
            log "pgbench -f $script -M $mode -c $CLIENTS -j $THREADS -T $DURATION -> $target"
            read -r tps txns ticks latency <<<"$(run_pgbench "$script" "$target" "$mode" "$DURATION")"
            log "  $target: $tps TPS"
            echo "$script,$mode,$target,$tps,$txns,$ticks,$latency" >>"$RESULTS_CSV"
        done
    done
done

# The rewritten rows are still right after the runs: v2 never reads NULL through "on".
expect "on: still no NULL model_type after the runs" \
    "$(sql "$ON_PORT" "SELECT count(*) FILTER (WHERE model_type IS NULL) FROM model_metadata")" 0

# --- report -----------------------------------------------------------------------------
render_table() {
    awk -F, -v tck="$CLK_TCK" '
        {
            key = $1 "," $2
            if (!(key in seen)) { seen[key] = 1; order[++n] = key }
            tps[key, $3] = $4
            cpu[key, $3] = ($5 > 0) ? $6 / tck / $5 * 1e6 : 0
            lat[key, $3] = $7
        }
        END {
            print "| script | mode | direct TPS | off TPS | on TPS | on / off | off / direct | proxy CPU µs/txn off | on | latency ms direct / off / on |"
            print "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, part, ",")
                d = tps[k, "direct"]; f = tps[k, "off"]; o = tps[k, "on"]
                printf "| %s | %s | %.0f | %.0f | %.0f | %.2f | %.2f | %.1f | %.1f | %s / %s / %s |\n",
                    part[1], part[2], d, f, o, (f > 0 ? o / f : 0), (d > 0 ? f / d : 0),
                    cpu[k, "off"], cpu[k, "on"], lat[k, "direct"], lat[k, "off"], lat[k, "on"]
            }
        }' "$RESULTS_CSV"
}

mkdir -p "$RESULTS_DIR"
RESULT_FILE="$RESULTS_DIR/rewrite-$(date +%Y%m%d-%H%M%S).md"
{
    echo "# Rewriting overhead (pgbench), $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- viewgate $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown), $("$PG_BIN/postgres" --version)"
    echo "- $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average at start: $LOAD_AT_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- pgbench -c $CLIENTS -j $THREADS -T $DURATION, $ROWS rows, default version v2; targets run interleaved"
    echo "- read: \`SELECT id, model_name, model_type FROM T WHERE id = :id\`;" \
        "rw: \`UPDATE T SET model_version = CAST(:v AS text) WHERE id = :id\` then the SELECT"
    echo "- direct and off: T = model_metadata_v2; on: T = model_metadata, rewritten by viewgate"
    echo
    render_table
} >"$RESULT_FILE"
echo
cat "$RESULT_FILE"
echo
log "wrote ${RESULT_FILE#"$REPO_DIR"/}"
