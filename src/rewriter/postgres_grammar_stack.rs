//! The stack a check by Postgres's parser runs on: deep enough for the longest text checked.
//!
//! libpg_query's conversion of a parse tree to JSON recurses once per level of the tree, and a
//! worker thread's own stack is small; a hostile statement must never overflow it.

/// The stack a check runs on when the thread's own has too little left: a fresh mapping for
/// that check (only the pages touched are ever committed), so a deep tree can never overflow
/// a worker thread's own, smaller stack.
pub const CHECK_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Stack a check may take per byte of text. The parser itself is not recursive (and its
/// bison stack stops at 10,000 levels), but the conversion of its tree to JSON is: a
/// left-deep chain like `1+1+…+1` nests one level per two bytes. Measured in a release build
/// (`1+…`, `x COLLATE c …`, `x AT TIME ZONE 1 …`, `1::int…` chains until a 1 MiB thread
/// overflowed): at most 129 bytes a level, 64 a byte of text. Four times that, for frames
/// this measurement did not meet.
pub const CHECK_STACK_PER_BYTE: usize = 256;

/// Stack a check takes besides the conversion's recursion (the JSON reader and the walk stop
/// at 128 levels).
const CHECK_STACK_BASE: usize = 256 * 1024;

/// Runs `parse`, which hands a text of `len` bytes to Postgres's parser, on a stack deep
/// enough for it: mapping a fresh stack costs a few system calls and page faults, and a short
/// statement's worst case fits in what a thread has left, so it runs where it is.
pub fn on_check_stack<R>(len: usize, parse: impl FnOnce() -> R) -> R {
    let worst_case = CHECK_STACK_BASE + len * CHECK_STACK_PER_BYTE;
    stacker::maybe_grow(worst_case, CHECK_STACK_BYTES, parse)
}
