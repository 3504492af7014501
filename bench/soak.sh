#!/usr/bin/env bash
# bench/soak.sh — a long mixed load through one viewgate with routing changes, cutovers and a
# pause/resume every minute; reports the proxy's RSS slope, lost writes and failed transactions.
#
# Why: a leak or a slow drift shows only over time; a cutover or a pause that loses or fails a
# transaction shows only when it happens under load, many times. Not in CI (30 minutes).
#
# What it does: a throwaway Postgres with the seed example applied (v1 and v2, v1 the default),
# `viewgate serve` in front with the catalog and the admin API; three pgbench runs for DURATION:
# default-version sessions (moved by the cutovers), sessions declaring v1 and sessions declaring
# v2 (`options=-c viewgate.version=…`), each transaction inserting one row tagged with its
# stream and reading back through the session's view. Every minute, in turn: a cutover to v2,
# a routing rule sending application `soak-default` to v2 (then removed), a cutover back to v1;
# and every minute a pause, 500 ms, a resume. VmRSS is sampled every 10 s. At the end:
#   - RSS slope after WARMUP seconds (least squares, KiB per minute) and first/last samples;
#   - lost writes: transactions pgbench counted as processed minus rows in the table, per
#     stream (must be 0);
#   - failed transactions as pgbench reports them (must be 0: nothing is injected here).
# Prints a Markdown report and writes it to bench/results/soak-<date>.md (gitignored).
#
# How to run: bench/soak.sh [DURATION_SECONDS]   (default 1800)
# Tunables: CLIENTS per stream [4], WARMUP seconds excluded from the slope [120],
#           RATE transactions per second per stream (pgbench -R) [unlimited: as fast as it
#           goes; set it on a shared machine], VG_BIN (see lib.sh) to skip the release build.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION="${1:-1800}"
CLIENTS="${CLIENTS:-4}"
WARMUP="${WARMUP:-120}"
RATE="${RATE:-}"
# Seconds between the operations' rounds and between RSS samples.
ROUND_SECONDS=60
SAMPLE_SECONDS=10
PAUSE_MS=500
TOKEN="soak-token"
STREAMS=(default v1 v2)

bench_init
start_postgres $(( CLIENTS * ${#STREAMS[@]} + 50 ))
build_viewgate
CATALOG="postgres://$PG_SUPERUSER@$LOOPBACK:$PG_PORT/postgres?sslmode=disable"
"$PSQL" -X -q -h "$LOOPBACK" -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres \
    -f "$REPO_DIR/examples/model_metadata/schema.sql"
"$VG_BIN" views apply --spec "$REPO_DIR/examples/model_metadata/viewgate.toml" --database "$CATALOG" >/dev/null
"$VG_BIN" cutover --to v1 --database "$CATALOG" >/dev/null
ADMIN_PORT="$(free_port)"
start_viewgate VIEWGATE_CATALOG="$CATALOG" VIEWGATE_ADMIN_LISTEN="$LOOPBACK:$ADMIN_PORT" \
    VIEWGATE_ADMIN_TOKEN="$TOKEN" VIEWGATE_MAX_CLIENT_CONNECTIONS=1000
ADMIN="http://$LOOPBACK:$ADMIN_PORT"

for stream in "${STREAMS[@]}"; do
    cat >"$WORK_DIR/$stream.sql" <<SQL
\set n random(1, 1000000000)
BEGIN;
INSERT INTO model_metadata (model_name, model_version) VALUES ('soak-$stream', :n);
SELECT count(*) FROM model_metadata WHERE model_name = 'soak-$stream' AND model_version = ':n';
COMMIT;
SQL
done

log "load: ${#STREAMS[@]} streams × $CLIENTS clients for $DURATION s"
PGBENCH_PIDS=()
for stream in "${STREAMS[@]}"; do
    options=""
    [[ "$stream" != default ]] && options="-c viewgate.version=$stream"
    rate=()
    [[ -n "$RATE" ]] && rate=(-R "$RATE")
    PGOPTIONS="$options" PGAPPNAME="soak-$stream" "$PGBENCH" -n -h "$LOOPBACK" -p "$VG_PORT" \
        -U "$PG_SUPERUSER" -c "$CLIENTS" -j 1 -T "$DURATION" "${rate[@]}" -f "$WORK_DIR/$stream.sql" postgres \
        >"$WORK_DIR/pgbench-$stream.log" 2>&1 &
    PGBENCH_PIDS+=($!)
    EXTRA_PIDS+=($!)
done

START="$(date +%s)"
(
    while true; do
        echo "$(( $(date +%s) - START )) $(rss_kib "$VG_PID")"
        sleep "$SAMPLE_SECONDS"
    done
) >"$WORK_DIR/rss.tsv" &
EXTRA_PIDS+=($!)

round=0
operations_failed=0
run_op() {
    if ! "$@" >>"$WORK_DIR/operations.log" 2>&1; then
        operations_failed=$(( operations_failed + 1 ))
        log "operation failed: $*"
    fi
}
while (( $(date +%s) - START + ROUND_SECONDS < DURATION )); do
    sleep "$ROUND_SECONDS"
    case $(( round % 3 )) in
        0) run_op "$VG_BIN" cutover --to v2 --database "$CATALOG" ;;
        1) run_op "$VG_BIN" route add --version v2 --match-application soak-default --database "$CATALOG"
           sleep 5
           id="$("$VG_BIN" route list --json --database "$CATALOG" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rules"][0]["id"])')"
           run_op "$VG_BIN" route remove "$id" --database "$CATALOG" ;;
        2) run_op "$VG_BIN" cutover --to v1 --database "$CATALOG" ;;
    esac
    run_op "$VG_BIN" pause --admin "$ADMIN" --token "$TOKEN" --timeout 10s
    sleep "0.$PAUSE_MS"
    run_op "$VG_BIN" resume --admin "$ADMIN" --token "$TOKEN"
    round=$(( round + 1 ))
