//! One run per target at a time, and a run that lost its lock cannot write.
//!
//! PostgreSQL and MySQL/MariaDB: a server-side lock held by a session of its own (an advisory
//! lock; `GET_LOCK`), so the server releases it when the process dies. It is taken before
//! anything is created, so two first starts on a fresh database cannot race on `CREATE TABLE`.
//!
//! SQLite: an OS file lock on `<db>.cutover-lock` next to the database, held for the run and
//! released by the kernel when the holder dies. A live holder is never taken over, however old
//! its heartbeat (a long transaction may keep the heartbeat from being written); a dead one is
//! taken over at once. Without a file (in-memory) it falls back to the lock row's heartbeat.
//!
//! All write the holder into `cutover_lock` with a fresh token, so a refused run can say who
//! holds the lock and since when, and every batch transaction can check ([`fence`]) that the
//! row still holds its run's token: a run that lost its lock cannot commit another batch.

use crate::engine::backend::{SessionLock, SessionLockAttempt};
use crate::engine::clock::{host_name, os_user};
use crate::engine::db::{Db, DbTx};
pub use crate::engine::protocol::views::LockHolder;
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const LOCK_TABLE: &str = "cutover_lock";
/// Suffix of the SQLite OS lock file, next to the database file.
pub const LOCK_FILE_SUFFIX: &str = ".cutover-lock";
/// How long a refused run waits for the winner's row to appear, to name the holder.
const HOLDER_WAIT: Duration = Duration::from_secs(2);
/// How long a starting run waits for the server to end a dead run's session (see
/// `try_session_lock_past_the_dead`).
const DEAD_SESSION_WAIT: Duration = Duration::from_secs(15);

impl LockHolder {
    fn unknown() -> LockHolder {
        LockHolder {
            owner: "unknown".into(),
            host: "unknown".into(),
            pid: 0,
            command: "unknown".into(),
            since: "unknown".into(),
            heartbeat_age_secs: 0,
        }
    }
}

/// Why the run lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the target is locked by another cutover run: {0}. Wait for it to finish; a crashed run's lock is freed automatically (the OS releases a dead process's lock; on PostgreSQL and MariaDB its session ends)."
    )]
    Held(LockHolder),
    #[error("cannot take the run lock: {0:#}")]
    Other(color_eyre::Report),
}

impl From<sqlx::Error> for LockError {
    fn from(e: sqlx::Error) -> Self {
        LockError::Other(e.into())
    }
}
impl From<color_eyre::Report> for LockError {
    fn from(e: color_eyre::Report) -> Self {
        LockError::Other(e)
    }
}

/// A batch was about to commit for a run that no longer holds the lock.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The lock row holds another run's token: someone took the lock over.
    #[error(
        "this run lost its run lock (now held by {0}); the batch was not committed. The run that holds the lock continues from the last committed batch."
    )]
    Taken(LockHolder),
    /// The lock row is gone.
    #[error(
        "this run lost its run lock (the lock row is gone); the batch was not committed. Run again: it resumes from the last committed batch."
    )]
    Gone,
    /// The lock row could not be read; the batch must not commit either.
    #[error("cannot check the run lock before committing: {0}")]
    Db(#[from] sqlx::Error),
}

/// Check, inside the caller's transaction and just before it commits, that the lock row still
/// holds `token`. The row is read with a share lock (PostgreSQL, MySQL; SQLite write
/// transactions are serial anyway), so a takeover that replaces the token waits for this
/// transaction, and this transaction never commits after a takeover.
pub async fn fence(tx: &mut DbTx, token: &str) -> Result<(), FenceError> {
    let lock_clause = tx.dialect().share_lock_suffix();
    let row = tx
        .fetch_optional(
            &format!(
                "SELECT token, owner, host, pid, command, since, heartbeat FROM {LOCK_TABLE} WHERE id = 1{lock_clause}"
            ),
            &[],
        )
        .await
        .map_err(FenceError::Db)?;
    match row.map(|r| holder_from_row(&r)) {
        Some((t, _)) if t == token => Ok(()),
        Some((_, h)) => Err(FenceError::Taken(h)),
        None => Err(FenceError::Gone),
    }
}

