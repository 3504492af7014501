#!/usr/bin/env bash
# bench/pgbench.sh — throughput, p99 latency and proxy CPU per transaction of viewgate against
# direct Postgres and PgBouncer, for unmanaged statements and for statements on a managed table.
#
# Why: the targets for the proxy are relative (viewgate ≥ 1.25× PgBouncer's TPS at 8 clients,
# proxy CPU per transaction ≤ 0.8× PgBouncer's; managed-table statements through viewgate within
# 5 % of unmanaged ones). Measuring every target in one run, interleaved, on the same cluster,
# and taking the median of repeated rounds keeps the ratios honest on a noisy box.
#
# Workloads (WORKLOADS):
#   select        pgbench's built-in -S (a primary-key lookup on pgbench_accounts): unmanaged.
#   managed_read  SELECT id, model_name, model_type FROM T WHERE id = :id
#   managed_rw    UPDATE T SET model_version = CAST(:v AS text) WHERE id = :id; then the SELECT
#   unmanaged_read  the managed_read SELECT on U, a view viewgate does not manage, made with the
#                 v2 view's own definition: the same work for Postgres on every target, so the
#                 managed read's cost in the proxy is what differs from it (issue 12's 5 %).
# On the seed example (examples/model_metadata) at version v2 (the catalog's default version).
# T is `model_metadata` through viewgate, which rewrites it to the v2 view, and the view itself,
# `model_metadata_v2`, for the direct connection and PgBouncer (which cannot rewrite): the same
# statement on the version's view. U is `unmanaged_v2` on every target. With -M simple pgbench
# inlines :id and :v, so nearly every statement text is new (the case the rewrite cache keyed
# by statement shape exists for); with -M prepared they are parameters and the rewrite happens
# once per connection, at Parse.
#
# What it does: builds viewgate (release), starts a throwaway Postgres (fsync=off) on a free
# loopback port, `pgbench -i -s $SCALE`, creates the seed table, applies the seed spec with
# `viewgate views apply`, makes v2 the default version and seeds $ROWS rows (half with NULL
# model_type, which v2 reads as 'neural_network'), starts viewgate (with the catalog) and
# PgBouncer (session pooling, trust), checks that viewgate really rewrites, then for ROUNDS
# rounds × workload × protocol mode × client count runs pgbench against direct / viewgate /
# pgbouncer in turn (the three targets back to back, the rounds outermost, so drifting load hits
# all alike). Each run reads the proxy's utime+stime from /proc/PID/stat before and after (µs of
# proxy CPU per transaction) and logs every transaction's latency (pgbench -l) for the p99.
# Reports the median over the rounds of each figure, as a Markdown table, and writes it to
# bench/results/pgbench-<date>.md (gitignored). Every process started is stopped by PID on exit
# and the temp dir deleted.
#
# How to run (as root or as a user that can run initdb; needs pgbench, psql, python3):
#   bench/pgbench.sh                                    # defaults: 15 s per run, about 45 minutes
#   DURATION=5 bench/pgbench.sh                         # about 17 minutes
#   DURATION=5 ROUNDS=1 CLIENTS="8" MODES=simple WORKLOADS="select managed_read" bench/pgbench.sh
#   RATE=4000 TARGETS=viewgate WORKLOADS="managed_read unmanaged_read" bench/pgbench.sh
#                                                       # the managed read's cost at a fixed rate
#   TLS=client WORKLOADS=select bench/pgbench.sh        # pgbench speaks TLS to every target
#                                                       # (TLS=upstream, TLS=both: bench/lib.sh)
# start_viewgate takes optional settings, not the script's arguments:
# shellcheck disable=SC2119
set -euo pipefail

