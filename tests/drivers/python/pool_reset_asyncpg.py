"""An asyncpg pool through viewgate while a migration is live: its reset passes.

Why: asyncpg resets a connection it takes back into its pool with one simple Query,
`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`. RESET ALL also clears
the server's viewgate.version, which the migration's sync triggers read to tell writers
apart, so viewgate refused it among other statements while a migration was live: every
release failed with 0A000, after the work it released had committed (Tortoise ORM reported
its writes as failed). A reset that ends the Query, outside a block, is followed as a lone one
is: the version is told again before the next statement.

Usage: pool_reset_asyncpg.py PROXY_DSN, over the `models` table of tests/migrations_proxy.rs
with its rescaling migration live (v2 stores size × 1000, v1 reads it back with `down`).
Prints one "ok <check>" line per passed check; any mismatch raises, so the exit status is
non-zero.
"""
import asyncio

import asyncpg

from checks import check, dsn_args

(proxy_dsn,) = dsn_args("PROXY_DSN")


async def main():
    # One connection, so each acquire after the first takes the one just reset.
    pool = await asyncpg.create_pool(proxy_dsn, min_size=1, max_size=1,
                                     server_settings={"viewgate.version": "v2"})
    for i in range(1, 4):
        async with pool.acquire() as connection:
            await connection.execute("INSERT INTO models (name, size) VALUES ($1, $2)", f"pool-{i}", i * 1000)
    check("three acquire-insert-release rounds at v2", True, True)
    await pool.close()

    v1 = await asyncpg.connect(proxy_dsn, server_settings={"viewgate.version": "v1"})
    sizes = await v1.fetch("SELECT name, size FROM models WHERE name LIKE 'pool-%' ORDER BY name")
    check("v1 reads each as written at v2 (down ran after every reset)",
          [(r["name"], r["size"]) for r in sizes], [("pool-1", 1), ("pool-2", 2), ("pool-3", 3)])
    await v1.close()
    print("asyncpg pool during a migration: all checks passed")


asyncio.run(main())
