//! Per-field value transforms declared in a step's `step.toml`.
//!
//! Each transform is a pure function of one value, so a step's transform chain can run on any
//! worker thread and be unit-tested without a database. Two transforms (`lookup`, `new_id`) need
//! engine state and are only *declared* here; the engine resolves them before calling [`apply`].
//!
//! Rows stream through these at hundreds of thousands per second, so a value that is already in
//! the target shape is handed back as is (no new `String`), and text is edited in place where
//! the edit cannot grow it.
//!
//! This module holds the [`Transform`] type, its options shared by several kinds ([`OnError`],
//! [`Literal`]) and the dispatch in [`Transform::apply`]; each kind of transform lives in its
//! own file, and reading a chain from `step.toml` lives in `parse`. `validate` borrows the
//! reason helpers (`Quoted`, `Shown`, `kind_name`) and `fast_iso_date` through the
//! re-exports below; nothing here imports `validate`, so the dependency runs one way.
//!
//! [`apply`]: Transform::apply

mod config;
mod date;
mod hash;
mod list;
mod lookup;
mod mapping;
mod mime;
mod output;
mod parse;
mod permissions;
mod phone;
pub(crate) mod reason;
mod text;

use serde::{Deserialize, Serialize};

pub use config::{ConfigKeySpec, ConfigType, ConfigValueSpec, Unmapped};
pub(crate) use date::fast_iso_date;
pub use date::{DateSpec, RFC3339};
use date::{to_date, to_datetime};
use hash::{byte_length, hash};
pub use list::SplitSpec;
pub use lookup::{LookupBy, LookupSpec, MapLookup, Normalize, TableLookup, normalized};
use mapping::to_bool;
pub use mapping::{GenderSpec, MapSpec, Otherwise};
use mime::to_mime;
pub use mime::{UNKNOWN_MIME, detect_mime, mime_allowed};
use permissions::to_utf8;
pub use permissions::{OnUnknownRole, RolesSpec, RolesToPermissionsSpec};
pub use phone::PhoneSpec;
use phone::to_phone;
pub(crate) use reason::{Escaped, Quoted, Shown, kind_name};
use text::{lower, trim, upper};

use super::value::Value;

/// One step of a field's transform chain.
///
/// In TOML a transform is either a bare name (`"trim"`) or a one-key table whose value holds
/// the options (`{ date = { formats = ["%d.%m.%Y"] } }`). Transforms whose options all have
/// defaults (`date`, `datetime`, `phone`, `gender_normalize`, `split`) accept both forms, and
/// option-less transforms also accept an empty table (`{ trim = {} }`). `default`, `map` and
/// `lookup` have required options and only take the table form.
///
/// `Serialize` is derived (bare names for unit variants, one-key tables otherwise); `Deserialize`
/// is written by hand (in `parse`) because serde's derived enum reader cannot take `"date"` as a
/// bare name for a variant that carries options.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// Strip leading and trailing whitespace from text.
    Trim,
    /// Upper-case text.
    Upper,
    /// Lower-case text.
    Lower,
    /// Blank text (empty or only whitespace) becomes NULL.
    EmptyToNull,
    /// NULL or blank text becomes this literal.
    Default(Literal),
    /// Text in one of `formats` becomes `YYYY-MM-DD`.
    Date(DateSpec),
    /// Text in one of `formats` becomes `YYYY-MM-DDTHH:MM:SS` (plus the offset when the input
    /// had one: `Z` for UTC, `+hh:mm` otherwise). Plain dates become midnight.
    Datetime(DateSpec),
    /// A phone number becomes E.164 (`+15551234567`).
    Phone(PhoneSpec),
    /// Free-form gender spellings become one of four configurable labels.
    GenderNormalize(GenderSpec),
    /// 1/0, true/false, yes/no, y/n, t/f, on/off (any case) become a boolean; blank becomes NULL.
    Boolean,
    /// Delimited text becomes a JSON array of strings; NULL and blank text become `[]`, and an
    /// array passes through.
    Split(SplitSpec),
    /// Value mapping, e.g. legacy role spellings to the new role names.
    Map(MapSpec),
    /// Replace a legacy key with the new key recorded in the engine's ID map (`map`), or a
    /// natural key with the id of the one target row that has it (`table`). The engine
    /// resolves this (it needs the target); [`Transform::apply`] refuses it.
    Lookup(LookupSpec),
    /// Generate a fresh UUIDv7 and record legacy key -> new id in the ID map. The engine resolves
    /// this (it owns the ID map); [`Transform::apply`] refuses it.
    NewId,
    /// Lower-case hex SHA-256 of text (its UTF-8 bytes) or bytes.
    Hash,
    /// Length in bytes of binary data or text.
    ByteLength,
    /// Store binary data in a content-addressed folder beside the target (`dir`, relative to
    /// the project, or a named `bucket` of cutover.toml with its limits) and become its
    /// storage key. The engine resolves this (it writes files).
    StoreFile(StoreFileSpec),
    /// Bytes become the MIME type detected from them (magic numbers; valid UTF-8 without NUL
    /// is `text/plain`; `application/octet-stream` when unknown).
    DetectMime,
    /// A role list (separated text or a JSON array) becomes a JSON array of known role names,
    /// trimmed and lower-cased; an unknown role rejects the row (rule `roles`) or is dropped.
    Roles(RolesSpec),
    /// A role list becomes the JSON array of permission strings its roles grant.
    RolesToPermissions(RolesToPermissionsSpec),
    /// Bytes become text when they are valid UTF-8; text passes untouched (a password hash).
    Utf8,
    /// An old setting key becomes its new key.
    ConfigKey(ConfigKeySpec),
    /// A setting's value becomes the type of its key. Needs the row's key column, so the
    /// engine resolves it; [`Transform::apply`] refuses it.
    ConfigValue(ConfigValueSpec),
}

