//! Reading a transform chain from `step.toml` (and JSON): a bare name or a one-key table.
//! Written by hand because serde's derived enum reader cannot take `"date"` as a bare name
//! for a variant that carries options. Options are checked by each kind's own deserialiser.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{DateSpec, GenderSpec, Literal, PhoneSpec, SplitSpec, Transform};

const NAMES: &[&str] = &[
    "trim",
    "upper",
    "lower",
    "empty_to_null",
    "default",
    "date",
    "datetime",
    "phone",
    "gender_normalize",
    "boolean",
    "split",
    "map",
    "lookup",
    "new_id",
    "hash",
    "byte_length",
    "store_file",
    "detect_mime",
    "roles",
    "roles_to_permissions",
    "utf8",
    "config_key",
    "config_value",
];

/// A transform written as a bare name: the option-less ones, and those whose options all
/// have defaults.
fn bare(name: &str) -> Option<Transform> {
    Some(match name {
        "trim" => Transform::Trim,
        "upper" => Transform::Upper,
        "lower" => Transform::Lower,
        "empty_to_null" => Transform::EmptyToNull,
        "boolean" => Transform::Boolean,
        "new_id" => Transform::NewId,
        "hash" => Transform::Hash,
        "byte_length" => Transform::ByteLength,
        "detect_mime" => Transform::DetectMime,
        "utf8" => Transform::Utf8,
        "date" => Transform::Date(DateSpec::default()),
        "datetime" => Transform::Datetime(DateSpec::default()),
        "phone" => Transform::Phone(PhoneSpec::default()),
        "gender_normalize" => Transform::GenderNormalize(GenderSpec::default()),
        "split" => Transform::Split(SplitSpec::default()),
        _ => return None,
    })
}

/// The empty table of `{ trim = {} }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

impl<'de> Deserialize<'de> for Transform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TransformVisitor)
    }
}

struct TransformVisitor;

impl<'de> Visitor<'de> for TransformVisitor {
    type Value = Transform;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a transform name such as \"trim\" or a one-key table such as { date = {} }")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Transform, E> {
        match bare(s) {
            Some(t) => Ok(t),
            None if NAMES.contains(&s) => Err(E::custom(format_args!(
                "transform `{s}` needs options; write it as a table: {{ {s} = ... }}"
            ))),
            None => Err(E::unknown_variant(s, NAMES)),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Transform, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        let t = match key.as_str() {
            "default" => Transform::Default(map.next_value()?),
            "date" => Transform::Date(map.next_value()?),
            "datetime" => Transform::Datetime(map.next_value()?),
            "phone" => Transform::Phone(map.next_value()?),
            "gender_normalize" => Transform::GenderNormalize(map.next_value()?),
            "split" => Transform::Split(map.next_value()?),
            "map" => Transform::Map(map.next_value()?),
            "lookup" => Transform::Lookup(map.next_value()?),
            "store_file" => Transform::StoreFile(map.next_value()?),
            "roles" => Transform::Roles(map.next_value()?),
            "roles_to_permissions" => Transform::RolesToPermissions(map.next_value()?),
            "config_key" => Transform::ConfigKey(map.next_value()?),
            "config_value" => Transform::ConfigValue(map.next_value()?),
            other => match bare(other) {
                Some(t) => {
                    map.next_value::<NoOptions>()?;
                    t
                }
                None => return Err(de::Error::unknown_variant(other, NAMES)),
            },
        };
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(format_args!(
                "a transform table has exactly one key; put `{key}` in its own {{ }}"
            )));
        }
        Ok(t)
    }
}

impl<'de> Deserialize<'de> for Literal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LiteralVisitor)
    }
}

struct LiteralVisitor;

