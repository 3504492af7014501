//! initdb's output, made once a process for each set of server binaries and copied for every
//! throwaway cluster.
//!
//! initdb costs about a second of CPU (it bootstraps the catalogs and fills template1); copying
//! what it wrote costs a tenth of that. The integration tests start some 330 clusters on a
//! two-core CI machine, so running initdb for each was about five minutes of a CI run. Every
//! cluster a process starts from the same binaries begins as the same files: initdb's options
//! are fixed, and what differs (authentication, settings, port, certificates) is written after
//! the copy. The templates are deleted when the process exits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, Once, TryLockError};

use super::{
    ClusterError, SUPERUSER, check, chown_to_system_user, run_server_program, scratch_dir,
};

/// The data directory's name inside a template's directory and a cluster's.
pub(super) const DATA_DIR: &str = "data";

/// One template a set of server binaries, kept until the process exits.
struct Template {
    bin_dir: PathBuf,
    dir: tempfile::TempDir,
}

/// Held while a template is made, so that concurrent clusters wait for one initdb.
static TEMPLATES: Mutex<Vec<Template>> = Mutex::new(Vec::new());
static REMOVE_AT_EXIT: Once = Once::new();

/// Copies initdb's output for the binaries in `bin_dir` to `target` (a data directory that does
/// not exist yet), running initdb first if this process has not yet.
pub(super) fn copy_to(
    bin_dir: &Path,
    run_as_postgres: bool,
    target: &Path,
) -> Result<(), ClusterError> {
    let mut templates = TEMPLATES
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let position = match templates.iter().position(|t| t.bin_dir == bin_dir) {
        Some(position) => position,
        None => {
            templates.push(make(bin_dir, run_as_postgres)?);
            REMOVE_AT_EXIT.call_once(|| {
                // SAFETY: registers a function without arguments that touches only our static.
                unsafe { libc::atexit(remove_templates) };
            });
            templates.len() - 1
        }
    };
    let source = templates[position].dir.path().join(DATA_DIR);
    // Other clusters' copies need not wait for this one.
    drop(templates);
    // `-a` keeps the owner (the `postgres` user when we are root) and the 0700 mode Postgres
    // insists on.
    let output = Command::new("cp")
        .arg("-a")
        .arg(&source)
        .arg(target)
        .output()?;
    check("cp", &output)
}

/// How the names of the template directories process `pid` makes in `scratch_dir()` begin.
pub fn directory_prefix(pid: u32) -> String {
    format!("viewgate-initdb-{pid}-")
}

fn make(bin_dir: &Path, run_as_postgres: bool) -> Result<Template, ClusterError> {
    let dir = tempfile::Builder::new()
        .prefix(&directory_prefix(std::process::id()))
        .tempdir_in(scratch_dir())?;
    if run_as_postgres {
        chown_to_system_user(dir.path())?;
    }
    let data = dir.path().join(DATA_DIR);
    run_server_program(
        bin_dir,
        run_as_postgres,
        dir.path(),
        "initdb",
        &[
            "-D",
            &data.to_string_lossy(),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
    )?;
    Ok(Template {
        bin_dir: bin_dir.to_owned(),
        dir,
    })
}

/// Deletes the templates (their `TempDir`s) as the process exits: statics are never dropped.
extern "C" fn remove_templates() {
    let mut templates = match TEMPLATES.try_lock() {
        Ok(templates) => templates,
        Err(TryLockError::Poisoned(poison)) => poison.into_inner(),
        // A thread is making one right now; its directory outlives us.
        Err(TryLockError::WouldBlock) => return,
    };
    templates.clear();
}
