//! Value mappings: `gender_normalize` (free-form spellings to four labels), `boolean`
//! (yes/no words to a boolean) and `map` (a declared table, e.g. legacy role names).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::output::reuse_or_new;
use super::reason::{Quoted, Shown, kind_name};
use crate::engine::value::Value;

/// What `map` does with a value that is not in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Otherwise {
    /// Pass the value through unchanged.
    Keep,
    /// Set the field to NULL.
    Null,
    /// Reject the row. The default, so a value the step author did not foresee is never
    /// carried over silently.
    #[default]
    Reject,
}

/// Options of `gender_normalize`.
///
/// Recognised by default (case-insensitive, trimmed): m/male/man -> `male`, f/female/woman ->
/// `female`, o/other/x/nonbinary/non-binary/nb -> `other`; anything else, NULL and blank ->
/// `unknown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenderSpec {
    /// Extra spellings (input -> output), matched case-insensitively before the defaults, e.g.
    /// `{ "1" = "male", "2" = "female" }` for a legacy numeric code.
    pub map: BTreeMap<String, String>,
    /// Output labels, for targets that store codes (`male = "M"`).
    pub male: String,
    pub female: String,
    pub other: String,
    pub unknown: String,
}

impl Default for GenderSpec {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            male: "male".into(),
            female: "female".into(),
            other: "other".into(),
            unknown: "unknown".into(),
        }
    }
}

/// Options of `map`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapSpec {
    /// Input -> output. Input text is trimmed before the lookup; numbers and booleans are
    /// looked up by their text form.
    pub values: BTreeMap<String, String>,
    /// Match keys ignoring case. An exact match wins over a case-insensitive one.
    #[serde(default = "yes")]
    pub case_insensitive: bool,
    /// What to do with a value that has no entry. NULL and blank text without an entry always
    /// pass through (a missing value is not an unforeseen one).
    #[serde(default)]
    pub otherwise: Otherwise,
    /// A value for everything that has no entry (e.g. `"unknown"`); takes precedence over
    /// `otherwise`. NULL and blank still pass through.
    #[serde(default)]
    pub otherwise_value: Option<String>,
}

const MALE: &[&str] = &["m", "male", "man"];
const FEMALE: &[&str] = &["f", "female", "woman"];
const OTHER: &[&str] = &["o", "other", "x", "nonbinary", "non-binary", "non binary", "nb"];

impl GenderSpec {
    fn label(&self, t: &str) -> &str {
        let any = |words: &[&str]| words.iter().any(|w| w.eq_ignore_ascii_case(t));
        if t.is_empty() {
            &self.unknown
        } else if let Some(out) = lookup(&self.map, t, true) {
            out
        } else if any(MALE) {
            &self.male
        } else if any(FEMALE) {
            &self.female
        } else if any(OTHER) {
            &self.other
        } else {
            &self.unknown
        }
    }

    pub(super) fn normalize(&self, v: Value) -> Value {
        let label = match &v {
            Value::Text(s) => self.label(s.trim()),
            // Numeric legacy codes can be mapped through `map`.
            Value::Int(i) => self.label(&i.to_string()),
            _ => &self.unknown,
        };
        reuse_or_new(v, label)
    }
}

const TRUE_WORDS: &[&str] = &["1", "true", "yes", "y", "t", "on"];
const FALSE_WORDS: &[&str] = &["0", "false", "no", "n", "f", "off"];

pub(super) fn to_bool(v: Value) -> Result<Value, String> {
    match v {
        Value::Null | Value::Bool(_) => Ok(v),
        Value::Int(1) => Ok(Value::Bool(true)),
        Value::Int(0) => Ok(Value::Bool(false)),
        Value::Text(ref s) => {
            let t = s.trim();
            let is = |words: &[&str]| words.iter().any(|w| w.eq_ignore_ascii_case(t));
            if t.is_empty() {
                Ok(Value::Null)
            } else if is(TRUE_WORDS) {
                Ok(Value::Bool(true))
            } else if is(FALSE_WORDS) {
                Ok(Value::Bool(false))
            } else {
                Err(format!(
                    "boolean {} is not one of 1/0, true/false, yes/no, y/n, t/f, on/off",
                    Quoted(t)
                ))
            }
        }
        other => Err(format!("boolean {} {} is not 1 or 0", kind_name(&other), Shown(&other))),
    }
}

/// Exact key first (a tree lookup), then a case-insensitive scan; value maps are small.
fn lookup<'m>(map: &'m BTreeMap<String, String>, key: &str, ci: bool) -> Option<&'m String> {
    map.get(key).or_else(|| {
        ci.then(|| map.iter().find(|(k, _)| eq_fold(k, key)).map(|(_, v)| v))
            .flatten()
    })
}

fn eq_fold(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase))
    }
}

