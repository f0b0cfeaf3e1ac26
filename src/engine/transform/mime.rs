//! `detect_mime`: the MIME type of bytes, from their content (magic numbers), never a name.
//! Bucket limits use the same detection, so what a step records is what its bucket checked.

use super::Value;

/// What bytes that nothing recognises are.
pub const UNKNOWN_MIME: &str = "application/octet-stream";

/// The MIME type of `bytes`: the `infer` crate's magic numbers first; then valid UTF-8
/// without a NUL byte is `text/plain`; anything else is `application/octet-stream`.
pub fn detect_mime(bytes: &[u8]) -> &'static str {
    if let Some(t) = infer::get(bytes) {
        return t.mime_type();
    }
    if !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok() {
        return "text/plain";
    }
    UNKNOWN_MIME
}

/// Whether `mime` is one of `allowed` (`image/png`, or a wildcard `image/*`); an empty list
/// allows everything. Case does not matter.
pub fn mime_allowed(allowed: &[String], mime: &str) -> bool {
    allowed.is_empty()
        || allowed.iter().any(|a| {
            let a = a.trim();
            match a.strip_suffix("/*") {
                Some(top) => mime.split_once('/').is_some_and(|(t, _)| t.eq_ignore_ascii_case(top)),
                None => a == "*/*" || a.eq_ignore_ascii_case(mime),
            }
        })
}

/// The transform: bytes (or text) become their detected MIME type; NULL stays NULL.
pub(super) fn to_mime(v: Value) -> Result<Value, String> {
    let mime = match &v {
        Value::Null => return Ok(Value::Null),
        Value::Bytes(b) => detect_mime(&b.bytes),
        Value::Text(t) => detect_mime(t.as_bytes()),
        other => return Err(format!("detect_mime expects bytes, not {}", super::kind_name(other))),
    };
    Ok(Value::Text(mime.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_from_magic_numbers_and_the_text_rule() {
        assert_eq!(detect_mime(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(detect_mime(b"\xff\xd8\xff\xe0\0\x10JFIF\0"), "image/jpeg");
        assert_eq!(detect_mime(b"GIF89a\x01\0\x01\0"), "image/gif");
        assert_eq!(detect_mime(b"%PDF-1.4\n"), "application/pdf");
        assert_eq!(detect_mime("plain words, ünïcode".as_bytes()), "text/plain");
        assert_eq!(detect_mime(b"text with a \0 NUL"), UNKNOWN_MIME);
        assert_eq!(detect_mime(b"\xfe\xfe\xfe"), UNKNOWN_MIME);
    }

    #[test]
    fn wildcards_and_empty_lists() {
        let list = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(mime_allowed(&[], "image/gif"));
        assert!(mime_allowed(&list(&["image/*"]), "image/gif"));
        assert!(!mime_allowed(&list(&["image/*"]), "application/pdf"));
        assert!(mime_allowed(&list(&["image/png", "image/jpeg"]), "image/jpeg"));
        assert!(!mime_allowed(&list(&["image/png", "image/jpeg"]), "image/gif"));
    }
}
