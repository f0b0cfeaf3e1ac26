//! Text rules: `max_length`, `min_length`, `pattern`, `enum` and (through `email`) `email`.
//! Numbers and booleans are checked by their text form, each string of a `split` list on
//! its own, and binary values only by length.

use regex::Regex;

use super::email::is_email;
use super::{Fail, Subject, Test};
use crate::engine::value::Value;

pub(super) fn compile_pattern(pattern: &str) -> Result<Test, String> {
    Ok(Test::Pattern(Regex::new(pattern).map_err(|e| {
        format!("pattern '{pattern}' is not a valid regular expression: {e}")
    })?))
}

pub(super) fn compile_enum(values: &[String]) -> Result<Test, String> {
    if values.is_empty() {
        return Err("enum needs at least one value".into());
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    Ok(Test::Enum {
        declared: values.to_vec(),
        sorted,
    })
}

impl Test {
    /// Text rules: text directly, numbers and booleans by their text form, each string of a
    /// JSON array (a `split` list) on its own, binary only by length.
    pub(super) fn run_text<'v>(&self, v: &'v Value) -> Option<(Fail, Subject<'v>)> {
        match v {
            Value::Text(s) => self.text(s).map(|f| (f, Subject::Whole)),
            Value::Int(_) | Value::Real(_) | Value::Bool(_) => {
                let s = v.to_text()?;
                self.text(&s).map(|f| (f, Subject::Whole))
            }
            Value::Json(serde_json::Value::Array(items)) => items.iter().find_map(|item| match item {
                serde_json::Value::String(s) if s.trim().is_empty() => None,
                serde_json::Value::String(s) => self.text(s).map(|f| (f, Subject::Element(s))),
                _ => Some((Fail::NotText, Subject::Whole)),
            }),
            Value::Bytes(b) => match self {
                Test::MaxLength(max) => (b.bytes_len > *max).then_some((
                    Fail::TooLong {
                        len: b.bytes_len,
                        max: *max,
                    },
                    Subject::Whole,
                )),
                Test::MinLength(min) => (b.bytes_len < *min).then_some((
                    Fail::TooShort {
                        len: b.bytes_len,
                        min: *min,
                    },
                    Subject::Whole,
                )),
                _ => Some((Fail::NotText, Subject::Whole)),
            },
            Value::Json(_) => Some((Fail::NotText, Subject::Whole)),
            Value::Null => None,
        }
    }

    fn text(&self, s: &str) -> Option<Fail> {
        match self {
            // Byte length bounds the character count, so most values skip counting.
            Test::MaxLength(max) if s.len() <= *max => None,
            Test::MaxLength(max) => {
                let len = s.chars().count();
                (len > *max).then_some(Fail::TooLong { len, max: *max })
            }
            Test::MinLength(min) => {
                let len = if s.is_ascii() { s.len() } else { s.chars().count() };
                (len < *min).then_some(Fail::TooShort { len, min: *min })
            }
            Test::Pattern(re) => (!re.is_match(s)).then_some(Fail::NoMatch),
            Test::Email => (!is_email(s)).then_some(Fail::NotEmail),
            Test::Enum { sorted, .. } => sorted
                .binary_search_by(|x| x.as_str().cmp(s))
                .is_err()
                .then_some(Fail::NotInEnum),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::validate::Rule;
    use crate::engine::validate::testing::{fails, passes, text, validator};
    use crate::engine::value::Value;

    #[test]
    fn max_and_min_length() {
        let max = validator(Rule::MaxLength { max: 5 });
        passes(&max, text("abcde"));
        passes(&max, text("ééééé"));
        assert_eq!(
            fails(&max, "code", text("abcdef")),
            "code 'abcdef' is longer than 5 characters (6)"
        );
        assert!(fails(&max, "code", text("éééééé")).ends_with("(6)"));
        passes(&max, Value::Int(12345));
        assert!(fails(&max, "code", Value::Int(123456)).contains("'123456'"));
        passes(&max, Value::bytes(vec![0; 5]));
        assert_eq!(
            fails(&max, "blob", Value::bytes(vec![0; 6])),
            "blob <6 bytes> is longer than 5 characters (6)"
        );

        let min = validator(Rule::MinLength { min: 3 });
        passes(&min, text("abc"));
        passes(&min, text("äöü"));
        assert_eq!(
            fails(&min, "code", text("ab")),
            "code 'ab' is shorter than 3 characters (2)"
        );
        assert!(fails(&min, "code", text("äö")).ends_with("(2)"));
    }

    #[test]
    fn pattern() {
        let v = validator(Rule::Pattern {
            pattern: "^[A-Z]{3}[0-9]+$".into(),
        });
        passes(&v, text("ABC123"));
        assert_eq!(
            fails(&v, "code", text("AB123")),
            "code 'AB123' does not match the pattern ^[A-Z]{3}[0-9]+$"
        );
        let digits = validator(Rule::Pattern {
            pattern: "^[0-9]+$".into(),
        });
        passes(&digits, Value::Int(42));
        assert!(fails(&digits, "n", Value::Real(4.5)).contains("'4.5'"));
    }

    #[test]
    fn enum_values() {
        let v = validator(Rule::Enum {
            values: vec!["parent".into(), "clinician".into(), "admin".into()],
        });
        passes(&v, text("parent"));
        passes(&v, text("admin"));
        assert_eq!(
            fails(&v, "role", text("Parent")),
            "role 'Parent' is not one of parent, clinician, admin"
        );
        let many = validator(Rule::Enum {
            values: (0..15).map(|i| i.to_string()).collect(),
        });
        passes(&many, Value::Int(14));
        assert!(fails(&many, "n", Value::Int(99)).ends_with("8, 9, … (5 more)"));
    }

    #[test]
    fn text_rules_check_each_element_of_a_list() {
        let v = validator(Rule::Enum {
            values: vec!["red".into(), "blue".into()],
        });
        passes(&v, Value::Json(serde_json::json!(["red", "blue", ""])));
        passes(&v, Value::Json(serde_json::json!([])));
        assert_eq!(
            fails(&v, "tags", Value::Json(serde_json::json!(["red", "green"]))),
            "tags 'green' is not one of red, blue"
        );
        assert!(fails(&v, "tags", Value::Json(serde_json::json!([1]))).contains("is json, not text"));
        assert!(fails(&v, "tags", Value::Json(serde_json::json!({"a": 1}))).contains("not text"));
        assert_eq!(
            fails(&v, "pic", Value::bytes(vec![1, 2])),
            "pic <2 bytes> is bytes, not text"
        );
    }
}
