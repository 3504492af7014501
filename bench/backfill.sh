#!/usr/bin/env bash
# bench/backfill.sh — a migration under live write traffic: backfill rate, the writers' latency
# and lock waits while it runs, lost or failed writes, and what the sync triggers cost writers.
#
# Why: issue 10's goals are relative and about behaviour under load — backfill ≥ 100k rows/s
# (pgroll's CI: 9–53k), writers' p99 during the migration against the same writers before it,
# no lock wait over 100 ms, 0 failed transactions, 0 lost acknowledged writes, and a dual-write
# cost ≤ 1.5× (pgroll's triggers: 4–4.5×). One run measures all of them on one cluster.
#
# What it does: builds viewgate (release), starts a throwaway Postgres (fsync=off,
# log_lock_waits=on, deadlock_timeout=100ms so every wait over 100 ms is logged), creates
# `models` with $ROWS rows and applies a v1 spec, starts viewgate with the catalog, then runs
# $WRITERS pgbench clients through viewgate at v1 (each transaction updates a random row and
# inserts one) in five phases:
#   1. before: $DURATION s with no migration, at full speed (direct and through viewgate) and
#      paced at $RATE_TPS transactions/s through viewgate;
#   2. during: the paced writers run while `viewgate migrate start` adds a NOT NULL column
#      computed from another (`up`) and changes a column's type (`up`/`down`), backfilling
#      every row;
#   3. live:   $DURATION s with the migration live (sync triggers on every write), after a
#      VACUUM of what the backfill left behind (autovacuum's job in production): full speed
#      direct and through viewgate, paced through viewgate, and full speed direct with the
#      sync triggers disabled (the same table without the triggers: their cost alone).
#   4. contract: the default version moved to v2 and paced writers at v2 through viewgate for
#      $CONTRACT_WINDOW s while `viewgate migrate complete` retires v1: their lock waits.
#   5. rollback: the same writers at v2 while a migration to v3 (a nullable column with a
#      default) starts and `viewgate migrate rollback` undoes it: their lock waits.
# Latency is compared between paced windows: an application sends its traffic at its own rate,
# and at full speed p99 measures the queue pgbench builds, not the migration. Full-speed
# windows give the dual-write cost (TPS before ÷ TPS live). Then checks that every row the writers were told was committed is there and has the new
# columns filled. Prints a Markdown report and writes it to bench/results/ (gitignored).
#
# How to run (as root or a user that can run initdb):
#   bench/backfill.sh                        # 1,000,000 rows, 8 writers, 15 s windows, 1000 tx/s paced
#   RATE_TPS=2000 bench/backfill.sh          # heavier application traffic
#   ROWS=200000 DURATION=5 bench/backfill.sh
#   BATCH_SIZE=500 BATCH_DELAY_MS=10 bench/backfill.sh   # a gentler backfill
#   YIELD_TO_WRITERS=false bench/backfill.sh             # the backfill flat out, whatever the load
# shellcheck disable=SC2119
set -euo pipefail

ROWS="${ROWS:-1000000}"
WRITERS="${WRITERS:-8}"
DURATION="${DURATION:-15}"
BATCH_SIZE="${BATCH_SIZE:-1000}"
BATCH_DELAY_MS="${BATCH_DELAY_MS:-0}"
# The backfill's adaptive pause (docs/migrations.md); false: flat out whatever the load.
YIELD_TO_WRITERS="${YIELD_TO_WRITERS:-true}"
# The paced writers' total rate: about a quarter of what 8 writers reach through viewgate here.
RATE_TPS="${RATE_TPS:-1000}"
# The server-side per-row measurement: rows per statement, and repeats.
MICRO_ROWS="${MICRO_ROWS:-100000}"
MICRO_REPEATS="${MICRO_REPEATS:-5}"
# The writers' window during the migration; it must outlast the migration to cover all of it
# (the default pacing took 114-191 s over 1M rows here) and leave time after it, whose p99 is
# the fairest reference for what the backfill adds.
DURING_WINDOW="${DURING_WINDOW:-240}"
# How long the writers at v2 run while `migrate complete` retires v1 (it starts 2 s in).
CONTRACT_WINDOW="${CONTRACT_WINDOW:-15}"
# When `viewgate migrate status` is sampled for the report, in seconds after `migrate start`.
STATUS_AFTER="${STATUS_AFTER:-12}"
# Experiment: renice the backfill's Postgres backend (application_name viewgate) to this
# niceness while the migration runs (root only), to see how much of the writers' tail is the
# backfill's CPU: empty leaves it alone.
RENICE_BACKFILL="${RENICE_BACKFILL:-}"
# Experiment: PIN_DATABASE=1 gives Postgres (every backend, the backfill's among them) the last
# CPU and everything else (the proxy, pgbench, `migrate start`) the others, as if the database
# had a host of its own: the backfill then takes CPU from the writers' backends only, whose
# delays the proxies see and report to the pacer. Needs taskset and at least two CPUs.
PIN_DATABASE="${PIN_DATABASE:-}"
# Experiment: PIN_BACKFILL=1 gives the migration's work the last CPU alone (`migrate start`, its
# Postgres backend, which runs the backfill, and the autovacuum workers, which the backfill's
# dead rows set off) and everything else (the writers' backends and Postgres's other
# processes, the proxy, pgbench) the others, as on a database host with a core to spare for
# the migration: what it still adds to the writers' tail is then not its CPU. Needs taskset
# and at least two CPUs.
PIN_BACKFILL="${PIN_BACKFILL:-}"
DB_NAME=postgres

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init

