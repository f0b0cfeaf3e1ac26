//! Collection targets: `[target] collection = "appointments"` writes one JSON document per
//! source row into a table the tool creates (`_id`, `data`, `_permissions`, `_created_at`,
//! `_updated_at`, `_key`).
//!
//! A collection step is an ordinary data step after [`normalize`]: field targets become paths
//! into the `data` column, the natural key becomes the `_key` column, so duplicates, the ID
//! map, rejects, checkpoints and rollback work unchanged. What is left to do per row is the
//! finishing ([`CollectionTarget::finish_document`]): the id, permissions, timestamps, `_key`
//! and the size limit, at the very end of `process()`.

use crate::engine::db::DbTx;
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};

pub const ID: &str = "_id";
pub const DATA: &str = "data";
pub const PERMISSIONS: &str = "_permissions";
pub const CREATED_AT: &str = "_created_at";
pub const UPDATED_AT: &str = "_updated_at";
pub const KEY: &str = "_key";

/// Every column of a collection table, in the order the tool creates them.
pub const COLUMNS: [&str; 6] = [ID, DATA, PERMISSIONS, CREATED_AT, UPDATED_AT, KEY];

/// The `_`-targets a field may fill (the others are the tool's).
const FIELD_COLUMNS: [&str; 3] = [CREATED_AT, UPDATED_AT, PERMISSIONS];

/// A collection or path segment the tool puts into SQL (index names, JSON paths): letters,
/// digits and `_`, so it never needs quoting inside a literal.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn split_path(path: &str) -> Option<Vec<String>> {
    let parts: Vec<String> = path.split('.').map(str::to_string).collect();
    parts.iter().all(|p| !p.trim().is_empty()).then_some(parts)
}

/// The checks and rewrites of a collection step (`DataStep::parse` applies them): a
/// collection's name is plain, since it names its table and indexes.
pub fn check_name(name: &str) -> Result<()> {
    if plain_name(name) {
        Ok(())
    } else {
        Err(eyre!(
            "[target] collection = {name:?}: a collection's name is letters, digits and _ (it names its table and indexes)"
        ))
    }
}

/// A field target of a collection step as the data step writes it: `_created_at`,
/// `_updated_at`, `_permissions` stay columns; every other target is a path into `data`.
pub fn field_target(target: &str) -> Result<String> {
    if target.starts_with('_') {
        if FIELD_COLUMNS.contains(&target) {
            return Ok(target.to_string());
        }
        return Err(eyre!(
            "field '{target}': in a collection a target starting with _ is one of the table's columns ({}); {target} is the tool's",
            FIELD_COLUMNS.join(", ")
        ));
    }
    if split_path(target).is_none() {
        return Err(eyre!("field '{target}': not a path into the document"));
    }
    Ok(document_path(target))
}

/// `a.b` -> `data.a.b` (fields and `[[embed]]` paths of a collection step).
pub fn document_path(path: &str) -> String {
    format!("{DATA}.{path}")
}

/// A natural-key path of a collection (it names a value of the document).
pub fn check_key_path(p: &str) -> Result<()> {
    if p.starts_with('_') || split_path(p).is_none() {
        return Err(eyre!(
            "[target] natural_key {p:?}: in a collection the natural key names paths into the document"
        ));
    }
    Ok(())
}

/// `[target] permissions` and `indexes` of a collection, checked when the step loads.
/// `written`: the document paths the step's fields and embeds write. A placeholder naming a
/// path none of them writes would leave every document without that permission, silently.
pub fn check_permissions_and_indexes(
    permissions: &[String],
    indexes: &[String],
    written: &[Vec<String>],
) -> Result<()> {
    for p in permissions {
        let t = PermissionTemplate::parse(p).map_err(|e| eyre!("[target] permissions {p:?}: {e}"))?;
        for piece in &t.pieces {
            let Piece::Path(path) = piece else { continue };
            let covered = written.iter().any(|w| w.starts_with(path) || path.starts_with(w));
            if !covered {
                return Err(eyre!(
                    "[target] permissions {p:?}: {{{}}} names a path no [[fields]] target writes, so no document would get this permission",
                    path.join(".")
                ));
            }
        }
    }
    for p in indexes {
        if index_path(p).is_none() {
            return Err(eyre!(
                "[target] indexes {p:?}: an index names a path into the document, each part letters, digits and _"
            ));
        }
    }
    Ok(())
}

fn index_path(p: &str) -> Option<Vec<String>> {
    split_path(p).filter(|parts| parts.iter().all(|x| plain_name(x)))
}

/// One piece of a permission template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    /// `{_id}`: the document's id.
    Id,
    /// `{a.b}`: the value at that path of the document.
    Path(Vec<String>),
}