/// Options of `store_file`: exactly one of `dir` (a plain folder) and `bucket` (a named
/// bucket of cutover.toml, whose limits every stored file must keep).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoreFileOptions")]
pub struct StoreFileSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
}

/// `store_file`'s options as written, before the one-of-two check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFileOptions {
    dir: Option<String>,
    bucket: Option<String>,
}

impl TryFrom<StoreFileOptions> for StoreFileSpec {
    type Error = String;
    fn try_from(o: StoreFileOptions) -> Result<StoreFileSpec, String> {
        match (&o.dir, &o.bucket) {
            (Some(_), Some(_)) => Err("store_file takes `dir` or `bucket`, not both".into()),
            (None, None) => Err("store_file needs `dir = \"folder\"` or `bucket = \"name\"`".into()),
            (Some(d), None) if d.trim().is_empty() => Err("store_file's `dir` is empty".into()),
            (None, Some(b)) if b.trim().is_empty() => Err("store_file's `bucket` is empty".into()),
            _ => Ok(StoreFileSpec {
                dir: o.dir,
                bucket: o.bucket,
            }),
        }
    }
}

/// What a transform with an `on_error` option does with input it cannot convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Reject the row.
    #[default]
    Reject,
    /// Set the field to NULL and record a warning.
    NullWarn,
    /// Keep the original value and record a warning.
    KeepWarn,
}

/// A TOML-compatible scalar for `default`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Literal {
    Bool(bool),
    Int(i64),
    Real(f64),
    Text(String),
}

/// A successful transform: the new value, and a warning when `on_error` chose to let a bad
/// value through (as NULL or unchanged).
#[derive(Debug, Clone, PartialEq)]
pub struct TransformOutcome {
    pub value: Value,
    pub warning: Option<String>,
}

/// A value the transform refused. `reason` names the bad input, e.g.
/// `date '2021-02-30' is not a real date`.
///
/// Reasons quote the input value; callers must redact them for secret fields
/// (see [`super::validate::is_secret_field`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TransformError {
    pub transform: &'static str,
    pub reason: String,
}

