//! The one value type rows are made of while they travel from source to target.
//!
//! Sources and targets have different type systems (SQLite is dynamic, PostgreSQL is not), so
//! the engine moves rows as these loosely typed values and lets the writer cast at the edge.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(untagged)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Real(f64),
    Text(String),
    /// Binary data; serialised as an object so JSON can tell it from text.
    Bytes(BytesValue),
    /// A JSON document or array (split lists, nested target paths).
    Json(serde_json::Value),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BytesValue {
    pub bytes_len: usize,
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

impl Value {
    pub fn bytes(b: Vec<u8>) -> Self {
        Value::Bytes(BytesValue {
            bytes_len: b.len(),
            bytes: b,
        })
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Null or a string of only whitespace: what the scenario calls "blank".
    pub fn is_blank(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Text(s) => s.trim().is_empty(),
            _ => false,
        }
    }

    /// A count as the servers return it: an integer, or the text of a NUMERIC or DECIMAL (a
    /// SUM of counts on PostgreSQL and MySQL). `None` for anything else.
    pub fn as_count(&self) -> Option<u64> {
        match self {
            Value::Int(n) => Some((*n).max(0) as u64),
            Value::Text(s) => s.trim().parse().ok(),
            Value::Real(f) if f.is_finite() && *f >= 0.0 && f.fract() == 0.0 => Some(*f as u64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Text form used for keys, CSV, COPY and comparisons. `None` for NULL.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(if *b { "true".into() } else { "false".into() }),
            Value::Int(i) => Some(i.to_string()),
            Value::Real(f) => Some(f.to_string()),
            Value::Text(s) => Some(s.clone()),
            Value::Bytes(b) => Some(hex(&b.bytes)),
            Value::Json(j) => Some(j.to_string()),
        }
    }

    /// Whether `v` is the stand-in [`Value::to_json`] writes for bytes (`{"bytes_len": N}`):
    /// the bytes themselves were not kept.
    pub fn is_bytes_stand_in(v: &serde_json::Value) -> bool {
        v.as_object()
            .is_some_and(|o| o.len() == 1 && o.contains_key("bytes_len"))
    }

    /// JSON form of a value, for reject rows and reports. Bytes are summarised, never dumped.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Real(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Text(s) => serde_json::Value::String(s.clone()),
            Value::Bytes(b) => serde_json::json!({ "bytes_len": b.bytes_len }),
            Value::Json(j) => j.clone(),
        }
    }

    /// Inverse of `to_json` for values that came back from the reject store.
    pub fn from_json(j: &serde_json::Value) -> Self {
        match j {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Real(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => Value::Text(s.clone()),
            other => Value::Json(other.clone()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_text() {
            None => f.write_str("NULL"),
            Some(s) => f.write_str(&s),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
