"""SQLAlchemy's identity reflection through viewgate: a version's key keeps its identity.

Why: SQLAlchemy's get_columns() reads a column's identity options with
pg_get_serial_sequence(attrelid::regclass::text, attname) over pg_attribute. At a version,
attrelid is the version's view's oid and its name the view's, whose column owns no sequence:
the key lost `identity` and `autoincrement`, alembic's autogenerate proposed a false
alter_column(server_default=Identity(...)), and an insert could not tell its new key.

Usage: reflect_identity.py PROXY_DSN ADMIN_DSN, over the `accounts` table of
tests/introspection_sequences.rs (v1 renames the identity key account_id to id and hides the
serial column ticket; v2 shows both). Compares each version's reflection with the base table's
reflected straight from Postgres. Prints one "ok <check>" line per passed check; any mismatch
raises, so the exit status is non-zero.
"""
from sqlalchemy import MetaData, Table, create_engine, inspect

from checks import check, dsn_args

proxy_dsn, admin_dsn = dsn_args("PROXY_DSN", "ADMIN_DSN")


def engine_for(dsn, version=None):
    url = dsn.replace("postgres://", "postgresql+psycopg://", 1)
    if version is None:
        return create_engine(url)
    return create_engine(url, connect_args={"options": f"-c viewgate.version={version}"})


def reflected(engine):
    """Each column's name -> (identity options, autoincrement, default), as get_columns() gives them."""
    return {
        c["name"]: (c.get("identity"), c["autoincrement"], c["default"])
        for c in inspect(engine).get_columns("accounts")
    }


direct_engine = engine_for(admin_dsn)
direct = reflected(direct_engine)
direct_engine.dispose()
check("direct identity reflected", direct["account_id"][0] is not None, True)

# (version, the version's name of each base column it shows)
for version, names in [("v1", {"id": "account_id", "name": "name"}),
                       ("v2", {"account_id": "account_id", "ticket": "ticket", "name": "name"})]:
    engine = engine_for(proxy_dsn, version)
    columns = reflected(engine)
    check(f"{version} columns", list(columns), list(names))
    for shown, base in names.items():
        check(f"{version} {shown} identity and autoincrement", columns[shown], direct[base])
    table = Table("accounts", MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        inserted = conn.execute(table.insert().values(name=f"{version} row")).inserted_primary_key
    check(f"{version} insert returns its new key", inserted[0] is not None, True)
    engine.dispose()

print("sqlalchemy identity reflection: all checks passed")
