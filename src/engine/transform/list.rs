//! `split`: delimited text becomes a JSON array of strings, the shape `validate` checks
//! element by element.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::reason::{Shown, kind_name};
use crate::engine::value::Value;

/// Options of `split`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitSpec {
    #[serde(deserialize_with = "de_separator")]
    pub separator: String,
    /// Trim each element.
    pub trim: bool,
    /// Leave out elements that are empty (after trimming).
    pub drop_empty: bool,
}

impl Default for SplitSpec {
    fn default() -> Self {
        Self {
            separator: ",".into(),
            trim: true,
            drop_empty: true,
        }
    }
}

impl SplitSpec {
    pub(super) fn split(&self, v: Value) -> Result<Value, String> {
        let s = match &v {
            Value::Null => return Ok(Value::Json(serde_json::Value::Array(Vec::new()))),
            Value::Json(serde_json::Value::Array(_)) => return Ok(v),
            Value::Text(s) => s,
            other => {
                return Err(format!("split expects text, got {} {}", kind_name(other), Shown(other)));
            }
        };
        if self.separator.is_empty() {
            return Err("split separator is empty".into());
        }
        let items = if s.trim().is_empty() {
            Vec::new()
        } else {
            s.split(self.separator.as_str())
                .map(|part| if self.trim { part.trim() } else { part })
                .filter(|part| !(self.drop_empty && part.is_empty()))
                .map(|part| serde_json::Value::String(part.to_owned()))
                .collect()
        };
        Ok(Value::Json(serde_json::Value::Array(items)))
    }
}

fn de_separator<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let sep = String::deserialize(d)?;
    if sep.is_empty() {
        return Err(de::Error::custom("split separator must not be empty"));
    }
    Ok(sep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transform::Transform;
    use crate::engine::transform::testing::{err, ok, text};

    fn json(j: serde_json::Value) -> Value {
        Value::Json(j)
    }

    #[test]
    fn split() {
        let s = Transform::Split(SplitSpec::default());
        assert_eq!(ok(&s, text("a, b,,c ")), json(serde_json::json!(["a", "b", "c"])));
        assert_eq!(ok(&s, text("single")), json(serde_json::json!(["single"])));
        assert_eq!(ok(&s, text("  ")), json(serde_json::json!([])));
        assert_eq!(ok(&s, Value::Null), json(serde_json::json!([])));
        assert_eq!(ok(&s, json(serde_json::json!(["x"]))), json(serde_json::json!(["x"])));
        let raw = Transform::Split(SplitSpec {
            separator: "||".into(),
            trim: false,
            drop_empty: false,
        });
        assert_eq!(
            ok(&raw, text("a || b||||")),
            json(serde_json::json!(["a ", " b", "", ""]))
        );
        assert_eq!(err(&s, Value::Int(3)), "split expects text, got integer '3'");
    }
}