DURATION="${DURATION:-15}"              # seconds per pgbench run
ROUNDS="${ROUNDS:-3}"                   # repetitions of the whole matrix; medians are reported
CLIENTS="${CLIENTS:-1 8 32}"            # pgbench -c values
MODES="${MODES:-simple prepared}"       # pgbench -M values
WORKLOADS="${WORKLOADS:-select managed_read unmanaged_read managed_rw}"
TARGETS="${TARGETS:-direct viewgate pgbouncer}"
THREADS="${THREADS:-2}"                 # pgbench -j (clamped to the client count)
# pgbench -R: transactions a second over all clients, empty for full speed. At a fixed rate
# every target and workload does the same work a second, so the proxy's CPU per transaction
# compares like with like: at full speed a slower run batches fewer wake-ups per epoll_wait
# and its CPU per transaction rises with no change in the work a transaction costs.
RATE="${RATE:-}"
SCALE="${SCALE:-10}"                    # pgbench -i -s
ROWS="${ROWS:-10000}"                   # rows of the managed table
WARMUP="${WARMUP:-3}"                   # seconds of untimed pgbench per target before the runs
PG_MAX_CONNECTIONS="${PG_MAX_CONNECTIONS:-200}"
PGB_MAX_CLIENT_CONN="${PGB_MAX_CLIENT_CONN:-200}"
PGB_POOL_SIZE="${PGB_POOL_SIZE:-50}"    # must be ≥ the largest client count
DB_NAME=postgres
# The version the managed workloads run at, and the view that stands for the table there.
VERSION=v2
MANAGED_TABLE=model_metadata
VERSION_VIEW=model_metadata_v2
# A copy of the version's view that no version manages: the unmanaged twin of a managed read.
UNMANAGED_VIEW=unmanaged_v2
# Percentile of per-transaction latency reported.
LATENCY_PERCENTILE=99

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
EXAMPLE="$REPO_DIR/examples/model_metadata"
bench_init

for c in $CLIENTS; do
    if ((c > PGB_POOL_SIZE)); then
        echo "PGB_POOL_SIZE=$PGB_POOL_SIZE is below CLIENTS value $c" >&2
        exit 1
    fi
done

fail() {
    echo "FAILED: $*" >&2
    exit 1
}

# sql PORT SQL: runs SQL as the superuser, prints unaligned tuples.
sql() {
    "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -h "$LOOPBACK" -p "$1" -U "$PG_SUPERUSER" -d "$DB_NAME" \
        -c "$2"
}

# expect WHAT ACTUAL EXPECTED: prints the check, exits non-zero on a mismatch.
expect() {
    [[ "$2" == "$3" ]] || fail "$1: got '$2', expected '$3'"
    log "ok $1 ($2)"
}

# --- build, Postgres, data, catalog ------------------------------------------------------
build_viewgate
start_postgres "$PG_MAX_CONNECTIONS"
DATABASE_URL="postgres://$PG_SUPERUSER@$LOOPBACK:$PG_PORT/$DB_NAME"
log "pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" -h "$LOOPBACK" -p "$PG_PORT" -U "$PG_SUPERUSER" "$DB_NAME" \
    >"$WORK_DIR/pgbench-init.log" 2>&1
log "seed table, views apply, default version $VERSION, $ROWS rows"
sql "$PG_PORT" "$(cat "$EXAMPLE/schema.sql")" >/dev/null
"$VG_BIN" views apply --spec "$EXAMPLE/viewgate.toml" --database "$DATABASE_URL" \
    >"$WORK_DIR/apply.log" 2>&1 || { cat "$WORK_DIR/apply.log" >&2; fail "viewgate views apply"; }
sql "$PG_PORT" "UPDATE viewgate.settings SET default_version = '$VERSION'" >/dev/null
sql "$PG_PORT" "INSERT INTO $MANAGED_TABLE (model_name, model_version, model_type, hyperparameters)
    SELECT 'model-' || g, '1', CASE WHEN g % 2 = 0 THEN 'transformer' END, jsonb_build_object('g', g)
    FROM generate_series(1, $ROWS) g" >/dev/null
sql "$PG_PORT" "VACUUM ANALYZE" >/dev/null
sql "$PG_PORT" "CREATE VIEW $UNMANAGED_VIEW AS $(sql "$PG_PORT" "SELECT pg_get_viewdef('$VERSION_VIEW'::regclass)")" >/dev/null

# --- proxies -----------------------------------------------------------------------------
printf 'catalog = "%s"\n' "$DATABASE_URL" >"$WORK_DIR/viewgate.toml"
start_viewgate VIEWGATE_CONFIG="$WORK_DIR/viewgate.toml"
start_pgbouncer "$PGB_MAX_CLIENT_CONN" "$PGB_POOL_SIZE"

# viewgate really rewrites: the managed table reads as the v2 view (no NULL model_type).
for ((i = 0; i < 50; i++)); do
    [[ "$(sql "$VG_PORT" "SHOW viewgate.version" 2>/dev/null || true)" == "$VERSION" ]] && break
    sleep 0.1
