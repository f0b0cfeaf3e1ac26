//! One run per target at a time.
//!
//! PostgreSQL: a session-level advisory lock held on a connection of its own, so the server
//! releases it when the process dies. SQLite has no such thing: a lock row with owner, pid, host
//! and a heartbeat; a later run takes it over only when the heartbeat is stale or the pid is
//! dead on this host. Both write the holder into `cutover_lock`, so a refused run can say who
//! holds the lock and since when.

use crate::engine::db::{Db, Dialect};
use crate::engine::ledger::{host_name, os_user};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use serde::Serialize;
use sqlx::Connection;
use std::time::Duration;

pub const LOCK_TABLE: &str = "cutover_lock";
/// Advisory lock key: "cutover" in ASCII, so other tools' keys are unlikely to collide.
const PG_LOCK_KEY: i64 = 0x0063_7574_6f76_6572;

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct LockHolder {
    pub owner: String,
    pub host: String,
    pub pid: i64,
    pub command: String,
    pub since: String,
    pub heartbeat_age_secs: i64,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} (pid {}, `{}`) since {}, last heartbeat {}s ago",
            self.owner, self.host, self.pid, self.command, self.since, self.heartbeat_age_secs
        )
    }
}

#[derive(Debug)]
pub enum LockError {
    Held(LockHolder),
    Other(color_eyre::Report),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held(h) => write!(
                f,
                "the target is locked by another cutover run: {h}. Wait for it to finish; a crashed run's lock is freed automatically (dead pid on this host, stale heartbeat, or closed PostgreSQL session)."
            ),
            LockError::Other(e) => write!(f, "cannot take the run lock: {e:#}"),
        }
    }
}
impl std::error::Error for LockError {}

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

pub struct RunLock {
    db: Db,
    token: String,
    pg_conn: Option<sqlx::PgConnection>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

fn epoch() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn ensure_table(db: &Db) -> Result<()> {
    let key = if db.dialect() == Dialect::Mysql {
        "INT"
    } else {
        "INTEGER"
    };
    db.execute(
        &format!(
            "CREATE TABLE IF NOT EXISTS {LOCK_TABLE} (id {key} PRIMARY KEY, token TEXT NOT NULL, owner TEXT NOT NULL, host TEXT NOT NULL, pid BIGINT NOT NULL, command TEXT NOT NULL, since TEXT NOT NULL, heartbeat BIGINT NOT NULL)"
        ),
        &[],
    )
    .await?;
    Ok(())
}

/// Who holds the lock row, if anyone.
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
    Ok(row.map(|r| {
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
                heartbeat_age_secs: epoch() - n(6),
            },
        )
    }))
}

/// Is the lock currently held by a live run? Used by the console to go read-only.
pub async fn current_holder(db: &Db, stale_after: Duration) -> Result<Option<LockHolder>> {
    match db {
        Db::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(PG_LOCK_KEY)
                .fetch_one(&mut *conn)
                .await?;
            if got {
                let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
                    .bind(PG_LOCK_KEY)
                    .fetch_one(&mut *conn)
                    .await?;
                return Ok(None);
            }
            Ok(holder(db).await?.map(|(_, h)| h))
        }
        _ => Ok(holder(db).await?.map(|(_, h)| h).filter(|h| !abandoned(h, stale_after))),
    }
}

fn pid_alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn abandoned(h: &LockHolder, stale_after: Duration) -> bool {
    h.heartbeat_age_secs > stale_after.as_secs() as i64 || (h.host == host_name() && !pid_alive(h.pid))
}

impl RunLock {
    pub async fn acquire(db: &Db, command: &str, stale_after: Duration) -> Result<RunLock, LockError> {
        // Look before writing: on SQLite a live run may hold the write lock for a whole
        // statement, and the second run must say who holds it, not time out waiting.
        if !matches!(db, Db::Postgres(_))
            && let Some((_, h)) = holder(db).await?
            && !abandoned(&h, stale_after)
        {
            return Err(LockError::Held(h));
        }
        ensure_table(db).await?;
        let token = uuid::Uuid::now_v7().to_string();
        let mut lock = RunLock {
            db: db.clone(),
            token,
            pg_conn: None,
            heartbeat: None,
        };
        match db {
            Db::Postgres(pool) => {
                // A connection of its own, outside the pool, so the session lives exactly as
                // long as this lock.
                let conn = pool.acquire().await?.detach();
                let mut conn = conn;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(PG_LOCK_KEY)
                    .fetch_one(&mut conn)
                    .await?;
                if !got {
                    let h = holder(db).await?.map(|(_, h)| h).unwrap_or(LockHolder {
                        owner: "unknown".into(),
                        host: "unknown".into(),
                        pid: 0,
                        command: "unknown".into(),
                        since: "unknown".into(),
                        heartbeat_age_secs: 0,
                    });
                    let _ = conn.close().await;
                    return Err(LockError::Held(h));
                }
                lock.pg_conn = Some(conn);
                lock.write_row(command, true).await?;
            }
            _ => {
                if let Some((old_token, h)) = holder(db).await? {
                    if !abandoned(&h, stale_after) {
                        return Err(LockError::Held(h));
                    }
                    // Compare-and-swap on the old token: of two runs taking over at once,
                    // exactly one wins.
                    let n = db
                        .execute(
                            &format!("DELETE FROM {LOCK_TABLE} WHERE id = 1 AND token = $1"),
                            &[Value::Text(old_token)],
                        )
                        .await?;
                    tracing::warn!(
                        "took over an abandoned run lock held by {h} ({})",
                        if n == 1 { "released" } else { "already gone" }
                    );
                }
                lock.write_row(command, false).await?;
            }
        }
        let db2 = db.clone();
        let token = lock.token.clone();
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

    async fn write_row(&mut self, command: &str, replace: bool) -> Result<(), LockError> {
        let params = [
            Value::Text(self.token.clone()),
            Value::Text(os_user()),
            Value::Text(host_name()),
            Value::Int(std::process::id() as i64),
            Value::Text(command.into()),
            Value::Text(crate::engine::ledger::now_iso()),
            Value::Int(epoch()),
        ];
        if replace {
            self.db
                .execute(&format!("DELETE FROM {LOCK_TABLE} WHERE id = 1"), &[])
                .await?;
        }
        let ins = format!(
            "INSERT INTO {LOCK_TABLE} (id, token, owner, host, pid, command, since, heartbeat) VALUES (1, $1, $2, $3, $4, $5, $6, $7)"
        );
        match self.db.execute(&ins, &params).await {
            Ok(_) => Ok(()),
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
        if let Some(mut conn) = self.pg_conn.take() {
            let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
                .bind(PG_LOCK_KEY)
                .fetch_one(&mut conn)
                .await?;
            conn.close().await?;
        }
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
