"""Helpers shared by the driver scripts in tests/drivers/python/. Imported, never run.

Why: every script reports the same way, and the Rust tests (tests/drivers_python.rs,
tests/versions_python.rs) assert on that output: one "ok <check>" line on stdout per passed
check, and on a mismatch "MISMATCH <what>..." on stderr with exit status 1 (SystemExit with a
message). Keeping the format in one place keeps the scripts in step with the tests.

How: a script run as `python3 tests/drivers/python/SCRIPT.py DSN...` has its own directory on
sys.path, so `from checks import check, mismatch, dsn_args` finds this file. Nothing here
imports a driver: the psycopg and asyncpg helpers take the driver's objects as arguments.
"""
import json
import sys

# The columns of model_metadata at each version of examples/model_metadata/viewgate.toml.
V1_COLUMNS = ["id", "model_name", "model_version", "hyperparameters", "created_at"]
V2_COLUMNS = ["id", "model_name", "model_version", "model_type", "hyperparameters", "created_at", "schema_version"]


def check(name, actual, expected):
    """Prints "ok <name>" if actual == expected, else stops with a MISMATCH (exit status 1)."""
    if actual != expected:
        mismatch(f"{name}: got {actual!r}, expected {expected!r}")
    print(f"ok {name}")


def mismatch(what):
    """Stops the script: "MISMATCH <what>" on stderr, exit status 1."""
    raise SystemExit(f"MISMATCH {what}")


def dsn_args(*names):
    """The script's first len(names) arguments (extra ones are ignored); a usage error if fewer."""
    args = sys.argv[1:1 + len(names)]
    if len(args) < len(names):
        raise SystemExit(f"usage: {sys.argv[0]} {' '.join(names)}")
    return args


def names(cursor):
    """Column names of a psycopg cursor's last result."""
    return [column.name for column in cursor.description]


async def binary_jsonb(conn):
    """Makes an asyncpg connection exchange jsonb in binary: a version byte (1), then the JSON text."""
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: b"\x01" + json.dumps(value).encode(),
        decoder=lambda data: json.loads(data[1:]),
        schema="pg_catalog",
        format="binary",
    )
