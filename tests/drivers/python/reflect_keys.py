"""SQLAlchemy's reflection of a table's keys at a version, printed for comparison.

Why: while a migration retypes a key column (integer -> bigint), the new version reads the new
column, and the key stands on the index the migration built over it (`_vg_<version>_<key>`)
until the contract makes it the constraint and gives the column the old one's default. The
new version's reflection had no primary key and no default: automap skipped the table, an
ORM mapping it failed, and alembic's autogenerate proposed to drop the index. It must reflect
the table as it will be after the contract.

Usage: reflect_keys.py PROXY_DSN VERSION, over `accounts` and `runs` of
tests/migrations_introspection.rs. Prints one "ok <check>" line per passed check, then the
reflection of each table's keys as sorted "reflected <table> <what> <value>" lines, which the
Rust test compares between the migration's stages.
"""
import json

from sqlalchemy import create_engine, inspect
from sqlalchemy.ext.automap import automap_base

from checks import check, dsn_args

proxy_dsn, version = dsn_args("PROXY_DSN", "VERSION")
engine = create_engine(proxy_dsn.replace("postgres://", "postgresql+psycopg://", 1),
                       connect_args={"options": f"-c viewgate.version={version}"})
inspector = inspect(engine)
check(f"{version} accounts has a primary key", inspector.get_pk_constraint("accounts")["constrained_columns"], ["id"])

base = automap_base()
base.prepare(autoload_with=engine)
check(f"{version} automap maps both tables", sorted(base.classes.keys()), ["accounts", "runs"])

lines = [f"reflected accounts column {c['name']} {c['type']} {c['default']} {c['autoincrement']}"
         for c in inspector.get_columns("accounts")]
for table in ["accounts", "runs"]:
    for what, value in [("primary key", inspector.get_pk_constraint(table)),
                        ("unique", inspector.get_unique_constraints(table)),
                        ("indexes", inspector.get_indexes(table)),
                        ("foreign keys", inspector.get_foreign_keys(table))]:
        lines.append(f"reflected {table} {what} {json.dumps(value, sort_keys=True)}")
print("\n".join(sorted(lines)))
engine.dispose()
