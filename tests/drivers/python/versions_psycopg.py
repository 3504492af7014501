"""psycopg 3 through viewgate with versioned sessions: a v1 and a v2 client on the same rows.

Why: applications keep their SQL and only declare a version; with server-side prepared
statements (prepare=True, prepare_threshold=0), executemany and RETURNING, each client must
still see exactly its version's columns, and both must agree on the shared rows.

Usage: versions_psycopg.py PROXY_DSN ADMIN_DSN. The proxy's default version is v1; the v2
client declares itself with `options=-c viewgate.version=v2`. ADMIN_DSN reaches Postgres
directly, to look at the base table. Prints one "ok <check>" line per passed check; any
mismatch raises, so the exit status is non-zero.
"""
import psycopg
from psycopg.types.json import Jsonb

from checks import V1_COLUMNS, V2_COLUMNS, check, dsn_args, mismatch, names

proxy_dsn, admin_dsn = dsn_args("PROXY_DSN", "ADMIN_DSN")


def base_type(admin, name):
    """model_type as stored in the base table (None: NULL)."""
    return admin.execute(
        "SELECT model_type FROM public.model_metadata WHERE model_name = %s", (name,)
    ).fetchone()[0]


admin = psycopg.connect(admin_dsn, autocommit=True)
# Both clients are open at the same time for the whole script; their statements interleave.
v1 = psycopg.connect(proxy_dsn, prepare_threshold=0)
v2 = psycopg.connect(proxy_dsn, options="-c viewgate.version=v2", prepare_threshold=0)

check("v1 SHOW viewgate.version", v1.execute("SHOW viewgate.version").fetchone()[0], "v1")
check("v2 SHOW viewgate.version", v2.execute("SHOW viewgate.version").fetchone()[0], "v2")
v1.commit()
v2.commit()

# v2 inserts with a server-side prepared statement and reads back the row through RETURNING.
insert_v2 = (
    "INSERT INTO model_metadata (model_name, model_version, model_type, hyperparameters) "
    "VALUES (%s, %s, %s, %s) RETURNING *"
)
cur = v2.execute(insert_v2, ("pg-bert", "1", "transformer", Jsonb({"layers": 12})), prepare=True)
row = cur.fetchone()
check("v2 INSERT RETURNING * columns", names(cur), V2_COLUMNS)
check("v2 INSERT RETURNING values", (row[1], row[3], row[4], row[6]), ("pg-bert", "transformer", {"layers": 12}, 1))
v2.commit()

# v1 inserts three rows with executemany; it cannot name model_type, so the base keeps NULL.
with v1.cursor() as cur:
    cur.executemany(
        "INSERT INTO model_metadata (model_name, model_version, hyperparameters) VALUES (%s, %s, %s)",
        [(f"pg-mlp-{i}", str(i), Jsonb({"hidden": i})) for i in range(3)],
    )
v1.commit()
check(
    "v1 executemany rows have NULL model_type in the base table",
    [base_type(admin, f"pg-mlp-{i}") for i in range(3)],
    [None, None, None],
)
check("v2 row has model_type in the base table", base_type(admin, "pg-bert"), "transformer")

# Each version reads everyone's rows with its own columns.
read = "SELECT * FROM model_metadata WHERE model_name LIKE 'pg-%%' ORDER BY model_name"
cur = v1.execute(read, prepare=True)
rows = cur.fetchall()
check("v1 SELECT * columns (prepare=True)", names(cur), V1_COLUMNS)
check(
    "v1 reads v2's and its own rows",
    [(r[1], r[2], r[3]) for r in rows],
    [("pg-bert", "1", {"layers": 12})] + [(f"pg-mlp-{i}", str(i), {"hidden": i}) for i in range(3)],
)
cur = v2.execute(read, prepare=True)
rows = cur.fetchall()
check("v2 SELECT * columns (prepare=True)", names(cur), V2_COLUMNS)
check(
    "v2 reads v1's rows as neural_network",
    [(r[1], r[3]) for r in rows],
    [("pg-bert", "transformer")] + [(f"pg-mlp-{i}", "neural_network") for i in range(3)],
)
try:
    v1.execute("SELECT model_type FROM model_metadata")
    mismatch("v1 could read model_type")
