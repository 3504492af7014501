#!/usr/bin/env bash
# bench/shadow.sh — what a shadow run costs the clients: pgbench TPS and p99 latency through
# viewgate with no shadow run, and with one sampling at RATES (default 1.0 and 0.05), as ratios
# (shadow ÷ no shadow).
#
# Why: issue 14 asks that shadow reads leave the clients' latency alone ("p99 within 10 % of a
# run without shadowing"). A timed assertion in a test cannot say that honestly on a shared
# machine; a benchmark that interleaves the conditions and repeats them can, and reports the
# load it ran under. (tests/shadow.rs checks the functional side: a shadow statement that takes
# seconds never holds up a client's read.)
#
# Workload: a read of the seed example's managed table at v1, the default version:
#   SELECT id, model_name, model_version FROM model_metadata WHERE id = :id
# v2 shows model_version through an expression, so every sampled statement really runs at both
# versions (and the same at v1 again on a difference). With -M simple the statement is a Query
# (the simple-protocol tap); with -M prepared a Bind of a prepared statement (the
# extended-protocol tap, which copies the parameters).
#
# What it does: builds viewgate (release), starts a throwaway Postgres (fsync=off) on a free
# loopback port, creates the seed table with ROWS rows, applies the seed spec, makes v1 the
# default, starts `viewgate serve` with the catalog and an admin port; then for ROUNDS rounds ×
# MODES × conditions (off, then each rate) runs pgbench for DURATION seconds, the conditions
# back to back within a round so drifting load hits all alike. A condition with a rate starts a
# shadow run from v1 to v2 (`viewgate shadow start`), waits until the proxy reports it running
# (/metrics), runs pgbench, stops it and waits until the proxy has let go. Reports, per mode and
# condition, the median TPS and p99 over the rounds and their ratios to "off" (also per round),
# the shadow runs' outcome counts (how much was sampled, dropped and compared), and the load
# average before and after; writes it to bench/results/shadow-<date>.md (gitignored).
#
# How to run (as root or a user that can run initdb; needs pgbench, psql, python3):
#   bench/shadow.sh                                   # defaults: about 5 minutes plus the build
#   DURATION=5 ROUNDS=1 MODES=prepared bench/shadow.sh
# Run it on a quiet machine: the figures mean nothing while something else loads the CPUs.
# start_viewgate takes optional settings, not the script's arguments:
# shellcheck disable=SC2119
set -euo pipefail

DURATION="${DURATION:-15}"          # seconds per pgbench run
ROUNDS="${ROUNDS:-3}"               # repetitions; medians are reported
CLIENTS="${CLIENTS:-8}"             # pgbench -c
THREADS="${THREADS:-2}"             # pgbench -j (clamped to the client count)
MODES="${MODES:-simple prepared}"   # pgbench -M values
RATES="${RATES:-1.0 0.05}"          # shadow rates compared with no shadow run
ROWS="${ROWS:-10000}"               # rows of the managed table
WARMUP="${WARMUP:-3}"               # seconds of untimed pgbench before the runs
PG_MAX_CONNECTIONS=100
DB_NAME=postgres
# The version the clients run at (the default) and the one shadow statements run again at.
FROM_VERSION=v1
TO_VERSION=v2
MANAGED_TABLE=model_metadata
# A shadow run's budget: more comparisons than any run here makes.
SHADOW_BUDGET=10000000
ADMIN_TOKEN=bench-shadow-token
LATENCY_PERCENTILE=99
# How long to wait for the proxy to see a shadow run start or end, in tenths of a second.
SHADOW_WAIT_TENTHS=100

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
EXAMPLE="$REPO_DIR/examples/model_metadata"
bench_init

fail() {
    echo "FAILED: $*" >&2
    exit 1
}

sql() {
    "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -h "$LOOPBACK" -p "$1" -U "$PG_SUPERUSER" -d "$DB_NAME" \
        -c "$2"
}

# --- build, Postgres, data, catalog, proxy -------------------------------------------------
build_viewgate
start_postgres "$PG_MAX_CONNECTIONS"
DATABASE_URL="postgres://$PG_SUPERUSER@$LOOPBACK:$PG_PORT/$DB_NAME"
log "seed table, $ROWS rows, views apply, default version $FROM_VERSION"
sql "$PG_PORT" "$(cat "$EXAMPLE/schema.sql")" >/dev/null
sql "$PG_PORT" "INSERT INTO $MANAGED_TABLE (model_name, model_version, model_type)
    SELECT 'model-' || g, (g % 7)::text, CASE WHEN g % 2 = 0 THEN 'transformer' END
    FROM generate_series(1, $ROWS) g" >/dev/null