done
expect "viewgate: SHOW viewgate.version" "$(sql "$VG_PORT" "SHOW viewgate.version")" "$VERSION"
NULLS="SELECT count(*) FILTER (WHERE model_type IS NULL) || '/' || count(*) FILTER (WHERE model_type = 'neural_network') FROM"
expect "viewgate: $MANAGED_TABLE is rewritten to the $VERSION view" \
    "$(sql "$VG_PORT" "$NULLS $MANAGED_TABLE")" "0/$((ROWS / 2))"
expect "direct: $MANAGED_TABLE is the base table" \
    "$(sql "$PG_PORT" "$NULLS $MANAGED_TABLE")" "$((ROWS / 2))/0"

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

# Each proxy reaches Postgres over TLS exactly when TLS says so (pgbench, with its sslmode,
# shows the client side: a proxy that required TLS and did not offer it would fail it).
TLS_IN_USE="SELECT version || ' ' || cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
for target in viewgate pgbouncer; do
    expect "$target: TLS to Postgres" "$(PGSSLMODE="$CLIENT_SSLMODE" sql "$(port_of "$target")" \
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")" \
        "$([[ "$UPSTREAM_SSLMODE" == require ]] && echo t || echo f)"
    if [[ "$UPSTREAM_SSLMODE" == require ]]; then
        log "$target to Postgres: $(PGSSLMODE="$CLIENT_SSLMODE" sql "$(port_of "$target")" "$TLS_IN_USE")"
    fi
done
if [[ "$CLIENT_SSLMODE" == require ]]; then
    log "pgbench to Postgres: $(PGSSLMODE=require sql "$PG_PORT" "$TLS_IN_USE")"
fi

# script_of WORKLOAD TARGET -> pgbench arguments selecting the workload's script.
script_of() {
    local workload="$1" target="$2" table file
    table="$([[ "$target" == viewgate ]] && echo "$MANAGED_TABLE" || echo "$VERSION_VIEW")"
    file="$WORK_DIR/$workload-$table.sql"
    case "$workload" in
    select) echo "-S" ;;
    managed_read | managed_rw)
        {
            echo "\\set id random(1, $ROWS)"
            if [[ "$workload" == managed_rw ]]; then
                echo "\\set v random(1, 1000000)"
                echo "UPDATE $table SET model_version = CAST(:v AS text) WHERE id = :id;"
            fi
            echo "SELECT id, model_name, model_type FROM $table WHERE id = :id;"
        } >"$file"
        echo "-f $file"
        ;;
    unmanaged_read)
        file="$WORK_DIR/$workload.sql"
        {
            echo "\\set id random(1, $ROWS)"
            echo "SELECT id, model_name, model_type FROM $UNMANAGED_VIEW WHERE id = :id;"
        } >"$file"
        echo "-f $file"
        ;;
    *) fail "unknown workload $workload" ;;
    esac
}

# run_pgbench WORKLOAD TARGET MODE CLIENTS SECONDS
#   -> "tps transactions utime_ticks stime_ticks p99_ms" (ticks of the proxy)
run_pgbench() {
    local workload="$1" target="$2" mode="$3" clients="$4" seconds="$5"
    local port pid threads out logs user0=0 sys0=0 user1=0 sys1=0 script
    port="$(port_of "$target")"
    pid="$(pid_of "$target")"
    script="$(script_of "$workload" "$target")"
    threads=$((THREADS < clients ? THREADS : clients))
    out="$WORK_DIR/pgbench-$workload-$target-$mode-$clients.log"
    logs="$WORK_DIR/txlog"
    rm -rf "$logs" && mkdir -p "$logs"
    [[ -n "$pid" ]] && read -r user0 sys0 <<<"$(cpu_ticks_split "$pid")"
    # shellcheck disable=SC2086 # $script is two words (-f FILE) or one (-S)
    if ! PGSSLMODE="$CLIENT_SSLMODE" "$PGBENCH" -n $script -M "$mode" -c "$clients" -j "$threads" -T "$seconds" \
        ${RATE:+-R "$RATE"} -l --log-prefix="$logs/tx" \
        -h "$LOOPBACK" -p "$port" -U "$PG_SUPERUSER" "$DB_NAME" >"$out" 2>&1; then
        cat "$out" >&2
        fail "pgbench $workload -M $mode -c $clients against $target"
    fi
    [[ -n "$pid" ]] && read -r user1 sys1 <<<"$(cpu_ticks_split "$pid")"
    local tps txns failed p99
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -n 1)"
    txns="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")"
    failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")"
    [[ -n "$tps" && -n "$txns" && "$txns" -gt 0 ]] || { cat "$out" >&2; fail "no TPS from $workload $target $mode $clients"; }
    [[ "${failed:-0}" == 0 ]] || { cat "$out" >&2; fail "$failed failed transactions in $workload $target $mode $clients"; }
    # Per-transaction log lines: client_id transaction_no time_us script_no epoch epoch_us.
    p99="$(cat "$logs"/tx.* | awk '{ print $3 }' | sort -n |
        awk -v p="$LATENCY_PERCENTILE" '{ v[NR] = $1 } END {
            if (NR == 0) { print "nan"; exit }
            i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR
            printf "%.3f\n", v[i] / 1000 }')"
    echo "$tps $txns $((user1 - user0)) $((sys1 - sys0)) $p99"
}

