"""asyncpg's type introspection through viewgate: each version's statements and row types.

Why: asyncpg describes every statement it prepares and introspects the types it does not know
(composite row types among them) with its own queries over pg_type and pg_attribute. A
versioned client must get its version's columns and their types, also inside a whole-row value.

Usage: reflect_asyncpg.py PROXY_DSN. The proxy's default version is v1; the v2 client declares
itself with the `viewgate.version` startup parameter. Prints one "ok <check>" line per passed
check; any mismatch raises, so the exit status is non-zero.
"""
import asyncio

import asyncpg

from checks import check, dsn_args

(proxy_dsn,) = dsn_args("PROXY_DSN")

TYPES = {
    "v1": [("id", "int8"), ("model_name", "text"), ("model_version", "text"),
           ("hyperparameters", "jsonb"), ("created_at", "timestamptz")],
    "v2": [("id", "int8"), ("model_name", "text"), ("model_version", "text"), ("model_type", "text"),
           ("hyperparameters", "jsonb"), ("created_at", "timestamptz"), ("schema_version", "int4")],
}


async def main():
    for version, expected in TYPES.items():
        conn = await asyncpg.connect(proxy_dsn, server_settings={"viewgate.version": version})
        check(f"{version} session", await conn.fetchval("SHOW viewgate.version"), version)
        statement = await conn.prepare("SELECT * FROM model_metadata")
        check(f"{version} prepared attribute types",
              [(a.name, a.type.name) for a in statement.get_attributes()], expected)
        await conn.execute("INSERT INTO model_metadata (model_name, model_version) VALUES ($1, '1')", version)
        # A whole row is a composite value: asyncpg introspects its type through pg_attribute.
        row = await conn.fetchval("SELECT m FROM model_metadata m WHERE model_name = $1", version)
        check(f"{version} whole-row value fields", list(row.keys()), [name for name, _ in expected])
        check(f"{version} whole-row value name", (row["model_name"], row["model_version"]), (version, "1"))
        # Column types by the table's name, bound as a parameter.
        rows = await conn.fetch(
            "SELECT a.attname, t.typname, a.attnotnull FROM pg_catalog.pg_attribute a"
            " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
            " WHERE c.relname = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            "model_metadata",
        )
        check(f"{version} pg_attribute by bound name",
              [(r["attname"], r["typname"]) for r in rows], expected)
        check(f"{version} pg_attribute nullability",
              [r["attname"] for r in rows if not r["attnotnull"]], ["model_type"] if version == "v2" else [])
        await conn.close()
    print("asyncpg introspection: all checks passed")


asyncio.run(main())