impl MapSpec {
    pub(super) fn map(&self, v: Value) -> Result<Value, String> {
        let hit = match &v {
            Value::Null => return Ok(v),
            Value::Text(s) => lookup(&self.values, s.trim(), self.case_insensitive),
            Value::Int(_) | Value::Real(_) | Value::Bool(_) => {
                let key = v.to_text().unwrap_or_default();
                lookup(&self.values, &key, self.case_insensitive)
            }
            Value::Bytes(_) | Value::Json(_) => None,
        };
        match hit {
            Some(out) => Ok(reuse_or_new(v, out)),
            None if v.is_blank() => Ok(v),
            None if self.otherwise_value.is_some() => Ok(Value::Text(self.otherwise_value.clone().unwrap_or_default())),
            None => match self.otherwise {
                Otherwise::Keep => Ok(v),
                Otherwise::Null => Ok(Value::Null),
                Otherwise::Reject => Err(format!("map has no entry for {}", Shown(&v))),
            },
        }
    }
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transform::Transform;
    use crate::engine::transform::testing::{err, ok, text};

    #[test]
    fn gender() {
        let g = Transform::GenderNormalize(GenderSpec::default());
        for (input, want) in [
            ("M", "male"),
            ("male", "male"),
            ("MALE", "male"),
            (" m ", "male"),
            ("F", "female"),
            ("Female", "female"),
            ("other", "other"),
            ("O", "other"),
            ("x", "other"),
            ("NonBinary", "other"),
            ("non-binary", "other"),
            ("", "unknown"),
            ("  ", "unknown"),
            ("dunno", "unknown"),
        ] {
            assert_eq!(ok(&g, text(input)), text(want), "{input}");
        }
        assert_eq!(ok(&g, Value::Null), text("unknown"));
        assert_eq!(ok(&g, Value::Int(1)), text("unknown"));

        let custom = Transform::GenderNormalize(GenderSpec {
            map: BTreeMap::from([("1".into(), "M".into()), ("Herr".into(), "M".into())]),
            male: "M".into(),
            female: "F".into(),
            other: "X".into(),
            unknown: "U".into(),
        });
        assert_eq!(ok(&custom, Value::Int(1)), text("M"));
        assert_eq!(ok(&custom, text("HERR")), text("M"));
        assert_eq!(ok(&custom, text("female")), text("F"));
        assert_eq!(ok(&custom, text("?")), text("U"));
    }

    #[test]
    fn boolean() {
        let b = Transform::Boolean;
        for t in ["1", "true", "TRUE", "Yes", "y", "T", "on", " ON "] {
            assert_eq!(ok(&b, text(t)), Value::Bool(true), "{t}");
        }
        for f in ["0", "false", "No", "N", "f", "OFF"] {
            assert_eq!(ok(&b, text(f)), Value::Bool(false), "{f}");
        }
        assert_eq!(ok(&b, text(" ")), Value::Null);
        assert_eq!(ok(&b, Value::Null), Value::Null);
        assert_eq!(ok(&b, Value::Int(1)), Value::Bool(true));
        assert_eq!(ok(&b, Value::Int(0)), Value::Bool(false));
        assert_eq!(ok(&b, Value::Bool(false)), Value::Bool(false));
        assert_eq!(
            err(&b, text("maybe")),
            "boolean 'maybe' is not one of 1/0, true/false, yes/no, y/n, t/f, on/off"
        );
        assert_eq!(err(&b, Value::Int(2)), "boolean integer '2' is not 1 or 0");
    }

    fn role_map(otherwise: Otherwise, case_insensitive: bool) -> Transform {
        Transform::Map(MapSpec {
            values: BTreeMap::from([
                ("Parent".into(), "parent".into()),
                ("doctor".into(), "clinician".into()),
                ("ÄRZTIN".into(), "clinician".into()),
                ("1".into(), "admin".into()),
            ]),
            case_insensitive,
            otherwise,
            otherwise_value: None,
        })
    }

    #[test]
    fn map() {
        let m = role_map(Otherwise::Reject, true);
        assert_eq!(ok(&m, text("Parent")), text("parent"));
        assert_eq!(ok(&m, text(" PARENT ")), text("parent"));
        assert_eq!(ok(&m, text("Doctor")), text("clinician"));
        assert_eq!(ok(&m, text("ärztin")), text("clinician"));
        assert_eq!(ok(&m, Value::Int(1)), text("admin"));
        assert_eq!(ok(&m, Value::Null), Value::Null);
        assert_eq!(ok(&m, text(" ")), text(" "));
        assert_eq!(err(&m, text("nurse")), "map has no entry for 'nurse'");
        assert_eq!(err(&m, Value::Int(9)), "map has no entry for '9'");

        let strict = role_map(Otherwise::Reject, false);
        assert_eq!(ok(&strict, text("Parent")), text("parent"));
        assert!(err(&strict, text("parent")).contains("no entry"));

        assert_eq!(ok(&role_map(Otherwise::Keep, true), text("nurse")), text("nurse"));
        assert_eq!(ok(&role_map(Otherwise::Null, true), text("nurse")), Value::Null);
    }
}
