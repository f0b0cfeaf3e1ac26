//! Backups of the target before a run, and restoring one.
//!
//! - SQLite: `VACUUM INTO` a new file; restore copies it into place while no connection is
//!   open (the run lock's OS file lock is held throughout).
//! - PostgreSQL: `pg_dump -Fc`; restore with `pg_restore --clean --if-exists` in one
//!   transaction.
//! - MySQL/MariaDB: `mariadb-dump`/`mysqldump`; restore through the `mariadb`/`mysql` client.
//!
//! The dump tools get the connection through their environment (`PGHOST`, `PGPASSWORD`,
//! `MYSQL_PWD`, ...), never on their command line, so a password shows in no process list and
//! no message. Each backup is recorded in the ledger (`store::backups`) with its SHA-256; a
//! restore checks the file against that record and refuses a file that changed.

use crate::engine::backend::BackupTool;
use crate::engine::db::{Db, Role};
use crate::engine::project::Project;
use crate::engine::store::backups::{self, BackupRecord};
use crate::engine::store::ledger;
use crate::engine::store::lock::{LockError, RunLock};
use color_eyre::eyre::{Result, eyre};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The folder of the project where backups go by default.
pub const BACKUPS_DIR: &str = "backups";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{tool} is not installed (not found on PATH): install it with `{install}` and try again")]
    ToolMissing { tool: String, install: &'static str },
    #[error("restore replaces the whole target with the backup: add --yes to confirm")]
    NotConfirmed,
    #[error("the backup file {0} does not exist")]
    NoFile(String),
    #[error("{0} already exists: a backup never overwrites a file (choose another --out)")]
    Exists(String),
    #[error(
        "the backup file {file} does not match the ledger: its SHA-256 is {actual}, but the backup recorded at {at} was {recorded}. The file changed since it was written; restore refused"
    )]
    ChecksumMismatch {
        file: String,
        actual: String,
        recorded: String,
        at: String,
    },
    #[error("the target database {0} does not exist yet: there is nothing to back up")]
    NoTarget(String),
    #[error("an in-memory SQLite target has no file to back up or restore")]
    InMemory,
    #[error("{tool} failed: {message}")]
    ToolFailed { tool: String, message: String },
    #[error(transparent)]
    Locked(#[from] LockError),
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub file: String,
    pub sha256: String,
    /// The ledger's record of this backup file, when it has one (its checksum matched).
    pub recorded: Option<BackupRecord>,
    /// Said when the file could not be checked against the ledger.
    pub warning: Option<String>,
}

/// The SHA-256 of a file's bytes, hex (read in full each time: a restore must see the file as
/// it is now).
pub fn sha256_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| eyre!("cannot read {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| eyre!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Back up the target into `out` (default `backups/<UTC timestamp>.<ext>` in the project
/// folder) and record it in the ledger.
pub async fn backup(project: &Project, out: Option<&Path>) -> Result<BackupRecord> {
    // Connecting would create a missing SQLite target: an empty database, backed up as if it
    // were the target.
    if let Some(file) = crate::engine::db::sqlite_path(project.config.target.expose(), &project.config.dir)
        && !file.exists()
        && !project.config.target.expose().contains(":memory:")
    {
        return Err(BackupError::NoTarget(file.display().to_string()).into());
    }
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let res = backup_in(project, &target, out).await;
    target.close().await;
    res
}

async fn backup_in(project: &Project, target: &Db, out: Option<&Path>) -> Result<BackupRecord> {
    let tool = target.dialect().backup_tool();
    let path = match out {
        Some(p) => absolute(p),
        None => {
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
            let ext = match tool {
                BackupTool::SqliteFile => "sqlite",
                BackupTool::PgDump => "dump",
                BackupTool::MysqlDump => "sql",
            };
            absolute(&project.config.dir.join(BACKUPS_DIR).join(format!("{stamp}.{ext}")))
        }
    };
    if path.exists() {
        return Err(BackupError::Exists(path.display().to_string()).into());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| eyre!("cannot create {}: {e}", parent.display()))?;
    }
    // The dump goes to a `.partial` name first and gets its real name only once whole: a
    // backup killed midway leaves no file that looks finished.
    let partial = {
        let mut p = path.as_os_str().to_owned();
        p.push(".partial");
        PathBuf::from(p)
    };
    if partial.exists() {
        std::fs::remove_file(&partial).map_err(|e| eyre!("cannot remove {}: {e}", partial.display()))?;
    }
    if let Err(e) = dump_to(project, target, tool, &partial).await {
        if partial.exists()
            && let Err(rm) = std::fs::remove_file(&partial)
        {
            tracing::warn!("cannot remove {}: {rm}", partial.display());
        }
        return Err(e);
    }
    std::fs::rename(&partial, &path)
        .map_err(|e| eyre!("cannot move {} to {}: {e}", partial.display(), path.display()))?;
    let bytes = std::fs::metadata(&path)
        .map_err(|e| eyre!("cannot read {}: {e}", path.display()))?
        .len();
    let sha = sha256_file(&path)?;
    ledger::ensure(target).await?;
    let rec = backups::record(target, &path.display().to_string(), bytes, &sha).await?;
    ledger::append_event_db(
        target,
        None,
        None,
        "backup",
        &serde_json::json!({"file": rec.file, "bytes": bytes, "sha256": sha}),
    )
    .await?;
    Ok(rec)
}

