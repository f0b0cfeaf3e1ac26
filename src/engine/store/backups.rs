//! The ledger of backups (`cutover_backups`): each backup of the target that `cutover backup`
//! made, with its file, size and SHA-256, so a restore can tell the file it is given from a
//! file that changed since. The only module that names that table.

use crate::engine::clock::{host_name, now_iso, os_user};
use crate::engine::db::Db;
use crate::engine::value::Value;
use color_eyre::eyre::Result;
use serde::Serialize;

pub const BACKUPS_TABLE: &str = "cutover_backups";

/// One recorded backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupRecord {
    pub id: i64,
    pub at: String,
    /// The backup file as it was written (absolute path).
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    pub os_user: String,
    pub host: String,
}

/// Create the table when missing. Idempotent.
pub async fn ensure(db: &Db) -> Result<()> {
    let d = db.dialect();
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {BACKUPS_TABLE} (id {}, at TEXT NOT NULL, file TEXT NOT NULL, bytes BIGINT NOT NULL, sha256 TEXT NOT NULL, os_user TEXT NOT NULL, host TEXT NOT NULL){}",
        d.serial_primary_key(),
        d.table_options()
    );
    let mut tx = db.begin().await?;
    tx.create_own_tables(&[(BACKUPS_TABLE, vec![sql])]).await?;
    tx.commit().await?;
    Ok(())
}

/// Record a backup made now by this user on this host; returns the stored record.
pub async fn record(db: &Db, file: &str, bytes: u64, sha256: &str) -> Result<BackupRecord> {
    ensure(db).await?;
    let rec = BackupRecord {
        id: 0,
        at: now_iso(),
        file: file.to_string(),
        bytes,
        sha256: sha256.to_string(),
        os_user: os_user(),
        host: host_name(),
    };
    insert(db, &rec).await?;
    let id = list(db)
        .await?
        .iter()
        .rev()
        .find(|r| r.sha256 == rec.sha256 && r.at == rec.at)
        .map(|r| r.id)
        .unwrap_or(0);
    Ok(BackupRecord { id, ..rec })
}

async fn insert(db: &Db, r: &BackupRecord) -> Result<()> {
    db.execute(
        &format!(
            "INSERT INTO {BACKUPS_TABLE} (at, file, bytes, sha256, os_user, host) VALUES ($1, $2, $3, $4, $5, $6)"
        ),
        &[
            Value::Text(r.at.clone()),
            Value::Text(r.file.clone()),
            Value::Int(i64::try_from(r.bytes).unwrap_or(i64::MAX)),
            Value::Text(r.sha256.clone()),
            Value::Text(r.os_user.clone()),
            Value::Text(r.host.clone()),
        ],
    )
    .await?;
    Ok(())
}

/// Every recorded backup, oldest first (empty when none was ever made).
pub async fn list(db: &Db) -> Result<Vec<BackupRecord>> {
    if !db.table_exists(BACKUPS_TABLE).await? {
        return Ok(Vec::new());
    }
    let rows = db
        .fetch_all(
            &format!("SELECT id, at, file, bytes, sha256, os_user, host FROM {BACKUPS_TABLE} ORDER BY id"),
            &[],
        )
        .await?;
    Ok(rows
        .rows
        .iter()
        .map(|r| {
            let t = |i: usize| r.get(i).and_then(|v| v.to_text()).unwrap_or_default();
            let n = |i: usize| match r.get(i) {
                Some(Value::Int(x)) => *x,
                Some(Value::Text(s)) => s.parse().unwrap_or(0),
                _ => 0,
            };
            BackupRecord {
                id: n(0),
                at: t(1),
                file: t(2),
                bytes: n(3).max(0) as u64,
                sha256: t(4),
                os_user: t(5),
                host: t(6),
            }
        })
        .collect())
}

/// After a restore the target holds the backups ledger of the moment the backup was taken:
/// put back the records made since (the backup itself among them), so the history of backups
/// survives restoring one of them. Returns how many were put back.
pub async fn put_back(db: &Db, before_restore: &[BackupRecord]) -> Result<usize> {
    ensure(db).await?;
    let now = list(db).await?;
    let mut added = 0;
    for r in before_restore {
        if !now
            .iter()
            .any(|n| n.sha256 == r.sha256 && n.at == r.at && n.file == r.file)
        {
            insert(db, r).await?;
            added += 1;
        }
    }
    Ok(added)
}
