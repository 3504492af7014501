#!/usr/bin/env python3
"""Builds the fuzzing seed corpus, one directory per target, from the repository's own tests
and examples (so fuzzing starts from inputs the test suites already know are meaningful).

Usage: fuzz/seeds.py OUT_DIR   (bench/fuzz.sh calls it; OUT_DIR/<target>/<n> files)

- rewrite: every statement of tests/rewrite_corpus/statements.sql (markers filled with the
  managed table's name) and the SQL string literals of the rewriter's tests;
- spec_file / migration_file / config_file: the example spec, its migrations, the deployment
  config, and the TOML literals of the views and migrations tests;
- startup_packet / client_framing / server_framing: the packets and message streams the
  protocol tests send (startup, SSLRequest, GSSENCRequest, CancelRequest; simple and extended
  queries; a typical answer).
"""
import pathlib
import re
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def write(out, target, items):
    directory = out / target
    directory.mkdir(parents=True, exist_ok=True)
    for n, item in enumerate(items):
        data = item if isinstance(item, bytes) else item.encode()
        (directory / f"seed-{n:04}").write_bytes(data)


def literals(path):
    """The raw and plain string literals of a Rust file."""
    text = path.read_text()
    found = re.findall(r'r#"(.*?)"#', text, re.S)
    found += [s.encode().decode("unicode_escape", "ignore") for s in re.findall(r'"((?:[^"\\\n]|\\.)*)"', text)]
    return found


def sql_seeds():
    corpus = (ROOT / "tests/rewrite_corpus/statements.sql").read_text()
    statements, current = [], []
    for line in corpus.splitlines():
        if line.startswith("--"):
            if current:
                statements.append("\n".join(current))
                current = []
            continue
        if line.strip():
            current.append(line)
    if current:
        statements.append("\n".join(current))
    filled = [re.sub(r"\{[A-Z]*\}", "model_metadata", s) for s in statements]
    keywords = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|COPY|TABLE|PREPARE|EXPLAIN|SET|SHOW)\b", re.I)
    for path in [ROOT / "src/rewriter/tests.rs", ROOT / "tests/rewrite_properties.rs",
                 ROOT / "tests/rewrite_cache_properties.rs", ROOT / "tests/versioning.rs"]:
        filled += [s for s in literals(path) if keywords.match(s)]
    return sorted(set(filled))


def toml_seeds(marker, extra_files):
    seeds = [(ROOT / f).read_text() for f in extra_files]
    for path in sorted((ROOT / "tests").rglob("*.rs")):
        seeds += [s for s in literals(path) if marker in s]
    return seeds


def startup(params, version=3 << 16):
    body = struct.pack(">I", version)
    for key, value in params:
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack(">I", len(body) + 4) + body


def message(tag, body):
    return tag + struct.pack(">I", len(body) + 4) + body


def cstr(text):
    return text.encode() + b"\0"


def main():
    out = pathlib.Path(sys.argv[1])
    # Crashes found, kept as seeds so every run replays them: a NUL inside a literal (the
    # harness now cuts at the first NUL, as the proxy does).
    crashes = [b"INSERT INTO model_metadata (\"id\",\"model_name\",\"model_verisno\",\"created_at\") VALUES "
               b"(1, 'dup', '1', '20;\0\0\x006-01'), (00, 'new', '1', '2024-06-01') "
               b"ON CONFLICT (\"id\") DO NOTHING RETURNING \"id\""]
    write(out, "rewrite", sql_seeds() + crashes)
    write(out, "spec_file", toml_seeds("[[versions]]", ["examples/model_metadata/viewgate.toml"]))
    migrations = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").rglob("migrations/*.toml"))
    write(out, "migration_file", toml_seeds("[[operations]]", migrations))
    deploy = (ROOT / "deploy/viewgate.toml").read_text()
    write(out, "config_file", [
        "\n" + deploy,
        "LISTEN=127.0.0.1:7000;CLIENT_TLS__MODE=require\n" + deploy,
        "MAX_CLIENT_CONNECTIONS=0\nlisten = \"x\"\n",
        # Peering: this replica's id and the others' client addresses.
        "PEER_ID=1\n[[peers]]\nid = 2\naddress = \"10.0.0.2:6432\"\n"
        "[[peers]]\nid = 255\naddress = \"[::1]:6432\"\n",
        "PEER_ID=3;PEERS=[{id = 3, address = \"b:1\"}]\n",
    ])
    write(out, "startup_packet", [
        startup([("user", "postgres"), ("database", "postgres")]),
        startup([("user", "app"), ("options", "-c viewgate.version=v2"), ("application_name", "web")]),
        startup([("user", "app"), ("viewgate.version", "v1"), ("_pq_.test", "1")], (3 << 16) | 2),
        struct.pack(">II", 8, 80877103),  # SSLRequest
        struct.pack(">II", 8, 80877104),  # GSSENCRequest
        struct.pack(">IIII", 16, 80877102, 1234, 5678),  # CancelRequest
    ])
    simple = message(b"Q", cstr("SELECT * FROM model_metadata"))
    extended = (message(b"P", cstr("s1") + cstr("SELECT $1::int") + b"\0\0")
                + message(b"B", b"\0" + cstr("s1") + b"\0\0\0\1\0\0\0\1" + b"7" + b"\0\0")
                + message(b"E", b"\0\0\0\0\0") + message(b"S", b""))
    closing = message(b"C", b"S" + cstr("s1")) + message(b"X", b"")
    write(out, "client_framing", [b"\x05" + simple, b"\x40" + extended + closing, b"\x01" + simple + extended])
    answer = (message(b"T", b"\0\1" + cstr("x") + b"\0" * 6 + b"\0\0\0\x17\0\4\xff\xff\xff\xff\0\0")
              + message(b"D", b"\0\1\0\0\0\1" + b"1")
              + message(b"C", cstr("SELECT 1")) + message(b"Z", b"I"))
    login = (message(b"R", b"\0\0\0\0") + message(b"S", cstr("server_version") + cstr("15.0"))
             + message(b"K", struct.pack(">II", 42, 7)) + message(b"Z", b"I"))
    error = message(b"E", b"SERROR\0C42P01\0Mrelation does not exist\0\0") + message(b"Z", b"E")
    sasl = message(b"R", struct.pack(">I", 10) + cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + b"\0")
    write(out, "server_framing", [b"\x07" + login + answer, b"\x20" + error, b"\x03" + sasl])


if __name__ == "__main__":
    main()
