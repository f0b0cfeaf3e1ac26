//! Named buckets (`[buckets.NAME]` of cutover.toml): content-addressed folders of files whose
//! every file keeps the bucket's limits (largest size, MIME types detected from the bytes).
//!
//! `store_file = { bucket = "avatars" }` stores into one; the pipeline asks [`Bucket::refusal`]
//! before anything is written, so a file that breaks a limit is a reject and never lands in
//! the folder. Verify, rollback, `check` and the temp-file sweep find the folders through
//! [`buckets_of`], so every part resolves a bucket's folder the same way.

use crate::engine::config::{BucketSpec, Config};
use crate::engine::data::spec::DataStep;
use crate::engine::transform::{StoreFileSpec, Transform, detect_mime, mime_allowed};
use color_eyre::eyre::{Result, eyre};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A bucket with its folder resolved against the project folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub name: String,
    /// The folder as cutover.toml names it (relative to the project folder, or absolute).
    pub dir_name: String,
    /// The folder itself.
    pub dir: PathBuf,
    pub max_bytes: Option<u64>,
    pub mime: Vec<String>,
}

impl Bucket {
    pub fn resolve(project_dir: &Path, name: &str, spec: &BucketSpec) -> Bucket {
        let dir_name = spec.dir.clone().unwrap_or_else(|| format!("buckets/{name}"));
        Bucket {
            name: name.to_string(),
            dir: project_dir.join(&dir_name),
            dir_name,
            max_bytes: spec.max_bytes,
            mime: spec.mime.clone(),
        }
    }

    /// Why this bucket refuses `bytes` (the reject's reason), or `None` when they keep its
    /// limits. The size is checked first: an oversize file is not sniffed.
    pub fn refusal(&self, bytes: &[u8]) -> Option<String> {
        let len = bytes.len() as u64;
        if let Some(max) = self.max_bytes
            && len > max
        {
            return Some(format!(
                "file is {} bytes, over bucket {}{} limit of {}",
                group_digits(len),
                self.name,
                if self.name.ends_with('s') { "'" } else { "'s" },
                group_digits(max)
            ));
        }
        if !self.mime.is_empty() {
            let mime = detect_mime(bytes);
            if !mime_allowed(&self.mime, mime) {
                return Some(format!(
                    "file is {mime} (detected from its bytes), bucket {} takes {}",
                    self.name,
                    self.mime.join(", ")
                ));
            }
        }
        None
    }
}

/// Every bucket of the project, by name.
pub fn buckets_of(config: &Config) -> BTreeMap<String, Bucket> {
    config
        .buckets
        .iter()
        .map(|(name, spec)| (name.clone(), Bucket::resolve(&config.dir, name, spec)))
        .collect()
}

/// 1310720 -> "1 310 720", as reasons show sizes.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// The `store_file` transforms of a step: (field target, options), in field order.
pub fn store_file_fields(spec: &DataStep) -> Vec<(String, StoreFileSpec)> {
    spec.fields
        .iter()
        .flat_map(|f| {
            f.transforms.iter().filter_map(|t| match t {
                Transform::StoreFile(s) => Some((f.target.clone(), s.clone())),
                _ => None,
            })
        })
        .collect()
}

/// Refuse a step whose `store_file` names a bucket cutover.toml does not define, naming the
/// buckets that exist. `step_toml` is the step's file as text: data and merge steps alike are
/// searched for `store_file = { bucket = … }` wherever a field holds it (a file that does not
/// parse is reported when the step is loaded to run, not here).
pub fn check_buckets_named(step_toml: &str, buckets: &BTreeMap<String, BucketSpec>) -> Result<()> {
    let Ok(doc) = step_toml.parse::<toml::Table>() else {
        return Ok(());
    };
    let mut named = Vec::new();
    buckets_in(&doc, None, &mut named);
    for (target, name) in named {
        if buckets.contains_key(&name) {
            continue;
        }
        let known = if buckets.is_empty() {
            "cutover.toml defines no buckets ([buckets.NAME])".to_string()
        } else {
            format!(
                "the buckets are {}",
                buckets.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
            )
        };
        return Err(eyre!(
            "field '{}': store_file names bucket '{name}', which cutover.toml does not define; {known}",
            target.unwrap_or_default()
        ));
    }
    Ok(())
}

