//! The configuration loader on an arbitrary file and `VIEWGATE_*` variables: `Config::load`
//! merges them as TOML tables, deserialises once and validates. The input's first line is the
//! variables (`NAME=value` pairs split on `;`), the rest the file. An error or a config, never a
//! panic.
#![no_main]

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use viewgate::config::{Config, Overrides};

/// One file per fuzzing process, written for every input and removed after it (in memory where
/// /dev/shm exists).
fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("viewgate-fuzz-config-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (variables, file) = text.split_once('\n').unwrap_or((text, ""));
    let env: Vec<(String, String)> = variables
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (format!("VIEWGATE_{name}"), value.to_owned()))
        .collect();
    std::fs::File::create(path())
        .and_then(|mut out| out.write_all(file.as_bytes()))
        .expect("the scratch file is writable");
    let _ = Config::load(Some(path()), env, &Overrides::default());
    // libFuzzer ends a timed run by exiting; a file left for the next input would outlive it.
    let _ = std::fs::remove_file(path());
});
