"""psycopg 3 pipeline mode through viewgate: a version change waits for the transaction to end.

Why: shared/DESIGN.md decision 3 says a version change takes effect at a transaction boundary,
never inside a transaction. In pipeline mode a client sends several statements before Postgres
answers any of them, so the proxy cannot learn from a ReadyForQuery that a transaction began.

Usage: versions_psycopg_pipeline.py PROXY_DSN [ADMIN_DSN, unused]. The proxy's default
version is v1. Prints one "ok <check>" line per passed check; any mismatch raises, so the
exit status is non-zero.
"""
import psycopg

from checks import V1_COLUMNS, V2_COLUMNS, check, dsn_args, names

(proxy_dsn,) = dsn_args("PROXY_DSN")


# A version change takes effect at a transaction boundary, never inside a transaction, also
# when the client pipelines. psycopg's own transactions sync (and wait) after BEGIN.
with psycopg.connect(proxy_dsn) as conn:
    with conn.pipeline():
        first = conn.execute("SELECT * FROM model_metadata LIMIT 0")
        conn.execute("SET viewgate.version = 'v2'")
        second = conn.execute("SELECT * FROM model_metadata LIMIT 0")
    check("pipelined transaction: SELECT before SET at v1", names(first), V1_COLUMNS)
    check("pipelined transaction: SELECT after SET, same transaction, still v1", names(second), V1_COLUMNS)
    conn.commit()
    check("after COMMIT the SET applies", names(conn.execute("SELECT * FROM model_metadata LIMIT 0")), V2_COLUMNS)

# The same with an explicit BEGIN in autocommit mode: BEGIN, SELECT, SET, SELECT and COMMIT
# all reach the proxy before Postgres has answered any of them (one Sync at the end).
with psycopg.connect(proxy_dsn, autocommit=True) as conn:
    with conn.pipeline():
        conn.execute("BEGIN")
        first = conn.execute("SELECT * FROM model_metadata LIMIT 0")
        conn.execute("SET viewgate.version = 'v2'")
        second = conn.execute("SELECT * FROM model_metadata LIMIT 0")
        conn.execute("COMMIT")
    check("explicit BEGIN in a pipeline: SELECT before SET at v1", names(first), V1_COLUMNS)
    check("explicit BEGIN in a pipeline: SELECT after SET, same transaction, still v1", names(second), V1_COLUMNS)
    check("after the pipelined COMMIT the SET applies", names(conn.execute("SELECT * FROM model_metadata LIMIT 0")), V2_COLUMNS)

print("psycopg pipeline versions: all checks passed")
