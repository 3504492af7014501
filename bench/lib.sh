# bench/lib.sh — helpers shared by the benchmark scripts in bench/. Sourced, never run.
#
# Why: pgbench.sh and memory.sh both need a throwaway Postgres, a release build of viewgate
# and (pgbench.sh) PgBouncer, all on 127.0.0.1, started the same way and always cleaned up.
#
# How: a script sets `set -euo pipefail`, sources this file, calls `bench_init` (temp dir and
# an EXIT trap), then `start_postgres`, `build_viewgate`, `start_viewgate`, `start_pgbouncer`
# as needed. Every process started here is stopped by its own PID on exit, and the temp dir
# (data directory, logs, configs) is deleted.
#
# Tunables (environment):
#   PG_BIN            directory with initdb/pg_ctl/postgres [newest /usr/lib/postgresql/*/bin]
#   PG_SHARED_BUFFERS shared_buffers of the throwaway cluster [256MB]
#   KEEP_WORK_DIR     set to 1 to keep the temp dir (logs) after the run [0]
#   VG_BIN            run this viewgate binary instead of building one [cargo build --release]
#                     (not VIEWGATE_*: viewgate reads every VIEWGATE_* variable as configuration)
#   UPSTREAM_SOCKET   how the proxies reach Postgres: tcp (127.0.0.1) or unix (socket) [tcp]
#   TLS               where TLS is used [off]: client (pgbench to each target, Postgres
#                     included), upstream (the proxies to Postgres), both; one throwaway
#                     self-signed certificate serves Postgres, viewgate and PgBouncer alike

# Variables below are used by the scripts that source this file.
# shellcheck disable=SC2034
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
RESULTS_DIR="$BENCH_DIR/results"
LOOPBACK=127.0.0.1
PG_SUPERUSER=postgres
PG_SYSTEM_USER=postgres
PG_SHARED_BUFFERS="${PG_SHARED_BUFFERS:-256MB}"
KEEP_WORK_DIR="${KEEP_WORK_DIR:-0}"
UPSTREAM_SOCKET="${UPSTREAM_SOCKET:-tcp}"
if [[ "$UPSTREAM_SOCKET" != tcp && "$UPSTREAM_SOCKET" != unix ]]; then
    echo "UPSTREAM_SOCKET must be tcp or unix" >&2
    exit 1
fi
TLS="${TLS:-off}"
case "$TLS" in
off | client | upstream | both) ;;
*)
    echo "TLS must be off, client, upstream or both" >&2
    exit 1
    ;;
esac
if [[ "$TLS" != off && "$UPSTREAM_SOCKET" == unix ]]; then
    echo "TLS needs UPSTREAM_SOCKET=tcp (Postgres offers no TLS on a Unix socket)" >&2
    exit 1
fi
# The sslmode of the clients towards each target, and of the proxies towards Postgres.
CLIENT_SSLMODE="$([[ "$TLS" == client || "$TLS" == both ]] && echo require || echo disable)"
UPSTREAM_SSLMODE="$([[ "$TLS" == upstream || "$TLS" == both ]] && echo require || echo disable)"
# How long to wait for a server to accept connections, in tenths of a second.
READY_WAIT_TENTHS=300
# How long a stopped proxy may take to exit before it is killed, in tenths of a second.
STOP_WAIT_TENTHS=50

PG_BIN="${PG_BIN:-$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}"
if [[ -z "$PG_BIN" || ! -x "$PG_BIN/initdb" ]]; then
    echo "no PostgreSQL server binaries found; set PG_BIN or apt-get install postgresql" >&2
    exit 1
fi
# Client programs of the same version as the server.
PSQL="$PG_BIN/psql"
PGBENCH="$PG_BIN/pgbench"
PG_ISREADY="$PG_BIN/pg_isready"

# Server commands (initdb, pg_ctl, pgbouncer) refuse to run as root.
AS_SERVER_USER=()
if [[ "$(id -u)" == 0 ]]; then
    AS_SERVER_USER=(runuser -u "$PG_SYSTEM_USER" --)
fi

CLK_TCK="$(getconf CLK_TCK)"
WORK_DIR=""
LOAD_AT_START=""
PG_PORT=""
PG_DATA=""
VG_PID=""
VG_PORT=""
PGB_PID=""
PGB_PORT=""
PGB_PIDFILE=""
# The throwaway certificate and its key (make_certificate), when TLS is not off.
TLS_CERT=""
TLS_KEY=""
# Extra PIDs (e.g. a background sampler) a script wants killed on exit.
EXTRA_PIDS=()

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

