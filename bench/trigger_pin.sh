#!/usr/bin/env bash
# bench/trigger_pin.sh — what a sync trigger's pinned search_path costs a row, on the Postgres
# at hand.
#
# Why: the migration's trigger functions pin their search_path (`SET search_path = …`), so
# that a client's temporary types cannot stand in for the ones an `up` or `down` expression
# names. Postgres applies and undoes that setting at every call; how much that costs depends
# on the release (17 added a cache of search-path lookups), and docs/benchmarks.md compares
# releases with this script.
#
# What it does: starts a throwaway Postgres ($PG_BIN), makes one table and a BEFORE INSERT
# trigger behind the migration's WHEN clause whose plpgsql function assigns one column from a
# declared variable, as `migrate start` writes them; then, ROUNDS times in turn, INSERTs ROWS
# rows in a rolled-back transaction with no trigger (the column written by hand), with the
# trigger's function unpinned, and with it pinned. Prints each variant's median and fastest
# time, its ratio to the insert by hand, and what the pin costs a row (by the medians and by
# the fastest runs).
#
# How to run (as root or as a user that can run initdb):
#   bench/trigger_pin.sh
#   PG_BIN=/usr/lib/postgresql/17/bin ROUNDS=9 bench/trigger_pin.sh
set -euo pipefail

ROUNDS="${ROUNDS:-15}"     # INSERTs of each variant, in turn; medians are reported
ROWS="${ROWS:-100000}"     # rows of each INSERT
DB_NAME=postgres

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init
start_postgres 20

sql() {
    "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -h "$LOOPBACK" -p "$PG_PORT" -U "$PG_SUPERUSER" \
        -d "$DB_NAME" "$@"
}

# The WHEN clause and the function body of the migration's INSERT trigger going up, for one
# column (src/control/migrate/sync.rs).
sql <<'SQL'
CREATE TABLE t (id bigserial PRIMARY KEY, size int, size_text text);
CREATE FUNCTION up_pinned() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$ DECLARE size integer := NEW.size; BEGIN NEW.size_text := (size::text); RETURN NEW; END $$;
CREATE FUNCTION up_unpinned() RETURNS trigger LANGUAGE plpgsql
AS $$ DECLARE size integer := NEW.size; BEGIN NEW.size_text := (size::text); RETURN NEW; END $$;
SQL

# insert_ms VARIANT: milliseconds of one INSERT of ROWS rows (rolled back) under VARIANT.
insert_ms() {
    local variant="$1" trigger="" by_hand="NULL"
    case "$variant" in
    by_hand) by_hand="g::text" ;;
    *) trigger="CREATE TRIGGER sync BEFORE INSERT ON t FOR EACH ROW
        WHEN (coalesce(current_setting('viewgate.version', true), '') = ANY ('{\"v1\",\"\"}'::text[]))
        EXECUTE FUNCTION up_$variant();" ;;
    esac
    sql <<SQL | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1
BEGIN;
$trigger
\\timing on
INSERT INTO t (size, size_text) SELECT g, $by_hand FROM generate_series(1, $ROWS) g;
\\timing off
ROLLBACK;
SQL
}

VARIANTS="by_hand unpinned pinned"
RESULTS="$WORK_DIR/results.txt"
for ((round = 1; round <= ROUNDS; round++)); do
    for variant in $VARIANTS; do
        ms="$(insert_ms "$variant")"
        [[ -n "$ms" ]] || { echo "the INSERT under $variant failed or was not timed" >&2; exit 1; }
        echo "$variant $ms" >>"$RESULTS"
    done
    log "round $round/$ROUNDS done"
done

# median_and_fastest VARIANT -> "median fastest" of its times, in ms.
median_and_fastest() {
    awk -v v="$1" '$1 == v { print $2 }' "$RESULTS" | sort -n |
        awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)], a[1] }'
}
read -r hand_median _ <<<"$(median_and_fastest by_hand)"
read -r unpinned_median unpinned_fastest <<<"$(median_and_fastest unpinned)"
read -r pinned_median pinned_fastest <<<"$(median_and_fastest pinned)"
echo "# INSERT of $ROWS rows, $ROUNDS rounds in turn ($("$PG_BIN/postgres" --version))"
echo
echo "| variant | median ms | fastest ms | ÷ by hand |"
echo "|---|---:|---:|---:|"
for variant in $VARIANTS; do
    read -r median fastest <<<"$(median_and_fastest "$variant")"
    awk -v v="$variant" -v m="$median" -v f="$fastest" -v h="$hand_median" \
        'BEGIN { printf "| %s | %.0f | %.0f | %.2f |\n", v, m, f, m / h }'
done
echo
# The fastest runs too: on a shared machine the medians carry other work's noise.
awk -v p="$pinned_median" -v u="$unpinned_median" -v pf="$pinned_fastest" -v uf="$unpinned_fastest" -v n="$ROWS" \
    'BEGIN { printf "The pin costs %.2f µs a row by the medians, %.2f µs by the fastest runs.\n", (p - u) * 1000 / n, (pf - uf) * 1000 / n }'
