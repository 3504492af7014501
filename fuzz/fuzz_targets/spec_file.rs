//! The spec file parser and checker (`viewgate.toml`: tables, versions, renamed, computed and
//! hidden columns) on arbitrary text: an error or a spec, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use viewgate::control::views::spec::Spec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = Spec::parse(Path::new("fuzz.toml"), text) {
        for version in &spec.versions {
            let _ = spec.version(&version.name);
        }
    }
});
