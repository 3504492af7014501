"""SQLAlchemy's reflection through viewgate: each version reflects its own model_metadata.

Why: ORMs reflect or validate the schema at start-up (SQLAlchemy's inspect and automap,
autoload_with), reading pg_catalog with the table's name as a bound parameter. A versioned
client must get its version's table: names in order, types, nullability, defaults, primary key.

Usage: reflect_sqlalchemy.py PROXY_DSN. The proxy's default version is v1; the v2 engine
declares itself with `-c viewgate.version=v2`. Prints one "ok <check>" line per passed check;
any mismatch raises, so the exit status is non-zero.
"""
from sqlalchemy import MetaData, Table, create_engine, inspect

from checks import check, dsn_args

(proxy_dsn,) = dsn_args("PROXY_DSN")
url = proxy_dsn.replace("postgres://", "postgresql+psycopg://", 1)

ID_DEFAULT = "nextval('model_metadata_id_seq'::regclass)"
# (name, type, nullable, default) per version, as SQLAlchemy reflects them.
EXPECTED = {
    "v1": [
        ("id", "BIGINT", False, ID_DEFAULT),
        ("model_name", "TEXT", False, None),
        ("model_version", "TEXT", False, None),
        ("hyperparameters", "JSONB", False, "'{}'::jsonb"),
        ("created_at", "TIMESTAMP WITH TIME ZONE", False, "now()"),
    ],
    "v2": [
        ("id", "BIGINT", False, ID_DEFAULT),
        ("model_name", "TEXT", False, None),
        ("model_version", "TEXT", False, None),
        ("model_type", "TEXT", True, None),
        ("hyperparameters", "JSONB", False, "'{}'::jsonb"),
        ("created_at", "TIMESTAMP WITH TIME ZONE", False, "now()"),
        ("schema_version", "INTEGER", False, "1"),
    ],
}

# Comments go to the base table (DDL passes through the proxy unchanged); each version's
# table shows them on the columns it has as base columns.
with create_engine(url).begin() as conn:
    conn.exec_driver_sql("COMMENT ON TABLE model_metadata IS 'Model registry'")
    conn.exec_driver_sql("COMMENT ON COLUMN model_metadata.model_name IS 'Name of the model'")

for version, expected in EXPECTED.items():
    engine = create_engine(url, connect_args={"options": f"-c viewgate.version={version}"})
    with engine.connect() as conn:
        check(f"{version} session", conn.exec_driver_sql("SHOW viewgate.version").scalar(), version)
    inspector = inspect(engine)
    columns = [
        (c["name"], c["type"].compile(dialect=engine.dialect), c["nullable"], c["default"])
        for c in inspector.get_columns("model_metadata")
    ]
    check(f"{version} get_columns", columns, expected)
    check(f"{version} get_table_comment", inspector.get_table_comment("model_metadata"), {"text": "Model registry"})
    check(
        f"{version} column comments",
        {c["name"]: c["comment"] for c in inspector.get_columns("model_metadata") if c.get("comment")},
        {"model_name": "Name of the model"},
    )
    pk = inspector.get_pk_constraint("model_metadata")
    check(f"{version} get_pk_constraint", (pk["name"], pk["constrained_columns"]), ("model_metadata_pkey", ["id"]))
    check(f"{version} get_unique_constraints", inspector.get_unique_constraints("model_metadata"), [])
    check(f"{version} has_table", inspector.has_table("model_metadata"), True)
    check(
        f"{version} get_table_names",
        sorted(t for t in inspector.get_table_names() if t.startswith("model_metadata")),
        ["model_metadata"],
    )
    check(
        f"{version} get_view_names",
        sorted(v for v in inspector.get_view_names() if v.startswith("model_metadata")),
        [],  # another version's view is not listed: its columns are not this version's
    )
    table = Table("model_metadata", MetaData(), autoload_with=engine)
    check(f"{version} autoload_with columns", [c.name for c in table.columns], [e[0] for e in expected])
    check(f"{version} autoload_with primary key", [c.name for c in table.primary_key.columns], ["id"])
    engine.dispose()

print("sqlalchemy reflection: all checks passed")
