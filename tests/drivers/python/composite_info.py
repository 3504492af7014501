"""psycopg 3's CompositeInfo of a managed table's row type at a version.

Why: `CompositeInfo.fetch(conn, "t")` binds the table's name and reads its row type with
`WHERE t.oid = $1::regtype`; bound, the name resolved to the base table, whose attributes the
catalog substitutes hide, so psycopg found a type with no fields (or none at all for the
version's name of a renamed table). It must find the version's row type with the version's
columns, and load rows of it.

Usage: composite_info.py PROXY_DSN VERSION TABLE COLUMNS, COLUMNS comma-separated. Prints
"ok <check>" lines.
"""
import psycopg
from psycopg.types.composite import CompositeInfo, register_composite

from checks import check, dsn_args

proxy_dsn, version, table, columns = dsn_args("PROXY_DSN", "VERSION", "TABLE", "COLUMNS")
expected = columns.split(",")
with psycopg.connect(proxy_dsn, options=f"-c viewgate.version={version}", autocommit=True) as conn:
    info = CompositeInfo.fetch(conn, table)
    check(f"{version} CompositeInfo finds {table}", info is not None, True)
    check(f"{version} {table}'s fields", list(info.field_names), expected)
    register_composite(info, conn)
    cursor = conn.execute(f"SELECT t FROM {table} t ORDER BY t.id LIMIT 1")
    check(f"{version} a row of {table} has its row type", cursor.description[0].type_code, info.oid)
    row = cursor.fetchone()[0]
    check(f"{version} a row of {table} loads as its fields", list(row._fields), expected)
