//! Settings the binary makes for its whole process at start-up, before any thread exists:
//! what a proxy and a short-lived command need of the kernel that Rust's defaults do not give.

/// Turns transparent huge pages off for this process. mimalloc asks for them on its arenas
/// (`madvise(MADV_HUGEPAGE)`), so the first touch of each fresh 2 MiB region has the kernel
/// find (compacting if it must) and zero a huge page: under load that stalled `migrate
/// complete` 30–80 ms while it held its tables' locks (encoding the steps it leaves for after
/// the commit took 77 ms of CPU instead of 0.5, writers' longest wait 127 ms; with huge pages
/// off, 38–47 ms). A short-lived command touches only fresh memory. The proxy showed no cost
/// either way (`bench/ab.sh`, docs/benchmarks.md), and glibc's malloc, which PgBouncer uses,
/// never asks for huge pages.
pub fn without_transparent_huge_pages() {
    // SAFETY: a process-wide flag set at start-up, before any thread exists; the call reads
    // no memory of ours. It can fail only on a kernel without the option, where nothing is lost.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// A control command's output piped into a reader that stops early (`viewgate status |
/// head`) ends the command as it ends other Unix tools, instead of panicking in `println!`
/// on the broken pipe. Rust ignores SIGPIPE so a server sees EPIPE on a socket; the proxy
/// (`serve`, `demo`) keeps that.
pub fn end_quietly_on_a_closed_pipe() {
    // SAFETY: restoring a signal's default disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
