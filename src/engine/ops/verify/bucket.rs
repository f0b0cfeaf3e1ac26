//! `bucket NAME`: every file in a bucket's folder hashes to its name (`ab/abcdef…` is the
//! SHA-256 of its bytes), and every storage key the rows of the steps writing into the bucket
//! name is a file there.

use super::{Check, CheckKind, Measure};
use crate::engine::data::bucket::{self, Bucket};
use crate::engine::db::Db;
use crate::engine::ops::load_compiled;
use crate::engine::project::{Project, StepKind};
use crate::engine::value::hex;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Component, Path};

/// How many keys of bad or missing files a check names.
const SHOW_KEYS: usize = 5;

/// What walking a bucket's folder found.
#[derive(Debug, Default)]
struct Walk {
    files: u64,
    bytes: u64,
    /// Keys (`ab/abcdef…`) of files whose bytes do not hash to their name, sorted.
    mismatched: Vec<String>,
    /// Every stored file's key.
    keys: BTreeSet<String>,
}

/// Hash every stored file (temporary `.name` files of a write in progress are not stored files).
fn walk(folder: &Path) -> std::io::Result<Walk> {
    let mut w = Walk::default();
    let shards = match std::fs::read_dir(folder) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(w),
        Err(e) => return Err(e),
    };
    for shard in shards {
        let shard = shard?;
        let shard_name = shard.file_name().to_string_lossy().into_owned();
        if shard_name.starts_with('.') {
            continue;
        }
        if !shard.file_type()?.is_dir() {
            w.files += 1;
            w.mismatched.push(shard_name);
            continue;
        }
        for f in std::fs::read_dir(shard.path())? {
            let f = f?;
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            w.keys.insert(format!("{shard_name}/{name}"));
            let mut file = std::fs::File::open(f.path())?;
            let mut h = Sha256::new();
            w.bytes += std::io::copy(&mut file, &mut h)?;
            w.files += 1;
            if hex(&h.finalize()) != name || !name.starts_with(&shard_name) {
                w.mismatched.push(format!("{shard_name}/{name}"));
            }
        }
    }
    w.mismatched.sort();
    Ok(w)
}

/// 4 100 000 -> "4.1 MB".
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// "1 file", "312 files".
fn counted(n: u64, what: &str) -> String {
    format!("{} {what}{}", bucket::group_digits(n), if n == 1 { "" } else { "s" })
}

fn listed(keys: &[String], n: usize) -> String {
    let shown: Vec<&str> = keys.iter().take(SHOW_KEYS).map(String::as_str).collect();
    format!("{}{}", shown.join(", "), if n > SHOW_KEYS { ", …" } else { "" })
}

/// The storage keys the rows of every step writing into `b` name, each once; an error names
/// the query that failed.
async fn named_keys(project: &Project, b: &Bucket, target: &Db) -> Result<BTreeSet<String>, String> {
    let mut keys = BTreeSet::new();
    for step in &project.steps {
        if !matches!(step.kind, StepKind::Data | StepKind::Merge) {
            continue;
        }
        let Ok(c) = load_compiled(step) else { continue };
        let table = &c.spec.target.table;
        for (field, spec) in bucket::store_file_fields(&c.spec) {
            if spec.bucket.as_deref() != Some(b.name.as_str()) {
                continue;
            }
            if !target.table_exists(table).await.unwrap_or(false) {
                continue;
            }
            let k = bucket::stored_key_expr(target.dialect(), &field);
            // Several steps can write one table (a files collection with a step per bucket):
            // a step with an ID map names only the rows it wrote.
            let (mine, params) = match &c.spec.id_map {
                Some(m) => (
                    format!(
                        " AND {} IN ({})",
                        target.dialect().as_text(&crate::engine::backend::ident(&m.column)),
                        crate::engine::store::written_ids_sql()
                    ),
                    vec![crate::engine::value::Value::Text(step.version.clone())],
                ),
                None => (String::new(), Vec::new()),
            };
            let sql = format!(
                "SELECT DISTINCT {k} FROM {} WHERE {k} IS NOT NULL{mine}",
                crate::engine::backend::ident(table)
            );
            let rows = target.fetch_all(&sql, &params).await.map_err(|e| {
                format!(
                    "{table}.{field}: {}",
                    crate::engine::config::redact_url(&format!("{e:#}"))
                )
            })?;
            keys.extend(rows.rows.iter().filter_map(|r| r.first().and_then(|v| v.to_text())));
        }
    }
    Ok(keys)
}

