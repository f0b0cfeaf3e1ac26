//! Settings: `config_key` (an old setting key becomes its new key) and `config_value` (a
//! setting's value becomes the type its new key declares). `config_value` needs the row's key
//! column as well as its own value, so the engine resolves it (it holds the row);
//! [`ConfigValueSpec::typed`] is the pure part.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::mapping::to_bool;
use super::reason::{Quoted, kind_name};
use crate::engine::value::Value;

/// What `config_key` does with an old key that `keys` does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    /// Reject the row (rule `config_key`).
    #[default]
    Reject,
    /// Keep the old key as the new one, with a warning.
    Keep,
}

/// The type a setting's value is stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConfigType {
    #[default]
    Text,
    Integer,
    Boolean,
    Json,
}

/// Options of `config_key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigKeySpec {
    /// Old key -> new key.
    pub keys: BTreeMap<String, String>,
    #[serde(default)]
    pub unmapped: Unmapped,
}

/// Options of `config_value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigValueSpec {
    /// The source column holding the setting's old key.
    pub key_column: String,
    /// Old key -> new key (as in `config_key`).
    pub keys: BTreeMap<String, String>,
    /// New key -> type; a key not named is text.
    #[serde(default)]
    pub types: BTreeMap<String, ConfigType>,
}

impl ConfigKeySpec {
    /// The new key and, for a kept unmapped key, a warning.
    pub(super) fn new_key(&self, v: Value) -> Result<(Value, Option<String>), String> {
        let old = match &v {
            Value::Null => return Err("the setting has no key (NULL)".into()),
            Value::Text(s) => s.trim().to_string(),
            Value::Int(_) | Value::Real(_) | Value::Bool(_) => v.to_text().unwrap_or_default(),
            other => return Err(format!("a setting key must be text, got {}", kind_name(other))),
        };
        match (self.keys.get(&old), self.unmapped) {
            (Some(new), _) => Ok((Value::Text(new.clone()), None)),
            (None, Unmapped::Reject) => Err(format!("setting {} has no new key in [config.keys]", Quoted(&old))),
            (None, Unmapped::Keep) => {
                let warning = format!("setting {} has no new key in [config.keys]; kept as is", Quoted(&old));
                Ok((Value::Text(old), Some(warning)))
            }
        }
    }
}

impl ConfigType {
    pub fn name(self) -> &'static str {
        match self {
            ConfigType::Text => "text",
            ConfigType::Integer => "integer",
            ConfigType::Boolean => "boolean",
            ConfigType::Json => "json",
        }
    }

    /// `v` as this type; NULL stays NULL.
    pub fn convert(self, v: Value) -> Result<Value, String> {
        let bad = |v: &Value| {
            let shown = v.to_text().unwrap_or_default();
            format!("{} is not {}", Quoted(&shown), self.described())
        };
        match (self, v) {
            (_, Value::Null) => Ok(Value::Null),
            (ConfigType::Text, Value::Json(j)) => Ok(Value::Text(j.to_string())),
            (ConfigType::Text, Value::Bytes(b)) => String::from_utf8(b.bytes)
                .map(Value::Text)
                .map_err(|_| "the value's bytes are not UTF-8 text".into()),
            (ConfigType::Text, v) => Ok(Value::Text(v.to_text().unwrap_or_default())),
            (ConfigType::Integer, Value::Int(i)) => Ok(Value::Int(i)),
            (ConfigType::Integer, Value::Real(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::Int(f as i64)),
            (ConfigType::Integer, v @ Value::Real(_)) => Err(bad(&v)),
            (ConfigType::Integer, Value::Text(s)) => s
                .trim()
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| bad(&Value::Text(s))),
            (ConfigType::Boolean, v @ (Value::Bool(_) | Value::Int(_) | Value::Text(_))) => {
                let shown = bad(&v);
                match to_bool(v) {
                    Ok(Value::Null) | Err(_) => Err(shown),
                    Ok(b) => Ok(b),
                }
            }
            (ConfigType::Json, Value::Json(j)) => Ok(Value::Json(j)),
            (ConfigType::Json, Value::Text(s)) => serde_json::from_str(s.trim())
                .map(Value::Json)
                .map_err(|_| bad(&Value::Text(s))),
            (ConfigType::Json, v @ (Value::Int(_) | Value::Real(_) | Value::Bool(_))) => Ok(Value::Json(v.to_json())),
            (_, other) => Err(format!("{} value cannot be {}", kind_name(&other), self.described())),
        }
    }

    fn described(self) -> &'static str {
        match self {
            ConfigType::Text => "text",
            ConfigType::Integer => "an integer",
            ConfigType::Boolean => "a boolean (true/false, yes/no, 1/0, on/off)",
            ConfigType::Json => "JSON",
        }
    }
}

