//! `[[embed]]`: arrays from a child query. For each page of parents, one query per embed reads
//! the children whose `parent_key` is one of the page's source keys (in IN lists of at most
//! `KEYS_PER_QUERY`), so memory follows the page, never the child table. The rows travel with
//! the page (`SourceBatch::embeds`); `process()` turns each parent's rows into an array of
//! objects at the embed's path, through the child fields' transforms and validations.

use crate::engine::data::spec::{DataStep, EmbedSpec, FieldSpec, RunValue};
use crate::engine::db::{Db, Dialect, quote_ident};
use crate::engine::validate::{Level, Validator, is_secret_field};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::collections::HashMap;
use std::sync::Arc;

/// Parent keys per child query: far below every backend's parameter limit, and a page at the
/// default batch size in a few statements.
pub const KEYS_PER_QUERY: usize = 1000;

/// The child rows of one page for one embed, grouped by the parent key (as text), each
/// group in the order the child query's `ORDER BY` gave.
#[derive(Debug, Clone, Default)]
pub struct EmbedRows {
    pub columns: Arc<Vec<String>>,
    pub by_parent: HashMap<String, Vec<Vec<Value>>>,
    /// A child cell that could not be decoded without loss, by parent key: (item index,
    /// column, reason). Its parent is a reject, never written with a guess.
    pub issues: HashMap<String, (usize, String, String)>,
}

/// One `[[embed]]`, compiled once per step.
#[derive(Debug)]
pub struct CompiledEmbed {
    spec: EmbedSpec,
    /// The path as written (`details.lines`), for reject fields and reasons.
    name: String,
    /// Index into the target columns.
    column: usize,
    /// Path inside that column's JSON document; empty when the array is the whole column.
    path: Vec<String>,
    fields: Vec<ChildField>,
}

#[derive(Debug)]
struct ChildField {
    spec: FieldSpec,
    path: Vec<String>,
    validator: Validator,
    secret: bool,
}

/// Why an embed refuses its parent row: the reject's field, rule and reason.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedRefusal {
    pub field: String,
    pub rule: String,
    pub reason: String,
}

/// A warning of a child field: (field, rule, reason).
pub type EmbedWarning = (String, String, String);

/// Compile a step's embeds against its target columns (`DataStep::target_columns` has each
/// embed path's top column).
pub fn compile(spec: &DataStep, target_columns: &[String]) -> Result<Vec<CompiledEmbed>> {
    let mut out = Vec::new();
    for e in &spec.embed {
        let name = e.path.trim().to_string();
        let mut parts = name.split('.').map(|p| p.trim().to_string());
        let top = parts.next().unwrap_or_default();
        let path: Vec<String> = parts.collect();
        let column = target_columns
            .iter()
            .position(|c| *c == top)
            .ok_or_else(|| eyre!("[[embed]] {name} has no column"))?;
        let mut fields = Vec::new();
        for f in &e.fields {
            let validator = Validator::compile(&f.validate)
                .map_err(|err| eyre!("[[embed]] {name}: field '{}': {err}", f.target))?;
            fields.push(ChildField {
                path: f.target.split('.').map(|p| p.trim().to_string()).collect(),
                validator,
                secret: is_secret_field(&f.target) || f.source.as_deref().is_some_and(is_secret_field),
                spec: f.clone(),
            });
        }
        out.push(CompiledEmbed {
            spec: e.clone(),
            name,
            column,
            path,
            fields,
        });
    }
    Ok(out)
}

/// The child rows as a subquery: a table whole, or the query as written.
fn child_sql(e: &EmbedSpec, d: Dialect) -> String {
    match (&e.table, &e.query) {
        (Some(t), _) => format!("SELECT * FROM {}", d.quote_table(t)),
        (None, Some(q)) => q.trim().trim_end_matches(';').to_string(),
        (None, None) => String::new(),
    }
}