/// Write the target's dump into the new file `path`.
async fn dump_to(project: &Project, target: &Db, tool: BackupTool, path: &Path) -> Result<()> {
    match tool {
        BackupTool::SqliteFile => {
            if target.sqlite_file().is_none() {
                return Err(BackupError::InMemory.into());
            }
            target.vacuum_into(path).await?;
        }
        BackupTool::PgDump => {
            let conn = PgConn::from_url(project.config.target.expose())?;
            let bin = find_tool(&["pg_dump"], "apt-get install -y postgresql-client")?;
            let mut cmd = tokio::process::Command::new(&bin);
            cmd.arg("-Fc").arg("--file").arg(path).arg("--dbname").arg(&conn.dbname);
            conn.apply(&mut cmd);
            run_tool(cmd, "pg_dump", None).await?;
        }
        BackupTool::MysqlDump => {
            let conn = MyConn::from_url(project.config.target.expose())?;
            let bin = find_tool(&["mariadb-dump", "mysqldump"], "apt-get install -y mariadb-client")?;
            let mut cmd = tokio::process::Command::new(&bin);
            cmd.args(["--single-transaction", "--routines", "--triggers"])
                .arg(format!("--result-file={}", path.display()));
            conn.apply(&mut cmd);
            cmd.arg(&conn.dbname);
            run_tool(cmd, &bin.display().to_string(), None).await?;
        }
    }
    Ok(())
}

/// Restore the target from `file` (a backup made by [`backup`]). Refused without `yes`, while
/// another run holds the target, and when the ledger recorded this file with another checksum.
pub async fn restore(project: &Project, file: &Path, yes: bool) -> Result<RestoreReport> {
    if !yes {
        return Err(BackupError::NotConfirmed.into());
    }
    let file = absolute(file);
    if !file.is_file() {
        return Err(BackupError::NoFile(file.display().to_string()).into());
    }
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let stale = std::time::Duration::from_secs(project.config.defaults.lock_stale_after_secs);
    let lock = match RunLock::acquire(&target, "restore", stale).await {
        Ok(l) => l,
        Err(e) => {
            target.close().await;
            return Err(BackupError::Locked(e).into());
        }
    };
    let res = restore_locked(project, &target, &file).await;
    // A SQLite target was closed and reopened under the lock: the lock's own connection is
    // gone with it, and the restored file holds no row of this lock. Dropping the lock
    // releases the OS lock.
    if let Err(e) = lock.release().await {
        tracing::debug!("run lock after restore: {e:#}");
    }
    target.close().await;
    res
}

