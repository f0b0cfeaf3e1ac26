//! `[[documents]]`: the bytes of every document row in a content store hash to its digest.

use super::checksum::sql_error;
use super::spec::DocumentsSpec;
use super::{Check, CheckKind, Measure};
use crate::engine::db::Db;
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
    let mut good = 0u64;
    let mut no_file = 0u64;
    let mut missing: Vec<String> = Vec::new();
    let mut mismatched: Vec<String> = Vec::new();
    let mut inconsistent: Vec<String> = Vec::new();
    let mut missing_n = 0u64;
    let mut mismatched_n = 0u64;
    let mut inconsistent_n = 0u64;
    let result = target
        .for_each_row(&sql, async |r| {
            rows += 1;
            let key = r.first().and_then(|v| v.to_text());
            let digest = r.get(1).and_then(|v| v.to_text());
            let (key, digest) = match (key, digest) {
                (None, None) => {
                    // a row without stored bytes
                    no_file += 1;
                    return ControlFlow::Continue(());
                }
                (Some(k), Some(d)) => (k, d),
                (k, _) => {
                    inconsistent_n += 1;
                    if inconsistent.len() < SHOW_KEYS {
                        inconsistent.push(k.unwrap_or_else(|| "NULL".into()));
                    }
                    return ControlFlow::Continue(());
                }
            };
            let expected = digest.trim().trim_start_matches("sha256:").to_ascii_lowercase();
            let problem = match store_path(&store, &key) {
                None => Some(DocProblem::Missing),
                Some(path) => match tokio::task::spawn_blocking(move || file_sha256(&path)).await {
                    Ok(Ok(actual)) if actual == expected => None,
                    Ok(Ok(_)) => Some(DocProblem::Mismatch),
                    _ => Some(DocProblem::Missing),
                },
            };
            match problem {
                None => good += 1,
                Some(DocProblem::Missing) => {
                    missing_n += 1;
                    if missing.len() < SHOW_KEYS {
                        missing.push(key);
                    }
                }
                Some(DocProblem::Mismatch) => {
                    mismatched_n += 1;
                    if mismatched.len() < SHOW_KEYS {
                        mismatched.push(key);
                    }
                }
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
    let with_files = rows - no_file;
    let ok = missing_n == 0 && mismatched_n == 0 && inconsistent_n == 0;
    let list = |n: u64, keys: &[String]| {
        if n == 0 {
            String::new()
        } else {
            format!(
                " ({}{})",
                keys.join(", "),
                if n > keys.len() as u64 { ", …" } else { "" }
            )
        }
    };
    let mut detail = format!(
        "{with_files} files in {}: {missing_n} missing{}, {mismatched_n} mismatching{}",
        store.display(),
        list(missing_n, &missing),
        list(mismatched_n, &mismatched)
    );
    if inconsistent_n > 0 {
        detail.push_str(&format!(
            ", {inconsistent_n} rows with only one of {} and {}{}",
            d.storage_key,
            d.sha256,
            list(inconsistent_n, &inconsistent)
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

    #[test]
    fn store_keys_stay_in_the_store() {
        let s = Path::new("/p/store");
        assert_eq!(store_path(s, "ab/cd.pdf"), Some(PathBuf::from("/p/store/ab/cd.pdf")));
        assert_eq!(store_path(s, "../secret"), None);
        assert_eq!(store_path(s, "/etc/passwd"), None);
        assert_eq!(store_path(s, ""), None);
    }
}
