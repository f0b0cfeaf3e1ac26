//! `[[documents]]`: the bytes of every document row in a content store hash to its digest.

use super::checksum::sql_error;
use super::spec::DocumentsSpec;
use super::{Check, CheckKind, Measure};
use crate::engine::db::Db;
use crate::engine::transform::Escaped;
use crate::engine::value::hex;
use sha2::{Digest, Sha256};
use std::ops::ControlFlow;
use std::path::{Component, Path, PathBuf};

/// How many keys of missing or mismatching documents a check names.
const SHOW_KEYS: usize = 5;

/// Why a document's bytes do not check out.
enum DocProblem {
    Missing,
    Mismatch,
}

/// The file of `key` in the store, refusing keys that leave it.
fn store_path(store: &Path, key: &str) -> Option<PathBuf> {
    let rel = Path::new(key);
    if key.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(store.join(rel))
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex(&h.finalize()))
}

/// Files hashed per hand-off to a blocking thread.
const HASH_BATCH: usize = 256;

/// How many rows had one problem, and the first [`SHOW_KEYS`] of their keys.
#[derive(Default)]
struct Named {
    n: u64,
    keys: Vec<String>,
}

impl Named {
    fn add(&mut self, key: &str) {
        self.add_rows(key, 1);
    }

    /// `rows` rows under one shown key (a batch that could not be hashed).
    fn add_rows(&mut self, key: &str, rows: u64) {
        self.n += rows;
        if self.keys.len() < SHOW_KEYS {
            // A NUL or an escape sequence in a key is written out, not sent to the terminal.
            self.keys.push(Escaped(key).to_string());
        }
    }

    /// ` (a, b, …)` after the count, or nothing when there are none.
    fn listed(&self) -> String {
        if self.n == 0 {
            return String::new();
        }
        let more = if self.n > self.keys.len() as u64 { ", …" } else { "" };
        format!(" ({}{more})", self.keys.join(", "))
    }
}

/// What the files checked so far came to.
#[derive(Default)]
struct DocTally {
    good: u64,
    missing: Named,
    mismatched: Named,
}

