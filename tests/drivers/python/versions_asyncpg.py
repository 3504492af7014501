"""asyncpg through viewgate with versioned sessions: a v1 and a v2 client on the same rows.

Why: asyncpg uses only the extended protocol (Parse/Describe/Flush, named statements in its
statement cache) and binary formats for every value. Each client must still see exactly its
version's columns while both run concurrently against the same rows.

Usage: versions_asyncpg.py PROXY_DSN ADMIN_DSN. The proxy's default version is v1; the v2
client declares itself with a plain `viewgate.version` startup parameter (server_settings).
ADMIN_DSN reaches Postgres directly, to look at the base table. Prints one "ok <check>" line
per passed check; any mismatch raises, so the exit status is non-zero.
"""
import asyncio

import asyncpg

from checks import V1_COLUMNS, V2_COLUMNS, binary_jsonb, check, dsn_args, mismatch

proxy_dsn, admin_dsn = dsn_args("PROXY_DSN", "ADMIN_DSN")


async def connect(dsn, **kwargs):
    conn = await asyncpg.connect(dsn, **kwargs)
    await binary_jsonb(conn)
    return conn


async def base_types(admin, prefix):
    """model_name -> model_type as stored in the base table, for names starting with prefix."""
    rows = await admin.fetch(
        "SELECT model_name, model_type FROM public.model_metadata WHERE model_name LIKE $1 || '%' ORDER BY 1", prefix
    )
    return {r["model_name"]: r["model_type"] for r in rows}