if ((WARMUP > 0)); then
    for target in $TARGETS; do
        log "warm-up: $target, ${WARMUP}s"
        run_pgbench select "$target" simple 8 "$WARMUP" >/dev/null
    done
fi

RESULTS_CSV="$WORK_DIR/results.csv"
echo "round,workload,mode,clients,target,tps,transactions,utime_ticks,stime_ticks,p99_ms" >"$RESULTS_CSV"
for ((round = 1; round <= ROUNDS; round++)); do
    for workload in $WORKLOADS; do
        for mode in $MODES; do
            for clients in $CLIENTS; do
                for target in $TARGETS; do
                    log "round $round/$ROUNDS: $workload -M $mode -c $clients -T $DURATION -> $target"
                    read -r tps txns user sys p99 <<<"$(run_pgbench "$workload" "$target" "$mode" "$clients" "$DURATION")"
                    echo "$round,$workload,$mode,$clients,$target,$tps,$txns,$user,$sys,$p99" >>"$RESULTS_CSV"
                done
            done
        done
    done
done

expect "viewgate: still no NULL model_type after the runs" \
    "$(sql "$VG_PORT" "SELECT count(*) FILTER (WHERE model_type IS NULL) FROM $MANAGED_TABLE")" 0

# --- report ------------------------------------------------------------------------------
# Medians over the rounds, per workload × mode × clients × target: TPS, µs of proxy CPU per
# transaction ((utime + stime) / CLK_TCK / transactions, user and system apart too) and p99.
MEDIANS_CSV="$WORK_DIR/medians.csv"
awk -F, -v tck="$CLK_TCK" '
    NR == 1 { next }
    function median(list,    n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        key = $2 "," $3 "," $4 "," $5
        if (!(key in seen)) { seen[key] = 1; order[++n] = key }
        tps[key] = tps[key] " " $6
        p99[key] = p99[key] " " $10
        if ($5 != "direct" && $7 > 0) {
            cpu[key] = cpu[key] " " ($8 + $9) / tck / $7 * 1e6
            usr[key] = usr[key] " " $8 / tck / $7 * 1e6
            sys[key] = sys[key] " " $9 / tck / $7 * 1e6
        }
    }
    END {
        for (i = 1; i <= n; i++) {
            k = order[i]
            printf "%s,%.1f,%s,%s,%s,%.3f\n", k, median(tps[k]),
                (k in cpu) ? sprintf("%.1f", median(cpu[k])) : "",
                (k in usr) ? sprintf("%.1f", median(usr[k])) : "",
                (k in sys) ? sprintf("%.1f", median(sys[k])) : "", median(p99[k])
        }
    }' "$RESULTS_CSV" >"$MEDIANS_CSV"