/// `written_at`, `written_at desc` → the ORDER BY term on the child alias `c`.
fn order_term(d: Dialect, o: &str) -> String {
    let o = o.trim();
    let lower = o.to_ascii_lowercase();
    for dir in [" desc", " asc"] {
        if lower.ends_with(dir) {
            let col = o[..o.len() - dir.len()].trim();
            return format!("c.{}{}", quote_ident(d, col), dir.to_uppercase());
        }
    }
    format!("c.{}", quote_ident(d, o))
}

/// Read the children of the parents whose source keys are `keys` (each once), one query per
/// embed per `KEYS_PER_QUERY` keys, on the source connection: one `EmbedRows` per embed.
/// `key_type`: the parent key's type as the source reports it, so a key decoded as text (a
/// uuid, a timestamp) compares as its own type.
pub async fn fetch(
    source: &Db,
    version: &str,
    embeds: &[EmbedSpec],
    keys: &[Value],
    key_type: Option<&str>,
) -> Result<Vec<EmbedRows>> {
    let d = source.dialect();
    let mut all = Vec::with_capacity(embeds.len());
    for e in embeds {
        let base = child_sql(e, d);
        let pk = format!("c.{}", quote_ident(d, &e.parent_key));
        let order: Vec<String> = std::iter::once(pk.clone())
            .chain(e.order_by.iter().map(|o| order_term(d, o)))
            .collect();
        let mut rows = EmbedRows::default();
        for chunk in keys.chunks(KEYS_PER_QUERY) {
            let ph: Vec<String> = (1..=chunk.len()).map(|i| d.key_param(i, key_type)).collect();
            let sql = format!(
                "SELECT * FROM ({base}) c WHERE {pk} IN ({}) ORDER BY {}",
                ph.join(", "),
                order.join(", ")
            );
            let got = source.fetch_all(&sql, chunk).await.map_err(|err| {
                err.wrap_err(format!(
                    "step {}: reading the rows of [[embed]] {} (children of {} parents)",
                    version,
                    e.path,
                    chunk.len()
                ))
            })?;
            if got.rows.is_empty() {
                continue;
            }
            let pk_at = column_index(&got.columns, &e.parent_key).ok_or_else(|| {
                eyre!(
                    "step {}: the rows of [[embed]] {} have no column {} (they have: {})",
                    version,
                    e.path,
                    e.parent_key,
                    got.columns.join(", ")
                )
            })?;
            if rows.columns.is_empty() {
                rows.columns = Arc::new(got.columns.clone());
            }
            let mut issues: HashMap<usize, (String, String)> = HashMap::new();
            for (ri, issue) in &got.issues {
                let column = got.columns.get(issue.column).cloned().unwrap_or_default();
                issues.entry(*ri).or_insert((column, issue.reason.clone()));
            }
            for (ri, r) in got.rows.into_iter().enumerate() {
                let parent = r.get(pk_at).and_then(|v| v.to_text()).unwrap_or_default();
                let list = rows.by_parent.entry(parent.clone()).or_default();
                if let Some((column, reason)) = issues.remove(&ri) {
                    rows.issues.entry(parent).or_insert((list.len(), column, reason));
                }
                list.push(r);
            }
        }
        all.push(rows);
    }
    Ok(all)
}

/// A column by name: exactly, else ignoring case (as the pipeline finds source columns).
fn column_index(columns: &[String], name: &str) -> Option<usize> {
    columns
        .iter()
        .position(|c| c == name)
        .or_else(|| columns.iter().position(|c| c.eq_ignore_ascii_case(name)))
}

/// The parent key's type as the source reports it (PostgreSQL casts parameters to it), for a
/// caller that has no page of its own to learn it from (`rejects retry`).
pub async fn parent_key_type(source: &Db, spec: &DataStep, key_column: &str) -> Result<Option<String>> {
    if spec.embed.is_empty() || !source.dialect().casts_key_params() {
        return Ok(None);
    }
    let d = source.dialect();
    let sql = format!(
        "SELECT {} FROM ({}) src LIMIT 1",
        quote_ident(d, key_column),
        spec.source_sql(d)
    );
    let rows = source.fetch_all(&sql, &[]).await?;
    Ok(rows.types.into_iter().next())
}

