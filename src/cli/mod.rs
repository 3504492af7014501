//! The command line's handlers (the binary's edge): each loads what its command names,
//! connects, calls the control plane and returns something printable.

pub mod migrate;
pub mod progress;