async fn restore_locked(project: &Project, target: &Db, file: &Path) -> Result<RestoreReport> {
    let sha = sha256_file(file)?;
    let before = backups::list(target).await?;
    let name = file.display().to_string();
    let by_file = before.iter().rev().find(|r| Path::new(&r.file) == file);
    let (recorded, warning) = match by_file {
        Some(r) if r.sha256 != sha => {
            return Err(BackupError::ChecksumMismatch {
                file: name,
                actual: sha,
                recorded: r.sha256.clone(),
                at: r.at.clone(),
            }
            .into());
        }
        Some(r) => (Some(r.clone()), None),
        None => match before.iter().rev().find(|r| r.sha256 == sha) {
            Some(r) => (Some(r.clone()), None),
            None => (
                None,
                Some(format!(
                    "{name} is not a backup this target's ledger recorded: its checksum could not be checked; restoring it anyway"
                )),
            ),
        },
    };
    if let Some(w) = &warning {
        tracing::warn!("{w}");
    }
    let (after, reopened) = match target.dialect().backup_tool() {
        BackupTool::SqliteFile => {
            let db_file = target.sqlite_file().ok_or(BackupError::InMemory)?;
            // No connection may be open while the file is replaced: close the pool (the
            // lock's heartbeat shares it), then copy beside the file and rename over it.
            target.close().await;
            replace_sqlite_file(file, &db_file).await?;
            (
                Db::connect(&project.config.target, &project.config.dir, Role::Target).await?,
                true,
            )
        }
        BackupTool::PgDump => {
            let conn = PgConn::from_url(project.config.target.expose())?;
            let bin = find_tool(&["pg_restore"], "apt-get install -y postgresql-client")?;
            let mut cmd = tokio::process::Command::new(&bin);
            cmd.args([
                "--clean",
                "--if-exists",
                "--single-transaction",
                "--exit-on-error",
                "--no-owner",
            ])
            .arg("--dbname")
            .arg(&conn.dbname)
            .arg(file);
            conn.apply(&mut cmd);
            run_tool(cmd, "pg_restore", None).await?;
            (target.clone(), false)
        }
        BackupTool::MysqlDump => {
            require_whole_sql_dump(file)?;
            let conn = MyConn::from_url(project.config.target.expose())?;
            let bin = find_tool(&["mariadb", "mysql"], "apt-get install -y mariadb-client")?;
            let mut cmd = tokio::process::Command::new(&bin);
            conn.apply(&mut cmd);
            cmd.arg(&conn.dbname);
            run_tool(cmd, &bin.display().to_string(), Some(file)).await?;
            (target.clone(), false)
        }
    };
    // The restored ledger is the one of the backup's moment: the backups made since (this
    // one among them) are put back, and the restore itself is recorded.
    let result = async {
        ledger::ensure(&after).await?;
        backups::put_back(&after, &before).await?;
        ledger::append_event_db(
            &after,
            None,
            None,
            "restored",
            &serde_json::json!({"file": name, "sha256": sha, "recorded": recorded.is_some()}),
        )
        .await
    }
    .await;
    if reopened {
        after.close().await;
    }
    result?;
    Ok(RestoreReport {
        file: name,
        sha256: sha,
        recorded,
        warning,
    })
}

/// Copy `backup` over the SQLite database `db_file`: into a temporary file beside it first,
/// flushed and checked to be a whole database (a truncated or foreign file is refused and the
/// target left as it was), then renamed over it, with the old write-ahead log removed so
/// SQLite cannot replay it into the restored file.
async fn replace_sqlite_file(backup: &Path, db_file: &Path) -> Result<()> {
    let with_suffix = |suffix: &str| {
        let mut p = db_file.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    // The last connection to close checkpoints and removes the write-ahead log: one still
    // there with frames in it belongs to another process that has the database open (a
    // console), whose committed pages would be lost or replayed into the restored file.
    let wal = with_suffix("-wal");
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(eyre!(
            "another process has {} open (a console?): close it and restore again",
            db_file.display()
        ));
    }
    let tmp = with_suffix(".restoring");
    let copied = async {
        std::fs::copy(backup, &tmp).map_err(|e| eyre!("cannot copy {} to {}: {e}", backup.display(), tmp.display()))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| eyre!("cannot flush {}: {e}", tmp.display()))?;
        crate::engine::backend::sqlite::check_file(&tmp).await.map_err(|e| {
            eyre!(
                "{} cannot be restored, the target is left as it was: {e}",
                backup.display()
            )
        })
    }
    .await;
    if let Err(e) = copied {
        if tmp.exists()
            && let Err(rm) = std::fs::remove_file(&tmp)
        {
            tracing::warn!("cannot remove {}: {rm}", tmp.display());
        }
        return Err(e);
    }
    for suffix in ["-wal", "-shm"] {
        let p = with_suffix(suffix);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| eyre!("cannot remove {}: {e}", p.display()))?;
        }
    }
    std::fs::rename(&tmp, db_file).map_err(|e| eyre!("cannot move {} to {}: {e}", tmp.display(), db_file.display()))?;
    Ok(())
}

