"""Shadow reads through the proxy with psycopg 3's extended protocol: one read with a parameter
sent in text format (%t) and one in binary format (%b), each at v1. Prints what the client got;
tests/shadow.rs checks that a shadow run compared both at v2 and found the planted difference."""

import sys

import psycopg

EXPECTED = [(1, "alpha", "1"), (2, "planted", "2"), (3, "gamma", "3")]

with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    text = conn.execute(
        "SELECT id, model_name, model_version FROM model_metadata WHERE model_name <> %t",
        ("none",),
    ).fetchall()
    assert sorted(text) == EXPECTED, text
    print("ok text parameter reads v1")
    binary = conn.execute(
        "SELECT id, model_name, model_version FROM model_metadata WHERE id >= %b",
        (1,),
    ).fetchall()
    assert sorted(binary) == EXPECTED, binary
    print("ok binary parameter reads v1")
print("psycopg shadow reads: all checks passed")