build_viewgate
start_postgres 100
# Pins Postgres (the postmaster and its processes, so every backend it starts from now on too)
# to CPUs $1, and this shell (so every process it starts from now on) to CPUs $2.
pin_cpus() {
    local postmaster pid
    postmaster="$(head -n 1 "$PG_DATA/postmaster.pid")"
    for pid in "$postmaster" $(pgrep -P "$postmaster"); do
        taskset -a -p -c "$1" "$pid" >/dev/null
    done
    taskset -p -c "$2" $$ >/dev/null
}
LAST_CPU=$(($(nproc) - 1))
if [ -n "$PIN_DATABASE$PIN_BACKFILL" ] && [ "$LAST_CPU" -lt 1 ]; then
    log "PIN_DATABASE and PIN_BACKFILL need two CPUs"
    exit 1
fi
if [ -n "$PIN_DATABASE" ]; then
    DATABASE_CPU=$LAST_CPU
    pin_cpus "$DATABASE_CPU" "0-$((DATABASE_CPU - 1))"
    log "Postgres pinned to CPU $DATABASE_CPU, everything else to CPUs 0-$((DATABASE_CPU - 1))"
fi
if [ -n "$PIN_BACKFILL" ]; then
    BACKFILL_CPU=$LAST_CPU
    pin_cpus "0-$((BACKFILL_CPU - 1))" "0-$((BACKFILL_CPU - 1))"
    log "everything on CPUs 0-$((BACKFILL_CPU - 1)), the migration's work alone on CPU $BACKFILL_CPU"
fi
cat >>"$PG_DATA/postgresql.conf" <<CONF
log_lock_waits = on
deadlock_timeout = 100ms
log_line_prefix = '%m [%p] app=%a '
CONF
psql_q() { "$PSQL" -qAtX -h "$LOOPBACK" -p "$PG_PORT" -U "$PG_SUPERUSER" "$DB_NAME" -c "$1"; }
psql_q "SELECT pg_reload_conf()" >/dev/null
DATABASE_URL="postgres://$PG_SUPERUSER@$LOOPBACK:$PG_PORT/$DB_NAME?sslmode=disable"

log "creating models with $ROWS rows"
psql_q "CREATE TABLE models (id bigserial PRIMARY KEY, name text NOT NULL, size integer NOT NULL DEFAULT 0, note text);
        INSERT INTO models (name, size) SELECT 'model-' || n, n % 1000 FROM generate_series(1, $ROWS) AS n" >/dev/null
psql_q "VACUUM ANALYZE models" >/dev/null
cat >"$WORK_DIR/spec.toml" <<'SPEC'
[[tables]]
name = "models"
key = ["id"]
[[versions]]
name = "v1"
[[versions.tables]]
base = "models"
columns = ["id", "name", "size", "note"]
SPEC
cat >"$WORK_DIR/0002.toml" <<MIGRATION
version = "v2"
from = "v1"
[settings]
batch_size = $BATCH_SIZE
batch_delay_ms = $BATCH_DELAY_MS
yield_to_writers = $YIELD_TO_WRITERS
[[operations]]
op = "add_column"
table = "models"
up = "CASE WHEN size >= 500 THEN 'large' ELSE 'small' END"
column = { name = "kind", type = "text", nullable = false }
[[operations]]
op = "alter_column"
table = "models"
column = "size"
type = "bigint"
up = "size::bigint * 1000"
down = "(size / 1000)::integer"
MIGRATION
"$VG_BIN" views apply --spec "$WORK_DIR/spec.toml" --database "$DATABASE_URL" >/dev/null
"$VG_BIN" cutover --to v1 --database "$DATABASE_URL" >/dev/null
start_viewgate VIEWGATE_CATALOG="$DATABASE_URL"

