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
