//! Throwaway PostgreSQL clusters started from the system's server binaries.
//!
//! `viewgate demo` and every integration test need a real Postgres that nobody has to install or
//! configure by hand. This module finds the server binaries, copies `initdb`'s output (made once
//! a process, `initdb_template`) into a temporary directory (on a memory file system when one
//! has room: `scratch_dir`), starts the server on a free loopback port and, on drop, stops it
//! and deletes the directory. `initdb` refuses to run as root, so when we are root every server
//! command runs as the `postgres` system user through `runuser`.

use std::ffi::{CStr, OsStr};
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod initdb_template;

/// Where Debian and Ubuntu install one directory of server binaries per major version.
const DEBIAN_PG_LIB: &str = "/usr/lib/postgresql";
/// Overrides the search for the server binaries (a directory holding `initdb`, `pg_ctl`, ...).
pub const PG_BIN_ENV: &str = "VIEWGATE_PG_BIN";
/// The superuser every throwaway cluster is created with, whoever runs it.
pub const SUPERUSER: &str = "postgres";
/// The system account server commands run as when we are root.
const SYSTEM_USER: &str = "postgres";
/// How often `start` tries a new port when the chosen one was taken in the meantime.
const PORT_ATTEMPTS: usize = 5;
/// How long `pg_ctl` waits for the server to start or stop.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// Where clusters live when it is a memory file system with room (`scratch_dir`).
const MEMORY_SCRATCH_DIR: &CStr = c"/dev/shm";
/// The free space `MEMORY_SCRATCH_DIR` must have to be used: a few busy clusters at once.
const MEMORY_SCRATCH_MIN_FREE_BYTES: u64 = 4 << 30;
/// How long killed server processes may take to disappear.
const KILL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Errors raised while creating, starting or driving a throwaway cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL server binaries found (looked for initdb in ${PG_BIN_ENV}, {DEBIAN_PG_LIB}/*/bin and PATH); install them, e.g. `apt-get install postgresql`"
    )]
    BinariesNotFound,
    #[error("running as root, but there is no `{SYSTEM_USER}` system user to run the server as")]
    NoSystemUser,
    #[error("{command} failed: {detail}")]
    CommandFailed { command: String, detail: String },
    #[error("i/o error while preparing the cluster: {0}")]
    Io(#[from] std::io::Error),
}

/// How clients must authenticate over TCP. Local (Unix socket) connections are always trusted so
/// that the harness itself can administer the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterAuth {
    /// Every TCP client is trusted.
    #[default]
    Trust,
    /// TCP clients need a password; the stored password's type picks md5 or SCRAM-SHA-256.
    Password,
    /// TCP clients send their password in clear text (hba method `password`).
    Cleartext,
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    pub auth: ClusterAuth,
    /// Extra `postgresql.conf` lines, e.g. `wal_level = logical`.
    pub settings: Vec<String>,
    /// A PEM certificate and private key: the server then accepts TLS (`ssl = on`).
    pub tls: Option<ServerCertificate>,
    /// TCP clients must use TLS (`hostssl` lines only, as with `rds.force_ssl`); needs `tls`.
    /// Unix socket connections stay trusted, for the harness.
    pub tls_only: bool,
}

/// PEM texts of a server certificate (chain) and its private key.
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A running cluster in a temporary directory; stopped and deleted on drop.
pub struct ThrowawayCluster {
    bin_dir: PathBuf,
    // Dropped after the server is stopped: holds data dir, socket and log.
    dir: tempfile::TempDir,
    port: u16,
    run_as_postgres: bool,
    running: bool,
}

impl ThrowawayCluster {
    /// Creates and starts a cluster. Blocks for a quarter of a second (the copy of initdb's output
    /// and the server's start), and another second for the process's first initdb.
    pub fn start(options: &ClusterOptions) -> Result<Self, ClusterError> {
        let bin_dir = find_bin_dir().ok_or(ClusterError::BinariesNotFound)?;
        let run_as_postgres = running_as_root();
        if run_as_postgres && !system_user_exists() {
            return Err(ClusterError::NoSystemUser);
        }
        let dir = tempfile::Builder::new()
            .prefix("viewgate-pg-")
            .tempdir_in(scratch_dir())?;
        if run_as_postgres {
            chown_to_system_user(dir.path())?;
        }
        let mut cluster = ThrowawayCluster {
            bin_dir,
            dir,
            port: 0,
            run_as_postgres,
            running: false,
        };
        cluster.init(options)?;
        cluster.start_on_free_port()?;
        Ok(cluster)
    }

    /// Starts a streaming standby of `primary`: a copy of its data directory taken while it
    /// is stopped (a clean shutdown, so the copy needs no recovery of its own; every server
    /// release can do this, where `pg_basebackup` must be the server's own release), which
    /// connects back over `primary`'s Unix socket, on a free port in a directory of its own.
    /// `primary` is started again at once, on its port.
    pub fn standby_of(primary: &mut ThrowawayCluster) -> Result<Self, ClusterError> {
        let dir = tempfile::Builder::new()
            .prefix("viewgate-pg-standby-")
            .tempdir_in(scratch_dir())?;
        if primary.run_as_postgres {
            chown_to_system_user(dir.path())?;
        }
        let mut standby = ThrowawayCluster {
            bin_dir: primary.bin_dir.clone(),
            dir,
            port: 0,
            run_as_postgres: primary.run_as_postgres,
            running: false,
        };
        primary.stop()?;
        // `-a` keeps the files' owner, the server's system user when we are root.
        let copied = Command::new("cp")
            .arg("-a")
            .arg(primary.data_dir())
            .arg(standby.data_dir())
            .stdin(Stdio::null())
            .output();
        primary.pg_ctl(&["start"])?;
        primary.running = true;
        check("cp", &copied?)?;
        standby.write_as_owner("standby.signal", "")?;
        standby.append_as_owner(
            "postgresql.conf",
            &format!(
                "unix_socket_directories = '{}'\nprimary_conninfo = '{}'\n",
                standby.socket_dir().display(),
                primary.admin_conninfo("postgres")
            ),
        )?;
        standby.start_on_free_port()?;
        Ok(standby)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory that holds the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join(initdb_template::DATA_DIR)
    }

    /// A path to one of the server's client programs (`psql`, `pgbench`, ...).
    pub fn bin(&self, program: &str) -> PathBuf {
        self.bin_dir.join(program)
    }

    /// The server's major version, read from its data directory.
    pub fn major_version(&self) -> Result<u32, ClusterError> {
        let text = fs::read_to_string(self.data_dir().join("PG_VERSION"))?;
        text.trim()
            .parse()
            .map_err(|_| ClusterError::CommandFailed {
                command: "read PG_VERSION".into(),
                detail: text,
            })
    }

    /// A URL for a TCP client of this cluster.
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// A key=value connection string for the superuser over the Unix socket (always trusted).
    pub fn admin_conninfo(&self, database: &str) -> String {
        format!(
            "host={} port={} user={SUPERUSER} dbname={database}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// Runs SQL as the superuser through psql over the Unix socket and returns its unaligned,
    /// tuples-only output. Stops at the first error.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, ClusterError> {
        let output = Command::new(self.bin("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.admin_conninfo(database))
            .args(["-c", sql])
            .stdin(Stdio::null())
            .output()?;
        check("psql", &output)?;
        Ok(String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned())
    }

    /// Stops the server (fast shutdown: sessions are terminated).
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        if self.running {
            self.pg_ctl(&["-m", "fast", "stop"])?;
            self.running = false;
        }
        Ok(())
    }

    /// Kills the server as a crash or the OOM killer would: SIGKILL to the postmaster and to
    /// every process it started, with no shutdown of any kind. `restart` then starts it again,
    /// and Postgres replays its WAL (crash recovery) before it accepts connections.
    pub fn kill_hard(&mut self) -> Result<(), ClusterError> {
        let lock_file = fs::read_to_string(self.data_dir().join("postmaster.pid"))?;
        let postmaster: libc::pid_t = lock_file
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| ClusterError::CommandFailed {
                command: "kill".into(),
                detail: "postmaster.pid names no process".into(),
            })?;
        // Stopped first, so that it forks no child between the scan and the kill.
        signal(postmaster, libc::SIGSTOP)?;
        let mut victims = children_of(postmaster)?;
        victims.push(postmaster);
        for &pid in &victims {
            signal(pid, libc::SIGKILL)?;
        }
        let deadline = std::time::Instant::now() + KILL_WAIT;
        while victims.iter().any(|&pid| holds_pid(pid)) {
            if std::time::Instant::now() > deadline {
                return Err(ClusterError::CommandFailed {
                    command: "kill -KILL".into(),
                    detail: format!("processes {victims:?} still alive after {KILL_WAIT:?}"),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.running = false;
        Ok(())
    }

    /// Starts the server again on the same port after `stop`.
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        self.stop()?;
        self.pg_ctl(&["start"])?;
        self.running = true;
        Ok(())
    }

    fn init(&self, options: &ClusterOptions) -> Result<(), ClusterError> {
        initdb_template::copy_to(&self.bin_dir, self.run_as_postgres, &self.data_dir())?;
        let hba_method = match options.auth {
            ClusterAuth::Trust => "trust",
            ClusterAuth::Password => "md5",
            ClusterAuth::Cleartext => "password",
        };
        let tcp = if options.tls_only { "hostssl" } else { "host" };
        let hba = format!(
            "local all all trust\n\
             local replication all trust\n\
             {tcp} all all 127.0.0.1/32 {hba_method}\n\
             {tcp} all all ::1/128 {hba_method}\n"
        );
        self.write_as_owner("pg_hba.conf", &hba)?;
        // jit: LLVM compiles each query whose estimated cost passes `jit_above_cost`, at tens
        // of milliseconds of CPU each; in the tests' clusters that was a fifth of a test run's
        // CPU (`perf`, 2026-12-04), and it changes no result.
        let mut conf = String::from(
            "listen_addresses = '127.0.0.1'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_connections = 200\n\
             shared_buffers = 32MB\n\
             jit = off\n",
        );
        conf.push_str(&format!(
            "unix_socket_directories = '{}'\n",
            self.socket_dir().display()
        ));
        if let Some(tls) = &options.tls {
            self.write_private("server.crt", &tls.cert_pem)?;
            self.write_private("server.key", &tls.key_pem)?;
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        for line in &options.settings {
            conf.push_str(line);
            conf.push('\n');
        }
        self.append_as_owner("postgresql.conf", &conf)
    }

    fn start_on_free_port(&mut self) -> Result<(), ClusterError> {
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            self.append_as_owner("postgresql.conf", &format!("port = {}\n", self.port))?;
            match self.pg_ctl(&["start"]) {
                Ok(()) => {
                    self.running = true;
                    return Ok(());
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    fn pg_ctl(&self, action: &[&str]) -> Result<(), ClusterError> {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let mut args = vec![
            "-D".to_owned(),
            data.to_string_lossy().into_owned(),
            "-l".to_owned(),
            log.to_string_lossy().into_owned(),
            "-w".to_owned(),
            "-t".to_owned(),
            PG_CTL_TIMEOUT_SECS.to_owned(),
        ];
        args.extend(action.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run("pg_ctl", &args).map_err(|error| match error {
            ClusterError::CommandFailed { command, detail } => ClusterError::CommandFailed {
                command,
                detail: format!(
                    "{detail}\nserver log:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                ),
            },
            other => other,
        })
    }

    /// Runs a server binary, as the `postgres` system user when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), ClusterError> {
        run_server_program(
            &self.bin_dir,
            self.run_as_postgres,
            self.dir.path(),
            program,
            args,
        )
    }

    fn write_as_owner(&self, file: &str, text: &str) -> Result<(), ClusterError> {
        fs::write(self.data_dir().join(file), text)?;
        Ok(())
    }

    /// Writes a file only the server's user may read (Postgres insists for private keys).
    fn write_private(&self, file: &str, text: &str) -> Result<(), ClusterError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.data_dir().join(file);
        fs::write(&path, text)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        if self.run_as_postgres {
            chown_to_system_user(&path)?;
        }
        Ok(())
    }

    fn append_as_owner(&self, file: &str, text: &str) -> Result<(), ClusterError> {
        let mut handle = fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join(file))?;
        handle.write_all(text.as_bytes())?;
        Ok(())
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        if self.running {
            // Immediate mode: nothing in a throwaway cluster is worth a checkpoint.
            let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
        }
    }
}

/// Runs the server program `program` from `bin_dir` in `directory`, as the `postgres` system
/// user when `run_as_postgres`.
fn run_server_program(
    bin_dir: &Path,
    run_as_postgres: bool,
    directory: &Path,
    program: &str,
    args: &[&str],
) -> Result<(), ClusterError> {
    let binary = bin_dir.join(program);
    let mut command = if run_as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", SYSTEM_USER, "--"]).arg(&binary);
        command
    } else {
        Command::new(&binary)
    };
    // The server inherits our working directory; as another user it may not be able to
    // read it, so start everything from a directory of its own.
    let output = command
        .args(args)
        .current_dir(directory)
        .stdin(Stdio::null())
        .output()?;
    check(program, &output)
}

fn check(program: &str, output: &Output) -> Result<(), ClusterError> {
    if output.status.success() {
        return Ok(());
    }
    Err(ClusterError::CommandFailed {
        command: program.to_owned(),
        detail: format!(
            "{}{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// The newest directory of server binaries we can find.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(DEBIAN_PG_LIB)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
}

/// The directory clusters are made in: `MEMORY_SCRATCH_DIR` when it is a tmpfs with
/// `MEMORY_SCRATCH_MIN_FREE_BYTES` free, else the system's temporary directory. A cluster's
/// thousand files cost ext4 half a second of system time to create (its inode allocator skips
/// recently deleted inodes, and a test run deletes hundreds of clusters), a tmpfs a tenth of
/// that; and nothing in a throwaway cluster needs to outlive the machine.
pub fn scratch_dir() -> PathBuf {
    let memory = Path::new(OsStr::from_bytes(MEMORY_SCRATCH_DIR.to_bytes()));
    // SAFETY: statfs is plain data, for which all zeroes is a valid value.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs(2) reads a NUL-terminated path and fills the struct we own.
    let found = unsafe { libc::statfs(MEMORY_SCRATCH_DIR.as_ptr(), &mut stats) } == 0;
    let free = (stats.f_bavail as u64).saturating_mul(stats.f_bsize as u64);
    // The types of both sides differ between targets.
    #[allow(clippy::unnecessary_cast)]
    let tmpfs = stats.f_type as i64 == libc::TMPFS_MAGIC as i64;
    if found && tmpfs && free >= MEMORY_SCRATCH_MIN_FREE_BYTES && memory.is_dir() {
        memory.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
fn signal(pid: libc::pid_t, signal: libc::c_int) -> Result<(), ClusterError> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(error.into())
    }
}

/// The processes whose parent is `parent`, from /proc.
fn children_of(parent: libc::pid_t) -> Result<Vec<libc::pid_t>, ClusterError> {
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if parent_pid(pid) == Some(parent) {
            children.push(pid);
        }
    }
    Ok(children)
}

/// A process that still holds its pid, a zombie included: a new postmaster refuses to start
/// while the pid in `postmaster.pid` answers `kill(pid, 0)`, which a zombie does.
fn holds_pid(pid: libc::pid_t) -> bool {
    parent_pid(pid).is_some()
}

/// The parent pid of `pid` from /proc/PID/stat; `None` when `pid` is gone.
fn parent_pid(pid: libc::pid_t) -> Option<libc::pid_t> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or parentheses; the
    // state and then the parent pid follow it.
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn system_user_exists() -> bool {
    Command::new("id")
        .args(["-u", SYSTEM_USER])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn chown_to_system_user(path: &Path) -> Result<(), ClusterError> {
    let output = Command::new("chown")
        .arg(format!("{SYSTEM_USER}:"))
        .arg(path)
        .output()?;
    check("chown", &output)
}

/// A loopback port nobody listens on right now. Another process may take it before we bind
/// it, which is why `start` retries.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
