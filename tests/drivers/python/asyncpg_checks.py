"""asyncpg through viewgate: Parse/Describe/Flush flow, binary codecs, transactions, COPY, NOTIFY, cancel.

Usage: asyncpg_checks.py DSN. Prints one "ok <check>" line per passed check; any mismatch
raises, so the exit status is non-zero.
"""
import asyncio
import datetime
import decimal
import time

import asyncpg

from checks import binary_jsonb, check, dsn_args, mismatch

(dsn,) = dsn_args("DSN")


async def main():
    conn = await asyncpg.connect(dsn)
    await binary_jsonb(conn)
    await conn.execute("DROP TABLE IF EXISTS apg_items")
    await conn.execute(
        "CREATE TABLE apg_items(id int PRIMARY KEY, tags text[], doc jsonb, price numeric, at timestamptz)"
    )

    # fetch: Parse + Describe + Flush, then Bind/Execute/Sync; every value in binary.
    rows = await conn.fetch("SELECT g, g * 2 FROM generate_series(1, $1::int) g", 1000)
    check("fetch rows", [tuple(r) for r in rows][-1], (1000, 2000))
    check("fetchval", await conn.fetchval("SELECT $1::text || '!'", "hi"), "hi!")

    # An explicitly prepared statement, executed many times.
    statement = await conn.prepare("SELECT $1::int8 + 1, $2::float8 / 2")
    for i in range(200):
        row = await statement.fetchrow(i, float(i))
        if tuple(row) != (i + 1, i / 2):
            mismatch(f"prepared row {i}: {tuple(row)!r}")
    check("prepared statement reused 200 times", [a.name for a in statement.get_attributes()], ["?column?", "?column?"])

    # executemany: one statement, many Bind/Execute pairs.
    at = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)
    records = [
        (i, [f"t{i}", "x y", None], {"n": i, "list": [1, "two"]}, decimal.Decimal(f"{i}.{i:03d}"), at + datetime.timedelta(days=i))
        for i in range(500)
    ]
    await conn.executemany("INSERT INTO apg_items VALUES ($1, $2, $3, $4, $5)", records)
    check("executemany rows", await conn.fetchval("SELECT count(*) FROM apg_items"), 500)

    # Binary codecs round-trip: arrays with NULLs, jsonb, numeric, timestamptz.
    row = await conn.fetchrow("SELECT * FROM apg_items WHERE id = $1", 123)
    check("binary codecs", tuple(row), records[123])
    check("numeric aggregate", await conn.fetchval("SELECT sum(price) FROM apg_items"),
          sum(r[3] for r in records))

    # Transactions: commit visible, rollback invisible, errors carry their SQLSTATE.
    async with conn.transaction():
        await conn.execute("INSERT INTO apg_items(id) VALUES (1000)")
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO apg_items(id) VALUES (1001)")
            await conn.execute("INSERT INTO apg_items(id) VALUES (1000)")
        mismatch("duplicate insert succeeded")
    except asyncpg.UniqueViolationError as error:
        check("unique violation SQLSTATE", error.sqlstate, "23505")
    check("commit kept, rollback discarded",
          [r[0] for r in await conn.fetch("SELECT id FROM apg_items WHERE id >= 1000 ORDER BY id")], [1000])

    # COPY: binary copy_records_to_table, then copy_from_query to a buffer.
    copied = [(2000 + i, ["c"], {"copy": True}, decimal.Decimal("0.5"), at) for i in range(3000)]
    result = await conn.copy_records_to_table("apg_items", records=copied)
    check("copy_records_to_table", result, "COPY 3000")
    check("copied rows readable", tuple(await conn.fetchrow("SELECT * FROM apg_items WHERE id = 4999")), copied[-1])

    class Sink:
        def __init__(self):
            self.data = b""

        async def write(self, chunk):
            self.data += chunk

    sink = Sink()
    await conn.copy_from_query("SELECT id FROM apg_items WHERE id >= 2000 ORDER BY id", output=sink.write)
    check("copy_from_query", sink.data.decode().split(), [str(2000 + i) for i in range(3000)])

    # A second connection sees the committed rows.
    other = await asyncpg.connect(dsn)
    check("visible to another session", await other.fetchval("SELECT count(*) FROM apg_items"), 3501)

    # LISTEN/NOTIFY: the other connection notifies, the listener's callback receives it.
    received = asyncio.Queue()
    await conn.add_listener("apg_events", lambda _c, _pid, channel, payload: received.put_nowait((channel, payload)))
    await other.execute("NOTIFY apg_events, 'hello'")
    await other.execute("SELECT pg_notify('apg_events', $1)", "again")
    got = [await asyncio.wait_for(received.get(), 5) for _ in range(2)]
    check("notifications received", got, [("apg_events", "hello"), ("apg_events", "again")])
    await other.close()

    # A timeout makes asyncpg send a CancelRequest; the session must survive it.
    started = time.monotonic()
    try:
        await conn.fetchval("SELECT pg_sleep(30)", timeout=0.5)
        mismatch("pg_sleep did not time out")
    except asyncio.TimeoutError:
        pass
    check("timeout cancelled the query promptly", time.monotonic() - started < 5, True)
    check("usable after cancel", await conn.fetchval("SELECT 'alive'"), "alive")
    check("server query really stopped",
          await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'"), 0)
    await conn.close()
    print("asyncpg: all checks passed")


asyncio.run(main())