"$VG_BIN" views apply --spec "$EXAMPLE/viewgate.toml" --database "$DATABASE_URL" \
    >"$WORK_DIR/apply.log" 2>&1 || { cat "$WORK_DIR/apply.log" >&2; fail "viewgate views apply"; }
sql "$PG_PORT" "UPDATE viewgate.settings SET default_version = '$FROM_VERSION'" >/dev/null
sql "$PG_PORT" "VACUUM ANALYZE" >/dev/null

ADMIN_PORT="$(free_port)"
printf 'catalog = "%s"\n' "$DATABASE_URL" >"$WORK_DIR/viewgate.toml"
start_viewgate VIEWGATE_CONFIG="$WORK_DIR/viewgate.toml" \
    VIEWGATE_ADMIN_LISTEN="$LOOPBACK:$ADMIN_PORT" VIEWGATE_ADMIN_TOKEN="$ADMIN_TOKEN"

# The proxy's view of the shadow run: viewgate_shadow_running from /metrics (1 or 0).
shadow_running() {
    python3 - "$ADMIN_PORT" "$ADMIN_TOKEN" <<'EOF'
import sys, urllib.request
request = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/metrics",
                                 headers={"Authorization": f"Bearer {sys.argv[2]}"})
try:
    text = urllib.request.urlopen(request, timeout=2).read().decode()
except Exception:
    print("?"); sys.exit(0)
for line in text.splitlines():
    if line.startswith("viewgate_shadow_running "):
        print(line.split()[1]); break
else:
    print("?")
EOF
}

wait_shadow() {
    local expected="$1" i
    for ((i = 0; i < SHADOW_WAIT_TENTHS; i++)); do
        [[ "$(shadow_running)" == "$expected" ]] && return 0
        sleep 0.1
    done
    fail "the proxy did not report viewgate_shadow_running $expected"
}

SCRIPT="$WORK_DIR/read.sql"
{
    echo "\\set id random(1, $ROWS)"
    echo "SELECT id, model_name, model_version FROM $MANAGED_TABLE WHERE id = :id;"
} >"$SCRIPT"

# run_pgbench MODE SECONDS -> "tps p99_ms"
run_pgbench() {
    local mode="$1" seconds="$2" threads out logs
    threads=$((THREADS < CLIENTS ? THREADS : CLIENTS))
    out="$WORK_DIR/pgbench-$mode.log"
    logs="$WORK_DIR/txlog"
    rm -rf "$logs" && mkdir -p "$logs"
    if ! "$PGBENCH" -n -f "$SCRIPT" -M "$mode" -c "$CLIENTS" -j "$threads" -T "$seconds" \
        -l --log-prefix="$logs/tx" \
        -h "$LOOPBACK" -p "$VG_PORT" -U "$PG_SUPERUSER" "$DB_NAME" >"$out" 2>&1; then
        cat "$out" >&2
        fail "pgbench -M $mode"
    fi
    local tps failed p99
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -n 1)"
    failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")"
    [[ -n "$tps" ]] || { cat "$out" >&2; fail "no TPS from -M $mode"; }
    [[ "${failed:-0}" == 0 ]] || { cat "$out" >&2; fail "$failed failed transactions (-M $mode)"; }
    p99="$(cat "$logs"/tx.* | awk '{ print $3 }' | sort -n |
        awk -v p="$LATENCY_PERCENTILE" '{ v[NR] = $1 } END {
            if (NR == 0) { print "nan"; exit }
            i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR
            printf "%.3f\n", v[i] / 1000 }')"
    echo "$tps $p99"
}

# The stopped run's totals over every proxy, as "sampled dropped compared diff skipped".
shadow_totals() {
    "$VG_BIN" shadow report --json --database "$DATABASE_URL" | python3 -c '
import json, sys
t = json.load(sys.stdin)["totals"]
g = lambda k: t.get(k, 0)
compared = g("matched") + g("diff") + g("nondeterministic") + g("error") + g("timeout")
print(g("sampled"), g("dropped"), compared, g("diff"), g("skipped"))'
}

if ((WARMUP > 0)); then
    for mode in $MODES; do
        log "warm-up: -M $mode, ${WARMUP}s"
        run_pgbench "$mode" "$WARMUP" >/dev/null
    done
fi

