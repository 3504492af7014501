#!/usr/bin/env python3
"""Hold N idle Postgres client connections open, for bench/memory.sh.

Why: measuring a proxy's memory per idle client needs many real sessions (startup and
authentication finished, both sockets open) from something much lighter than N psql
processes. This opens each connection with a raw socket, sends a protocol 3.0 StartupMessage
(trust authentication), reads until ReadyForQuery, and then leaves it idle. With PGSSLMODE=
require in the environment (as libpq reads it) each connection asks for TLS first and is
refused if the server does not offer it; the certificate is not checked.

How: idle_clients.py HOST PORT COUNT [USER] [DATABASE]
Prints "ready COUNT" on stdout once every connection is established, then holds them until
stdin reaches end of file (or the process is terminated), sends Terminate and exits.
Exits non-zero if any connection fails.
"""

import os
import socket
import ssl
import struct
import sys

PROTOCOL_3_0 = 196608
SSL_REQUEST_CODE = 80877103
CONNECT_TIMEOUT_SECONDS = 30
AUTH_OK = 0


def read_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("server closed the connection during startup")
        data += chunk
    return bytes(data)


def start_tls(sock, tls):
    sock.sendall(struct.pack("!ii", 8, SSL_REQUEST_CODE))
    if read_exact(sock, 1) != b"S":
        raise ConnectionError("the server does not offer TLS")
    return tls.wrap_socket(sock)


def connect(host, port, user, database, tls):
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECONDS)
    if tls is not None:
        sock = start_tls(sock, tls)
    params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
    sock.sendall(struct.pack("!ii", 8 + len(params), PROTOCOL_3_0) + params)
    while True:
        tag, length = struct.unpack("!ci", read_exact(sock, 5))
        body = read_exact(sock, length - 4)
        if tag == b"R" and struct.unpack("!i", body[:4])[0] != AUTH_OK:
            raise ConnectionError("server asked for a password; use trust authentication")
        if tag == b"E":
            raise ConnectionError("startup failed: " + body.decode(errors="replace"))
        if tag == b"Z":
            sock.settimeout(None)
            return sock


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    user = sys.argv[4] if len(sys.argv) > 4 else "postgres"
    database = sys.argv[5] if len(sys.argv) > 5 else "postgres"
    tls = None
    if os.environ.get("PGSSLMODE") == "require":
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    sockets = [connect(host, port, user, database, tls) for _ in range(count)]
    print(f"ready {len(sockets)}", flush=True)
    try:
        sys.stdin.read()
    finally:
        for sock in sockets:
            try:
                sock.sendall(b"X\0\0\0\4")
                sock.close()
            except OSError:
                pass


if __name__ == "__main__":
    main()