except psycopg.errors.UndefinedColumn as error:
    check("v1 cannot name model_type (SQLSTATE)", error.sqlstate, "42703")
v1.rollback()
v1.commit()
v2.commit()

# A statement prepared once and executed many times keeps answering with its version's shape.
for i in range(20):
    cur = v1.execute("SELECT * FROM model_metadata WHERE model_name = %s", (f"pg-mlp-{i % 3}",))
    if len(cur.description) != 5 or cur.fetchone()[1] != f"pg-mlp-{i % 3}":
        mismatch(f"v1 prepared execution {i}")
    cur = v2.execute("SELECT * FROM model_metadata WHERE model_name = %s", (f"pg-mlp-{i % 3}",))
    if len(cur.description) != 7 or cur.fetchone()[3] != "neural_network":
        mismatch(f"v2 prepared execution {i}")
# One protocol-level statement per client for the loop's query (its only one with one text
# parameter; the loop checked its shape). Its text is the rewrite, which a version's
# pg_prepared_statements shows as NULL.
prepared = [
    v.execute(
        "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql"
        " AND parameter_types = '{text}'::regtype[] AND statement IS NULL"
    ).fetchone()[0]
    for v in (v1, v2)
]
check("prepare_threshold=0: one server-side statement per client, on its view (20 executions)", prepared, [1, 1])
v1.commit()
v2.commit()

# UPDATE through v2 of a v1 row: model_type untouched stays NULL; set, it is stored.
cur = v2.execute(
    "UPDATE model_metadata SET model_version = %s WHERE model_name = %s RETURNING model_name, model_type",
    ("10", "pg-mlp-0"),
)
check("v2 UPDATE RETURNING of a v1 row", cur.fetchall(), [("pg-mlp-0", "neural_network")])
cur = v2.execute(
    "UPDATE model_metadata SET model_type = %s WHERE model_name = %s RETURNING model_type", ("cnn", "pg-mlp-1")
)
check("v2 UPDATE sets model_type", cur.fetchone()[0], "cnn")
v2.commit()
check("untouched model_type stays NULL", base_type(admin, "pg-mlp-0"), None)
check("v2 UPDATE stored model_type", base_type(admin, "pg-mlp-1"), "cnn")

# UPDATE through v1 of v2's row keeps model_type; v2 sees v1's change.
cur = v1.execute(
    "UPDATE model_metadata SET model_version = %s WHERE model_name = %s RETURNING *", ("2", "pg-bert")
)
check("v1 UPDATE RETURNING * columns", names(cur), V1_COLUMNS)
check("v1 UPDATE RETURNING value", cur.fetchone()[2], "2")
v1.commit()
check(
    "v2 sees v1's UPDATE and keeps model_type",
    v2.execute("SELECT model_version, model_type FROM model_metadata WHERE model_name = 'pg-bert'").fetchone(),
    ("2", "transformer"),
)
v2.commit()

# Transactions: v2's uncommitted insert is invisible to v1, rolled back it is gone; committed
# it is visible (read committed).
v2.execute(insert_v2, ("pg-gone", "1", "rnn", Jsonb({})))
check(
    "v1 does not see v2's uncommitted row",
    v1.execute("SELECT count(*) FROM model_metadata WHERE model_name = 'pg-gone'").fetchone()[0],
    0,
)
v1.commit()
v2.rollback()
check("rolled back v2 row is gone", admin.execute("SELECT count(*) FROM model_metadata WHERE model_name = 'pg-gone'").fetchone()[0], 0)
v1.execute("INSERT INTO model_metadata (model_name, model_version) VALUES ('pg-kept', '1')")
check(
    "v2 does not see v1's uncommitted row",
    v2.execute("SELECT count(*) FROM model_metadata WHERE model_name = 'pg-kept'").fetchone()[0],
    0,
)
v2.commit()
v1.commit()
check(
    "v2 sees v1's committed row as neural_network",
    v2.execute("SELECT model_type FROM model_metadata WHERE model_name = 'pg-kept'").fetchone()[0],
    "neural_network",
)
v2.commit()