/// The line `mariadb-dump`/`mysqldump` end every finished dump with.
const DUMP_COMPLETED: &str = "-- Dump completed";

/// A SQL dump drops each table before recreating and refilling it, and the client stops where
/// the file stops: a dump cut short (the dump killed, a full disk) would leave tables dropped
/// or empty. Refused unless the file ends the way every finished dump ends.
fn require_whole_sql_dump(file: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let unreadable = |e: std::io::Error| eyre!("cannot read {}: {e}", file.display());
    let mut f = std::fs::File::open(file).map_err(unreadable)?;
    let len = f.metadata().map_err(unreadable)?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).map_err(unreadable)?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).map_err(unreadable)?;
    let tail = String::from_utf8_lossy(&tail);
    let last = tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    if last.starts_with(DUMP_COMPLETED) {
        return Ok(());
    }
    Err(eyre!(
        "{} is not a whole dump (it does not end with the dump tool's `{DUMP_COMPLETED}` line: cut short?); restore refused, the target is left as it was",
        file.display()
    ))
}

/// The first of `names` found on PATH.
fn find_tool(names: &[&str], install: &'static str) -> Result<PathBuf, BackupError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(BackupError::ToolMissing {
        tool: names.join(" or "),
        install,
    })
}

/// Run a dump tool; its stderr (with any secret scrubbed) is the error when it fails.
async fn run_tool(mut cmd: tokio::process::Command, tool: &str, stdin: Option<&Path>) -> Result<(), BackupError> {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    match stdin {
        Some(f) => {
            let file = std::fs::File::open(f).map_err(|e| BackupError::ToolFailed {
                tool: tool.to_string(),
                message: format!("cannot read {}: {e}", f.display()),
            })?;
            cmd.stdin(Stdio::from(file));
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    let out = cmd.output().await.map_err(|e| BackupError::ToolFailed {
        tool: tool.to_string(),
        message: format!("cannot start it: {e}"),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(BackupError::ToolFailed {
        tool: tool.to_string(),
        message: crate::engine::config::redact_url(stderr.trim()),
    })
}

fn decoded(s: &str) -> String {
    percent_decode(s)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(u: &url::Url, name: &str) -> Option<String> {
    u.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A PostgreSQL target's connection, for libpq's environment variables.
struct PgConn {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    dbname: String,
    sslmode: Option<String>,
}

impl PgConn {
    fn from_url(raw: &str) -> Result<PgConn> {
        let u = url::Url::parse(raw).map_err(|e| eyre!("the target URL cannot be parsed: {e}"))?;
        let dbname = decoded(u.path().trim_start_matches('/'));
        if dbname.is_empty() {
            return Err(eyre!("the target URL names no database"));
        }
        Ok(PgConn {
            host: query_param(&u, "host").or_else(|| u.host_str().map(str::to_string)),
            port: query_param(&u, "port").and_then(|p| p.parse().ok()).or(u.port()),
            user: (!u.username().is_empty())
                .then(|| decoded(u.username()))
                .or_else(|| query_param(&u, "user")),
            password: u.password().map(decoded).or_else(|| query_param(&u, "password")),
            dbname,
            sslmode: query_param(&u, "sslmode"),
        })
    }

    fn apply(&self, cmd: &mut tokio::process::Command) {
        let set = |cmd: &mut tokio::process::Command, k: &str, v: &Option<String>| {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        };
        set(cmd, "PGHOST", &self.host);
        set(cmd, "PGPORT", &self.port.map(|p| p.to_string()));
        set(cmd, "PGUSER", &self.user);
        set(cmd, "PGPASSWORD", &self.password);
        set(cmd, "PGSSLMODE", &self.sslmode);
        cmd.env("PGDATABASE", &self.dbname);
    }
}

/// A MySQL/MariaDB target's connection: host, port and user as options, the password only in
/// `MYSQL_PWD`.
struct MyConn {
    host: Option<String>,
    port: Option<u16>,
    socket: Option<String>,
    user: Option<String>,
    password: Option<String>,
    dbname: String,
}

impl MyConn {
    fn from_url(raw: &str) -> Result<MyConn> {
        let u = url::Url::parse(raw).map_err(|e| eyre!("the target URL cannot be parsed: {e}"))?;
        let dbname = decoded(u.path().trim_start_matches('/'));
        if dbname.is_empty() {
            return Err(eyre!("the target URL names no database"));
        }
        Ok(MyConn {
            host: u.host_str().map(str::to_string),
            port: u.port(),
            socket: query_param(&u, "socket"),
            user: (!u.username().is_empty()).then(|| decoded(u.username())),
            password: u.password().map(decoded),
            dbname,
        })
    }

    fn apply(&self, cmd: &mut tokio::process::Command) {
        if let Some(s) = &self.socket {
            cmd.arg(format!("--socket={s}"));
        } else {
            if let Some(h) = &self.host {
                cmd.arg(format!("--host={h}"));
            }
            if let Some(p) = self.port {
                cmd.arg(format!("--port={p}"));
            }
        }
        if let Some(u) = &self.user {
            cmd.arg(format!("--user={u}"));
        }
        match &self.password {
            Some(p) => cmd.env("MYSQL_PWD", p),
            None => cmd.env_remove("MYSQL_PWD"),
        };
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::ops::backup::{MyConn, PgConn};

    #[test]
    fn a_postgres_url_becomes_environment_and_the_password_stays_off_the_command_line() {
        let c = PgConn::from_url("postgres://app%40x:s3cr%2Ft@db.example:6543/clinic?sslmode=require").unwrap();
        assert_eq!(c.host.as_deref(), Some("db.example"));
        assert_eq!(c.port, Some(6543));
        assert_eq!(c.user.as_deref(), Some("app@x"));
        assert_eq!(c.password.as_deref(), Some("s3cr/t"));
        assert_eq!(c.dbname, "clinic");
        assert_eq!(c.sslmode.as_deref(), Some("require"));
        let mut cmd = tokio::process::Command::new("pg_dump");
        c.apply(&mut cmd);
        let std = cmd.as_std();
        assert!(std.get_args().all(|a| !a.to_string_lossy().contains("s3cr")));
        assert!(
            std.get_envs()
                .any(|(k, v)| k == "PGPASSWORD" && v.is_some_and(|v| v == "s3cr/t"))
        );
        let socket = PgConn::from_url("postgres://postgres@localhost:5432/db?host=/tmp/pg-x").unwrap();
        assert_eq!(socket.host.as_deref(), Some("/tmp/pg-x"));
    }

    #[test]
    fn a_mysql_password_goes_to_mysql_pwd_only() {
        let c = MyConn::from_url("mysql://root:pw%21x@localhost/app?socket=/tmp/m.sock").unwrap();
        let mut cmd = tokio::process::Command::new("mariadb-dump");
        c.apply(&mut cmd);
        let std = cmd.as_std();
        let args: Vec<String> = std.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.contains(&"--socket=/tmp/m.sock".to_string()), "{args:?}");
        assert!(args.iter().all(|a| !a.contains("pw!x")), "{args:?}");
        assert!(
            std.get_envs()
                .any(|(k, v)| k == "MYSQL_PWD" && v.is_some_and(|v| v == "pw!x"))
        );
    }
}