/// Stored files of `b` that no row of the steps storing into it names.
/// (A listing: a rollback has no need to hash the files, as verify does.)
pub(crate) async fn unnamed_files(project: &Project, b: &Bucket, target: &Db) -> Result<Vec<String>, String> {
    let folder = b.dir.clone();
    let stored = tokio::task::spawn_blocking(move || stored_keys(&folder))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let keys = named_keys(project, b, target).await?;
    Ok(stored.difference(&keys).cloned().collect())
}

/// The keys (`ab/abcdef…`) of the stored files of a bucket folder, without reading them.
fn stored_keys(folder: &Path) -> std::io::Result<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    let shards = match std::fs::read_dir(folder) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
        Err(e) => return Err(e),
    };
    for shard in shards {
        let shard = shard?;
        let shard_name = shard.file_name().to_string_lossy().into_owned();
        if shard_name.starts_with('.') || !shard.file_type()?.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(shard.path())? {
            let name = f?.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                keys.insert(format!("{shard_name}/{name}"));
            }
        }
    }
    Ok(keys)
}

/// Whether the file of `key` is in the folder (a key that would leave it never is).
fn key_exists(folder: &Path, key: &str) -> bool {
    let rel = Path::new(key);
    !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_))) && folder.join(rel).is_file()
}

pub(super) async fn bucket_check(project: &Project, b: &Bucket, target: &Db) -> Check {
    let name = format!("bucket {}", b.name);
    let failed = |detail: String| Check {
        name: name.clone(),
        kind: CheckKind::Bucket,
        ok: false,
        source: None,
        target: None,
        detail,
        explained: None,
        not_checked: None,
    };
    let folder = b.dir.clone();
    let w = match tokio::task::spawn_blocking(move || walk(&folder)).await {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => return failed(format!("cannot read {}: {e}", b.dir.display())),
        Err(e) => return failed(format!("cannot read {}: {e}", b.dir.display())),
    };
    let keys = match named_keys(project, b, target).await {
        Ok(k) => k,
        Err(e) => return failed(format!("target query failed: {e}")),
    };
    let missing: Vec<String> = keys.iter().filter(|k| !key_exists(&b.dir, k)).cloned().collect();
    let unnamed: Vec<String> = w.keys.difference(&keys).cloned().collect();
    let mut problems = Vec::new();
    if !unnamed.is_empty() {
        problems.push(format!(
            "{} of {} files {} named by no row (left by a killed run or rows the target refused; `cutover down` of a step storing into the bucket removes them): {}",
            unnamed.len(),
            bucket::group_digits(w.files),
            if unnamed.len() == 1 { "is" } else { "are" },
            listed(&unnamed, unnamed.len())
        ));
    }
    if !w.mismatched.is_empty() {
        problems.push(format!(
            "{} of {} files {} not match {} name: {}",
            w.mismatched.len(),
            bucket::group_digits(w.files),
            if w.mismatched.len() == 1 { "does" } else { "do" },
            if w.mismatched.len() == 1 { "its" } else { "their" },
            listed(&w.mismatched, w.mismatched.len())
        ));
    }
    if !missing.is_empty() {
        problems.push(format!(
            "{} of {} storage keys the rows name {} missing: {}",
            missing.len(),
            bucket::group_digits(keys.len() as u64),
            if missing.len() == 1 { "is" } else { "are" },
            listed(&missing, missing.len())
        ));
    }
    let ok = problems.is_empty();
    let detail = if ok {
        format!(
            "{}, {}, every file matches its SHA-256; the rows name {}, every one stored",
            counted(w.files, "file"),
            size(w.bytes),
            counted(keys.len() as u64, "key")
        )
    } else {
        problems.join("; ")
    };
    Check {
        name,
        kind: CheckKind::Bucket,
        ok,
        // Files in the folder against files that check out.
        source: Some(Measure::count(w.files)),
        target: Some(Measure::count(w.files - w.mismatched.len() as u64)),
        detail,
        explained: None,
        not_checked: None,
    }
}

/// One check per bucket of cutover.toml.
pub(super) async fn bucket_checks(project: &Project, target: &Db) -> Vec<Check> {
    let mut out = Vec::new();
    for b in bucket::buckets_of(&project.config).values() {
        out.push(bucket_check(project, b, target).await);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_at_a_glance() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(4_100_000), "4.1 MB");
        assert_eq!(size(1_500), "1.5 kB");
    }
}
