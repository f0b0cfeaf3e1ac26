//! `verify.toml`: the checks a project declares beyond the built-in ones.

use color_eyre::eyre::{Result, eyre};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::Measure;

/// The file of declared checks, in the project folder next to `cutover.toml`.
pub const VERIFY_FILE: &str = "verify.toml";

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyFile {
    #[serde(default)]
    pub expect: Vec<ExpectSpec>,
    #[serde(default)]
    pub checksum: Vec<ChecksumSpec>,
    #[serde(default)]
    pub documents: Vec<DocumentsSpec>,
}

/// Scalar queries that must agree: source = target, or one (or both) = `equals`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    pub name: String,
    pub source: Option<String>,
    pub target: Option<String>,
    pub equals: Option<Measure>,
}

/// Queries whose rows must have the same content checksum on both sides.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksumSpec {
    pub name: String,
    pub source: String,
    pub target: String,
}

/// A target table whose rows point at files in a content store.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentsSpec {
    /// Target table.
    pub table: String,
    /// Column holding the hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// Column holding the path of the bytes, relative to `store`.
    pub storage_key: String,
    /// Folder of the store, relative to the project folder.
    pub store: String,
}

impl VerifyFile {
    /// `verify.toml` of the project folder; a missing file declares no checks.
    pub fn load(project_dir: &Path) -> Result<VerifyFile> {
        let path = project_dir.join(VERIFY_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(VerifyFile::default()),
            Err(e) => return Err(eyre!("cannot read {}: {e}", path.display())),
        };
        Self::parse(&text).map_err(|e| eyre!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<VerifyFile> {
        let file: VerifyFile = toml::from_str(text).map_err(|e| eyre!("{}", e.to_string().trim_end()))?;
        file.validate()?;
        Ok(file)
    }

    fn validate(&self) -> Result<()> {
        for (i, e) in self.expect.iter().enumerate() {
            let what = format!("[[expect]] #{} '{}'", i + 1, e.name);
            if e.name.trim().is_empty() {
                return Err(eyre!("[[expect]] #{}: name is empty", i + 1));
            }
            let queries = usize::from(e.source.is_some()) + usize::from(e.target.is_some());
            if queries == 0 {
                return Err(eyre!("{what}: give a `source` and/or a `target` query"));
            }
            if queries == 1 && e.equals.is_none() {
                return Err(eyre!(
                    "{what}: with only one query, give `equals = <value>` to compare it with (or give both `source` and `target`)"
                ));
            }
        }
        for (i, c) in self.checksum.iter().enumerate() {
            if c.name.trim().is_empty() {
                return Err(eyre!("[[checksum]] #{}: name is empty", i + 1));
            }
        }
        for (i, d) in self.documents.iter().enumerate() {
            for (field, v) in [
                ("table", &d.table),
                ("sha256", &d.sha256),
                ("storage_key", &d.storage_key),
                ("store", &d.store),
            ] {
                if v.trim().is_empty() {
                    return Err(eyre!("[[documents]] #{}: {field} is empty", i + 1));
                }
            }
        }
        Ok(())
    }

    pub(super) fn needs_source(&self) -> bool {
        !self.checksum.is_empty() || self.expect.iter().any(|e| e.source.is_some())
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_toml_is_strict() {
        let ok = VerifyFile::parse(
            r#"
[[expect]]
name = "a"
source = "SELECT 1"
target = "SELECT 1"

[[expect]]
name = "b"
target = "SELECT 2"
equals = 2

[[checksum]]
name = "c"
source = "SELECT 1"
target = "SELECT 1"

[[documents]]
table = "documents"
sha256 = "sha256"
storage_key = "storage_key"
store = "document-store"
"#,
        )
        .unwrap();
        assert_eq!(ok.expect.len(), 2);
        assert_eq!(ok.expect[1].equals, Some(Measure::Int(2)));
        let err = VerifyFile::parse("[[expect]]\nname = \"a\"\ntarget = \"SELECT 1\"\nequal = 1\n").unwrap_err();
        assert!(err.to_string().contains("equal"), "{err}");
        assert!(err.to_string().contains("line 4"), "{err}");
        let err = VerifyFile::parse("[[expect]]\nname = \"a\"\ntarget = \"SELECT 1\"\n").unwrap_err();
        assert!(err.to_string().contains("equals"), "{err}");
    }
}