impl DocTally {
    /// Hash a batch of (storage key, recorded digest) and count each file good, missing or
    /// mismatching, in the rows' order.
    async fn check(&mut self, store: &Path, batch: Vec<(String, String)>) {
        if batch.is_empty() {
            return;
        }
        let store = store.to_path_buf();
        let n = batch.len();
        let judged = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|(key, digest)| {
                    let expected = digest.trim().trim_start_matches("sha256:").to_ascii_lowercase();
                    let problem = match store_path(&store, &key).map(|path| file_sha256(&path)) {
                        Some(Ok(actual)) if actual == expected => None,
                        Some(Ok(_)) => Some(DocProblem::Mismatch),
                        None | Some(Err(_)) => Some(DocProblem::Missing),
                    };
                    (key, problem)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let judged = match judged {
            Ok(j) => j,
            Err(e) => {
                // The hashing thread died: none of the batch is known to be good, so all n
                // count as missing, under one note.
                self.missing
                    .add_rows(&format!("a batch of {n} files not hashed: {e}"), n as u64);
                return;
            }
        };
        for (key, problem) in judged {
            match problem {
                None => self.good += 1,
                Some(DocProblem::Missing) => self.missing.add(&key),
                Some(DocProblem::Mismatch) => self.mismatched.add(&key),
            }
        }
    }
}

pub(super) async fn documents_check(d: &DocumentsSpec, project_dir: &Path, target: &Db) -> Check {
    let name = format!("documents {}", d.table);
    let store = project_dir.join(&d.store);
    let dialect = target.dialect();
    let sql = format!(
        "SELECT {}, {} FROM {}",
        dialect.quote_ident(&d.storage_key),
        dialect.quote_ident(&d.sha256),
        dialect.quote_table(&d.table)
    );
    let mut rows = 0u64;
    let mut no_file = 0u64;
    let mut inconsistent = Named::default();
    let mut tally = DocTally::default();
    // Files are hashed a batch at a time on a blocking thread: one hand-off per batch, not per
    // file (the clinic project's 39k small documents took 2.7 s one by one).
    let mut batch: Vec<(String, String)> = Vec::with_capacity(HASH_BATCH);
    let result = target
        .for_each_row(&sql, async |r| {
            rows += 1;
            let key = r.first().and_then(|v| v.to_text());
            let digest = r.get(1).and_then(|v| v.to_text());
            match (key, digest) {
                // a row without stored bytes
                (None, None) => no_file += 1,
                (Some(k), Some(d)) => {
                    batch.push((k, d));
                    if batch.len() >= HASH_BATCH {
                        tally.check(&store, std::mem::take(&mut batch)).await;
                    }
                }
                (k, _) => inconsistent.add(k.as_deref().unwrap_or("NULL")),
            }
            ControlFlow::Continue(())
        })
        .await;
    if let Err(e) = result {
        return Check {
            name,
            kind: CheckKind::Documents,
            ok: false,
            source: None,
            target: None,
            detail: format!("target query failed: {}", sql_error(&e)),
            explained: None,
            not_checked: None,
        };
    }
    tally.check(&store, batch).await;
    let DocTally {
        good,
        missing,
        mismatched,
    } = tally;
    let with_files = rows - no_file;
    let ok = missing.n == 0 && mismatched.n == 0 && inconsistent.n == 0;
    let mut detail = format!(
        "{with_files} files in {}: {} missing{}, {} mismatching{}",
        store.display(),
        missing.n,
        missing.listed(),
        mismatched.n,
        mismatched.listed()
    );
    if inconsistent.n > 0 {
        detail.push_str(&format!(
            ", {} rows with only one of {} and {}{}",
            inconsistent.n,
            d.storage_key,
            d.sha256,
            inconsistent.listed()
        ));
    }
    if no_file > 0 {
        detail.push_str(&format!("; {no_file} rows without stored bytes"));
    }
    Check {
        name,
        kind: CheckKind::Documents,
        ok,
        source: Some(Measure::count(with_files)),
        target: Some(Measure::count(good)),
        detail,
        explained: None,
        not_checked: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More documents than one hashing batch: every file is hashed once, and a missing or
    /// changed file is found in whichever batch it falls, the last partial one included.
    #[tokio::test]
    async fn every_batch_is_checked_to_the_last_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(store.join("ab")).unwrap();
        let target = Db::connect(
            &crate::engine::config::DbUrl::new("sqlite://t.db"),
            dir.path(),
            crate::engine::db::Role::Target,
        )
        .await
        .unwrap();
        target
            .execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, key TEXT, digest TEXT)", &[])
            .await
            .unwrap();
        let n = 2 * HASH_BATCH + 7;
        for i in 0..n {
            let key = format!("ab/{i}.txt");
            let bytes = format!("document {i}\n");
            std::fs::write(store.join(&key), &bytes).unwrap();
            let digest = hex(&Sha256::digest(bytes.as_bytes()));
            target
                .execute(
                    "INSERT INTO docs (key, digest) VALUES ($1, $2)",
                    &[
                        crate::engine::value::Value::Text(key),
                        crate::engine::value::Value::Text(format!("sha256:{digest}")),
                    ],
                )
                .await
                .unwrap();
        }
        let spec = DocumentsSpec {
            table: "docs".into(),
            sha256: "digest".into(),
            storage_key: "key".into(),
            store: "store".into(),
        };
        let c = documents_check(&spec, dir.path(), &target).await;
        assert!(c.ok, "{}", c.detail);
        assert_eq!(
            (c.source, c.target),
            (Some(Measure::count(n as u64)), Some(Measure::count(n as u64)))
        );
        // one gone in the first batch, one changed in the last (partial) batch
        std::fs::remove_file(store.join("ab/3.txt")).unwrap();
        std::fs::write(store.join(format!("ab/{}.txt", n - 1)), b"changed").unwrap();
        let c = documents_check(&spec, dir.path(), &target).await;
        assert!(!c.ok);
        assert_eq!(c.target, Some(Measure::count(n as u64 - 2)), "{}", c.detail);
        assert!(c.detail.contains("1 missing (ab/3.txt)"), "{}", c.detail);
        assert!(
            c.detail.contains(&format!("1 mismatching (ab/{}.txt)", n - 1)),
            "{}",
            c.detail
        );
        target.close().await;
    }

    #[test]
    fn keys_are_shown_with_their_control_characters_written_out() {
        let mut named = Named::default();
        named.add("x\0y");
        named.add("a\u{1b}[31m");
        named.add("plain/ключ");
        assert_eq!(named.listed(), " (x\\u{0}y, a\\u{1b}[31m, plain/ключ)");
    }

    #[test]
    fn store_keys_stay_in_the_store() {
        let s = Path::new("/p/store");
        assert_eq!(store_path(s, "ab/cd.pdf"), Some(PathBuf::from("/p/store/ab/cd.pdf")));
        assert_eq!(store_path(s, "../secret"), None);
        assert_eq!(store_path(s, "/etc/passwd"), None);
        assert_eq!(store_path(s, ""), None);
    }
}