pub struct RunLock {
    db: Db,
    token: String,
    /// PostgreSQL, MySQL: the session that holds the server-side lock.
    session: Option<SessionLock>,
    /// SQLite: the open lock file; closing it (or the process dying) releases the OS lock.
    file_lock: Option<std::fs::File>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

fn epoch() -> i64 {
    chrono::Utc::now().timestamp()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505" || c == "42P07")
}

async fn ensure_table(db: &Db) -> Result<()> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {LOCK_TABLE} (id INTEGER PRIMARY KEY, token TEXT NOT NULL, owner TEXT NOT NULL, host TEXT NOT NULL, pid BIGINT NOT NULL, command TEXT NOT NULL, since TEXT NOT NULL, heartbeat BIGINT NOT NULL){}",
        db.dialect().table_options()
    );
    let mut tx = db.begin().await?;
    match tx.execute(&sql, &[]).await {
        Ok(_) => tx.commit().await,
        // PostgreSQL: `IF NOT EXISTS` is not atomic; a concurrent creator (not a cutover run,
        // which would hold the advisory lock) wins with a duplicate key on pg_type.
        Err(e) if is_unique_violation(&e) => {
            let _ = tx.rollback().await;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn holder_from_row(r: &[Value]) -> (String, LockHolder) {
    let t = |i: usize| r.get(i).and_then(|v| v.to_text()).unwrap_or_default();
    let n = |i: usize| match r.get(i) {
        Some(Value::Int(x)) => *x,
        _ => 0,
    };
    (
        t(0),
        LockHolder {
            owner: t(1),
            host: t(2),
            pid: n(3),
            command: t(4),
            since: t(5),
            heartbeat_age_secs: (epoch() - n(6)).max(0),
        },
    )
}

/// Who holds the lock row, if anyone. Only reads (a deferred transaction on SQLite, which in
/// WAL mode never waits for a writer).
pub async fn holder(db: &Db) -> Result<Option<(String, LockHolder)>> {
    if !db.table_exists(LOCK_TABLE).await? {
        return Ok(None);
    }
    let row = db
        .fetch_optional(
            &format!("SELECT token, owner, host, pid, command, since, heartbeat FROM {LOCK_TABLE} WHERE id = 1"),
            &[],
        )
        .await?;
    Ok(row.map(|r| holder_from_row(&r)))
}

/// The holder to name when the lock is known to be held: the row, waiting briefly for a winner
/// that has the lock but has not written its row yet. Never fails: the lock is held either way.
async fn held_by(db: &Db) -> LockHolder {
    let start = Instant::now();
    loop {
        match holder(db).await {
            Ok(Some((_, h))) => return h,
            Ok(None) | Err(_) if start.elapsed() < HOLDER_WAIT => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(None) => return LockHolder::unknown(),
            Err(e) => {
                tracing::warn!("cannot read who holds the run lock: {e:#}");
                return LockHolder::unknown();
            }
        }
    }
}

/// The OS lock file of a SQLite database; `None` for an in-memory one.
pub fn sqlite_lock_path(db: &Db) -> Option<PathBuf> {
    let file = db.sqlite_file()?;
    let mut p = file.into_os_string();
    p.push(LOCK_FILE_SUFFIX);
    Some(PathBuf::from(p))
}

/// Whole-file locks that belong to the open file (not the process): released when the file is
/// closed or the process dies, and conflicting between two opens in one process too.
mod oslock {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    fn whole_file(kind: libc::c_int) -> libc::flock {
        // SAFETY: `flock` is a plain C struct; all-zero is a valid value.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl
    }

    fn busy(e: &io::Error) -> bool {
        matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
    }

    /// Take the exclusive lock without waiting; `false` when another open file holds it.
    #[cfg(target_os = "linux")]
    pub fn try_lock(f: &File) -> io::Result<bool> {
        let mut fl = whole_file(libc::F_WRLCK);
        // SAFETY: valid fd and a valid, initialised `flock`.
        let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        if busy(&e) { Ok(false) } else { Err(e) }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn try_lock(f: &File) -> io::Result<bool> {
        // SAFETY: valid fd.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        if busy(&e) || e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(false)
        } else {
            Err(e)
        }
    }

    /// Does some open file hold the lock? Asks without taking it, so a `status` never makes a
    /// starting run think the lock is held. `None` where the OS cannot tell.
    #[cfg(target_os = "linux")]
    pub fn is_locked(f: &File) -> Option<bool> {
        let mut fl = whole_file(libc::F_RDLCK);
        // SAFETY: valid fd and a valid, initialised `flock`.
        let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
        (r == 0).then_some(fl.l_type != libc::F_UNLCK as libc::c_short)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn is_locked(_f: &File) -> Option<bool> {
        None
    }
}

/// Is the lock currently held by a live run? Used by the console and `status`.
pub async fn current_holder(db: &Db, stale_after: Duration) -> Result<Option<LockHolder>> {
    match db.session_lock_held().await? {
        Some(false) => Ok(None),
        Some(true) => Ok(Some(held_by(db).await)),
        None => {
            let os = sqlite_lock_path(db)
                .and_then(|p| std::fs::File::open(p).ok())
                .and_then(|f| oslock::is_locked(&f));
            match os {
                Some(false) => Ok(None),
                Some(true) => Ok(Some(held_by(db).await)),
                // No lock file (no run since this version) or no way to ask: the row decides.
                None => Ok(holder(db).await?.map(|(_, h)| h).filter(|h| !abandoned(h, stale_after))),
            }
        }
    }
}

fn pid_alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn abandoned(h: &LockHolder, stale_after: Duration) -> bool {
    h.heartbeat_age_secs > stale_after.as_secs() as i64 || (h.host == host_name() && !pid_alive(h.pid))
}

/// The server-side lock, waiting a little for one a dead process still holds: when a run on
/// this host is killed, the server ends its session only once it notices (at once when the
/// session is idle, after the statement when it is busy), and a run started right after the
/// crash must not be refused for a lock nobody holds any more.
async fn try_session_lock_past_the_dead(db: &Db) -> Result<SessionLockAttempt, LockError> {
    let start = Instant::now();
    loop {
        let attempt = db.try_session_lock().await?;
        if !matches!(attempt, SessionLockAttempt::Busy) || start.elapsed() >= DEAD_SESSION_WAIT {
            return Ok(attempt);
        }
        match holder(db).await {
            Ok(Some((_, h))) if h.host == host_name() && !pid_alive(h.pid) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => return Ok(attempt),
        }
    }
}

impl RunLock {
    pub async fn acquire(db: &Db, command: &str, stale_after: Duration) -> Result<RunLock, LockError> {
        let token = uuid::Uuid::now_v7().to_string();
        let mut lock = RunLock {
            db: db.clone(),
            token,
            session: None,
            file_lock: None,
            heartbeat: None,
        };
        match try_session_lock_past_the_dead(db).await? {
            SessionLockAttempt::Busy => return Err(LockError::Held(held_by(db).await)),
            SessionLockAttempt::Taken(session) => {
                // The server-side lock comes first: only its holder creates the lock table,
                // so first starts cannot race on it.
                lock.session = Some(session);
                ensure_table(db).await?;
                lock.write_row(command).await?;
            }
            SessionLockAttempt::Unsupported => {
                if let Some(path) = sqlite_lock_path(db) {
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&path)
                        .map_err(|e| eyre!("cannot open the lock file {}: {e}", path.display()))?;
                    let got = oslock::try_lock(&file).map_err(|e| eyre!("cannot lock {}: {e}", path.display()))?;
                    if !got {
                        // A live process holds it, whatever its heartbeat says. Only read
                        // here: a write would wait on the holder's transaction.
                        return Err(LockError::Held(held_by(db).await));
                    }
                    lock.file_lock = Some(file);
                }
                // With the OS lock, a row left behind belongs to a dead run on this host;
                // a row of another host (a shared file system the OS lock may not span)
                // still needs a stale heartbeat.
                if let Some((_, h)) = holder(db).await?
                    && !(lock.file_lock.is_some() && h.host == host_name())
                    && !abandoned(&h, stale_after)
                {
                    return Err(LockError::Held(h));
                }
                ensure_table(db).await?;
                if let Some((old_token, h)) = holder(db).await? {
                    tracing::warn!("took over an abandoned run lock held by {h}");
                    // Compare-and-swap on the old token: of two runs taking over at once
                    // (possible only without the OS lock), exactly one wins.
                    db.execute(
                        &format!("DELETE FROM {LOCK_TABLE} WHERE id = 1 AND token = $1"),
                        &[Value::Text(old_token)],
                    )
                    .await?;
                }
                lock.write_row(command).await?;
            }
        }
        let db2 = db.clone();
        let token = lock.token.clone();
        // Informational on SQLite (the OS lock decides liveness); a starved heartbeat is
        // harmless there.
        let every = (stale_after / 3).max(Duration::from_secs(1));
        lock.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let _ = db2
                    .execute(
                        &format!("UPDATE {LOCK_TABLE} SET heartbeat = $1 WHERE id = 1 AND token = $2"),
                        &[Value::Int(epoch()), Value::Text(token.clone())],
                    )
                    .await;
            }
        }));
        Ok(lock)
    }

    /// This run's fencing token: pass it to [`fence`] inside every batch transaction.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Write this run's row with its fresh token, replacing a dead holder's row. One
    /// transaction: the delete waits for a batch of the old holder that fenced on the row.
    async fn write_row(&mut self, command: &str) -> Result<(), LockError> {
        let params = [
            Value::Text(self.token.clone()),
            Value::Text(os_user()),
            Value::Text(host_name()),
            Value::Int(std::process::id() as i64),
            Value::Text(command.into()),
            Value::Text(crate::engine::clock::now_iso()),
            Value::Int(epoch()),
        ];
        let replace = self.session.is_some();
        let ins = format!(
            "INSERT INTO {LOCK_TABLE} (id, token, owner, host, pid, command, since, heartbeat) VALUES (1, $1, $2, $3, $4, $5, $6, $7)"
        );
        let written = async {
            let mut tx = self.db.begin().await?;
            if replace {
                tx.execute(&format!("DELETE FROM {LOCK_TABLE} WHERE id = 1"), &[])
                    .await?;
            }
            tx.execute(&ins, &params).await?;
            tx.commit().await?;
            Ok::<(), color_eyre::Report>(())
        }
        .await;
        match written {
            Ok(()) => Ok(()),
            Err(e) => {
                // Someone inserted between our read and our insert: they hold it.
                if let Some((_, h)) = holder(&self.db).await? {
                    return Err(LockError::Held(h));
                }
                Err(LockError::Other(eyre!("cannot write the lock row: {e:#}")))
            }
        }
    }

    pub async fn release(mut self) -> Result<()> {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        self.db
            .execute(
                &format!("DELETE FROM {LOCK_TABLE} WHERE id = 1 AND token = $1"),
                &[Value::Text(self.token.clone())],
            )
            .await?;
        if let Some(session) = self.session.take() {
            session.release().await?;
        }
        // The row is gone: now let the next run in. The file stays (deleting it would let
        // two runs lock two different files).
        self.file_lock.take();
        Ok(())
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}