impl Visitor<'_> for LiteralVisitor {
    type Value = Literal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, integer, float or boolean")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Literal, E> {
        Ok(Literal::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Literal, E> {
        Ok(Literal::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Literal, E> {
        i64::try_from(v)
            .map(Literal::Int)
            .map_err(|_| E::custom(format_args!("default {v} does not fit a 64-bit integer")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Literal, E> {
        Ok(Literal::Real(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Literal, E> {
        Ok(Literal::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Literal, E> {
        Ok(Literal::Text(v))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::engine::transform::testing::{date, datetime};
    use crate::engine::transform::{LookupSpec, MapLookup, MapSpec, OnError, Otherwise};

    #[derive(Deserialize)]
    struct Field {
        transforms: Vec<Transform>,
    }

    fn parse(toml_text: &str) -> Result<Vec<Transform>, String> {
        toml::from_str::<Field>(toml_text)
            .map(|f| f.transforms)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn toml_form_from_the_step_docs() {
        let src = r#"transforms = ["trim", "lower", "empty_to_null", { default = "unknown" }, { date = { formats = ["%Y-%m-%d", "%m/%d/%Y"], on_error = "reject" } }, { phone = { country = "US", on_error = "null_warn" } }, { gender_normalize = {} }, "boolean", { split = { separator = "," } }, { map = { values = { Parent = "parent", PARENT = "parent", doctor = "clinician" }, otherwise = "reject" } }, { lookup = { map = "users", on_missing = "reject" } }, "new_id"]"#;
        let ts = parse(src).unwrap();
        let values: BTreeMap<String, String> = [("Parent", "parent"), ("PARENT", "parent"), ("doctor", "clinician")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            ts,
            vec![
                Transform::Trim,
                Transform::Lower,
                Transform::EmptyToNull,
                Transform::Default(Literal::Text("unknown".into())),
                Transform::Date(DateSpec {
                    formats: vec!["%Y-%m-%d".into(), "%m/%d/%Y".into()],
                    on_error: OnError::Reject,
                    excel_serial: false,
                }),
                Transform::Phone(PhoneSpec {
                    country: "US".into(),
                    on_error: OnError::NullWarn
                }),
                Transform::GenderNormalize(GenderSpec::default()),
                Transform::Boolean,
                Transform::Split(SplitSpec::default()),
                Transform::Map(MapSpec {
                    values,
                    case_insensitive: true,
                    otherwise: Otherwise::Reject,
                    otherwise_value: None,
                }),
                Transform::Lookup(LookupSpec::Map(MapLookup {
                    map: "users".into(),
                    on_missing: OnError::Reject
                })),
                Transform::NewId,
            ]
        );
    }

    #[test]
    fn toml_bare_names_take_defaults() {
        let ts = parse(
            r#"transforms = ["date", "datetime", "phone", "gender_normalize", "split", "upper", "hash", { trim = {} }]"#,
        )
        .unwrap();
        assert_eq!(
            ts,
            vec![
                date(),
                datetime(),
                Transform::Phone(PhoneSpec::default()),
                Transform::GenderNormalize(GenderSpec::default()),
                Transform::Split(SplitSpec::default()),
                Transform::Upper,
                Transform::Hash,
                Transform::Trim,
            ]
        );
    }

    #[test]
    fn toml_literals_and_options() {
        let ts = parse(
            r#"transforms = [{ default = 0 }, { default = 1.5 }, { default = true }, { phone = { country = "gb" } }, { gender_normalize = { male = "M", map = { "1" = "M" } } }, { split = { separator = ";", trim = false, drop_empty = false } }, { date = { on_error = "keep_warn" } }]"#,
        )
        .unwrap();
        assert_eq!(ts[0], Transform::Default(Literal::Int(0)));
        assert_eq!(ts[1], Transform::Default(Literal::Real(1.5)));
        assert_eq!(ts[2], Transform::Default(Literal::Bool(true)));
        // Country codes are normalised to upper case when the step is read.
        assert_eq!(
            ts[3],
            Transform::Phone(PhoneSpec {
                country: "GB".into(),
                ..Default::default()
            })
        );
        let Transform::GenderNormalize(g) = &ts[4] else {
            panic!("{:?}", ts[4])
        };
        assert_eq!((g.male.as_str(), g.female.as_str()), ("M", "female"));
        assert_eq!(
            ts[5],
            Transform::Split(SplitSpec {
                separator: ";".into(),
                trim: false,
                drop_empty: false
            })
        );
        assert_eq!(
            ts[6],
            Transform::Date(DateSpec {
                on_error: OnError::KeepWarn,
                ..DateSpec::default()
            })
        );
    }

    #[test]
    fn toml_mistakes_are_reported_at_load() {
        let cases = [
            (r#"transforms = ["trimm"]"#, "unknown variant"),
            (r#"transforms = ["map"]"#, "needs options"),
            (r#"transforms = ["default"]"#, "needs options"),
            (r#"transforms = [{ date = {}, trim = {} }]"#, "exactly one key"),
            (
                r#"transforms = [{ date = { formats = ["%Y-%Q"] } }]"#,
                "not a valid strftime",
            ),
            (r#"transforms = [{ date = { formats = [] } }]"#, "at least one format"),
            (r#"transforms = [{ date = { on_eror = "reject" } }]"#, "unknown field"),
            (r#"transforms = [{ phone = { country = "XX" } }]"#, "not supported"),
            (r#"transforms = [{ split = { separator = "" } }]"#, "must not be empty"),
            (r#"transforms = [{ map = { otherwise = "keep" } }]"#, "missing field"),
            (
                r#"transforms = [{ map = { values = {}, otherwise = "drop" } }]"#,
                "unknown variant",
            ),
            (r#"transforms = [{ trim = { x = 1 } }]"#, "unknown field"),
            (
                r#"transforms = [{ default = [1] }]"#,
                "string, integer, float or boolean",
            ),
        ];
        for (src, want) in cases {
            let e = parse(src).unwrap_err();
            assert!(e.contains(want), "{src}: {e}");
        }
    }

    #[test]
    fn json_round_trip() {
        let ts = vec![
            Transform::Trim,
            Transform::Default(Literal::Int(3)),
            date(),
            Transform::Phone(PhoneSpec::default()),
            Transform::Map(MapSpec {
                values: BTreeMap::from([("a".into(), "b".into())]),
                case_insensitive: false,
                otherwise: Otherwise::Keep,
                otherwise_value: None,
            }),
            Transform::NewId,
        ];
        let s = serde_json::to_string(&ts).unwrap();
        let back: Vec<Transform> = serde_json::from_str(&s).unwrap();
        assert_eq!(back, ts);
    }
}