async def main():
    admin = await asyncpg.connect(admin_dsn)
    # Both clients are open at the same time for the whole script.
    v1 = await connect(proxy_dsn)
    v2 = await connect(proxy_dsn, server_settings={"viewgate.version": "v2"})

    check("v1 SHOW viewgate.version", await v1.fetchval("SHOW viewgate.version"), "v1")
    check("v2 SHOW viewgate.version", await v2.fetchval("SHOW viewgate.version"), "v2")

    # prepare: the statement's attributes are its version's columns.
    insert_v2 = await v2.prepare(
        "INSERT INTO model_metadata (model_name, model_version, model_type, hyperparameters) "
        "VALUES ($1, $2, $3, $4) RETURNING *"
    )
    check("v2 prepared INSERT RETURNING * attributes", [a.name for a in insert_v2.get_attributes()], V2_COLUMNS)
    insert_v1 = await v1.prepare(
        "INSERT INTO model_metadata (model_name, model_version, hyperparameters) VALUES ($1, $2, $3) RETURNING *"
    )
    check("v1 prepared INSERT RETURNING * attributes", [a.name for a in insert_v1.get_attributes()], V1_COLUMNS)

    # Both clients insert at the same time, each through its prepared statement.
    async def v2_inserts():
        return [await insert_v2.fetchrow(f"apg-t{i:02d}", "1", "transformer", {"layers": i}) for i in range(25)]

    async def v1_inserts():
        return [await insert_v1.fetchrow(f"apg-m{i:02d}", "1", {"hidden": i}) for i in range(25)]

    rows_v2, rows_v1 = await asyncio.gather(v2_inserts(), v1_inserts())
    check("v2 RETURNING record keys", list(rows_v2[-1].keys()), V2_COLUMNS)
    check(
        "v2 RETURNING values (binary jsonb)",
        (rows_v2[-1]["model_type"], rows_v2[-1]["hyperparameters"], rows_v2[-1]["schema_version"]),
        ("transformer", {"layers": 24}, 1),
    )
    check("v1 RETURNING record keys", list(rows_v1[-1].keys()), V1_COLUMNS)
    check("v1 RETURNING values (binary jsonb)", rows_v1[-1]["hyperparameters"], {"hidden": 24})

    # executemany through v1: many Bind/Execute of one statement; model_type stays NULL.
    await v1.executemany(
        "INSERT INTO model_metadata (model_name, model_version, hyperparameters) VALUES ($1, $2, $3)",
        [(f"apg-x{i:02d}", str(i), {"batch": i}) for i in range(40)],
    )
    stored = await base_types(admin, "apg-")
    check("base table: v1 rows have NULL model_type", {v for k, v in stored.items() if k[4] in "mx"}, {None})
    check("base table: v2 rows have model_type", {v for k, v in stored.items() if k[4] == "t"}, {"transformer"})
    check("base table: row count", len(stored), 90)

    # fetch: each reads everyone's rows, with its own columns, at the same time.
    query = "SELECT * FROM model_metadata WHERE model_name LIKE 'apg-%' ORDER BY model_name"
    read_v1, read_v2 = await asyncio.gather(v1.fetch(query), v2.fetch(query))
    check("v1 fetch record keys", list(read_v1[0].keys()), V1_COLUMNS)
    check("v2 fetch record keys", list(read_v2[0].keys()), V2_COLUMNS)
    check("v1 reads all rows", len(read_v1), 90)
    check(
        "v2 reads v1's rows as neural_network",
        {r["model_type"] for r in read_v2 if r["model_name"][4] in "mx"},
        {"neural_network"},
    )
    check(
        "v1 reads v2's jsonb",
        [r["hyperparameters"] for r in read_v1 if r["model_name"] == "apg-t07"],
        [{"layers": 7}],
    )
    try:
        await v1.fetch("SELECT model_type FROM model_metadata")
        mismatch("v1 could read model_type")
    except asyncpg.exceptions.UndefinedColumnError as error:
        check("v1 cannot name model_type (SQLSTATE)", error.sqlstate, "42703")

    # A prepared statement reused many times, both clients interleaved.
    by_name_v1 = await v1.prepare("SELECT * FROM model_metadata WHERE model_name = $1")
    by_name_v2 = await v2.prepare("SELECT * FROM model_metadata WHERE model_name = $1")
    for i in range(100):
        name = f"apg-x{i % 40:02d}"
        r1, r2 = await asyncio.gather(by_name_v1.fetchrow(name), by_name_v2.fetchrow(name))
        if len(r1) != 5 or len(r2) != 7 or r2["model_type"] != "neural_network" or r1["hyperparameters"] != r2["hyperparameters"]:
            mismatch(f"prepared execution {i}: {r1!r} {r2!r}")
    check("prepared statements reused 100 times by both clients", (len(r1), len(r2)), (5, 7))

    # UPDATE through each version, with RETURNING.
    updated = await v2.fetch(
        "UPDATE model_metadata SET model_type = 'cnn' WHERE model_name = ANY($1::text[]) RETURNING model_name, model_type",
        ["apg-x00", "apg-x01"],
    )
    check("v2 UPDATE RETURNING", sorted(tuple(r) for r in updated), [("apg-x00", "cnn"), ("apg-x01", "cnn")])
    updated = await v1.fetch(
        "UPDATE model_metadata SET hyperparameters = $1 WHERE model_name = $2 RETURNING *", {"tuned": True}, "apg-t00"
    )
    check("v1 UPDATE RETURNING * keys", list(updated[0].keys()), V1_COLUMNS)
    check(
        "v2 sees v1's UPDATE of its row, model_type kept",
        tuple(await v2.fetchrow("SELECT hyperparameters, model_type FROM model_metadata WHERE model_name = 'apg-t00'")),
        ({"tuned": True}, "transformer"),
    )
    stored = await base_types(admin, "apg-x0")
    check("base table after UPDATEs", [stored["apg-x00"], stored["apg-x01"], stored["apg-x02"]], ["cnn", "cnn", None])

    # Transactions: commit keeps, rollback discards, uncommitted work is invisible to the other.
    async with v2.transaction():
        await insert_v2.fetchrow("apg-committed", "1", "gan", {})
        check(
            "v1 does not see v2's uncommitted row",
            await v1.fetchval("SELECT count(*) FROM model_metadata WHERE model_name = 'apg-committed'"),
            0,
        )
    check(
        "v1 sees v2's committed row",
        await v1.fetchval("SELECT count(*) FROM model_metadata WHERE model_name = 'apg-committed'"),
        1,
    )
    try:
        async with v1.transaction():
            await v1.execute("DELETE FROM model_metadata WHERE model_name LIKE 'apg-t%'")
            check(
                "v1's DELETE inside its transaction",
                await v1.fetchval("SELECT count(*) FROM model_metadata WHERE model_name LIKE 'apg-t%'"),
                0,
            )
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    check(
        "rolled back DELETE: v2 still sees its rows",
        await v2.fetchval("SELECT count(*) FROM model_metadata WHERE model_name LIKE 'apg-t%' AND model_type = 'transformer'"),
        25,
    )

    # DELETE through each version, with RETURNING.
    deleted = await v1.fetch("DELETE FROM model_metadata WHERE model_name LIKE 'apg-x3%' RETURNING *")
    check("v1 DELETE RETURNING", (len(deleted), list(deleted[0].keys())), (10, V1_COLUMNS))
    deleted = await v2.fetch("DELETE FROM model_metadata WHERE model_name LIKE 'apg-t1%' RETURNING model_name, model_type")
    check("v2 DELETE RETURNING (through the INSTEAD OF trigger)", {r["model_type"] for r in deleted}, {"transformer"})
    check("v2 DELETE count", len(deleted), 10)
    check(
        "rows left, seen by v1, v2 and directly",
        [
            await v1.fetchval("SELECT count(*) FROM model_metadata WHERE model_name LIKE 'apg-%'"),
            await v2.fetchval("SELECT count(*) FROM model_metadata WHERE model_name LIKE 'apg-%'"),
            await admin.fetchval("SELECT count(*) FROM model_metadata WHERE model_name LIKE 'apg-%'"),
        ],
        [71, 71, 71],
    )
    check("v1 SHOW viewgate.version at the end", await v1.fetchval("SHOW viewgate.version"), "v1")
    check("v2 SHOW viewgate.version at the end", await v2.fetchval("SHOW viewgate.version"), "v2")
    await v1.close()
    await v2.close()

    # A session that switches with SET: statements prepared before the switch keep v1's
    # columns. asyncpg's statement cache is keyed by query text, so the same text keeps using
    # the statement prepared under v1; new text is prepared under v2.
    conn = await connect(proxy_dsn)
    text = "SELECT * FROM model_metadata ORDER BY id LIMIT 1"
    check("switching client starts at v1", list((await conn.fetchrow(text)).keys()), V1_COLUMNS)
    before = await conn.prepare("SELECT * FROM model_metadata WHERE model_name = $1")
    await conn.execute("SET viewgate.version = 'v2'")
    check("SHOW after SET", await conn.fetchval("SHOW viewgate.version"), "v2")
    check("prepared before SET keeps v1's columns", list((await before.fetchrow("apg-t00")).keys()), V1_COLUMNS)
    check("cached statement text keeps v1's columns", list((await conn.fetchrow(text)).keys()), V1_COLUMNS)
    check(
        "new statement after SET gets v2's columns",
        list((await conn.fetchrow("SELECT * FROM model_metadata ORDER BY id DESC LIMIT 1")).keys()),
        V2_COLUMNS,
    )
    await conn.close()
    await admin.close()


asyncio.run(main())
print("asyncpg versions: all checks passed")
