//! The migration file parser (`viewgate migrate …`'s TOML: operations, pacing, timeouts) on
//! arbitrary text: an error or a migration, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use viewgate::control::migrate::MigrationFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = MigrationFile::parse(Path::new("fuzz.toml"), text);
});