cat >"$WORK_DIR/writer.sql" <<WRITER
\set id random(1, $ROWS)
BEGIN;
UPDATE models SET size = size + 1 WHERE id = :id;
INSERT INTO models (name, size) VALUES ('writer', 1);
END;
WRITER
# The same writes with the triggers' work done by hand (the check constraint added NOT VALID
# still holds new rows to the new column): the table's cost without the trigger machinery.
cat >"$WORK_DIR/writer-untriggered.sql" <<WRITER
\set id random(1, $ROWS)
BEGIN;
UPDATE models SET size = size + 1, _vg_v2_size = (size + 1)::bigint * 1000 WHERE id = :id;
INSERT INTO models (name, size, kind, _vg_v2_size) VALUES ('writer', 1, 'small', 1000);
END;
WRITER

# run_writers NAME SECONDS [PORT [RATE [SCRIPT]]]: pgbench through viewgate at v1 (or, given
# PORT, straight to Postgres on the base table, as an old deployment would), at full speed or
# paced at RATE transactions/s, one log line per transaction. WRITER_VERSION and WRITER_APP
# (the application_name the lock waits are told by) override v1 and `writer`.
run_writers() {
    local name="$1" seconds="$2" port="${3:-$VG_PORT}" rate="${4:-}" script="${5:-writer.sql}"
    local pace=()
    [ -n "$rate" ] && pace=(-R "$rate")
    PGOPTIONS="-c viewgate.version=${WRITER_VERSION:-v1}" PGAPPNAME="${WRITER_APP:-writer}" "$PGBENCH" -n -M simple \
        -f "$WORK_DIR/$script" -c "$WRITERS" -j 2 -T "$seconds" "${pace[@]}" \
        -l --log-prefix="$WORK_DIR/tx-$name" \
        -h "$LOOPBACK" -p "$port" -U "$PG_SUPERUSER" "$DB_NAME" >"$WORK_DIR/pgbench-$name.log" 2>&1 || true
}

