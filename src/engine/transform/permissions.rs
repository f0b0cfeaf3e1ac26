//! Users and roles: `roles` (a legacy role list becomes a JSON array of known role names) and
//! `roles_to_permissions` (the same list becomes the permission strings its roles grant), and
//! `utf8` (binary data becomes text only when it is valid UTF-8, for values such as password
//! hashes that must arrive byte for byte and can be neither summarised nor re-encoded).
//!
//! A role list is read from text separated by commas, semicolons or white space
//! (`clinician, admin`), from text holding a JSON array (`["admin"]`), or from a JSON array;
//! each role is trimmed and lower-cased, and a role listed twice counts once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::reason::{Quoted, Shown, kind_name};
use crate::engine::value::Value;

/// What a role transform does with a role its table does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnUnknownRole {
    /// Reject the row (rule `roles` for `roles`; the transform's name otherwise).
    #[default]
    Reject,
    /// Drop the role and record a warning.
    Ignore,
    /// Drop the role silently: for a second field reading the same roles, whose unknown
    /// roles a first field already reported.
    Drop,
}

/// Options of `roles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesSpec {
    /// The role names that exist (compared lower-cased).
    pub known: Vec<String>,
    #[serde(default)]
    pub on_unknown: OnUnknownRole,
}

/// Options of `roles_to_permissions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesToPermissionsSpec {
    /// Role -> the permission strings it grants (placeholders such as `{_id}` are rendered
    /// when the document is finished, not here). Role names are compared lower-cased.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Permissions every row gets, whatever its roles.
    #[serde(default)]
    pub every: Vec<String>,
    #[serde(default)]
    pub on_unknown: OnUnknownRole,
}

/// A role list's roles: trimmed, lower-cased, each once, in the order given.
pub(super) fn role_list(v: &Value) -> Result<Vec<String>, String> {
    let items: Vec<String> = match v {
        Value::Null => Vec::new(),
        Value::Json(serde_json::Value::Array(a)) => json_strings(a)?,
        Value::Text(s) if s.trim_start().starts_with('[') => match serde_json::from_str(s.trim()) {
            Ok(serde_json::Value::Array(a)) => json_strings(&a)?,
            _ => return Err(format!("roles {} is not a JSON array of role names", Quoted(s))),
        },
        Value::Text(s) => s
            .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .map(str::to_string)
            .collect(),
        other => {
            return Err(format!(
                "roles expects text or a JSON array, got {} {}",
                kind_name(other),
                Shown(other)
            ));
        }
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let role = item.trim().to_lowercase();
        if !role.is_empty() && !out.contains(&role) {
            out.push(role);
        }
    }
    Ok(out)
}

fn json_strings(a: &[serde_json::Value]) -> Result<Vec<String>, String> {
    a.iter()
        .map(|x| match x {
            serde_json::Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "roles: {} in the role array is not a role name",
                Quoted(&other.to_string())
            )),
        })
        .collect()
}