/// Before the first page: every embed's child rows can be read and have the columns the
/// embed names (checked on one row; an empty child table has nothing to check).
pub async fn check_children(source: &Db, version: &str, embeds: &[EmbedSpec]) -> Result<(), String> {
    let d = source.dialect();
    for e in embeds {
        let sql = format!("SELECT * FROM ({}) c LIMIT 1", child_sql(e, d));
        let rows = source.fetch_all(&sql, &[]).await.map_err(|err| {
            format!(
                "step {}: [[embed]] {}: cannot read the child rows: {}",
                version,
                e.path,
                crate::engine::db_error::report_text(&err)
            )
        })?;
        if rows.rows.is_empty() {
            continue;
        }
        let order_cols = e.order_by.iter().map(|o| {
            let lower = o.trim().to_ascii_lowercase();
            let cut = [" desc", " asc"]
                .iter()
                .find(|d| lower.ends_with(*d))
                .map(|d| o.trim().len() - d.len())
                .unwrap_or(o.trim().len());
            o.trim()[..cut].trim().to_string()
        });
        let needed: Vec<String> = std::iter::once(e.parent_key.clone())
            .chain(order_cols)
            .chain(e.fields.iter().filter_map(|f| f.source.clone()))
            .collect();
        for n in needed {
            if column_index(&rows.columns, &n).is_none() {
                return Err(format!(
                    "step {}: the child rows of [[embed]] {} have no column '{n}' (they have: {})",
                    version,
                    e.path,
                    rows.columns.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Put `val` at `path` inside the JSON object `item`, creating objects on the way.
fn set_in(item: &mut serde_json::Map<String, serde_json::Value>, path: &[String], val: serde_json::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = item;
    for p in parents {
        let next = cur
            .entry(p.clone())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if !next.is_object() {
            *next = serde_json::Value::Object(serde_json::Map::new());
        }
        let serde_json::Value::Object(m) = next else { return };
        cur = m;
    }
    cur.insert(last.clone(), val);
}

impl CompiledEmbed {
    /// One parent's array: each child row through the embed's fields (or every child column
    /// but the parent key, under its own name).
    fn array(
        &self,
        rows: &EmbedRows,
        parent: &str,
        run_id: Option<&str>,
        today: chrono::NaiveDate,
        warnings: &mut Vec<EmbedWarning>,
    ) -> Result<serde_json::Value, EmbedRefusal> {
        let name = &self.name;
        let children: &[Vec<Value>] = rows.by_parent.get(parent).map(Vec::as_slice).unwrap_or(&[]);
        if let Some((i, column, reason)) = rows.issues.get(parent) {
            return Err(EmbedRefusal {
                field: format!("{name}[{i}].{column}"),
                rule: "decode".into(),
                reason: format!("{name}[{i}]: child column {column}: {reason}"),
            });
        }
        if let Some(max) = self.spec.max_items
            && children.len() > max
        {
            return Err(EmbedRefusal {
                field: name.clone(),
                rule: "embed".into(),
                reason: format!("{name}: {} items, over max_items = {max}", children.len()),
            });
        }
        let pk_at = column_index(&rows.columns, &self.spec.parent_key);
        let mut items = Vec::with_capacity(children.len());
        for (i, child) in children.iter().enumerate() {
            let mut item = serde_json::Map::new();
            if self.fields.is_empty() {
                for (ci, (col, v)) in rows.columns.iter().zip(child).enumerate() {
                    if Some(ci) != pk_at {
                        item.insert(col.clone(), v.to_json());
                    }
                }
            } else {
                for f in &self.fields {
                    let v = self.child_value(f, &rows.columns, child, i, run_id, today, warnings)?;
                    set_in(&mut item, &f.path, v.to_json());
                }
            }
            items.push(serde_json::Value::Object(item));
        }
        Ok(serde_json::Value::Array(items))
    }

    /// One child field's value: its source cell (or constant), transformed and validated.
    #[allow(clippy::too_many_arguments)]
    fn child_value(
        &self,
        f: &ChildField,
        columns: &[String],
        child: &[Value],
        i: usize,
        run_id: Option<&str>,
        today: chrono::NaiveDate,
        warnings: &mut Vec<EmbedWarning>,
    ) -> Result<Value, EmbedRefusal> {
        let field = format!("{}[{i}].{}", self.name, f.spec.target);
        let mut v = match (&f.spec.source, &f.spec.value) {
            (Some(s), _) => column_index(columns, s)
                .and_then(|at| child.get(at))
                .cloned()
                .unwrap_or(Value::Null),
            (None, Some(lit)) => lit.to_value(),
            (None, None) => match (f.spec.run, run_id) {
                (Some(RunValue::Id), Some(id)) => Value::Text(id.to_string()),
                _ => Value::Null,
            },
        };
        for t in &f.spec.transforms {
            match t.apply(v) {
                Ok(o) => {
                    if let Some(w) = o.warning {
                        let reason = if f.secret {
                            format!("{field}: {} failed (value redacted)", t.name())
                        } else {
                            format!("{field}: {w}")
                        };
                        warnings.push((field.clone(), t.name().to_string(), reason));
                    }
                    v = o.value;
                }
                Err(e) => {
                    let reason = if f.secret {
                        format!("{field}: {} failed (value redacted)", t.name())
                    } else {
                        format!("{field}: {}", e.reason)
                    };
                    return Err(EmbedRefusal {
                        field,
                        rule: t.name().to_string(),
                        reason,
                    });
                }
            }
        }
        for viol in f.validator.check(&field, &v, today) {
            if viol.level == Level::Error {
                return Err(EmbedRefusal {
                    field,
                    rule: viol.rule.to_string(),
                    reason: viol.reason,
                });
            }
            warnings.push((field.clone(), viol.rule.to_string(), viol.reason));
            if viol.null_value {
                v = Value::Null;
            }
        }
        Ok(v)
    }
}

/// Place every embed's array for the parent whose source key is `parent` (as text) into its
/// target values `out`. `pages` are the page's child rows (`SourceBatch::embeds`), one entry
/// per embed.
pub fn place(
    embeds: &[CompiledEmbed],
    parent: &str,
    pages: &[EmbedRows],
    out: &mut [Value],
    run_id: Option<&str>,
    today: chrono::NaiveDate,
) -> Result<Vec<EmbedWarning>, EmbedRefusal> {
    let mut warnings = Vec::new();
    let Some(first) = embeds.first() else {
        return Ok(warnings);
    };
    if pages.len() != embeds.len() {
        // Never write a document without its arrays because they were not read.
        return Err(EmbedRefusal {
            field: first.name.clone(),
            rule: "embed".into(),
            reason: "the embedded rows of this row were not read; retry it (`cutover rejects retry`)".into(),
        });
    }
    for (e, rows) in embeds.iter().zip(pages) {
        let array = e.array(rows, parent, run_id, today, &mut warnings)?;
        let Some(doc) = out.get_mut(e.column) else { continue };
        if e.path.is_empty() {
            *doc = Value::Json(array);
        } else {
            set_in_document(doc, &e.path, array);
        }
    }
    Ok(warnings)
}

/// Put `val` at `path` inside the JSON document column `doc` (made an object when it is not).
fn set_in_document(doc: &mut Value, path: &[String], val: serde_json::Value) {
    if !matches!(doc, Value::Json(serde_json::Value::Object(_))) {
        *doc = Value::Json(serde_json::Value::Object(serde_json::Map::new()));
    }
    if let Value::Json(serde_json::Value::Object(m)) = doc {
        set_in(m, path, val);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_terms_keep_their_direction() {
        assert_eq!(order_term(Dialect::Sqlite, "written_at"), "c.\"written_at\"");
        assert_eq!(order_term(Dialect::Sqlite, "written_at desc"), "c.\"written_at\" DESC");
    }

    #[test]
    fn nested_item_paths_build_objects() {
        let mut item = serde_json::Map::new();
        set_in(&mut item, &["a".into(), "b".into()], serde_json::json!(1));
        set_in(&mut item, &["c".into()], serde_json::json!("x"));
        assert_eq!(
            serde_json::Value::Object(item),
            serde_json::json!({"a": {"b": 1}, "c": "x"})
        );
    }
}