# p99 latency in ms of the transactions logged for NAME, optionally only those that ended
# between epoch seconds FROM and TO (to the microsecond: a contract lasts well under one). A
# paced transaction's latency includes its schedule lag (the log's 7th field): the wait an
# application would see.
p99_ms() {
    local name="$1" from="${2:-0}" to="${3:-9999999999}"
    cat "$WORK_DIR"/tx-"$name".* 2>/dev/null |
        awk -v from="$from" -v to="$to" '$5 + $6 / 1000000 >= from && $5 + $6 / 1000000 <= to { print $3 + $7 }' |
        sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else printf "%.2f", v[int(NR * 0.99 + 0.5)] / 1000 }'
}
# p99 in ms per STEP seconds of the transactions logged for NAME that ended between FROM and
# TO: "0 s: 2.1, 10 s: 2.4, …", to see where in a window a tail comes from.
p99_timeline() {
    local name="$1" from="$2" to="$3" step="$4"
    cat "$WORK_DIR"/tx-"$name".* 2>/dev/null |
        awk -v from="$from" -v to="$to" -v step="$step" \
            '$5 >= from && $5 <= to { print int(($5 - from) / step), $3 + $7 }' |
        sort -k1,1n -k2,2n |
        awk -v step="$step" '
            function flush() { if (n > 0) printf "%s%d s: %.1f", sep, cur * step, v[int(n * 0.99 + 0.5)] / 1000; sep = ", " }
            $1 != cur { flush(); cur = $1; n = 0 }
            { v[++n] = $2 }
            END { flush(); print "" }'
}
# lock_waits APP [WHAT]: the waits over deadlock_timeout Postgres logged for writers named APP
# (WHAT narrows them, e.g. ' on relation' for a table's lock); longest_wait APP: the longest in
# ms, empty when none.
lock_waits() { grep -c "app=$1.*still waiting for${2:+.*$2}" "$WORK_DIR/postgres.log" || true; }
longest_wait() {
    grep -o "app=$1.*acquired .* after [0-9.]* ms" "$WORK_DIR/postgres.log" |
        sed 's/.* after \([0-9.]*\) ms/\1/' | sort -n | tail -n 1 || true
}
tx_count() { cat "$WORK_DIR"/tx-"$1".* 2>/dev/null | wc -l; }
tps_of() { sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK_DIR/pgbench-$1.log" | head -n 1; }
failed_of() {
    local failed aborted
    failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$WORK_DIR/pgbench-$1.log")"
    aborted="$(grep -c 'aborted' "$WORK_DIR/pgbench-$1.log" || true)"
    echo "${failed:-0} failed, $aborted aborted clients"
}

# What the writers' backends are doing, sampled every 10 ms from pg_stat_activity by one
# session that commits after each sample (no snapshot held: vacuum is not held back): each
# tick's rows are the writers in a transaction (active or waiting for the client) and the
# backfill's backend when active. Read per window by wait_profile.
psql_q "CREATE UNLOGGED TABLE wait_samples (at timestamptz, app text, what text);
        CREATE UNLOGGED TABLE wait_ticks (at timestamptz)" >/dev/null
start_sampler() {
    PGAPPNAME=sampler "$PSQL" -qAtX -h "$LOOPBACK" -p "$PG_PORT" -U "$PG_SUPERUSER" "$DB_NAME" -c "
        DO \$\$ BEGIN LOOP
            PERFORM pg_stat_clear_snapshot();
            INSERT INTO wait_ticks VALUES (clock_timestamp());
            INSERT INTO wait_samples
                SELECT clock_timestamp(), application_name,
                       CASE WHEN state = 'active'
                            THEN coalesce(wait_event_type || ':' || wait_event, 'CPU (running or runnable)')
                            ELSE state || coalesce(' ' || wait_event_type || ':' || wait_event, '') END
                FROM pg_stat_activity
                WHERE (application_name = 'writer' AND state IN ('active', 'idle in transaction'))
                   OR (application_name = 'viewgate' AND state = 'active' AND query LIKE '%UPDATE%');
            COMMIT;
            PERFORM pg_sleep(0.01);
        END LOOP; END \$\$" >/dev/null 2>&1 &
    SAMPLER_PID=$!
    EXTRA_PIDS+=("$SAMPLER_PID")
}
# wait_profile FROM TO: per backend kind and state, the average number of backends in it
# over the ticks between epoch seconds FROM and TO ("writer CPU 0.41, writer Lock:tuple 0.02").
wait_profile() {
    psql_q "WITH ticks AS (SELECT count(*) AS n FROM wait_ticks
                           WHERE at BETWEEN to_timestamp($1) AND to_timestamp($2))
            SELECT coalesce(string_agg(format('%s %s %s', app, what, round(c::numeric / n, 3)), ', ' ORDER BY c DESC), 'no samples')
            FROM (SELECT app, what, count(*) AS c FROM wait_samples
                  WHERE at BETWEEN to_timestamp($1) AND to_timestamp($2) GROUP BY 1, 2) s, ticks
            WHERE c::numeric / n >= 0.005"
}
# Renices every active backfill backend to RENICE_BACKFILL until killed (see the knob).
renice_backfill() {
    while sleep 0.2; do
        for pid in $(psql_q "SELECT pid FROM pg_stat_activity WHERE application_name = 'viewgate'"); do
            renice -n "$RENICE_BACKFILL" -p "$pid" >/dev/null 2>&1 || true
        done
    done
}
# Moves the backfill's backend and the autovacuum workers to BACKFILL_CPU until killed (see
# PIN_BACKFILL). It runs there itself: its psql and taskset would otherwise load the writers'
# CPU, as they did in the first runs (5 % of it).
pin_backfill() {
    while sleep 0.5; do
        for pid in $(psql_q "SELECT pid FROM pg_stat_activity
                              WHERE application_name = 'viewgate' OR backend_type = 'autovacuum worker'"); do
            taskset -p -c "$BACKFILL_CPU" "$pid" >/dev/null 2>&1 || true
        done
    done
}
start_sampler

log "phase 1: writers without a migration, ${DURATION}s each (direct, through viewgate, paced)"
run_writers before-direct "$DURATION" "$PG_PORT"
run_writers before "$DURATION"
BEFORE_PACED_START="$(date +%s.%N)"
run_writers before-paced "$DURATION" "$VG_PORT" "$RATE_TPS"
BEFORE_PACED_END="$(date +%s.%N)"

log "phase 2: paced writers while migrate start runs"
run_writers during "$DURING_WINDOW" "$VG_PORT" "$RATE_TPS" &
WRITERS_PID=$!
EXTRA_PIDS+=("$WRITERS_PID")
sleep 2
if [ -n "$RENICE_BACKFILL" ]; then
    renice_backfill &
    RENICE_PID=$!
    EXTRA_PIDS+=("$RENICE_PID")
fi
if [ -n "$PIN_BACKFILL" ]; then
    pin_backfill &
    PIN_PID=$!
    taskset -p -c "$BACKFILL_CPU" "$PIN_PID" >/dev/null
    EXTRA_PIDS+=("$PIN_PID")
fi
MIG_START="$(date +%s.%N)"
# The pacer's decisions (pause ratio, batch rows) go to migrate.progress with the progress lines.
VIEWGATE_LOG="${VIEWGATE_LOG:-warn,viewgate::control::migrate::backfill=debug}" \
${PIN_BACKFILL:+taskset -c "$BACKFILL_CPU"} "$VG_BIN" migrate start "$WORK_DIR/0002.toml" --database "$DATABASE_URL" \
    >"$WORK_DIR/migrate.out" 2>"$WORK_DIR/migrate.progress" &
MIGRATE_PID=$!
EXTRA_PIDS+=("$MIGRATE_PID")
# What an operator sees STATUS_AFTER seconds in (the backfill's pace, if it still runs).
sleep "$STATUS_AFTER"
"$VG_BIN" migrate status --database "$DATABASE_URL" >"$WORK_DIR/status-mid.txt" 2>&1 || true
wait "$MIGRATE_PID"
MIG_END="$(date +%s.%N)"
log "migration done in $(awk -v a="$MIG_START" -v b="$MIG_END" 'BEGIN { printf "%.1f", b - a }') s; waiting for the writers' window to end"
kill -0 "$WRITERS_PID" 2>/dev/null ||
    log "WARNING: the writers' window (DURING_WINDOW=$DURING_WINDOW s) ended before the migration: the p99 during it covers only part of it, and there is none after; raise DURING_WINDOW"
[ -n "$RENICE_BACKFILL" ] && stop_pid "$RENICE_PID"
[ -n "$PIN_BACKFILL" ] && stop_pid "$PIN_PID"
wait "$WRITERS_PID" || true
DURING_END="$(date +%s.%N)"

log "phase 3: writers with the migration live, ${DURATION}s each, after a VACUUM"
psql_q "VACUUM ANALYZE models" >/dev/null
run_writers live-direct "$DURATION" "$PG_PORT"
run_writers live "$DURATION"
run_writers live-paced "$DURATION" "$VG_PORT" "$RATE_TPS"
psql_q "ALTER TABLE models DISABLE TRIGGER USER" >/dev/null
run_writers untriggered-direct "$DURATION" "$PG_PORT" "" writer-untriggered.sql
psql_q "ALTER TABLE models ENABLE TRIGGER USER" >/dev/null

# The triggers' cost per row, without the network or the client: one session runs the same bulk
# INSERT and UPDATE with the triggers and with their work written by hand (triggers disabled),
# interleaved $MICRO_REPEATS times, each in a transaction that is rolled back. Medians.
log "the triggers' cost per row, server-side, $MICRO_REPEATS interleaved repeats"
MICRO_SQL="$WORK_DIR/micro.sql"
{
    echo '\timing on'
    for _ in $(seq "$MICRO_REPEATS"); do
        echo "BEGIN; INSERT INTO models (name, size) SELECT 'bulk', 1 FROM generate_series(1, $MICRO_ROWS); ROLLBACK;"
        echo "BEGIN; ALTER TABLE models DISABLE TRIGGER USER; INSERT INTO models (name, size, kind, _vg_v2_size) SELECT 'bulk', 1, 'small', 1000 FROM generate_series(1, $MICRO_ROWS); ROLLBACK;"
        echo "BEGIN; UPDATE models SET size = size + 1 WHERE id <= $MICRO_ROWS; ROLLBACK;"
        echo "BEGIN; ALTER TABLE models DISABLE TRIGGER USER; UPDATE models SET size = size + 1, _vg_v2_size = (size + 1)::bigint * 1000 WHERE id <= $MICRO_ROWS; ROLLBACK;"
    done
} >"$MICRO_SQL"
# Lines of the timing output that belong to the INSERT/UPDATE statements (the others are
# BEGIN, ALTER and ROLLBACK: well under a millisecond), in script order.
"$PSQL" -X -h "$LOOPBACK" -p "$PG_PORT" -U "$PG_SUPERUSER" "$DB_NAME" -f "$MICRO_SQL" 2>&1 |
    awk '/^(INSERT|UPDATE)/ { want = 1; next } want && /^Time:/ { print $2; want = 0 }' >"$WORK_DIR/micro.times"
# micro_median K: the median of the K-th of the four statements (1 insert+triggers, 2 insert by
# hand, 3 update+triggers, 4 update by hand), in microseconds per row.
micro_median() {
    awk -v k="$1" -v rows="$MICRO_ROWS" 'NR % 4 == k % 4 { print $1 * 1000 / rows }' "$WORK_DIR/micro.times" |
        sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else printf "%.2f", v[int((NR + 1) / 2)] }'
}