/// A permission string with placeholders: `read("user:{patient_id}")`.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionTemplate {
    pieces: Vec<Piece>,
}

impl PermissionTemplate {
    pub fn parse(t: &str) -> Result<PermissionTemplate, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = t.chars();
        while let Some(c) = chars.next() {
            match c {
                '{' => {
                    let mut inner = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => return Err("a { without its }".into()),
                            Some(c) => inner.push(c),
                        }
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    let inner = inner.trim();
                    if inner == ID {
                        pieces.push(Piece::Id);
                    } else {
                        let path = split_path(inner)
                            .filter(|p| !p[0].starts_with('_'))
                            .ok_or_else(|| format!("{{{inner}}} is not {{_id}} or a path into the document"))?;
                        pieces.push(Piece::Path(path));
                    }
                }
                '}' => return Err("a } without its {".into()),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(PermissionTemplate { pieces })
    }

    /// The permission for one document; `None` when a placeholder's value is NULL or missing
    /// (a patient-less appointment gets no `user:` permission).
    /// A value that could change the permission's meaning (a quote, a bracket, a comma, a
    /// backslash, a control character: `x"), write("any`), or an object or array, is an error:
    /// the row is rejected rather than granted something nobody wrote down. Blank text is no
    /// value, like NULL.
    pub fn render(&self, id: &str, data: &serde_json::Value) -> Result<Option<String>, String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Id => out.push_str(id),
                Piece::Path(path) => {
                    let Some(v) = value_at(data, path) else { return Ok(None) };
                    if v.is_object() || v.is_array() {
                        return Err(format!(
                            "{{{}}} is a JSON {}, not one value",
                            path.join("."),
                            if v.is_object() { "object" } else { "array" }
                        ));
                    }
                    let Some(text) = json_text(v).filter(|t| !t.trim().is_empty()) else {
                        return Ok(None);
                    };
                    if let Some(c) = text
                        .chars()
                        .find(|c| matches!(c, '"' | '(' | ')' | ',' | '\\') || c.is_control())
                    {
                        return Err(format!(
                            "{{{}}} holds {c:?}, which would change what the permission grants",
                            path.join(".")
                        ));
                    }
                    out.push_str(&text);
                }
            }
        }
        Ok(Some(out))
    }
}

fn value_at<'a>(doc: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(doc, |cur, p| cur.get(p.as_str()))
}

