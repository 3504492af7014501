"""psycopg 3 through viewgate: server-side prepares, pipeline mode, COPY, binary cursors, cancel.

Usage: psycopg_checks.py DSN. Prints one "ok <check>" line per passed check; any mismatch
raises, so the exit status is non-zero.
"""
import datetime
import decimal
import threading
import time

import psycopg
from psycopg import errors, sql
from psycopg.types.json import Jsonb

from checks import check, dsn_args, mismatch

(dsn,) = dsn_args("DSN")


with psycopg.connect(dsn, autocommit=True) as conn:
    conn.execute("DROP TABLE IF EXISTS py_items")
    conn.execute("CREATE TABLE py_items(id int PRIMARY KEY, name text, price numeric, at timestamptz)")

    # Server-side prepared statements: prepare=True prepares on first use, then reuses it.
    for i in range(50):
        row = conn.execute("SELECT %s::int * 3, %s::text", (i, f"v{i}"), prepare=True).fetchone()
        if row != (i * 3, f"v{i}"):
            mismatch(f"prepared row {i}: {row!r}")
    prepared = conn.execute(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'SELECT $1::int * 3%%'"
    ).fetchone()[0]
    check("prepare=True reuses one server-side statement (50 executions)", prepared, 1)

with psycopg.connect(dsn, prepare_threshold=0) as conn:
    # prepare_threshold=0: every statement is prepared server-side from its first execution.
    with conn.cursor() as cur:
        for i in range(20):
            cur.execute(
                "INSERT INTO py_items VALUES (%s, %s, %s, %s)",
                (i, f"item {i}", decimal.Decimal(f"{i}.25"),
                 datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(hours=i)),
            )
    conn.commit()
    names = conn.execute("SELECT name FROM pg_prepared_statements").fetchall()
    check("prepare_threshold=0 prepares statements server-side", len(names) >= 2, True)
    check("inserted rows", conn.execute("SELECT count(*) FROM py_items").fetchone()[0], 20)

    # Rollback: invisible afterwards.
    conn.execute("INSERT INTO py_items VALUES (100, 'gone', 0, now())")
    conn.rollback()
    check("rolled back row is gone", conn.execute("SELECT count(*) FROM py_items WHERE id = 100").fetchone()[0], 0)

    # An error reports its SQLSTATE and the connection carries on after rollback.
    try:
        conn.execute("INSERT INTO py_items VALUES (1, 'dup', 0, now())")
        mismatch("duplicate insert succeeded")
    except errors.UniqueViolation as error:
        check("unique violation SQLSTATE", error.sqlstate, "23505")
    conn.rollback()

with psycopg.connect(dsn, autocommit=True) as conn:
    # Pipeline mode: many statements sent before results are read, one sync at the end.
    with conn.pipeline() as pipeline:
        cursors = [conn.execute("SELECT %s::int + 1", (i,)) for i in range(100)]
        conn.execute("UPDATE py_items SET name = upper(name) WHERE id < %s", (5,))
        pipeline.sync()
        results = [cur.fetchone()[0] for cur in cursors]
    check("pipeline results in order", results, list(range(1, 101)))
    check("pipeline update applied",
          conn.execute("SELECT count(*) FROM py_items WHERE name LIKE 'ITEM%%'").fetchone()[0], 5)

    # An error inside a pipeline aborts the rest up to the sync; later work still runs.
    try:
        with conn.pipeline():
            conn.execute("SELECT 1/0")
            conn.execute("SELECT 1")
        mismatch("pipeline error not raised")
    except errors.DivisionByZero as error:
        check("pipeline error SQLSTATE", error.sqlstate, "22012")
    check("usable after pipeline error", conn.execute("SELECT 'alive'").fetchone()[0], "alive")

    # COPY in both directions, text and binary.
    with conn.cursor() as cur:
        with cur.copy("COPY py_items (id, name, price, at) FROM STDIN") as copy:
            for i in range(1000, 6000):
                copy.write_row((i, f"copied {i}", decimal.Decimal(i) / 4, datetime.datetime(2025, 6, 1, tzinfo=datetime.timezone.utc)))
        check("COPY FROM STDIN rows", cur.rowcount, 5000)
        with cur.copy("COPY (SELECT id, name FROM py_items WHERE id >= 1000 ORDER BY id) TO STDOUT") as copy:
            rows = list(copy.rows())
        check("COPY TO STDOUT rows", len(rows), 5000)
        check("COPY TO STDOUT first row", rows[0], ("1000", "copied 1000"))
        with cur.copy("COPY (SELECT id, price FROM py_items WHERE id >= 1000 ORDER BY id) TO STDOUT (FORMAT binary)") as copy:
            copy.set_types(["int4", "numeric"])
            binary_rows = list(copy.rows())
        check("COPY binary last row", binary_rows[-1], (5999, decimal.Decimal("1499.75")))

    # Binary cursors: results in binary format, decoded into Python values.
    with conn.cursor(binary=True) as cur:
        cur.execute(
            "SELECT 9223372036854775807::int8, 2.5::float8, '\\xdeadbeef'::bytea, ARRAY['a','b c'], "
            "'2024-02-29 12:34:56.789+00'::timestamptz, %s::jsonb, 12345.678901::numeric",
            (Jsonb({"k": [1, None]}),),
        )
        check("binary result formats", all(cur.pgresult.fformat(i) == 1 for i in range(cur.pgresult.nfields)), True)
        check("binary values", cur.fetchone(), (
            9223372036854775807, 2.5, b"\xde\xad\xbe\xef", ["a", "b c"],
            datetime.datetime(2024, 2, 29, 12, 34, 56, 789000, tzinfo=datetime.timezone.utc),
            {"k": [1, None]}, decimal.Decimal("12345.678901"),
        ))
        cur.execute(sql.SQL("SELECT sum(id) FROM {}").format(sql.Identifier("py_items")))
        check("binary aggregate", cur.fetchone()[0], sum(range(20)) + sum(range(1000, 6000)))

with psycopg.connect(dsn, autocommit=True) as conn:
    # Cancel from another thread (a CancelRequest on a new connection with the proxy's key).
    timer = threading.Timer(0.5, conn.cancel_safe)
    timer.start()
    started = time.monotonic()
    try:
        conn.execute("SELECT pg_sleep(30)")
        mismatch("pg_sleep was not cancelled")
    except errors.QueryCanceled as error:
        check("cancel SQLSTATE", error.sqlstate, "57014")
    check("cancelled promptly", time.monotonic() - started < 5, True)
    check("usable after cancel", conn.execute("SELECT 'alive'").fetchone()[0], "alive")

print("psycopg: all checks passed")