bench_init() {
    LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
    WORK_DIR="$(mktemp -d -t viewgate-bench.XXXXXX)"
    if [[ "$(id -u)" == 0 ]]; then
        chown "$PG_SYSTEM_USER:" "$WORK_DIR"
    fi
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# Stops one process by PID: SIGTERM, then SIGKILL if it lingers.
stop_pid() {
    local pid="$1" i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_WAIT_TENTHS; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

bench_cleanup() {
    local status=$?
    set +e
    for pid in "${EXTRA_PIDS[@]}"; do stop_pid "$pid"; done
    stop_pid "$VG_PID"
    # pgbouncer daemonizes: if the script stopped before reading its pidfile, read it now.
    if [[ -z "$PGB_PID" && -n "$PGB_PIDFILE" && -s "$PGB_PIDFILE" ]]; then
        PGB_PID="$(cat "$PGB_PIDFILE")"
    fi
    stop_pid "$PGB_PID"
    if [[ -n "$PG_DATA" && -f "$PG_DATA/postmaster.pid" ]]; then
        (cd "$WORK_DIR" && "${AS_SERVER_USER[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1)
    fi
    if [[ -n "$WORK_DIR" && -d "$WORK_DIR" ]]; then
        if [[ "$KEEP_WORK_DIR" == 1 ]]; then
            log "kept $WORK_DIR"
        else
            rm -rf "$WORK_DIR"
        fi
    fi
    exit "$status"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something speaking the Postgres protocol accepts connections on $1.
wait_ready() {
    local port="$1" what="$2" i
    for ((i = 0; i < READY_WAIT_TENTHS; i++)); do
        if "$PG_ISREADY" -q -h "$LOOPBACK" -p "$port" -U "$PG_SUPERUSER" -d postgres; then
            return 0
        fi
        sleep 0.1
    done
    echo "$what did not become ready on port $port" >&2
    return 1
}

# start_postgres MAX_CONNECTIONS: initdb + start a trust-auth cluster on a free loopback port.
start_postgres() {
    local max_connections="$1"
    PG_DATA="$WORK_DIR/pgdata"
    PG_PORT="$(free_port)"
    log "initdb + start Postgres ($("$PG_BIN/postgres" --version)) on $LOOPBACK:$PG_PORT"
    (cd "$WORK_DIR" && "${AS_SERVER_USER[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_SUPERUSER" \
        -A trust -E UTF8 --locale=C --no-sync >"$WORK_DIR/initdb.log" 2>&1)
    cat >>"$PG_DATA/postgresql.conf" <<EOF
listen_addresses = '$LOOPBACK'
port = $PG_PORT
unix_socket_directories = '$WORK_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = $max_connections
shared_buffers = $PG_SHARED_BUFFERS
EOF
    if [[ "$TLS" != off ]]; then
        make_certificate
        cat >>"$PG_DATA/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = '$TLS_CERT'
ssl_key_file = '$TLS_KEY'
EOF
    fi
    (cd "$WORK_DIR" && "${AS_SERVER_USER[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" \
        -l "$WORK_DIR/postgres.log" -w -t 60 start >/dev/null)
    wait_ready "$PG_PORT" Postgres
}

# make_certificate: a self-signed P-256 certificate for 127.0.0.1 in the work dir, its key
# readable by the server user only (Postgres refuses a key others can read).
make_certificate() {
    [[ -n "$TLS_CERT" ]] && return
    TLS_CERT="$WORK_DIR/tls.crt"
    TLS_KEY="$WORK_DIR/tls.key"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=$LOOPBACK" -keyout "$TLS_KEY" -out "$TLS_CERT" >"$WORK_DIR/openssl.log" 2>&1
    chmod 600 "$TLS_KEY"
    if [[ "$(id -u)" == 0 ]]; then chown "$PG_SYSTEM_USER:" "$TLS_KEY" "$TLS_CERT"; fi
}

build_viewgate() {
    if [[ -n "${VG_BIN:-}" ]]; then
        log "using $VG_BIN (VG_BIN), not building"
        return
    fi
    log "cargo build --release"
    (cd "$REPO_DIR" && cargo build --release --quiet --bin viewgate)
    VG_BIN="${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/viewgate"
}

# upstream_url [tcp|unix]
upstream_url() {
    if [[ "${1:-$UPSTREAM_SOCKET}" == unix ]]; then
        echo "postgres://$LOOPBACK:$PG_PORT?host=$WORK_DIR&sslmode=disable"
    else
        echo "postgres://$LOOPBACK:$PG_PORT?sslmode=$UPSTREAM_SSLMODE"
    fi
}

# start_viewgate [NAME=VALUE ...]: extra environment for the proxy (e.g. TOKIO_WORKER_THREADS=1);
# UPSTREAM_SOCKET=tcp|unix among them overrides the global setting for this proxy only.
# VG_BIN may be set beforehand to run another build.
start_viewgate() {
    local socket="$UPSTREAM_SOCKET" setting
    for setting in "$@"; do
        [[ "$setting" == UPSTREAM_SOCKET=* ]] && socket="${setting#UPSTREAM_SOCKET=}"
    done
    [[ "$TLS" == off ]] || make_certificate
    VG_PORT="$(free_port)"
    log "start viewgate ${VG_BIN/#$REPO_DIR\//} $* on $LOOPBACK:$VG_PORT"
    local client_tls=(VIEWGATE_CLIENT_TLS__MODE=disable)
    if [[ "$CLIENT_SSLMODE" == require ]]; then
        client_tls=(VIEWGATE_CLIENT_TLS__MODE=require VIEWGATE_CLIENT_TLS__CERT="$TLS_CERT"
            VIEWGATE_CLIENT_TLS__KEY="$TLS_KEY")
    fi
    env "$@" VIEWGATE_LOG_LEVEL=warn VIEWGATE_UPSTREAM_TLS__MODE="$UPSTREAM_SSLMODE" "${client_tls[@]}" \
        "$VG_BIN" serve --listen "$LOOPBACK:$VG_PORT" \
        --upstream "$(upstream_url "$socket")" \
        >"$WORK_DIR/viewgate-$VG_PORT.log" 2>&1 &
    VG_PID=$!
    wait_ready "$VG_PORT" viewgate
}

# start_pgbouncer MAX_CLIENT_CONN POOL_SIZE: session pooling, trust auth, as the server user.
start_pgbouncer() {
    local max_client_conn="$1" pool_size="$2"
    if ! command -v pgbouncer >/dev/null; then
        log "installing pgbouncer"
        apt-get install -y -qq pgbouncer >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null; }
    fi
    [[ "$TLS" == off ]] || make_certificate
    PGB_PORT="$(free_port)"
    local dir="$WORK_DIR/pgbouncer"
    PGB_PIDFILE="$dir/pgbouncer.pid"
    mkdir -p "$dir"
    printf '"%s" ""\n' "$PG_SUPERUSER" >"$dir/userlist.txt"
    cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=$([[ "$UPSTREAM_SOCKET" == unix ]] && echo "$WORK_DIR" || echo "$LOOPBACK") port=$PG_PORT

[pgbouncer]
listen_addr = $LOOPBACK
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = session
max_client_conn = $max_client_conn
default_pool_size = $pool_size
max_db_connections = 0
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $PGB_PIDFILE
log_connections = 0
log_disconnections = 0
$(pgbouncer_tls_settings)
EOF
    if [[ "$(id -u)" == 0 ]]; then chown -R "$PG_SYSTEM_USER:" "$dir"; fi
    log "start $(pgbouncer --version | head -n 1) on $LOOPBACK:$PGB_PORT (session pool, $pool_size per pool)"
    (cd "$dir" && "${AS_SERVER_USER[@]}" pgbouncer -d -q "$dir/pgbouncer.ini")
    local i=0
    while [[ ! -s "$PGB_PIDFILE" ]] && ((i++ < READY_WAIT_TENTHS)); do sleep 0.1; done
    PGB_PID="$(cat "$PGB_PIDFILE")"
    wait_ready "$PGB_PORT" pgbouncer
}

# The TLS lines of pgbouncer.ini for $TLS (nothing when off).
pgbouncer_tls_settings() {
    if [[ "$CLIENT_SSLMODE" == require ]]; then
        printf 'client_tls_sslmode = require\nclient_tls_cert_file = %s\nclient_tls_key_file = %s\n' \
            "$TLS_CERT" "$TLS_KEY"
    fi
    if [[ "$UPSTREAM_SSLMODE" == require ]]; then
        printf 'server_tls_sslmode = require\n'
    fi
}

# CPU time (utime + stime, all threads) a process has used so far, in clock ticks.
cpu_ticks() {
    local user sys
    read -r user sys <<<"$(cpu_ticks_split "$1")"
    echo $((user + sys))
}

# "utime stime" of a process (all threads), in clock ticks.
cpu_ticks_split() {
    # Fields after the command name, which is in parentheses and may hold spaces:
    # state is field 3 of the full line, utime 14 and stime 15.
    local stat
    stat="$(cat "/proc/$1/stat")"
    stat="${stat##*) }"
    awk '{ print $12, $13 }' <<<"$stat"
}

# Resident set size of a process, in KiB.
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

machine_summary() {
    local model
    model="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)"
    echo "- host: $(uname -srm), $(nproc) CPUs (nproc), model: ${model:-unknown}"
    echo "- memory: $(free -m | awk '/^Mem:/ { print $2 " MiB" }')"
    echo "- load average at start: $LOAD_AT_START"
    echo "- Postgres: $("$PG_BIN/postgres" --version)"
    echo "- proxies reach Postgres over: $UPSTREAM_SOCKET"
    echo "- TLS: $TLS (clients to every target: sslmode=$CLIENT_SSLMODE; proxies to Postgres: $UPSTREAM_SSLMODE)"
    echo "- viewgate: $(git -C "$REPO_DIR" rev-parse --short HEAD)$(git -C "$REPO_DIR" diff --quiet HEAD -- src || echo ' (with uncommitted changes in src/)')"
}
