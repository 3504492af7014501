//! The binary's edge: what the `viewgate` commands run. `src/main.rs` parses the arguments and
//! prints what these return.

pub mod commands;
pub mod duration_arg;
pub mod migrate;
pub mod process;
pub mod progress;
pub mod proxies_loaded;
pub mod route;
pub mod serve;
pub mod shadow;
