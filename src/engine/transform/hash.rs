//! Binary-minded transforms: `hash` (lower-case hex SHA-256) and `byte_length`.

use sha2::{Digest, Sha256};

use super::reason::kind_name;
use crate::engine::value::{Value, hex};

pub(super) fn hash(v: Value) -> Result<Value, String> {
    match &v {
        Value::Null => Ok(v),
        Value::Text(s) => Ok(Value::Text(hex(&Sha256::digest(s.as_bytes())))),
        Value::Bytes(b) => Ok(Value::Text(hex(&Sha256::digest(&b.bytes)))),
        other => Err(format!("hash expects text or bytes, got {}", kind_name(other))),
    }
}

pub(super) fn byte_length(v: Value) -> Result<Value, String> {
    match &v {
        Value::Null => Ok(Value::Null),
        Value::Bytes(b) => Ok(Value::Int(b.bytes.len() as i64)),
        Value::Text(t) => Ok(Value::Int(t.len() as i64)),
        other => Err(format!("byte_length expects bytes or text, got {}", kind_name(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transform::Transform;
    use crate::engine::transform::testing::{err, ok, text};

    #[test]
    fn hash() {
        let h = Transform::Hash;
        assert_eq!(
            ok(&h, text("abc")),
            text("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            ok(&h, Value::bytes(b"abc".to_vec())),
            text("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(ok(&h, Value::Null), Value::Null);
        assert_eq!(err(&h, Value::Int(1)), "hash expects text or bytes, got integer");
    }
}
