//! Content checksums of migration files. Normalised so that a checkout with CRLF line endings
//! or an editor that adds a BOM does not look like an edit; the file name is not hashed so a
//! renamed folder keeps its checksum.

use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "sha256";

pub fn normalise(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.replace("\r\n", "\n")
}

/// `sha256:<hex>` of the normalised text.
pub fn checksum(text: &str) -> String {
    let digest = Sha256::digest(normalise(text).as_bytes());
    format!("{ALGORITHM}:{}", crate::engine::value::hex(&digest))
}

/// One version of a file on disk (a file rewritten in place has another size or time), and
/// the checksum it had.
type FileVersion = (std::path::PathBuf, u64, Option<std::time::SystemTime>);
static FILE_SUMS: std::sync::Mutex<Vec<(FileVersion, String)>> = std::sync::Mutex::new(Vec::new());

/// `sha256:<hex>` of a data file's bytes as they are (not normalised: a data file whose line
/// endings changed is a changed file). Remembered per file version within the process, so
/// `status` and the ledger do not hash a big file again and again.
pub fn file_checksum(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    let version: FileVersion = (path.to_path_buf(), meta.len(), meta.modified().ok());
    let known = FILE_SUMS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, sum)) = known.iter().find(|(v, _)| *v == version) {
        return Ok(sum.clone());
    }
    drop(known);
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let sum = format!("{ALGORITHM}:{}", crate::engine::value::hex(&hasher.finalize()));
    let mut known = FILE_SUMS.lock().unwrap_or_else(|p| p.into_inner());
    known.retain(|(v, _)| v.0 != version.0);
    known.push((version, sum.clone()));
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_and_bom_do_not_change_the_checksum() {
        let lf = "CREATE TABLE a (id INT);\nCREATE TABLE b (id INT);\n";
        let crlf = "\u{feff}CREATE TABLE a (id INT);\r\nCREATE TABLE b (id INT);\r\n";
        assert_eq!(checksum(lf), checksum(crlf));
        assert!(checksum(lf).starts_with("sha256:"));
        assert_ne!(checksum(lf), checksum("CREATE TABLE a (id BIGINT);\n"));
    }
}
