//! Shared test harness: throwaway database servers for integration tests.
//!
//! Use it from an integration test with `mod common;` and then
//! `common::pg::PgServer` / `common::mysql::MariaDbServer`.
//!
//! Each test process lazily starts one shared server per engine
//! (`PgServer::shared()`, `MariaDbServer::shared()`) and every test takes its
//! own database from it (`fresh_db`). A detached watchdog process stops the
//! server and deletes its directory once the test process exits (also after a
//! panic or a kill). Tests that need to stop/kill a server use
//! `start_private()`, which returns an owned server that is stopped in `Drop`.

// Not every test binary uses every helper.
#![allow(dead_code)]

pub mod mysql;
pub mod pg;

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Error from the harness. `Debug` prints the plain message so that
/// `.expect()` / `.unwrap()` failures are readable.
pub struct HarnessError(pub String);

pub type HarnessResult<T> = Result<T, HarnessError>;

impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

impl From<String> for HarnessError {
    fn from(s: String) -> Self {
        HarnessError(s)
    }
}

impl From<&str> for HarnessError {
    fn from(s: &str) -> Self {
        HarnessError(s.to_owned())
    }
}

impl From<std::io::Error> for HarnessError {
    fn from(e: std::io::Error) -> Self {
        HarnessError(e.to_string())
    }
}

/// Runs `cmd`, feeding `stdin` if given, and returns its stdout. A non-zero
/// exit becomes an error carrying the command's stderr and stdout.
pub fn run_cmd(cmd: &mut Command, stdin: Option<&str>, what: &str) -> HarnessResult<String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(input.as_bytes())
            .map_err(|e| format!("{what}: writing stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{what}: waiting for {:?}: {e}", cmd.get_program()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(HarnessError(format!(
            "{what} failed ({}): {:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            out.status,
            cmd,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            stdout.trim_end(),
        )));
    }
    Ok(stdout)
}

/// True when the test process runs as root.
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// `(uid, gid)` of an OS user, read from /etc/passwd.
pub fn os_user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// First existing file named one of `names`, looked up in `$PATH` and then in
/// `extra_dirs`.
pub fn find_program(names: &[&str], extra_dirs: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(extra_dirs.iter().map(PathBuf::from));
    names.iter().find_map(|name| {
        dirs.iter().map(|d| d.join(name)).find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.mode() & 0o111 != 0)
                .unwrap_or(false)
        })
    })
}

/// True if the process exists and is not a zombie. (PID 1 in a container may
/// never reap orphans, so `kill -0` alone is not enough.)
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            !matches!(state, Some(Some('Z' | 'X' | 'x')))
        }
        Err(_) => false,
    }
}

/// Polls `cond` every `every` until it is true or `timeout` has passed.
pub fn wait_until(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Creates a fresh, world-readable (0755) directory for one server instance.
/// It lives under /tmp (short paths: unix socket paths are limited to 107
/// bytes) and is not removed automatically: the server's `Drop` or watchdog
/// removes it.
pub fn new_instance_dir(prefix: &str) -> HarnessResult<PathBuf> {
    let base = if Path::new("/tmp").is_dir() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .map_err(|e| format!("cannot create a temp dir in {}: {e}", base.display()))?
        .keep();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let s = dir.to_string_lossy();
    if s.contains(['\'', '"', ' ', '\\', '$', '`']) {
        return Err(format!("temp dir path {s:?} has characters the harness does not quote").into());
    }
    if s.len() > 80 {
        return Err(format!("temp dir path {s:?} is too long for a unix socket path").into());
    }
    Ok(dir)
}

/// Spawns a detached watchdog (its own session, so Ctrl-C to the test does
/// not reach it) that waits until this test process is gone or `dir` has
/// been removed. If the process is gone and `dir` still exists it runs the
/// shell snippet `cleanup` (which may use `alive PID` and `$DIR`) and then
/// deletes `dir`.
pub fn spawn_watchdog(dir: &Path, cleanup: &str) -> HarnessResult<()> {
    let pid = std::process::id();
    let dir = dir.display();
    let script = format!(
        r#"
DIR='{dir}'
alive() {{
    s=$(cat /proc/$1/stat 2>/dev/null) || return 1
    s=${{s##*[)] }}
    case "$s" in Z*|X*|x*) return 1;; esac
    return 0
}}
while alive {pid} && [ -d "$DIR" ]; do sleep 0.5; done
[ -d "$DIR" ] || exit 0
{cleanup}
rm -rf "$DIR"
"#
    );
    if let Some(setsid) = find_program(&["setsid"], &["/usr/bin", "/bin"]) {
        // `setsid -f` forks, so the command we wait for returns at once.
        let status = Command::new(setsid)
            .args(["-f", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot spawn the watchdog: {e}"))?;
        if !status.success() {
            return Err(format!("watchdog spawn failed: {status}").into());
        }
    } else {
        Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot spawn the watchdog: {e}"))?;
    }
    Ok(())
}

/// Turns a free-form hint into a unique, lowercase database name that is a
/// valid unquoted identifier in PostgreSQL and MariaDB.
pub fn unique_db_name(hint: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut base: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base.insert_str(0, "db_");
    }
    format!("{base}_{n}")
}

/// The database name in a `scheme://user@host:port/DB?params` URL.
pub fn db_name_from_url(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let db = path.split(['?', '#']).next()?;
    (!db.is_empty()).then(|| db.to_owned())
}

/// Last `n` lines of a log file (for error messages).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------
// Template cache: a freshly initialised data directory is copied once into
// `target/tmp/cutover-db-templates/<key>` and later servers copy it instead
// of running initdb / mariadb-install-db again (MariaDB's bootstrap takes
// seconds). Set CUTOVER_TEST_NO_TEMPLATE=1 to bypass it.

fn template_root() -> PathBuf {
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join("cutover-db-templates")
}

/// Cache key for a data-directory template: `kind` plus a hash of the
/// server version and the init options.
pub fn template_key(kind: &str, version: &str, init_options: &[String]) -> String {
    let mut h = DefaultHasher::new();
    (1u32, version, init_options).hash(&mut h);
    format!("{kind}-{:016x}", h.finish())
}

fn templates_enabled() -> bool {
    std::env::var_os("CUTOVER_TEST_NO_TEMPLATE").is_none_or(|v| v.is_empty() || v == "0")
}

/// Copies the cached template for `key` to `dest` (which must not exist).
/// Returns false (and leaves nothing at `dest`) if there is no usable template.
pub fn restore_template(key: &str, dest: &Path) -> bool {
    if !templates_enabled() {
        return false;
    }
    let src = template_root().join(key);
    if !src.is_dir() {
        return false;
    }
    let ok = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(dest)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let _ = std::fs::remove_dir_all(dest);
    }
    ok
}

/// Publishes `data` (a freshly initialised, not yet started data directory)
/// as the template for `key`. Best effort: failures are ignored.
pub fn save_template(key: &str, data: &Path) {
    if !templates_enabled() {
        return;
    }
    let root = template_root();
    let target = root.join(key);
    if target.exists() || std::fs::create_dir_all(&root).is_err() {
        return;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let staging = root.join(format!(".{key}.tmp.{}.{nanos}", std::process::id()));
    let copied = Command::new("cp")
        .arg("-a")
        .arg(data)
        .arg(&staging)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    // rename() is atomic: a template directory, once visible, is complete.
    if !copied || std::fs::rename(&staging, &target).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
}
