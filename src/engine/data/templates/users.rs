//! `kind = "users"`: legacy accounts into a users collection. The email (trimmed, lower-cased,
//! checked) is the natural key; the password hash is carried byte for byte into
//! `password.hash` and never shown; roles become `roles` and the document's permissions.

use std::collections::BTreeMap;

use super::{CollectionTarget, TemplateIdMap, check_extra_fields, check_permission, column, field, pass_through};
use crate::engine::transform::{Literal, OnUnknownRole, RolesSpec, RolesToPermissionsSpec, Transform};
use crate::engine::validate::is_secret_field;
use color_eyre::eyre::{Result, eyre};
use serde::Deserialize;
use toml::{Table, Value};

/// The role name that stands for every user in `[users.role_permissions]`.
const EVERY_USER: &str = "*";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersStep {
    #[allow(dead_code)]
    kind: String,
    description: Option<String>,
    source: Value,
    #[serde(default)]
    target: UsersTarget,
    id_map: Option<TemplateIdMap>,
    users: Option<UsersSpec>,
    #[serde(default)]
    fields: Vec<Table>,
    batch_size: Option<i64>,
    continue_on_error: Option<bool>,
    sync: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersTarget {
    collection: Option<String>,
    on_duplicate: Option<Value>,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    indexes: Vec<String>,
    max_document_bytes: Option<i64>,
}

/// What the users template does with a role `role_permissions` does not name.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum UnknownRole {
    #[default]
    Reject,
    Ignore,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersSpec {
    email: Option<String>,
    name: Option<String>,
    password_hash: Option<String>,
    hash_algorithm: Option<String>,
    roles: Option<String>,
    #[serde(default)]
    on_unknown_role: UnknownRole,
    #[serde(default)]
    role_permissions: BTreeMap<String, Vec<String>>,
}

/// The paths the template writes (extra fields may not write them again).
const WRITTEN: &[&str] = &["email", "name", "password", "roles", "_permissions"];

pub(super) fn expand(text: &str) -> Result<Table> {
    let step: UsersStep = toml::from_str(text).map_err(|e| eyre!("{}", e.to_string().trim_end()))?;
    let users = step.users.ok_or_else(|| {
        eyre!("a users step needs a [users] table: email = \"...\" and password_hash = \"...\" name its source columns")
    })?;
    let email = column("users", "email", users.email, "the email addresses")?;
    let hash = column("users", "password_hash", users.password_hash, "the password hashes")?;
    // Rejected rows are stored and shown with their source columns, redacted by name: a
    // column whose name does not look secret would show the hash.
    if !is_secret_field(&hash) {
        return Err(eyre!(
            "[users] password_hash = \"{hash}\": rejects and reports hide a column by its name, and \"{hash}\" does not look secret; read it under a name holding \"password\" or \"hash\" (a [source] query with {hash} AS password_hash)"
        ));
    }
    let (named, every) = role_table(users.role_permissions)?;
    if users.roles.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return Err(eyre!(
            "[users] roles is empty: name the source column holding each user's roles"
        ));
    }
    if users.roles.is_none() && !named.is_empty() {
        return Err(eyre!(
            "[users.role_permissions] maps roles, but [users] roles names no source column to read them from"
        ));
    }
    if users.roles.is_some() && named.is_empty() {
        return Err(eyre!(
            "[users.role_permissions] names no role: map each role of [users] roles to the permissions it grants (admin = ['read(\"any\")'])"
        ));
    }
    let on_unknown = match users.on_unknown_role {
        UnknownRole::Reject => OnUnknownRole::Reject,
        UnknownRole::Ignore => OnUnknownRole::Ignore,
    };
    for p in &step.target.permissions {
        check_permission("[target] permissions", p)?;
    }
    check_extra_fields("users", WRITTEN, &step.fields)?;

    let mut fields = vec![field(
        "email",
        Some(&email),
        None,
        &[Transform::Trim, Transform::Lower],
        &["required", "email"],
    )?];
    if let Some(name) = &users.name {
        fields.push(field(
            "name",
            Some(name),
            None,
            &[Transform::Trim, Transform::EmptyToNull],
            &[],
        )?);
    }
    // Not trimmed, not validated: the hash is carried as the source holds it (bytes must be
    // UTF-8 text, or the row is rejected without showing them).
    fields.push(field("password.hash", Some(&hash), None, &[Transform::Utf8], &[])?);
    if let Some(algorithm) = &users.hash_algorithm {
        fields.push(field(
            "password.algorithm",
            None,
            Some(Literal::Text(algorithm.clone())),
            &[],
            &[],
        )?);
    }
    if let Some(roles) = &users.roles {
        let known = RolesSpec {
            known: named.keys().cloned().collect(),
            on_unknown,
        };
        fields.push(field("roles", Some(roles), None, &[Transform::Roles(known)], &[])?);
    }
    // The `roles` field above already rejected or reported unknown roles: dropped silently here.
    let granted = RolesToPermissionsSpec {
        roles: named,
        every,
        on_unknown: OnUnknownRole::Drop,
    };
    fields.push(field(
        "_permissions",
        users.roles.as_deref(),
        None,
        &[Transform::RolesToPermissions(granted)],
        &[],
    )?);
    fields.extend(step.fields.into_iter().map(Value::Table));

    let mut out = Table::new();
    out.insert("kind".into(), Value::String("users".into()));
    pass_through(
        &mut out,
        step.description,
        step.source,
        step.batch_size,
        step.continue_on_error,
        step.sync,
    );
    let target = CollectionTarget {
        collection: step.target.collection.unwrap_or_else(|| "users".into()),
        natural_key: "email",
        on_duplicate: step.target.on_duplicate,
        permissions: step.target.permissions,
        indexes: step.target.indexes,
        max_document_bytes: step.target.max_document_bytes,
    };
    out.insert("target".into(), target.table());
    out.insert("id_map".into(), step.id_map.unwrap_or_default().table("users"));
    out.insert("fields".into(), Value::Array(fields));
    Ok(out)
}

/// Role -> the permission strings it grants.
type RoleTable = BTreeMap<String, Vec<String>>;

/// `[users.role_permissions]` as (named roles lower-cased, the permissions of every user).
fn role_table(table: RoleTable) -> Result<(RoleTable, Vec<String>)> {
    if table.is_empty() {
        return Err(eyre!(
            "[users.role_permissions] is empty: map each role to the permission strings it grants (admin = ['read(\"any\")', 'write(\"any\")']), and \"*\" to those every user gets"
        ));
    }
    let mut named: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut every = Vec::new();
    for (role, perms) in table {
        let section = format!("[users.role_permissions] {role}");
        for p in &perms {
            check_permission(&section, p)?;
        }
        let key = role.trim().to_lowercase();
        if key == EVERY_USER {
            every = perms;
            continue;
        }
        if key.is_empty() || key.contains(|c: char| c == ',' || c == ';' || c.is_whitespace()) {
            return Err(eyre!(
                "[users.role_permissions] {role:?} is not a role name (no blanks, commas or semicolons)"
            ));
        }
        if named.insert(key.clone(), perms).is_some() {
            return Err(eyre!(
                "[users.role_permissions] names role '{key}' twice (role names are compared lower-cased)"
            ));
        }
    }
    Ok((named, every))
}
