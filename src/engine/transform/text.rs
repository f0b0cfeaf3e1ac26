//! Text case and whitespace: `trim`, `upper`, `lower`. Each edits the string in place where
//! the edit cannot grow it, and leaves other kinds of value alone.

use crate::engine::value::Value;

pub(super) fn trim(v: Value) -> Value {
    match v {
        Value::Text(mut s) => {
            // In place: truncate the end, then shift the rest down; no new allocation.
            let end = s.trim_end().len();
            s.truncate(end);
            let start = s.len() - s.trim_start().len();
            if start > 0 {
                s.drain(..start);
            }
            Value::Text(s)
        }
        other => other,
    }
}

pub(super) fn upper(v: Value) -> Value {
    match v {
        Value::Text(mut s) if s.is_ascii() => {
            s.make_ascii_uppercase();
            Value::Text(s)
        }
        Value::Text(s) if s.chars().any(char::is_lowercase) => Value::Text(s.to_uppercase()),
        other => other,
    }
}

pub(super) fn lower(v: Value) -> Value {
    match v {
        Value::Text(mut s) if s.is_ascii() => {
            s.make_ascii_lowercase();
            Value::Text(s)
        }
        Value::Text(s) if s.chars().any(char::is_uppercase) => Value::Text(s.to_lowercase()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transform::Transform;
    use crate::engine::transform::testing::{ok, text};

    #[test]
    fn trim_upper_lower() {
        assert_eq!(ok(&Transform::Trim, text("  a b \t")), text("a b"));
        assert_eq!(ok(&Transform::Trim, text("ab")), text("ab"));
        assert_eq!(ok(&Transform::Trim, text("   ")), text(""));
        assert_eq!(ok(&Transform::Trim, text(" Ünïcode ")), text("Ünïcode"));
        assert_eq!(ok(&Transform::Trim, Value::Int(4)), Value::Int(4));
        assert_eq!(ok(&Transform::Upper, text("abc-1")), text("ABC-1"));
        assert_eq!(ok(&Transform::Upper, text("straße")), text("STRASSE"));
        assert_eq!(ok(&Transform::Upper, Value::Null), Value::Null);
        assert_eq!(ok(&Transform::Lower, text("ABC")), text("abc"));
        assert_eq!(ok(&Transform::Lower, text("ÉCOLE")), text("école"));
        assert_eq!(ok(&Transform::Lower, Value::Bool(true)), Value::Bool(true));
    }

    #[test]
    fn trim_reuses_the_allocation() {
        let s = String::from("  hello  ");
        let ptr = s.as_ptr();
        let Value::Text(out) = ok(&Transform::Trim, Value::Text(s)) else {
            panic!()
        };
        assert_eq!(out, "hello");
        assert_eq!(out.as_ptr(), ptr);
    }
}