done
for pid in "${PGBENCH_PIDS[@]}"; do wait "$pid" || true; done

report="$(mktemp)"
{
    echo "## viewgate soak, $(date -u +%Y-%m-%dT%H:%MZ), ${DURATION} s"
    echo
    machine_summary
    echo
    echo "$round rounds of operations (cutover / routing rule / cutover back, each with a pause and resume); $operations_failed operations failed."
    echo
    echo "| stream | transactions processed | failed | rows in the table | lost writes |"
    echo "|---|---|---|---|---|"
    for stream in "${STREAMS[@]}"; do
        log_file="$WORK_DIR/pgbench-$stream.log"
        processed="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log_file")"
        failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$log_file")"
        rows="$("$PSQL" -X -A -t -h "$LOOPBACK" -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres \
            -c "SELECT count(*) FROM model_metadata WHERE model_name = 'soak-$stream'")"
        echo "| $stream | ${processed:-?} | ${failed:-0} | $rows | $(( ${processed:-0} - rows )) |"
        if grep -q "aborted\|error" "$log_file"; then
            echo
            echo "pgbench $stream reported:"
            grep -m5 "aborted\|error" "$log_file" | sed 's/^/    /'
        fi
    done
    echo
    python3 - "$WORK_DIR/rss.tsv" "$WARMUP" <<'PY'
import sys
samples = [tuple(map(float, line.split())) for line in open(sys.argv[1]) if len(line.split()) == 2]
warm = [(t, r) for t, r in samples if t >= float(sys.argv[2])]
print(f"RSS samples: {len(samples)} (every 10 s); first {samples[0][1]:.0f} KiB, last {samples[-1][1]:.0f} KiB, max {max(r for _, r in samples):.0f} KiB")
if len(warm) >= 3:
    n = len(warm)
    mt = sum(t for t, _ in warm) / n
    mr = sum(r for _, r in warm) / n
    slope = sum((t - mt) * (r - mr) for t, r in warm) / sum((t - mt) ** 2 for t, _ in warm)
    print(f"RSS slope after warm-up ({sys.argv[2]} s): {slope * 60:.1f} KiB per minute over {n} samples")
else:
    print("too few samples after warm-up for a slope")
PY
} >"$report"
cat "$report"
mkdir -p "$RESULTS_DIR"
cp "$report" "$RESULTS_DIR/soak-$(date -u +%Y%m%dT%H%M).md"
rm -f "$report"