impl Transform {
    /// The snake_case name used in `step.toml`.
    pub fn name(&self) -> &'static str {
        match self {
            Transform::Trim => "trim",
            Transform::Upper => "upper",
            Transform::Lower => "lower",
            Transform::EmptyToNull => "empty_to_null",
            Transform::Default(_) => "default",
            Transform::Date(_) => "date",
            Transform::Datetime(_) => "datetime",
            Transform::Phone(_) => "phone",
            Transform::GenderNormalize(_) => "gender_normalize",
            Transform::Boolean => "boolean",
            Transform::Split(_) => "split",
            Transform::Map(_) => "map",
            Transform::Lookup(_) => "lookup",
            Transform::NewId => "new_id",
            Transform::Hash => "hash",
            Transform::ByteLength => "byte_length",
            Transform::StoreFile(_) => "store_file",
            Transform::DetectMime => "detect_mime",
            Transform::Roles(_) => "roles",
            Transform::RolesToPermissions(_) => "roles_to_permissions",
            Transform::Utf8 => "utf8",
            Transform::ConfigKey(_) => "config_key",
            Transform::ConfigValue(_) => "config_value",
        }
    }

    /// Pure transforms. Lookup and NewId return Err (the engine handles them before calling this).
    pub fn apply(&self, v: Value) -> Result<TransformOutcome, TransformError> {
        let name = self.name();
        let plain = |r: Result<Value, String>| {
            r.map(done).map_err(|reason| TransformError {
                transform: name,
                reason,
            })
        };
        match self {
            Transform::Trim => Ok(done(trim(v))),
            Transform::Upper => Ok(done(upper(v))),
            Transform::Lower => Ok(done(lower(v))),
            Transform::EmptyToNull => Ok(done(if v.is_blank() { Value::Null } else { v })),
            Transform::Default(lit) => Ok(done(if v.is_blank() { lit.to_value() } else { v })),
            Transform::Date(spec) => settle(name, spec.on_error, to_date(spec, v)),
            Transform::Datetime(spec) => settle(name, spec.on_error, to_datetime(spec, v)),
            Transform::Phone(spec) => settle(name, spec.on_error, to_phone(spec, v)),
            Transform::GenderNormalize(spec) => Ok(done(spec.normalize(v))),
            Transform::Boolean => plain(to_bool(v)),
            Transform::Split(spec) => plain(spec.split(v)),
            Transform::Map(spec) => plain(spec.map(v)),
            Transform::Hash => plain(hash(v)),
            Transform::ByteLength => plain(byte_length(v)),
            Transform::DetectMime => plain(to_mime(v)),
            Transform::Roles(spec) => with_warning(name, spec.roles(v)),
            Transform::RolesToPermissions(spec) => with_warning(name, spec.permissions(v)),
            Transform::Utf8 => plain(to_utf8(v)),
            Transform::ConfigKey(spec) => with_warning(name, spec.new_key(v)),
            Transform::ConfigValue(_) => Err(TransformError {
                transform: name,
                reason: "config_value is resolved by the engine (it reads the row's key)".into(),
            }),
            Transform::StoreFile(_) => Err(TransformError {
                transform: name,
                reason: "store_file is resolved by the engine".into(),
            }),
            Transform::Lookup(_) | Transform::NewId => Err(TransformError {
                transform: name,
                reason: format!("{name} is resolved by the engine through the ID map"),
            }),
        }
    }
}

/// A conversion that may let a value through with a warning (a dropped role, a kept key).
fn with_warning(
    transform: &'static str,
    r: Result<(Value, Option<String>), String>,
) -> Result<TransformOutcome, TransformError> {
    r.map(|(value, warning)| TransformOutcome { value, warning })
        .map_err(|reason| TransformError { transform, reason })
}

fn done(value: Value) -> TransformOutcome {
    TransformOutcome { value, warning: None }
}

/// Applies `on_error` to a conversion that hands back the original value on failure (so
/// `keep_warn` needs no clone).
fn settle(
    transform: &'static str,
    on_error: OnError,
    r: Result<Value, (Value, String)>,
) -> Result<TransformOutcome, TransformError> {
    match r {
        Ok(value) => Ok(done(value)),
        Err((original, reason)) => match on_error {
            OnError::Reject => Err(TransformError { transform, reason }),
            OnError::NullWarn => Ok(TransformOutcome {
                value: Value::Null,
                warning: Some(format!("{reason}; set to NULL")),
            }),
            OnError::KeepWarn => Ok(TransformOutcome {
                value: original,
                warning: Some(format!("{reason}; kept unchanged")),
            }),
        },
    }
}

impl Literal {
    pub fn to_value(&self) -> Value {
        match self {
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Int(i) => Value::Int(*i),
            Literal::Real(f) => Value::Real(*f),
            Literal::Text(s) => Value::Text(s.clone()),
        }
    }
}

/// Helpers the unit tests of every transform file share.
#[cfg(test)]
mod testing {
    use super::*;

    pub(super) fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    pub(super) fn ok(t: &Transform, v: Value) -> Value {
        match t.apply(v) {
            Ok(o) => {
                assert_eq!(o.warning, None);
                o.value
            }
            Err(e) => panic!("{} failed: {}", t.name(), e.reason),
        }
    }