/// A document value as a permission or key shows it: text as is, numbers in decimal; NULL is
/// no value.
fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// 5213 -> "5 213".
pub fn spaced(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Why the finishing refused a document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentReject {
    pub field: String,
    pub rule: &'static str,
    pub reason: String,
}

/// A collection step's per-row finishing, compiled: where its columns sit among the target
/// columns, its permission templates, its natural-key paths and size limit.
#[derive(Debug)]
pub struct CollectionTarget {
    permissions: Vec<PermissionTemplate>,
    key_paths: Vec<Vec<String>>,
    max_bytes: Option<u64>,
    /// Indexes into the target columns, in [`COLUMNS`] order.
    at: [usize; 6],
}

impl CollectionTarget {
    /// `permissions`, `key_paths` (the natural key as paths into the document) and
    /// `max_bytes` are the step's `[target]` settings.
    pub fn compile(
        permissions: &[String],
        key_paths: &[String],
        max_bytes: Option<u64>,
        target_columns: &[String],
    ) -> Result<CollectionTarget> {
        let mut at = [0usize; 6];
        for (slot, col) in at.iter_mut().zip(COLUMNS) {
            *slot = target_columns
                .iter()
                .position(|c| c == col)
                .ok_or_else(|| eyre!("the collection step has no {col} column"))?;
        }
        let permissions = permissions
            .iter()
            .map(|p| PermissionTemplate::parse(p).map_err(|e| eyre!("[target] permissions {p:?}: {e}")))
            .collect::<Result<Vec<_>>>()?;
        let key_paths = key_paths
            .iter()
            .map(|p| split_path(p).ok_or_else(|| eyre!("natural_key {p:?} is not a path")))
            .collect::<Result<Vec<_>>>()?;
        Ok(CollectionTarget {
            permissions,
            key_paths,
            max_bytes,
            at,
        })
    }

    /// An update keeps the document it overwrites: its `_id` and `_created_at` stay, so the
    /// permissions rendered with the row's fresh id must name the kept one (`{_id}`).
    pub fn keep_id(&self, values: &mut [Value], kept: &str) {
        let [id_at, _, perm_at, ..] = self.at;
        let Some(fresh) = values[id_at].to_text() else { return };
        if fresh != kept
            && let Value::Json(serde_json::Value::Array(ps)) = &mut values[perm_at]
        {
            for p in ps.iter_mut() {
                if let serde_json::Value::String(s) = p {
                    *s = s.replace(&fresh, kept);
                }
            }
        }
        values[id_at] = Value::Text(kept.to_string());
    }

    /// Complete a built row into a document: its id (a new uuid v7 when there is no ID map),
    /// `data` (an empty object when no field wrote it), `_permissions` (the step's rendered
    /// permissions, then the strings of the `_permissions` field, rendered too; duplicates
    /// removed, order kept), the timestamps (the time of writing when no field gave one),
    /// `_key` (the natural-key values joined; NULL when a part is missing), and the size limit.
    pub fn finish_document(&self, out: &mut [Value]) -> Result<(), DocumentReject> {
        let [id_at, data_at, perm_at, created_at, updated_at, key_at] = self.at;
        let id = match out[id_at].to_text() {
            Some(id) => id,
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                out[id_at] = Value::Text(id.clone());
                id
            }
        };
        let data = match std::mem::take(&mut out[data_at]) {
            Value::Json(d @ serde_json::Value::Object(_)) => d,
            _ => serde_json::Value::Object(serde_json::Map::new()),
        };
        let given = permission_field(&out[perm_at])?;
        let mut permissions: Vec<String> = Vec::new();
        let field_templates = given
            .iter()
            .map(|p| {
                PermissionTemplate::parse(p).map_err(|e| DocumentReject {
                    field: PERMISSIONS.into(),
                    rule: "permissions",
                    reason: format!("{PERMISSIONS}: {p:?}: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for t in self.permissions.iter().chain(&field_templates) {
            let rendered = t.render(&id, &data).map_err(|e| DocumentReject {
                field: PERMISSIONS.into(),
                rule: "permissions",
                reason: format!("{PERMISSIONS}: {e}"),
            })?;
            if let Some(p) = rendered
                && !permissions.contains(&p)
            {
                permissions.push(p);
            }
        }
        out[perm_at] = Value::Json(serde_json::Value::Array(
            permissions.into_iter().map(serde_json::Value::String).collect(),
        ));
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        for at in [created_at, updated_at] {
            if out[at].is_null() {
                out[at] = Value::Text(now.clone());
            }
        }
        out[key_at] = if self.key_paths.is_empty() {
            Value::Null
        } else {
            let parts: Option<Vec<String>> = self
                .key_paths
                .iter()
                .map(|p| value_at(&data, p).and_then(json_text))
                .collect();
            parts.map(|p| Value::Text(p.join("\u{1f}"))).unwrap_or(Value::Null)
        };
        if let Some(max) = self.max_bytes {
            let size = serde_json::to_string(&data).map(|s| s.len() as u64).unwrap_or(0);
            if size > max {
                return Err(DocumentReject {
                    field: DATA.into(),
                    rule: "document_size",
                    reason: format!(
                        "document is {} bytes, over the collection's limit of {}",
                        spaced(size),
                        spaced(max)
                    ),
                });
            }
        }
        out[data_at] = Value::Json(data);
        Ok(())
    }
}

/// The strings of a `_permissions` field: a JSON array of strings (as JSON or as its text), or
/// NULL (none).
fn permission_field(v: &Value) -> Result<Vec<String>, DocumentReject> {
    let refuse = |what: &str| DocumentReject {
        field: PERMISSIONS.into(),
        rule: "permissions",
        reason: format!("{PERMISSIONS} must be a JSON array of strings; the field gave {what}"),
    };
    let json = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Json(j) => j.clone(),
        Value::Text(t) => serde_json::from_str(t).map_err(|_| refuse("text that is not a JSON array"))?,
        _ => return Err(refuse("a value that is not a JSON array")),
    };
    match json {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(refuse("an array with an item that is not a string")),
            })
            .collect(),
        _ => Err(refuse("JSON that is not an array")),
    }
}

/// Create the collection's table and indexes when missing (`CREATE ... IF NOT EXISTS`, inside
/// `tx`: a dry run's transaction in a dry run). An existing table lacking a column of a
/// collection is refused, naming what it lacks. Returns notices (indexes a target skips).
pub async fn ensure_table(tx: &mut DbTx, name: &str, indexes: &[String], dry_run: bool) -> Result<Vec<String>> {
    let d = tx.dialect();
    let existing = tx.table_columns(name).await?;
    if existing.is_empty() {
        if dry_run && !d.transactional_ddl() {
            return Err(eyre!(
                "the collection {name} does not exist yet and a dry run on {} cannot create it (its DDL commits); run `cutover up` or create it first",
                d.name()
            ));
        }
        tx.execute_raw(&d.collection_table_sql(name)).await?;
    } else {
        let lacks: Vec<&str> = COLUMNS.iter().copied().filter(|c| !existing.contains_key(*c)).collect();
        if !lacks.is_empty() {
            return Err(eyre!(
                "the target table {name} is not a collection: it has no {} column{} (a collection table has {})",
                lacks.join(", "),
                if lacks.len() == 1 { "" } else { "s" },
                COLUMNS.join(", ")
            ));
        }
    }
    let mut notices = Vec::new();
    for p in indexes {
        let Some(path) = index_path(p) else { continue };
        let index = format!("{name}_idx_{}", path.join("_"));
        if dry_run && !d.transactional_ddl() {
            continue;
        }
        match d.collection_index_sql(name, &index, &path) {
            Some(sql) => tx.execute_raw(&sql).await?,
            None => notices.push(format!(
                "collection {name}: {} has no index on a JSON path; index {p} not created",
                d.name()
            )),
        }
    }
    Ok(notices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_render_or_drop() {
        let t = PermissionTemplate::parse("read(\"user:{patient.id}\")").unwrap();
        let doc = serde_json::json!({"patient": {"id": 42}});
        assert_eq!(t.render("x", &doc).unwrap().as_deref(), Some("read(\"user:42\")"));
        assert_eq!(t.render("x", &serde_json::json!({"patient": {"id": null}})), Ok(None));
        assert_eq!(t.render("x", &serde_json::json!({"patient": {"id": "  "}})), Ok(None));
        // A value that would change what is granted rejects the row; so does an object.
        let err = t
            .render("x", &serde_json::json!({"patient": {"id": "x\"), write(\"any"}}))
            .unwrap_err();
        assert!(err.contains("would change what the permission grants"), "{err}");
        assert!(
            t.render("x", &serde_json::json!({"patient": {"id": {"a": 1}}}))
                .is_err()
        );
        let t = PermissionTemplate::parse("write(\"user:{_id}\")").unwrap();
        assert_eq!(t.render("u-1", &doc).unwrap().as_deref(), Some("write(\"user:u-1\")"));
        for bad in ["read({a)", "read(a})", "read({})", "read({a{b}})"] {
            assert!(PermissionTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn finishing_fills_the_columns_and_merges_field_permissions() {
        let cols: Vec<String> = [ID, DATA, PERMISSIONS, CREATED_AT, UPDATED_AT, KEY]
            .iter()
            .rev()
            .map(|c| c.to_string())
            .collect();
        let permissions = ["read(\"any\")".to_string(), "write(\"user:{_id}\")".to_string()];
        let t = CollectionTarget::compile(&permissions, &["k".into(), "n.m".into()], Some(40), &cols).unwrap();
        let at = |c: &str| cols.iter().position(|x| x == c).unwrap();
        let mut out = vec![Value::Null; cols.len()];
        out[at(ID)] = Value::Text("id-1".into());
        out[at(DATA)] = Value::Json(serde_json::json!({"k": 7, "n": {"m": "x"}}));
        out[at(PERMISSIONS)] = Value::Json(serde_json::json!(["read(\"any\")", "read(\"team:{n.m}\")"]));
        t.finish_document(&mut out).unwrap();
        assert_eq!(
            out[at(PERMISSIONS)],
            Value::Json(serde_json::json!([
                "read(\"any\")",
                "write(\"user:id-1\")",
                "read(\"team:x\")"
            ]))
        );
        assert_eq!(out[at(KEY)], Value::Text("7\u{1f}x".into()));
        assert!(out[at(CREATED_AT)].to_text().is_some_and(|t| t.ends_with('Z')));
        // Not an array of strings: a reject; too large: a reject with the size.
        out[at(PERMISSIONS)] = Value::Text("admin".into());
        assert_eq!(t.finish_document(&mut out).unwrap_err().rule, "permissions");
        out[at(PERMISSIONS)] = Value::Null;
        out[at(DATA)] = Value::Json(serde_json::json!({"k": 7, "n": {"m": "x".repeat(40)}}));
        let r = t.finish_document(&mut out).unwrap_err();
        assert_eq!(
            (r.rule, r.field.as_str(), r.reason.as_str()),
            (
                "document_size",
                DATA,
                "document is 60 bytes, over the collection's limit of 40"
            )
        );
    }

    #[test]
    fn sizes_are_spaced() {
        assert_eq!(spaced(5213), "5 213");
        assert_eq!(spaced(4096), "4 096");
        assert_eq!(spaced(12), "12");
        assert_eq!(spaced(1_048_576), "1 048 576");
    }
}
