#!/usr/bin/env bash
# bench/wakeups.sh — what one loopback round trip costs the kernel, apart from any proxy.
#
# Why: a proxy's CPU per transaction is mostly system time (docs/benchmarks.md, "Where the
# time goes"), and the question for issue 12 is which part of it a different I/O model could
# save. This measures the parts on the machine itself: one system call's entry and exit
# (getppid), and a TCP round trip over loopback between two processes (one send and one
# blocking recv on each side, 64 bytes, TCP_NODELAY) three ways: the processes free to run on
# any CPU (where the scheduler puts them decides), both pinned to CPU 0 (a wake-up needs no
# interrupt to another CPU), and pinned apart, to CPUs 0 and 1 (every wake-up crosses).
#
# What it does: compiles a small C program with the system's cc into a temp dir and runs it
# $REPEATS times each way. Prints CPU time (user + system, getrusage) per round trip of each
# side, and the wall time per round trip.
#
# How to run:
#   bench/wakeups.sh
#   ROUND_TRIPS=500000 REPEATS=5 bench/wakeups.sh
set -euo pipefail

ROUND_TRIPS="${ROUND_TRIPS:-200000}"
REPEATS="${REPEATS:-3}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cat >"$work/wakeups.c" <<'EOF'
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double cpu_us(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
}

/* Pins the calling process to `cpu`, unless it is negative. */
static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set)) { perror("sched_setaffinity"); exit(1); }
}

static double wall_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
    int n = atoi(argv[1]), asking_cpu = atoi(argv[2]), echoing_cpu = atoi(argv[3]);
    int one = 1, calls = 2000000;
    pin(asking_cpu);
    double start = wall_us();
    for (int i = 0; i < calls; i++) syscall(SYS_getppid);
    printf("system call (getppid): %.0f ns\n", (wall_us() - start) * 1e3 / calls);
    fflush(stdout);

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {0};
    socklen_t length = sizeof address;
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (void *)&address, sizeof address) || listen(listener, 1) ||
        getsockname(listener, (void *)&address, &length)) { perror("listen"); return 1; }
    char buffer[128];
    memset(buffer, 'x', sizeof buffer);
    if (fork() == 0) {
        pin(echoing_cpu);
        int peer = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(peer, (void *)&address, sizeof address)) { perror("connect"); exit(1); }
        setsockopt(peer, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        double cpu = cpu_us();
        for (int i = 0; i < n; i++) {
            if (recv(peer, buffer, sizeof buffer, 0) <= 0) break;
            send(peer, buffer, 64, 0);
        }
        printf("echoing side: %.2f us CPU per round trip\n", (cpu_us() - cpu) / n);
        exit(0);
    }
    int peer = accept(listener, 0, 0);
    setsockopt(peer, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    double cpu = cpu_us();
    start = wall_us();
    for (int i = 0; i < n; i++) {
        send(peer, buffer, 64, 0);
        recv(peer, buffer, sizeof buffer, 0);
    }
    printf("asking side: %.2f us CPU per round trip, %.1f us wall\n", (cpu_us() - cpu) / n,
           (wall_us() - start) / n);
    close(peer);
    wait(0);
    return 0;
}
EOF
cc -O2 -o "$work/wakeups" "$work/wakeups.c"

echo "# $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$REPEATS"); do
    echo "## run $run, any CPU"
    "$work/wakeups" "$ROUND_TRIPS" -1 -1
    echo "## run $run, both on CPU 0"
    "$work/wakeups" "$ROUND_TRIPS" 0 0
    echo "## run $run, apart: CPUs 0 and 1"
    "$work/wakeups" "$ROUND_TRIPS" 0 1
done