BACKFILLED="$(sed -n 's/.*: \([0-9]*\) rows backfilled.*/\1/p' "$WORK_DIR/migrate.out")"
MIG_SECONDS="$(awk -v a="$MIG_START" -v b="$MIG_END" 'BEGIN { printf "%.2f", b - a }')"
RATE="$(awk -v r="${BACKFILLED:-0}" -v s="$MIG_SECONDS" 'BEGIN { printf "%.0f", r / s }')"
# Every acknowledged writer transaction inserted one row named 'writer'.
ACKED=0
for window in before-direct before before-paced during live-direct live live-paced untriggered-direct; do
    ACKED=$((ACKED + $(tx_count "$window")))
done
STORED="$(psql_q "SELECT count(*) FROM models WHERE name = 'writer'")"
UNFILLED="$(psql_q "SELECT count(*) FROM models WHERE kind IS NULL OR _vg_v2_size IS DISTINCT FROM size::bigint * 1000")"
WAITS="$(lock_waits writer)"
# A table's lock (the expand's or the contract's DDL) or a row's (a batch holding the row).
TABLE_WAITS="$(lock_waits writer ' on relation')"
LONGEST_WAIT="$(longest_wait writer)"
P99_BEFORE="$(p99_ms before-paced)"
P99_DURING="$(p99_ms during "$MIG_START" "$MIG_END")"
# The same pgbench run after the migration went live (sync triggers on, before the VACUUM):
# the fairest reference for what the backfill itself adds.
P99_AFTER="$(p99_ms during "$(awk -v t="$MIG_END" 'BEGIN { printf "%.3f", t + 1 }')")"
P99_TIMELINE="$(p99_timeline during "$MIG_START" "$MIG_END" 10)"
PROFILE_BEFORE="$(wait_profile "$BEFORE_PACED_START" "$BEFORE_PACED_END")"
PROFILE_DURING="$(wait_profile "$MIG_START" "$MIG_END")"
PROFILE_AFTER="$(wait_profile "$(awk -v t="$MIG_END" 'BEGIN { printf "%.3f", t + 1 }')" "$DURING_END")"
P99_LIVE="$(p99_ms live-paced)"
P99_BEFORE_FULL="$(p99_ms before)"
P99_LIVE_FULL="$(p99_ms live)"
TPS_UNTRIGGERED_DIRECT="$(tps_of untriggered-direct)"
TPS_BEFORE="$(tps_of before)"
TPS_LIVE="$(tps_of live)"
TPS_BEFORE_DIRECT="$(tps_of before-direct)"
TPS_LIVE_DIRECT="$(tps_of live-direct)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "–" }'; }