# DELETE through each version removes the shared row for everyone.
cur = v1.execute("DELETE FROM model_metadata WHERE model_name = %s RETURNING *", ("pg-mlp-2",))
check("v1 DELETE RETURNING * columns", names(cur), V1_COLUMNS)
v1.commit()
cur = v2.execute("DELETE FROM model_metadata WHERE model_name = %s RETURNING model_name, model_type", ("pg-kept",))
check("v2 DELETE RETURNING (through the INSTEAD OF trigger)", cur.fetchall(), [("pg-kept", "neural_network")])
v2.commit()
check(
    "rows left after the DELETEs, seen directly",
    [r[0] for r in admin.execute("SELECT model_name FROM model_metadata WHERE model_name LIKE 'pg-%%' ORDER BY 1")],
    ["pg-bert", "pg-mlp-0", "pg-mlp-1"],
)
check(
    "rows left after the DELETEs, seen by v1",
    [r[0] for r in v1.execute("SELECT model_name FROM model_metadata WHERE model_name LIKE 'pg-%%' ORDER BY 1")],
    ["pg-bert", "pg-mlp-0", "pg-mlp-1"],
)
v1.commit()
v1.close()
v2.close()

# A session that switches with SET: statements prepared before the switch keep v1's columns;
# statements prepared after it get v2's. psycopg caches prepared statements by query text, so
# the same text keeps running the v1 statement (the client never re-prepares it).
with psycopg.connect(proxy_dsn, autocommit=True, prepare_threshold=0) as conn:
    before = "SELECT * FROM model_metadata ORDER BY id"
    check("switching client starts at v1", names(conn.execute(before)), V1_COLUMNS)
    conn.execute("SET viewgate.version = 'v2'")
    check("SHOW after SET", conn.execute("SHOW viewgate.version").fetchone()[0], "v2")
    check("statement prepared before SET keeps v1's columns", names(conn.execute(before)), V1_COLUMNS)
    check(
        "new statement after SET gets v2's columns",
        names(conn.execute("SELECT * FROM model_metadata ORDER BY id DESC")),
        V2_COLUMNS,
    )
    check(
        "unprepared statement after SET gets v2's columns",
        names(conn.execute("SELECT * FROM model_metadata ORDER BY model_name", prepare=False)),
        V2_COLUMNS,
    )
    check(
        "v2 rows after SET",
        [r[0] for r in conn.execute("SELECT model_type FROM model_metadata WHERE model_name LIKE 'pg-%%' ORDER BY 1")],
        ["cnn", "neural_network", "transformer"],
    )

# Client-side binding (Django's default): psycopg writes a value with a backslash as E'…'
# and pipelines executemany, so each INSERT is sent before the one before it is answered.
# E'…' reads alike whatever standard_conforming_strings is: none is refused.
with psycopg.connect(proxy_dsn, options="-c viewgate.version=v2", autocommit=True) as conn:
    paths = [f"C:\\models\\{i}\\'s" for i in range(3)]
    psycopg.ClientCursor(conn).executemany(
        "INSERT INTO model_metadata (model_name, model_version, model_type) VALUES (%s, %s, 'backslash')",
        [(path, "1") for path in paths],
    )
    written = "SELECT model_name FROM model_metadata WHERE model_type = 'backslash' ORDER BY 1"
    check("client-side executemany of values with backslashes, pipelined", [r[0] for r in conn.execute(written)], paths)
    conn.execute("DELETE FROM model_metadata WHERE model_type = 'backslash'")

admin.close()
print("psycopg versions: all checks passed")