    pub(super) fn err(t: &Transform, v: Value) -> String {
        match t.apply(v) {
            Ok(o) => panic!("{} unexpectedly gave {:?}", t.name(), o.value),
            Err(e) => {
                assert_eq!(e.transform, t.name());
                e.reason
            }
        }
    }

    pub(super) fn date() -> Transform {
        Transform::Date(DateSpec::default())
    }

    pub(super) fn datetime() -> Transform {
        Transform::Datetime(DateSpec::default())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{datetime, err, ok, text};
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Transform::EmptyToNull.name(), "empty_to_null");
        assert_eq!(
            Transform::GenderNormalize(GenderSpec::default()).name(),
            "gender_normalize"
        );
        assert_eq!(Transform::NewId.name(), "new_id");
        assert_eq!(datetime().name(), "datetime");
    }

    #[test]
    fn empty_to_null_and_default() {
        let e = Transform::EmptyToNull;
        assert_eq!(ok(&e, text("  ")), Value::Null);
        assert_eq!(ok(&e, text("")), Value::Null);
        assert_eq!(ok(&e, text(" x ")), text(" x "));
        assert_eq!(ok(&e, Value::Int(0)), Value::Int(0));
        let d = Transform::Default(Literal::Text("unknown".into()));
        assert_eq!(ok(&d, Value::Null), text("unknown"));
        assert_eq!(ok(&d, text(" ")), text("unknown"));
        assert_eq!(ok(&d, text("known")), text("known"));
        assert_eq!(ok(&Transform::Default(Literal::Int(7)), Value::Null), Value::Int(7));
        assert_eq!(
            ok(&Transform::Default(Literal::Bool(false)), Value::Null),
            Value::Bool(false)
        );
        assert_eq!(
            ok(&Transform::Default(Literal::Real(0.5)), Value::Null),
            Value::Real(0.5)
        );
    }

    #[test]
    fn on_error_modes() {
        let spec = |on_error| {
            Transform::Date(DateSpec {
                on_error,
                ..DateSpec::default()
            })
        };
        let bad = || text("2021-02-30");

        let e = spec(OnError::Reject).apply(bad()).unwrap_err();
        assert_eq!(e.transform, "date");
        assert_eq!(e.to_string(), "date '2021-02-30' is not a real date");

        let o = spec(OnError::NullWarn).apply(bad()).unwrap();
        assert_eq!(o.value, Value::Null);
        assert_eq!(
            o.warning.as_deref(),
            Some("date '2021-02-30' is not a real date; set to NULL")
        );

        let o = spec(OnError::KeepWarn).apply(bad()).unwrap();
        assert_eq!(o.value, bad());
        assert_eq!(
            o.warning.as_deref(),
            Some("date '2021-02-30' is not a real date; kept unchanged")
        );

        // Good input never warns, whatever the mode.
        let o = spec(OnError::NullWarn).apply(text("2021-02-03")).unwrap();
        assert_eq!((o.value, o.warning), (text("2021-02-03"), None));

        let p = Transform::Phone(PhoneSpec {
            on_error: OnError::NullWarn,
            ..PhoneSpec::default()
        });
        let o = p.apply(text("call me")).unwrap();
        assert_eq!(o.value, Value::Null);
        assert_eq!(
            o.warning.as_deref(),
            Some("phone 'call me' is not a number; set to NULL")
        );
        let p = Transform::Phone(PhoneSpec {
            on_error: OnError::KeepWarn,
            ..PhoneSpec::default()
        });
        assert_eq!(p.apply(text("call me")).unwrap().value, text("call me"));
        let dt = Transform::Datetime(DateSpec {
            on_error: OnError::KeepWarn,
            ..DateSpec::default()
        });
        let o = dt.apply(Value::Int(5)).unwrap();
        assert_eq!(o.value, Value::Int(5));
        assert!(o.warning.is_some());
    }

    #[test]
    fn engine_transforms_refuse_apply() {
        let l = Transform::Lookup(LookupSpec::Map(MapLookup {
            map: "users".into(),
            on_missing: OnError::Reject,
        }));
        assert!(err(&l, Value::Int(1)).contains("resolved by the engine"));
        assert!(err(&Transform::NewId, Value::Null).contains("resolved by the engine"));
    }
}