RESULTS_CSV="$WORK_DIR/results.csv"
SHADOW_CSV="$WORK_DIR/shadow.csv"
echo "round,mode,condition,tps,p99_ms,load1" >"$RESULTS_CSV"
echo "round,mode,condition,sampled,dropped,compared,diff,skipped" >"$SHADOW_CSV"
for ((round = 1; round <= ROUNDS; round++)); do
    for mode in $MODES; do
        for condition in off $RATES; do
            if [[ "$condition" != off ]]; then
                "$VG_BIN" shadow start --from "$FROM_VERSION" --to "$TO_VERSION" \
                    --rate "$condition" --budget "$SHADOW_BUDGET" --database "$DATABASE_URL" \
                    >/dev/null
                wait_shadow 1
            fi
            load1="$(cut -d' ' -f1 /proc/loadavg)"
            log "round $round/$ROUNDS: -M $mode, shadow $condition, -c $CLIENTS -T $DURATION (load $load1)"
            read -r tps p99 <<<"$(run_pgbench "$mode" "$DURATION")"
            echo "$round,$mode,$condition,$tps,$p99,$load1" >>"$RESULTS_CSV"
            if [[ "$condition" != off ]]; then
                "$VG_BIN" shadow stop --database "$DATABASE_URL" >/dev/null
                wait_shadow 0
                # The final counts arrive with the proxy's next report (once a second).
                sleep 1.5
                echo "$round,$mode,$condition,$(shadow_totals | tr ' ' ',')" >>"$SHADOW_CSV"
            fi
        done
    done
done

# The raw figures first, so a failure below loses nothing.
mkdir -p "$RESULTS_DIR"
STAMP="$(date +%Y%m%d-%H%M%S)"
cp "$RESULTS_CSV" "$RESULTS_DIR/shadow-$STAMP.csv"
cp "$SHADOW_CSV" "$RESULTS_DIR/shadow-runs-$STAMP.csv"

# --- report ------------------------------------------------------------------------------
# Medians over the rounds per mode × condition, and ratios to "off": of the medians, and the
# median of each round's own ratio (the pairs ran back to back).
render_table() {
    awk -F, '
        NR == 1 { next }
        function median(list,    n, a, i, j, t) {
            n = split(list, a, " ")
            for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        {
            key = $2 "," $3
            if (!(key in seen)) { seen[key] = 1; order[++n] = key }
            tps[key] = tps[key] " " $4; p99[key] = p99[key] " " $5
            rtps[$1, $2, $3] = $4; rp99[$1, $2, $3] = $5; if ($1 > maxr) maxr = $1
        }
        END {
            print "| mode | shadow | TPS (median) | p99 ms (median) | TPS ÷ off | p99 ÷ off | per-round p99 ÷ off | per-round TPS ÷ off |"
            print "|---|---|---:|---:|---:|---:|---|---|"
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, part, ","); m = part[1]; c = part[2]
                t = median(tps[k]); p = median(p99[k]); t0 = median(tps[m ",off"]); p0 = median(p99[m ",off"])
                pr = ""; tr = ""
                for (r = 1; r <= maxr; r++) {
                    if (rp99[r, m, "off"] > 0) pr = pr sprintf("%s%.2f", pr == "" ? "" : " ", rp99[r, m, c] / rp99[r, m, "off"])
                    if (rtps[r, m, "off"] > 0) tr = tr sprintf("%s%.2f", tr == "" ? "" : " ", rtps[r, m, c] / rtps[r, m, "off"])
                }
                printf("| %s | %s | %.0f | %.3f | %.2f | %.2f | %s | %s |\n", m, c, t, p,
                    (t0 > 0 ? t / t0 : 0), (p0 > 0 ? p / p0 : 0), pr, tr)
            }
        }' "$RESULTS_CSV"
}

REPORT="$RESULTS_DIR/shadow-$STAMP.md"
{
    echo "# Shadow reads: client TPS and p$LATENCY_PERCENTILE with and without a shadow run ($(date -Is))"
    echo
    machine_summary
    echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- pgbench: -c $CLIENTS -j min($THREADS, $CLIENTS), ${DURATION}s per run, ${WARMUP}s warm-up per mode; medians of $ROUNDS rounds, conditions interleaved within each round"
    echo "- read at $FROM_VERSION on $MANAGED_TABLE ($ROWS rows), shadowed at $TO_VERSION; p$LATENCY_PERCENTILE from pgbench -l"
    echo
    render_table
    echo
    echo "Shadow runs (sampled = queued for the workers; dropped = queue full; compared = ran at both versions):"
    echo
    echo '```'
    cat "$SHADOW_CSV"
    echo '```'
    echo
    echo "Raw results (CSV, load1 = 1-minute load average when the run started):"
    echo
    echo '```'
    cat "$RESULTS_CSV"
    echo '```'
} >"$REPORT"
cat "$REPORT"
log "written to $REPORT"