/// Every `store_file = { bucket = "…" }` under `t`, with the `target` of the table holding it.
fn buckets_in(t: &toml::Table, target: Option<&str>, out: &mut Vec<(Option<String>, String)>) {
    let target = t.get("target").and_then(|v| v.as_str()).or(target);
    for (k, v) in t {
        match v {
            toml::Value::Table(inner) if k == "store_file" => {
                if let Some(b) = inner.get("bucket").and_then(|b| b.as_str()) {
                    out.push((target.map(str::to_string), b.to_string()));
                }
            }
            toml::Value::Table(inner) => buckets_in(inner, target, out),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        buckets_in(inner, target, out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Where a `store_file` puts its files: the bucket's folder, or `dir` under the project folder.
/// `None` for a bucket the project does not define.
pub fn store_folder(
    project_dir: &Path,
    buckets: &BTreeMap<String, Bucket>,
    spec: &StoreFileSpec,
) -> Option<(String, PathBuf)> {
    match (&spec.bucket, &spec.dir) {
        (Some(b), _) => buckets.get(b).map(|b| (b.dir_name.clone(), b.dir.clone())),
        (None, Some(d)) => Some((d.clone(), project_dir.join(d))),
        (None, None) => None,
    }
}

/// The SQL expression of a field target's stored key: the column, or for a dotted target the
/// text at that path of its JSON document column.
pub fn stored_key_expr(dialect: crate::engine::backend::Dialect, target: &str) -> String {
    let mut parts = target.split('.');
    let top = parts.next().unwrap_or(target);
    let path: Vec<&str> = parts.collect();
    let column = crate::engine::backend::ident(top);
    if path.is_empty() {
        column
    } else {
        dialect.json_text_at_path(&column, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avatars() -> Bucket {
        Bucket::resolve(
            Path::new("/p"),
            "avatars",
            &BucketSpec {
                dir: None,
                max_bytes: Some(1_048_576),
                mime: vec!["image/png".into(), "image/jpeg".into()],
            },
        )
    }

    #[test]
    fn limits_give_the_contracts_reasons() {
        let b = avatars();
        assert_eq!(b.dir, PathBuf::from("/p/buckets/avatars"));
        let mut big = b"\x89PNG\r\n\x1a\n".to_vec();
        big.resize(1_310_720, 0);
        assert_eq!(
            b.refusal(&big).as_deref(),
            Some("file is 1 310 720 bytes, over bucket avatars' limit of 1 048 576")
        );
        assert_eq!(
            b.refusal(b"GIF89a\x01\0\x01\0").as_deref(),
            Some("file is image/gif (detected from its bytes), bucket avatars takes image/png, image/jpeg")
        );
        assert_eq!(b.refusal(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), None);
    }

    #[test]
    fn unknown_buckets_are_found_in_any_field_table() {
        let buckets: BTreeMap<String, BucketSpec> = [("avatars".to_string(), BucketSpec::default())].into();
        let step = |bucket: &str| {
            format!(
                "kind = \"merge\"\n[[a.fields]]\ntarget = \"photo\"\nsource = \"p\"\ntransforms = [\"trim\", {{ store_file = {{ bucket = \"{bucket}\" }} }}]\n"
            )
        };
        assert!(check_buckets_named(&step("avatars"), &buckets).is_ok());
        let e = check_buckets_named(&step("avatarz"), &buckets).unwrap_err().to_string();
        assert_eq!(
            e,
            "field 'photo': store_file names bucket 'avatarz', which cutover.toml does not define; the buckets are avatars"
        );
        assert!(check_buckets_named("not toml [", &buckets).is_ok());
    }

    #[test]
    fn groups_digits() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1 000");
        assert_eq!(group_digits(1_048_576), "1 048 576");
    }
}