# 4. The contract under writers at v2: the default version moved to v2, paced writers through
#    viewgate at v2 while `migrate complete` retires v1 (run again while the proxy's last
#    heartbeat still shows a session at v1), holding the table from its LOCK to its commit.
log "phase 4: paced writers at v2 while migrate complete runs"
"$VG_BIN" cutover --to v2 --database "$DATABASE_URL" >/dev/null
cat >"$WORK_DIR/writer-v2.sql" <<WRITER
\set id random(1, $ROWS)
BEGIN;
UPDATE models SET size = size + 1000 WHERE id = :id;
INSERT INTO models (name, size, kind) VALUES ('writer', 1000, 'small');
END;
WRITER
WRITER_VERSION=v2 WRITER_APP=contract-writer \
    run_writers contract "$CONTRACT_WINDOW" "$VG_PORT" "$RATE_TPS" writer-v2.sql &
CONTRACT_WRITERS_PID=$!
EXTRA_PIDS+=("$CONTRACT_WRITERS_PID")
sleep 2
CONTRACT_START="$(date +%s.%N)"
for _ in $(seq 60); do
    if "$VG_BIN" migrate complete --database "$DATABASE_URL" >"$WORK_DIR/complete.out" 2>&1; then
        break
    fi
    grep -q "refused: " "$WORK_DIR/complete.out" || break
    sleep 0.5