/// Splits roles into (known, unknown) by `is_known`, applying `on_unknown`: a reject's reason
/// names the unknown roles and the known ones; a warning names the dropped roles.
fn settle_unknown(
    roles: Vec<String>,
    is_known: impl Fn(&str) -> bool,
    known_names: impl Fn() -> Vec<String>,
    on_unknown: OnUnknownRole,
) -> Result<(Vec<String>, Option<String>), String> {
    let (known, unknown): (Vec<String>, Vec<String>) = roles.into_iter().partition(|r| is_known(r));
    if unknown.is_empty() {
        return Ok((known, None));
    }
    let listed = unknown
        .iter()
        .map(|r| Quoted(r).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let plural = if unknown.len() == 1 { "role" } else { "roles" };
    match on_unknown {
        OnUnknownRole::Reject => {
            let mut names = known_names();
            names.sort();
            Err(format!("unknown {plural} {listed} (known roles: {})", names.join(", ")))
        }
        OnUnknownRole::Ignore => Ok((known, Some(format!("unknown {plural} {listed} dropped")))),
        OnUnknownRole::Drop => Ok((known, None)),
    }
}

impl RolesSpec {
    /// The known roles of a role list as a JSON array, and a warning for dropped ones.
    pub(super) fn roles(&self, v: Value) -> Result<(Value, Option<String>), String> {
        let roles = role_list(&v)?;
        let (known, warning) = settle_unknown(
            roles,
            |r| self.known.iter().any(|k| k.to_lowercase() == r),
            || self.known.iter().map(|k| k.to_lowercase()).collect(),
            self.on_unknown,
        )?;
        let array = known.into_iter().map(serde_json::Value::String).collect();
        Ok((Value::Json(serde_json::Value::Array(array)), warning))
    }
}

impl RolesToPermissionsSpec {
    fn granted(&self, role: &str) -> Option<&Vec<String>> {
        self.roles.get(role).or_else(|| {
            self.roles
                .iter()
                .find(|(k, _)| k.to_lowercase() == role)
                .map(|(_, v)| v)
        })
    }

    /// The permissions of a role list as a JSON array of strings: `every` first, then each
    /// role's in the order the roles are listed; a permission granted twice appears once.
    pub(super) fn permissions(&self, v: Value) -> Result<(Value, Option<String>), String> {
        let roles = role_list(&v)?;
        let (known, warning) = settle_unknown(
            roles,
            |r| self.granted(r).is_some(),
            || self.roles.keys().map(|k| k.to_lowercase()).collect(),
            self.on_unknown,
        )?;
        let mut out: Vec<&String> = Vec::new();
        let granted = known.iter().filter_map(|r| self.granted(r)).flatten();
        for p in self.every.iter().chain(granted) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        let array = out.into_iter().map(|p| serde_json::Value::String(p.clone())).collect();
        Ok((Value::Json(serde_json::Value::Array(array)), warning))
    }
}

/// `utf8`: text passes unchanged (not trimmed, not normalised); bytes become text when they
/// are valid UTF-8. The reason never quotes the value: this guards secrets.
pub(super) fn to_utf8(v: Value) -> Result<Value, String> {
    match v {
        Value::Bytes(b) => String::from_utf8(b.bytes)
            .map(Value::Text)
            .map_err(|_| format!("{} bytes are not valid UTF-8 text", b.bytes_len)),
        Value::Null | Value::Text(_) => Ok(v),
        other => Err(format!("utf8 expects text or bytes, got {}", kind_name(&other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transform::testing::{err, ok, text};
    use crate::engine::transform::{Transform, TransformOutcome};
    use serde_json::json;

    fn role_map() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([
            ("admin".into(), vec![r#"read("any")"#.into(), r#"write("any")"#.into()]),
            (
                "Clinician".into(),
                vec![r#"read("team:clinicians")"#.into(), r#"read("any")"#.into()],
            ),
            ("patient".into(), vec![]),
        ])
    }

    fn perms(on_unknown: OnUnknownRole) -> Transform {
        Transform::RolesToPermissions(RolesToPermissionsSpec {
            roles: role_map(),
            every: vec![r#"read("user:{_id}")"#.into()],
            on_unknown,
        })
    }

    fn roles(on_unknown: OnUnknownRole) -> Transform {
        Transform::Roles(RolesSpec {
            known: vec!["admin".into(), "Clinician".into(), "patient".into()],
            on_unknown,
        })
    }

    #[test]
    fn role_lists_are_read_from_separated_text_or_json() {
        let r = roles(OnUnknownRole::Reject);
        let want = Value::Json(json!(["clinician", "admin"]));
        for input in [
            text("clinician,admin"),
            text(" Clinician ; ADMIN "),
            text("clinician admin\tclinician"),
            text("clinician,,admin,"),
            text(r#"["clinician", "Admin"]"#),
            text(r#"  [" clinician","admin","admin"]"#),
            Value::Json(json!(["CLINICIAN", "admin"])),
        ] {
            assert_eq!(ok(&r, input.clone()), want, "{input:?}");
        }
        assert_eq!(ok(&r, Value::Null), Value::Json(json!([])));
        assert_eq!(ok(&r, text("  ")), Value::Json(json!([])));
        assert_eq!(
            err(&r, text("[admin")),
            "roles '[admin' is not a JSON array of role names"
        );
        assert_eq!(err(&r, text("[1]")), "roles: '1' in the role array is not a role name");
        assert_eq!(
            err(&r, Value::Int(3)),
            "roles expects text or a JSON array, got integer '3'"
        );
    }

    #[test]
    fn unknown_roles_reject_or_warn_or_drop() {
        assert_eq!(
            err(&roles(OnUnknownRole::Reject), text("admin, nurse")),
            "unknown role 'nurse' (known roles: admin, clinician, patient)"
        );
        assert_eq!(
            err(&perms(OnUnknownRole::Reject), text("nurse;Porter;admin")),
            "unknown roles 'nurse', 'porter' (known roles: admin, clinician, patient)"
        );
        let o = roles(OnUnknownRole::Ignore).apply(text("admin, nurse")).unwrap();
        assert_eq!(
            o,
            TransformOutcome {
                value: Value::Json(json!(["admin"])),
                warning: Some("unknown role 'nurse' dropped".into()),
            }
        );
        let o = perms(OnUnknownRole::Ignore).apply(text("nurse")).unwrap();
        assert_eq!(o.value, Value::Json(json!([r#"read("user:{_id}")"#])));
        assert_eq!(o.warning.as_deref(), Some("unknown role 'nurse' dropped"));
        let o = perms(OnUnknownRole::Drop).apply(text("nurse admin")).unwrap();
        assert_eq!(o.warning, None);
        assert_eq!(
            o.value,
            Value::Json(json!([r#"read("user:{_id}")"#, r#"read("any")"#, r#"write("any")"#]))
        );
    }

    #[test]
    fn permissions_are_every_then_each_role_in_order_without_duplicates() {
        let p = perms(OnUnknownRole::Reject);
        assert_eq!(
            ok(&p, text("CLINICIAN,admin")),
            Value::Json(json!([
                r#"read("user:{_id}")"#,
                r#"read("team:clinicians")"#,
                r#"read("any")"#,
                r#"write("any")"#
            ]))
        );
        assert_eq!(
            ok(&p, text("admin clinician")),
            Value::Json(json!([
                r#"read("user:{_id}")"#,
                r#"read("any")"#,
                r#"write("any")"#,
                r#"read("team:clinicians")"#
            ]))
        );
        // A role granting nothing, and no role at all, leave the permissions of every user.
        assert_eq!(ok(&p, text("patient")), Value::Json(json!([r#"read("user:{_id}")"#])));
        assert_eq!(ok(&p, Value::Null), Value::Json(json!([r#"read("user:{_id}")"#])));
    }

    #[test]
    fn utf8_carries_text_untouched_and_refuses_bad_bytes_without_the_value() {
        let u = Transform::Utf8;
        let hash = "  $2b$12$abc/DEF.ghi  ";
        assert_eq!(ok(&u, text(hash)), text(hash));
        assert_eq!(ok(&u, Value::bytes(hash.as_bytes().to_vec())), text(hash));
        assert_eq!(ok(&u, Value::Null), Value::Null);
        let reason = err(&u, Value::bytes(vec![b'$', 0xff, 0xfe, b'x']));
        assert_eq!(reason, "4 bytes are not valid UTF-8 text");
        assert_eq!(err(&u, Value::Int(7)), "utf8 expects text or bytes, got integer");
    }

    #[test]
    fn parsed_from_toml() {
        #[derive(Deserialize)]
        struct Field {
            transforms: Vec<Transform>,
        }
        let f: Field = toml::from_str(
            r#"transforms = ["utf8", { roles = { known = ["admin"], on_unknown = "ignore" } }, { roles_to_permissions = { roles = { admin = ['read("any")'] }, every = ['read("user:{_id}")'], on_unknown = "reject" } }]"#,
        )
        .unwrap();
        assert_eq!(f.transforms[0], Transform::Utf8);
        assert_eq!(f.transforms[1], roles_known_admin(OnUnknownRole::Ignore));
        assert_eq!(
            f.transforms[2],
            Transform::RolesToPermissions(RolesToPermissionsSpec {
                roles: BTreeMap::from([("admin".into(), vec![r#"read("any")"#.into()])]),
                every: vec![r#"read("user:{_id}")"#.into()],
                on_unknown: OnUnknownRole::Reject,
            })
        );
        let e = toml::from_str::<Field>(r#"transforms = [{ roles_to_permissions = { role = {} } }]"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("unknown field `role`"), "{e}");
        let e = toml::from_str::<Field>(r#"transforms = [{ roles = { known = [], on_unknown = "skip" } }]"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("unknown variant `skip`"), "{e}");
    }

    fn roles_known_admin(on_unknown: OnUnknownRole) -> Transform {
        Transform::Roles(RolesSpec {
            known: vec!["admin".into()],
            on_unknown,
        })
    }
}