impl ConfigValueSpec {
    /// The value typed by its new key (the old key through `keys`, or as is when unmapped).
    pub fn typed(&self, old_key: Option<&str>, v: Value) -> Result<Value, String> {
        let old = old_key.map(str::trim).unwrap_or_default();
        let new = self.keys.get(old).map(String::as_str).unwrap_or(old);
        let ty = self.types.get(new).copied().unwrap_or_default();
        ty.convert(v)
            .map_err(|reason| format!("setting {}: {reason}", Quoted(new)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transform::testing::{err, ok, text};
    use crate::engine::transform::{Transform, TransformOutcome};
    use serde_json::json;

    fn keys() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("smtp_port".into(), "mail.smtp.port".into()),
            ("booking".into(), "features.booking".into()),
            ("brand".into(), "branding".into()),
            ("smtp_host".into(), "mail.smtp.host".into()),
        ])
    }

    #[test]
    fn old_keys_become_new_keys_or_reject_or_stay_with_a_warning() {
        let strict = Transform::ConfigKey(ConfigKeySpec {
            keys: keys(),
            unmapped: Unmapped::Reject,
        });
        assert_eq!(ok(&strict, text(" smtp_port ")), text("mail.smtp.port"));
        assert_eq!(
            err(&strict, text("fax_number")),
            "setting 'fax_number' has no new key in [config.keys]"
        );
        assert_eq!(err(&strict, Value::Null), "the setting has no key (NULL)");
        let keep = Transform::ConfigKey(ConfigKeySpec {
            keys: keys(),
            unmapped: Unmapped::Keep,
        });
        assert_eq!(
            keep.apply(text("fax_number")).unwrap(),
            TransformOutcome {
                value: text("fax_number"),
                warning: Some("setting 'fax_number' has no new key in [config.keys]; kept as is".into()),
            }
        );
        assert_eq!(keep.apply(text("brand")).unwrap().warning, None);
    }

    #[test]
    fn values_are_typed_by_their_new_key() {
        let spec = ConfigValueSpec {
            key_column: "key".into(),
            keys: keys(),
            types: BTreeMap::from([
                ("mail.smtp.port".into(), ConfigType::Integer),
                ("features.booking".into(), ConfigType::Boolean),
                ("branding".into(), ConfigType::Json),
                ("kept_flag".into(), ConfigType::Boolean),
            ]),
        };
        assert_eq!(spec.typed(Some("smtp_port"), text(" 587 ")), Ok(Value::Int(587)));
        assert_eq!(spec.typed(Some("smtp_port"), Value::Int(25)), Ok(Value::Int(25)));
        assert_eq!(spec.typed(Some("smtp_port"), Value::Real(25.0)), Ok(Value::Int(25)));
        assert_eq!(
            spec.typed(Some("smtp_port"), text("58x")),
            Err("setting 'mail.smtp.port': '58x' is not an integer".into())
        );
        assert_eq!(
            spec.typed(Some("smtp_port"), Value::Real(2.5)),
            Err("setting 'mail.smtp.port': '2.5' is not an integer".into())
        );
        assert_eq!(spec.typed(Some("booking"), text("Yes")), Ok(Value::Bool(true)));
        assert_eq!(spec.typed(Some("booking"), Value::Int(0)), Ok(Value::Bool(false)));
        assert!(spec.typed(Some("booking"), text("maybe")).is_err());
        assert!(spec.typed(Some("booking"), text(" ")).is_err(), "blank is no boolean");
        assert_eq!(
            spec.typed(Some("brand"), text(r##"{"colour": "#004488"}"##)),
            Ok(Value::Json(json!({"colour": "#004488"})))
        );
        assert_eq!(
            spec.typed(Some("brand"), text("{colour")),
            Err("setting 'branding': '{colour' is not JSON".into())
        );
        // Untyped keys are text, whatever the source's type; NULL stays NULL for every type.
        assert_eq!(spec.typed(Some("smtp_host"), Value::Int(10)), Ok(text("10")));
        assert_eq!(spec.typed(Some("smtp_host"), text(" mx ")), Ok(text(" mx ")));
        assert_eq!(spec.typed(Some("smtp_port"), Value::Null), Ok(Value::Null));
        // An unmapped (kept) key is typed by its old name.
        assert_eq!(spec.typed(Some("kept_flag"), text("off")), Ok(Value::Bool(false)));
        assert_eq!(spec.typed(Some("other"), text("x")), Ok(text("x")));
    }

    #[test]
    fn config_value_is_resolved_by_the_engine() {
        let t = Transform::ConfigValue(ConfigValueSpec {
            key_column: "key".into(),
            keys: keys(),
            types: BTreeMap::new(),
        });
        assert!(err(&t, text("1")).contains("resolved by the engine"));
    }
}