# One row per workload × mode × clients: TPS per target and ratios, proxy CPU per transaction
# and its ratio, p99 per target.
render_table() {
    awk -F, '
        {
            key = $1 "," $2 "," $3
            if (!(key in seen)) { seen[key] = 1; order[++n] = key }
            tps[key, $4] = $5; cpu[key, $4] = $6; p99[key, $4] = $9
        }
        function num(v, fmt) { return v == "" ? "–" : sprintf(fmt, v) }
        function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "–" : sprintf("%.2f", a / b) }
        END {
            print "| workload | mode | clients | direct TPS | viewgate TPS | pgbouncer TPS | vg/direct | vg/pgb | vg µs CPU/txn | pgb µs CPU/txn | CPU vg/pgb | p99 ms direct / vg / pgb |"
            print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, part, ",")
                d = tps[k, "direct"]; v = tps[k, "viewgate"]; p = tps[k, "pgbouncer"]
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s / %s |\n",
                    part[1], part[2], part[3], num(d, "%.0f"), num(v, "%.0f"), num(p, "%.0f"),
                    ratio(v, d), ratio(v, p), num(cpu[k, "viewgate"], "%.1f"),
                    num(cpu[k, "pgbouncer"], "%.1f"), ratio(cpu[k, "viewgate"], cpu[k, "pgbouncer"]),
                    num(p99[k, "direct"], "%.2f"), num(p99[k, "viewgate"], "%.2f"), num(p99[k, "pgbouncer"], "%.2f")
            }
        }' "$MEDIANS_CSV"
}

# Managed against unmanaged through viewgate, per mode × clients. TPS: each workload's
# viewgate/direct ratio over that of `select` and of `unmanaged_read` (1.00 = the managed
# table costs viewgate nothing more than an unmanaged one, relative to Postgres doing the same
# work directly). CPU: viewgate's µs per transaction on the managed read over the unmanaged
# read of the same view (the same statement but for the name viewgate rewrites).
render_managed() {
    awk -F, '
        { tps[$1, $2, $3, $4] = $5; cpu[$1, $2, $3, $4] = $6
          if (!(($2 "," $3) in seen)) { seen[$2 "," $3] = 1; order[++n] = $2 "," $3 } }
        function share(w, m, c) { return (tps[w, m, c, "direct"] > 0) ? tps[w, m, c, "viewgate"] / tps[w, m, c, "direct"] : 0 }
        function fmt(v) { return v ? sprintf("%.2f", v) : "–" }
        function over(a, b) { return (a && b) ? sprintf("%.2f", a / b) : "–" }
        END {
            print "| mode | clients | select vg/direct | unmanaged_read vg/direct | managed_read vg/direct | managed_read / select | managed_read / unmanaged_read | managed_read / unmanaged_read vg CPU | managed_rw vg/direct | managed_rw / select |"
            print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            for (i = 1; i <= n; i++) {
                split(order[i], part, ","); m = part[1]; c = part[2]
                s = share("select", m, c); u = share("unmanaged_read", m, c)
                r = share("managed_read", m, c); x = share("managed_rw", m, c)
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", m, c,
                    fmt(s), fmt(u), fmt(r), over(r, s), over(r, u),
                    over(cpu["managed_read", m, c, "viewgate"], cpu["unmanaged_read", m, c, "viewgate"]),
                    fmt(x), over(x, s)
            }
        }' "$MEDIANS_CSV"
}

# Proxy CPU per transaction split into user and system (kernel) time (medians).
render_cpu_split() {
    awk -F, '
        BEGIN {
            print "| workload | mode | clients | proxy | user µs/txn | system µs/txn | total µs/txn |"
            print "|---|---|---:|---|---:|---:|---:|"
        }
        $4 != "direct" { printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $7, $8, $6 }' "$MEDIANS_CSV"
}

mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/pgbench-$(date +%Y%m%d-%H%M%S).md"
{
    echo "# pgbench: direct vs viewgate vs PgBouncer, unmanaged and managed ($(date -Is))"
    echo
    machine_summary
    echo "- PgBouncer: $(pgbouncer --version | head -n 1), session pooling, default_pool_size=$PGB_POOL_SIZE"
    echo "- pgbench: scale $SCALE, -n, -j min($THREADS, clients), ${DURATION}s per run, ${WARMUP}s warm-up per target; medians of $ROUNDS rounds"
    if [[ -n "$RATE" ]]; then
        echo "- rate: $RATE transactions/s (pgbench -R: latency includes schedule lag)"
    else
        echo "- rate: full speed"
    fi
    echo "- managed workloads at $VERSION ($ROWS rows): viewgate runs them on $MANAGED_TABLE, direct and PgBouncer on $VERSION_VIEW"
    echo "- CPU: proxy utime+stime from /proc/PID/stat (CLK_TCK=$CLK_TCK), per transaction processed; p$LATENCY_PERCENTILE from pgbench -l"
    echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    render_table
    echo
    render_managed
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