done
CONTRACT_END="$(date +%s.%N)"
wait "$CONTRACT_WRITERS_PID" || true
CONTRACT_WAITS="$(lock_waits contract-writer)"
CONTRACT_LONGEST="$(longest_wait contract-writer)"
P99_CONTRACT="$(p99_ms contract "$CONTRACT_START" "$CONTRACT_END")"
P99_CONTRACT_WINDOW="$(p99_ms contract)"
ACKED_V2="$(tx_count contract)"
STORED_AFTER="$(psql_q "SELECT count(*) FROM models WHERE name = 'writer'")"

# 5. A rollback under writers at v2: a migration to v3 (a nullable column with a default: no
#    backfill) started and rolled back while paced writers at v2 run; both hold the table for
#    a moment (the expand, then the rollback dropping what it added).
log "phase 5: paced writers at v2 while a migration to v3 starts and rolls back"
cat >"$WORK_DIR/0003.toml" <<MIGRATION
version = "v3"
from = "v2"
[[operations]]
op = "add_column"
table = "models"
column = { name = "score", type = "integer", default = "0" }
MIGRATION
WRITER_VERSION=v2 WRITER_APP=rollback-writer \
    run_writers rollback "$CONTRACT_WINDOW" "$VG_PORT" "$RATE_TPS" writer-v2.sql &
ROLLBACK_WRITERS_PID=$!
EXTRA_PIDS+=("$ROLLBACK_WRITERS_PID")
sleep 2
ROLLBACK_START="$(date +%s.%N)"
"$VG_BIN" migrate start "$WORK_DIR/0003.toml" --database "$DATABASE_URL" >"$WORK_DIR/start-v3.out" 2>&1 || true
"$VG_BIN" migrate rollback --database "$DATABASE_URL" >"$WORK_DIR/rollback.out" 2>&1 || true
ROLLBACK_END="$(date +%s.%N)"
wait "$ROLLBACK_WRITERS_PID" || true
ROLLBACK_WAITS="$(lock_waits rollback-writer)"
ROLLBACK_LONGEST="$(longest_wait rollback-writer)"
P99_ROLLBACK="$(p99_ms rollback "$ROLLBACK_START" "$ROLLBACK_END")"
P99_ROLLBACK_WINDOW="$(p99_ms rollback)"
ACKED_ROLLBACK="$(tx_count rollback)"
STORED_LAST="$(psql_q "SELECT count(*) FROM models WHERE name = 'writer'")"

mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/backfill-$(date +%Y%m%d-%H%M%S).md"
{
    echo "# Migration under write load ($(date -Is))"
    echo
    machine_summary
    echo "- table: $ROWS rows; migration: add_column NOT NULL with up + alter_column type with up/down; batch_size $BATCH_SIZE, batch_delay_ms $BATCH_DELAY_MS, yield_to_writers $YIELD_TO_WRITERS${RENICE_BACKFILL:+; backfill backend reniced to $RENICE_BACKFILL}${PIN_DATABASE:+; Postgres pinned to CPU $DATABASE_CPU, the proxy, pgbench and migrate start to the others}${PIN_BACKFILL:+; migrate start, its backend and autovacuum alone on CPU $BACKFILL_CPU, everything else on the others}"
    echo "- writers: $WRITERS pgbench clients through viewgate at v1, each transaction = UPDATE a random row + INSERT a row; paced windows at $RATE_TPS tx/s"
    echo
    echo "| measure | value | goal |"
    echo "|---|---:|---|"
    echo "| rows backfilled | ${BACKFILLED:-?} | all $ROWS |"
    echo "| migrate start, expand to live | ${MIG_SECONDS} s | |"
    echo "| backfill rate (rows / whole migrate start) | ${RATE} rows/s | ≥ 100,000 |"
    echo "| paced writers' p99 before | ${P99_BEFORE} ms | |"
    echo "| paced writers' p99 during the migration | ${P99_DURING} ms ($(ratio "$P99_DURING" "$P99_BEFORE")) | flat |"
    echo "| paced writers' p99 in the same run, after the migration went live | ${P99_AFTER} ms (during ÷ after: $(ratio "$P99_DURING" "$P99_AFTER")) | |"
    echo "| paced writers' p99 per 10 s of the migration (ms) | ${P99_TIMELINE} | |"
    echo "| paced writers' backends, average number in each state (10 ms samples): before | ${PROFILE_BEFORE} | |"
    echo "| the same during the migration (viewgate = the backfill's batches) | ${PROFILE_DURING} | |"
    echo "| the same in the same run after it went live | ${PROFILE_AFTER} | |"
    echo "| paced writers' p99 with the migration live | ${P99_LIVE} ms | |"
    echo "| full-speed writers' p99 before / live | ${P99_BEFORE_FULL} / ${P99_LIVE_FULL} ms | |"
    echo "| lock waits over 100 ms (writers) | ${WAITS} (longest ${LONGEST_WAIT:-none} ms; for a table's lock ${TABLE_WAITS}, for a row's $((WAITS - TABLE_WAITS))) | 0 |"
    echo "| failed writer transactions | before: $(failed_of before) / $(failed_of before-paced); during: $(failed_of during); live: $(failed_of live) / $(failed_of live-paced); direct: $(failed_of before-direct) / $(failed_of live-direct) | 0 |"
    echo "| acknowledged writes / rows stored | $ACKED / $STORED | equal |"
    echo "| rows with v2 columns not filled | $UNFILLED | 0 |"
    echo "| writer TPS through viewgate, before / live | $TPS_BEFORE / $TPS_LIVE | |"
    echo "| dual-write cost through viewgate (TPS before ÷ TPS live) | $(ratio "$TPS_BEFORE" "$TPS_LIVE") | ≤ 1.5× |"
    echo "| writer TPS direct to Postgres, before / live | $TPS_BEFORE_DIRECT / $TPS_LIVE_DIRECT | |"
    echo "| dual-write cost direct (TPS before ÷ TPS live) | $(ratio "$TPS_BEFORE_DIRECT" "$TPS_LIVE_DIRECT") | ≤ 1.5× |"
    echo "| the triggers alone, direct (same table: TPS triggers disabled ÷ enabled) | $TPS_UNTRIGGERED_DIRECT / $TPS_LIVE_DIRECT = $(ratio "$TPS_UNTRIGGERED_DIRECT" "$TPS_LIVE_DIRECT") | |"
    echo "| bulk INSERT, µs per row, triggers / by hand (server-side, median of $MICRO_REPEATS) | $(micro_median 1) / $(micro_median 2) = $(ratio "$(micro_median 1)" "$(micro_median 2)") | ≤ 1.5× |"
    echo "| bulk UPDATE, µs per row, triggers / by hand (server-side, median of $MICRO_REPEATS) | $(micro_median 3) / $(micro_median 4) = $(ratio "$(micro_median 3)" "$(micro_median 4)") | ≤ 1.5× |"
    echo "| migrate complete under paced writers at v2: its outcome | $(tail -n 1 "$WORK_DIR/complete.out") | |"
    echo "| their lock waits over 100 ms | ${CONTRACT_WAITS} (longest ${CONTRACT_LONGEST:-none} ms) | 0 |"
    echo "| their p99 while it ran / over their whole window | ${P99_CONTRACT} / ${P99_CONTRACT_WINDOW} ms | |"
    echo "| their failed transactions; acknowledged writes in all / rows stored after it | $(failed_of contract); $((ACKED + ACKED_V2)) / $STORED_AFTER | 0; equal |"
    echo "| a migration to v3 started and rolled back under paced writers at v2: its outcome | $(tail -n 1 "$WORK_DIR/start-v3.out" | cut -c1-60)…; $(tail -n 1 "$WORK_DIR/rollback.out") | |"
    echo "| their lock waits over 100 ms | ${ROLLBACK_WAITS} (longest ${ROLLBACK_LONGEST:-none} ms) | 0 |"
    echo "| their p99 while both ran / over their whole window | ${P99_ROLLBACK} / ${P99_ROLLBACK_WINDOW} ms | |"
    echo "| their failed transactions; acknowledged writes in all / rows stored after it | $(failed_of rollback); $((ACKED + ACKED_V2 + ACKED_ROLLBACK)) / $STORED_LAST | 0; equal |"
    echo
    echo "migrate status ${STATUS_AFTER} s in said: $(grep -h 'backfill ' "$WORK_DIR/status-mid.txt" || cat "$WORK_DIR/status-mid.txt")"
    echo
    echo "migrate start said: $(cat "$WORK_DIR/migrate.out")"
} >"$REPORT"
cat "$REPORT"
log "written to $REPORT"
