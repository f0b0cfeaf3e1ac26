//! The `step.toml` of a data step, parsed strictly (unknown keys are errors with their line).

use crate::engine::db::{Dialect, quote_ident};
use crate::engine::source::file::records::{FileKind, FileOptions, TextEncoding};
use crate::engine::transform::{Literal, Transform};
use crate::engine::validate::Check;
use color_eyre::eyre::{Result, eyre};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A table name as written in step.toml, quoted; `schema.table` is quoted part by part.
fn quote_table(dialect: Dialect, t: &str) -> String {
    t.split('.')
        .map(|p| quote_ident(dialect, p))
        .collect::<Vec<_>>()
        .join(".")
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataStep {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub source: SourceSpec,
    pub target: TargetSpec,
    #[serde(default)]
    pub id_map: Option<IdMapSpec>,
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub continue_on_error: Option<bool>,
    /// Incremental sync: how `cutover sync` finds the rows changed since the last pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncSpec>,
    /// `[[embed]]`: arrays in each document from a second source query joined on the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub embed: Vec<EmbedSpec>,
}

/// `[[embed]]`: the rows of a child query whose `parent_key` column holds a parent row's
/// source key become an array of objects at `path` in that row's document (an order with
/// its lines). Read a page of parents at a time, never a table whole.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedSpec {
    /// Where the array goes: a path into the document (`lines`, `visit.notes`).
    pub path: String,
    /// A source table, or `query`: one of the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The child's column holding the parent's source key.
    pub parent_key: String,
    /// Child columns ordering the array (default: as the source returns them, by parent key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_by: Vec<String>,
    /// Each array item's fields (paths inside the item); default: every child column but
    /// `parent_key`, under its own name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldSpec>,
    /// More items than this for one parent is a reject (rule `embed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<usize>,
}

/// `[sync]`: a change cursor (a source column that grows on every change), optionally a
/// soft-delete column, and how far behind the mark a pass starts re-reading.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncSpec {
    pub cursor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
    /// A duration (`5s`, `500ms`, `2m`): changes this far behind the mark are read again, so
    /// a transaction that commits after a later one was synced is not missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<String>,
}

impl SyncSpec {
    /// `lookback` as a duration (zero when not set).
    pub fn lookback(&self) -> Result<std::time::Duration> {
        match &self.lookback {
            None => Ok(std::time::Duration::ZERO),
            Some(s) => parse_duration(s).ok_or_else(|| {
                eyre!("[sync] lookback = {s:?} is not a duration: write e.g. \"5s\", \"500ms\" or \"2m\"")
            }),
        }
    }

    fn check(&self, s: &DataStep) -> Result<()> {
        if self.cursor.trim().is_empty() {
            return Err(eyre!(
                "[sync] cursor must name a source column that grows on every change"
            ));
        }
        if s.source.is_file() {
            return Err(eyre!(
                "[sync] needs a database source: a file has no change cursor (import it again instead)"
            ));
        }
        if s.id_map.is_none() && s.target.natural_key.is_empty() {
            return Err(eyre!(
                "[sync] upserts changed rows by the ID map or the natural key: add [id_map] or [target] natural_key"
            ));
        }
        self.lookback().map(|_| ())
    }
}

/// `10s`, `500ms`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(std::time::Duration::from_secs_f64(secs))
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A table of the source database.
    pub table: Option<String>,
    /// Or a query over the source connection; it must return the key column.
    pub query: Option<String>,
    /// Or a file: CSV, or a workbook sheet (`.xlsx`, `.xls`...), relative to the project's
    /// source folder (`[source] url = "file:///..."`) or absolute.
    pub file: Option<String>,
    /// Workbook sheet (default: the first).
    pub sheet: Option<String>,
    /// 1-based line (CSV) or row (workbook) of the header (default 1).
    pub header_row: Option<u64>,
    /// CSV delimiter, one character (default: detected among `,` `;` tab `|`).
    pub delimiter: Option<String>,
    /// CSV quote character (default `"`).
    pub quote: Option<String>,
    /// CSV text encoding: `utf-8` (default; a BOM is stripped) or `windows-1252`.
    pub encoding: Option<String>,
    /// File columns that may be absent from the file (read as NULL); every other column the
    /// step reads must be in the header.
    #[serde(default)]
    pub optional: Vec<String>,
    /// Keyset pagination column(s): unique and never NULL together. Checked before a run
    /// writes anything, and again row by row while reading. A file's key is `_line` (its
    /// default), the line or row each record starts on.
    #[serde(default)]
    pub key: SourceKey,
    /// The name rejects and "waiting for" reasons use for this source (default: the table).
    pub name: Option<String>,
    /// Source columns that must name a row another step wrote (through its ID map), though
    /// they are not written themselves: a row waits while the row it names is rejected.
    #[serde(default)]
    pub references: Vec<SourceReference>,
}

/// `key = "id"` or a composite `key = ["created_at", "id"]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum SourceKey {
    One(String),
    Many(Vec<String>),
}

/// The synthetic column of a file row: the line (CSV) or row (workbook) it starts on.
pub const LINE_COLUMN: &str = "_line";

/// No key written in step.toml: a file's default (`_line`), an error for a table or query.
impl Default for SourceKey {
    fn default() -> SourceKey {
        SourceKey::Many(Vec::new())
    }
}

impl SourceKey {
    pub fn columns(&self) -> Vec<String> {
        match self {
            SourceKey::One(k) => vec![k.clone()],
            SourceKey::Many(ks) => ks.clone(),
        }
    }
    pub fn is_composite(&self) -> bool {
        matches!(self, SourceKey::Many(ks) if ks.len() > 1)
    }
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.columns().join(", "))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceReference {
    pub column: String,
    pub map: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DupPolicy {
    /// Count as skipped; references to the row's legacy key resolve to the existing row.
    Skip,
    /// Overwrite the existing row (its old content is kept so rollback can restore it).
    Update,
    /// Reject the row as a duplicate.
    #[default]
    Error,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The target table; for a collection step it is the collection's table (set from
    /// `collection` when the step is parsed).
    #[serde(default)]
    pub table: String,
    /// `collection = "appointments"`: one JSON document per source row in a collection table
    /// the tool creates (`_id`, `data`, `_permissions`, `_created_at`, `_updated_at`); field
    /// targets are paths into `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Permission strings every document of the collection gets, e.g. `read("user:{owner}")`:
    /// `{_id}` is the document's id, `{path}` a value of the document (a permission whose
    /// placeholder is NULL is left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// Paths into `data` the collection indexes (`patient.name.last`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<String>,
    /// Largest document allowed, in bytes of its `data` as compact JSON; larger is a reject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_document_bytes: Option<u64>,
    #[serde(default)]
    pub natural_key: Vec<String>,
    #[serde(default)]
    pub on_duplicate: DupPolicy,
    /// JSON columns built from dotted field targets that are stored as NULL when every leaf
    /// is NULL (an address whose parts are all blank is no address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub empty_json_as_null: Vec<String>,
    /// A collection's natural key as written (paths into `data`); `natural_key` is then
    /// `["_key"]`, the column holding these values joined (see `data::collection`).
    #[serde(skip)]
    pub document_key: Vec<String>,
    /// Set once `data::collection::normalize` has rewritten the step.
    #[serde(skip)]
    pub collection_ready: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdMapSpec {
    /// Target column that receives the new uuid v7 (`_id` in a collection, where it may be
    /// left out).
    #[serde(default)]
    pub column: String,
    /// Name of the map (default: the source name). Later steps `lookup` through it.
    pub map: Option<String>,
    /// Source column holding the legacy key (default: the source key).
    pub key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Target column, or a dotted path into a JSON document column (`contact.address.city`).
    pub target: String,
    /// Source column (default: none, then `value` or NULL).
    pub source: Option<String>,
    /// A constant instead of a source column.
    pub value: Option<Literal>,
    /// A value of the run instead: `run = "id"` is the id of the run that writes the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunValue>,
    #[serde(default)]
    pub transforms: Vec<Transform>,
    #[serde(default)]
    pub validate: Vec<Check>,
}

/// What `run = "..."` puts into a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunValue {
    /// The id of the run that writes the row (a `rejects retry` is a run of its own).
    Id,
}

impl SourceSpec {
    /// Whether the step reads a file rather than the source database.
    pub fn is_file(&self) -> bool {
        self.file.is_some()
    }

    /// File settings only make sense with a file, and must each be readable; a file's key is
    /// `_line`. Checked when step.toml is parsed, so a typo fails before any run.
    fn check_file_options(&mut self) -> Result<()> {
        let file_only = [
            ("sheet", self.sheet.is_some()),
            ("header_row", self.header_row.is_some()),
            ("delimiter", self.delimiter.is_some()),
            ("quote", self.quote.is_some()),
            ("encoding", self.encoding.is_some()),
            ("optional", !self.optional.is_empty()),
        ];
        let Some(file) = self.file.clone() else {
            if let Some((name, _)) = file_only.iter().find(|(_, on)| *on) {
                return Err(eyre!(
                    "[source] {name} is a setting of a file source; this step reads a {}",
                    if self.table.is_some() { "table" } else { "query" }
                ));
            }
            return Ok(());
        };
        if file.trim().is_empty() {
            return Err(eyre!("[source] file is empty; name a CSV or workbook file"));
        }
        let keys = self.key.columns();
        if keys.is_empty() {
            self.key = SourceKey::One(LINE_COLUMN.into());
        } else if keys != [LINE_COLUMN] {
            return Err(eyre!(
                "[source] key = \"{}\": a file is read in its own order, so its key is \"{LINE_COLUMN}\" (the line each row starts on); leave key out",
                self.key
            ));
        }
        let workbook = FileKind::of(Path::new(&file)) == FileKind::Workbook;
        if workbook {
            for (name, on) in &file_only[2..5] {
                if *on {
                    return Err(eyre!(
                        "[source] {name} is a CSV setting; {file} is a workbook (choose its sheet with sheet = \"...\")"
                    ));
                }
            }
        } else if self.sheet.is_some() {
            return Err(eyre!(
                "[source] sheet is a workbook setting; {file} is read as CSV (workbooks end in .xlsx, .xlsm, .xlsb, .xls or .ods)"
            ));
        }
        self.file_options().map(|_| ())
    }

    /// How to read the file: the step's settings over the reader's defaults.
    pub fn file_options(&self) -> Result<FileOptions> {
        let mut o = FileOptions::default();
        let one_byte = |what: &str, v: &str| -> Result<u8> {
            let v = match v {
                "\\t" | "tab" => "\t",
                other => other,
            };
            match v.as_bytes() {
                [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Ok(*b),
                _ => Err(eyre!(
                    "[source] {what} = {v:?}: must be one ASCII character (for a tab write \"\\t\")"
                )),
            }
        };
        if let Some(d) = &self.delimiter {
            o.delimiter = Some(one_byte("delimiter", d)?);
        }
        if let Some(q) = &self.quote {
            o.quote = one_byte("quote", q)?;
        }
        if o.delimiter.is_some_and(|d| d == o.quote) {
            return Err(eyre!("[source] delimiter and quote are the same character"));
        }
        if let Some(e) = &self.encoding {
            o.encoding = TextEncoding::parse(e).ok_or_else(|| {
                eyre!("[source] encoding = {e:?} is not one cutover reads: use \"utf-8\" or \"windows-1252\"")
            })?;
        }
        if let Some(h) = self.header_row {
            if h == 0 {
                return Err(eyre!("[source] header_row is 1-based: the first line is 1"));
            }
            o.header_row = h;
        }
        o.sheet = self.sheet.clone();
        Ok(o)
    }
}

impl DataStep {
    pub fn load(path: &Path) -> Result<DataStep> {
        let text = std::fs::read_to_string(path).map_err(|e| eyre!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| eyre!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<DataStep> {
        let mut s: DataStep = match super::templates::expand(text)? {
            Some(expanded) => toml::Value::Table(expanded)
                .try_into()
                .map_err(|e| eyre!("{}", e.to_string().trim_end()))?,
            None => toml::from_str(text).map_err(|e| eyre!("{}", e.to_string().trim_end()))?,
        };
        let given: Vec<&str> = [
            ("table", s.source.table.is_some()),
            ("query", s.source.query.is_some()),
            ("file", s.source.file.is_some()),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
        match given.as_slice() {
            [] => return Err(eyre!("[source] needs a table, a query or a file")),
            [_] => {}
            many => return Err(eyre!("[source] has {}; give one", many.join(" and "))),
        }
        s.source.check_file_options()?;
        if s.id_map.is_none() && s.target.natural_key.is_empty() {
            return Err(eyre!(
                "a data step needs [id_map] or [target] natural_key, so that rollback can find exactly the rows it wrote"
            ));
        }
        if s.fields.is_empty() {
            return Err(eyre!(
                "no [[fields]]: say which source columns go to which target columns"
            ));
        }
        for f in &s.fields {
            let given: Vec<&str> = [
                ("source", f.source.is_some()),
                ("value", f.value.is_some()),
                ("run", f.run.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, set)| set.then_some(k))
            .collect();
            if given.len() > 1 {
                return Err(eyre!("field '{}' has {}; give one", f.target, given.join(" and ")));
            }
        }
        for col in &s.target.empty_json_as_null {
            let nested = s
                .fields
                .iter()
                .any(|f| f.target.split_once('.').is_some_and(|(top, _)| top == col));
            if !nested {
                return Err(eyre!(
                    "[target] empty_json_as_null names '{col}', but no [[fields]] target is a path into it (\"{col}.something\")"
                ));
            }
        }
        for nk in &s.target.natural_key {
            if !s.fields.iter().any(|f| &f.target == nk) {
                return Err(eyre!("natural_key column '{nk}' is not the target of any [[fields]]"));
            }
        }
        if s.target.collection.is_some() {
            s.normalize_collection()?;
        } else {
            Self::check_table_target(&s)?;
        }
        let keys = s.source.key.columns();
        if keys.is_empty() || keys.iter().any(|k| k.trim().is_empty()) {
            return Err(eyre!("[source] key must name at least one column"));
        }
        if s.source.key.is_composite() && s.id_map.as_ref().is_some_and(|m| m.key.is_none()) {
            return Err(eyre!(
                "[source] key is composite ({}): set [id_map] key to the one column other steps use to name these rows",
                s.source.key
            ));
        }
        if s.batch_size == Some(0) {
            return Err(eyre!("batch_size must be at least 1"));
        }
        if let Some(sync) = &s.sync {
            sync.check(&s)?;
        }
        s.check_embeds()?;
        Ok(s)
    }

    /// `[[embed]]` refusals at load time: what an embed needs (a path, a table or a query, the
    /// parent key), what it works with (the source database, a one-column source key) and
    /// child fields the pipeline can compute without the target (no lookup, new_id or
    /// store_file: those need the ID map, the target or the file store, row by row).
    fn check_embeds(&self) -> Result<()> {
        let mut paths: Vec<&str> = Vec::new();
        for e in &self.embed {
            let path = e.path.trim();
            if path.is_empty() || path.split('.').any(|p| p.trim().is_empty()) {
                return Err(eyre!(
                    "[[embed]] path = {:?}: name where the array goes, e.g. \"lines\" or \"details.lines\"",
                    e.path
                ));
            }
            let name = format!("[[embed]] {path}");
            match (&e.table, &e.query) {
                (Some(_), Some(_)) => return Err(eyre!("{name}: has table and query; give one")),
                (None, None) => return Err(eyre!("{name}: needs a table or a query of the child rows")),
                (Some(t), None) if t.trim().is_empty() => return Err(eyre!("{name}: table is empty")),
                (None, Some(q)) if q.trim().is_empty() => return Err(eyre!("{name}: query is empty")),
                _ => {}
            }
            if e.parent_key.trim().is_empty() {
                return Err(eyre!(
                    "{name}: parent_key must name the child column holding the parent's source key"
                ));
            }
            if self.source.is_file() {
                return Err(eyre!(
                    "{name}: [[embed]] reads the source database; this step reads a file"
                ));
            }
            if self.source.key.columns().len() != 1 {
                return Err(eyre!(
                    "{name}: children are joined on the parent's source key, which must be one column; [source] key is ({})",
                    self.source.key
                ));
            }
            if e.max_items == Some(0) {
                return Err(eyre!(
                    "{name}: max_items must be at least 1 (leave it out for no limit)"
                ));
            }
            if paths.contains(&path) {
                return Err(eyre!("{name}: two [[embed]] write the same path"));
            }
            if self.fields.iter().any(|f| {
                f.target == path
                    || f.target.starts_with(&format!("{path}."))
                    || path.starts_with(&format!("{}.", f.target))
            }) {
                return Err(eyre!(
                    "{name}: a [[fields]] target writes that path too; the array would overwrite it"
                ));
            }
            paths.push(path);
            for f in &e.fields {
                let field = format!("{name}: field '{}'", f.target);
                if f.target.trim().is_empty() || f.target.split('.').any(|p| p.trim().is_empty()) {
                    return Err(eyre!("{name}: a field has an empty target"));
                }
                let given = [f.source.is_some(), f.value.is_some(), f.run.is_some()]
                    .iter()
                    .filter(|g| **g)
                    .count();
                if given > 1 {
                    return Err(eyre!("{field} has more than one of source, value and run; give one"));
                }
                if let Some(t) = f
                    .transforms
                    .iter()
                    .find(|t| matches!(t, Transform::Lookup(_) | Transform::NewId | Transform::StoreFile(_)))
                {
                    return Err(eyre!(
                        "{field}: {} is not available in an embedded row (it needs the ID map, the target or the file store); transform the parent's fields instead",
                        t.name()
                    ));
                }
                if let Some(c) = f.validate.iter().find(|c| {
                    matches!(
                        c.rule,
                        crate::engine::validate::Rule::ReferenceExists { .. }
                            | crate::engine::validate::Rule::MatchesSource { .. }
                    )
                }) {
                    return Err(eyre!(
                        "{field}: validation {} is not available in an embedded row",
                        c.rule.name()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Turn a collection step into the data step that writes it: field targets (and
    /// `[[embed]]` paths) become `data.<path>`, `_`-targets stay columns, the natural-key paths
    /// become the `_key` column, the ID map's column is `_id`, the table is the collection.
    /// Idempotent (see `data::collection` for the rules).
    pub fn normalize_collection(&mut self) -> Result<()> {
        use crate::engine::data::collection as doc;
        let Some(name) = self.target.collection.clone() else {
            return Ok(());
        };
        if self.target.collection_ready {
            return Ok(());
        }
        doc::check_name(&name)?;
        if !self.target.table.is_empty() && self.target.table != name {
            return Err(eyre!(
                "[target] has table = {:?} and collection = {name:?}; give one (a collection is its own table)",
                self.target.table
            ));
        }
        if !self.target.empty_json_as_null.is_empty() {
            return Err(eyre!(
                "[target] empty_json_as_null is for JSON columns of a table; a collection's data is always a document"
            ));
        }
        self.target.table = name;
        for f in &mut self.fields {
            f.target = doc::field_target(&f.target)?;
        }
        for e in &mut self.embed {
            e.path = doc::document_path(&e.path);
        }
        for p in &self.target.natural_key {
            doc::check_key_path(p)?;
        }
        if !self.target.natural_key.is_empty() {
            self.target.document_key = std::mem::take(&mut self.target.natural_key);
            self.target.natural_key = vec![doc::KEY.to_string()];
        }
        if let Some(m) = &mut self.id_map {
            if m.column.is_empty() {
                m.column = doc::ID.to_string();
            } else if m.column != doc::ID {
                return Err(eyre!(
                    "[id_map] column = {:?}: a document's id is always {} (leave column out)",
                    m.column,
                    doc::ID
                ));
            }
        }
        let written: Vec<Vec<String>> = self
            .fields
            .iter()
            .map(|f| f.target.as_str())
            .chain(self.embed.iter().map(|e| e.path.as_str()))
            .filter_map(|t| t.strip_prefix("data."))
            .map(|t| t.split('.').map(str::to_string).collect())
            .collect();
        doc::check_permissions_and_indexes(&self.target.permissions, &self.target.indexes, &written)?;
        if self.target.max_document_bytes == Some(0) {
            return Err(eyre!("[target] max_document_bytes must be at least 1"));
        }
        self.target.collection_ready = true;
        Ok(())
    }

    /// A table step names its table, and its ID map's column.
    fn check_table_target(s: &DataStep) -> Result<()> {
        if s.target.table.trim().is_empty() {
            return Err(eyre!("[target] needs a table (or a collection)"));
        }
        if s.id_map.as_ref().is_some_and(|m| m.column.trim().is_empty()) {
            return Err(eyre!(
                "[id_map] needs column: the target column that receives the new id"
            ));
        }
        for (what, set) in [
            ("permissions", !s.target.permissions.is_empty()),
            ("indexes", !s.target.indexes.is_empty()),
            ("max_document_bytes", s.target.max_document_bytes.is_some()),
        ] {
            if set {
                return Err(eyre!(
                    "[target] {what} is a setting of a collection; this step writes a table"
                ));
            }
        }
        Ok(())
    }

    pub fn source_name(&self) -> String {
        self.source
            .name
            .clone()
            .or_else(|| self.source.table.clone())
            .or_else(|| {
                // A file is known by its stem: `exports/patients.csv` -> `patients`.
                self.source.file.as_ref().map(|f| {
                    Path::new(f)
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| f.clone())
                })
            })
            .unwrap_or_else(|| "query".into())
    }

    pub fn map_name(&self) -> Option<String> {
        self.id_map
            .as_ref()
            .map(|m| m.map.clone().unwrap_or_else(|| self.source_name()))
    }

    /// The source SQL, as a subquery the pager can wrap. A table is read whole here; the
    /// data-step reader narrows it to the columns the step uses (`source_sql_of`).
    pub fn source_sql(&self, dialect: Dialect) -> String {
        self.source_sql_of(dialect, None)
    }

    /// The source SQL reading only `columns` of a table (a query is used as written).
    pub fn source_sql_of(&self, dialect: Dialect, columns: Option<&[String]>) -> String {
        match (&self.source.table, &self.source.query) {
            (Some(t), _) => {
                let cols = match columns {
                    Some(cs) if !cs.is_empty() => cs
                        .iter()
                        .map(|c| quote_ident(dialect, c))
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => "*".to_string(),
                };
                format!("SELECT {cols} FROM {}", quote_table(dialect, t))
            }
            (None, Some(q)) => q.trim().trim_end_matches(';').to_string(),
            (None, None) => String::new(),
        }
    }

    /// Target columns in write order: the id column first, then each field's top-level column.
    pub fn target_columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        if let Some(m) = &self.id_map {
            cols.push(m.column.clone());
        }
        for f in &self.fields {
            let top = f.target.split('.').next().unwrap_or(&f.target).to_string();
            if !cols.contains(&top) {
                cols.push(top);
            }
        }
        // An embed's array goes into a column (`lines`) or a path of one (`details.lines`).
        for e in &self.embed {
            let top = e.path.trim().split('.').next().unwrap_or_default().to_string();
            if !top.is_empty() && !cols.contains(&top) {
                cols.push(top);
            }
        }
        if self.target.collection.is_some() {
            for c in crate::engine::data::collection::COLUMNS {
                if !cols.iter().any(|x| x == c) {
                    cols.push(c.to_string());
                }
            }
        }
        cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_template() {
        let s = DataStep::parse(include_str!("../../../assets/templates/data.step.toml")).unwrap();
        assert_eq!(s.target.table, "new_table");
        assert_eq!(s.target_columns(), vec!["id", "legacy_id", "email"]);
        assert_eq!(s.map_name().as_deref(), Some("legacy_table"));
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let err =
            DataStep::parse("[source]\ntable = \"a\"\nkey = \"id\"\nkeey = 1\n[target]\ntable = \"b\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("keey") && msg.contains("line 4"), "{msg}");
    }

    #[test]
    fn nested_targets_share_a_document_column() {
        let s = DataStep::parse(
            "[source]\ntable = \"p\"\nkey = \"id\"\n[target]\ntable = \"t\"\nnatural_key = [\"legacy_id\"]\n[[fields]]\ntarget = \"legacy_id\"\nsource = \"id\"\n[[fields]]\ntarget = \"contact.address.city\"\nsource = \"city\"\n[[fields]]\ntarget = \"contact.phone\"\nsource = \"phone\"\n",
        )
        .unwrap();
        assert_eq!(s.target_columns(), vec!["legacy_id", "contact"]);
    }

    const HEAD: &str = "[source]\ntable = \"p\"\nkey = \"id\"\n[target]\ntable = \"t\"\nnatural_key = [\"mrn\"]\n";

    #[test]
    fn run_id_fields_stand_alone() {
        let s = DataStep::parse(&format!(
            "{HEAD}[[fields]]\ntarget = \"mrn\"\nsource = \"mrn\"\n[[fields]]\ntarget = \"import_job\"\nrun = \"id\"\n"
        ))
        .unwrap();
        assert_eq!(s.fields[1].run, Some(RunValue::Id));
        assert_eq!(s.target_columns(), vec!["mrn", "import_job"]);
        let e = DataStep::parse(&format!(
            "{HEAD}[[fields]]\ntarget = \"mrn\"\nsource = \"mrn\"\nrun = \"id\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("field 'mrn' has source and run; give one"), "{e}");
        let e = DataStep::parse(&format!(
            "{HEAD}[[fields]]\ntarget = \"mrn\"\nsource = \"mrn\"\n[[fields]]\ntarget = \"import_job\"\nrun = \"name\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown variant `name`") && e.contains("`id`"), "{e}");
    }

    #[test]
    fn empty_json_as_null_names_a_document_column() {
        let fields = "[[fields]]\ntarget = \"mrn\"\nsource = \"mrn\"\n[[fields]]\ntarget = \"address.city\"\nsource = \"city\"\n";
        let s = DataStep::parse(&format!("{HEAD}empty_json_as_null = [\"address\"]\n{fields}")).unwrap();
        assert_eq!(s.target.empty_json_as_null, vec!["address"]);
        let e = DataStep::parse(&format!("{HEAD}empty_json_as_null = [\"mrn\"]\n{fields}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("empty_json_as_null names 'mrn'") && e.contains("\"mrn.something\""),
            "{e}"
        );
    }

    use crate::engine::data::collection::{CREATED_AT, DATA, ID, KEY, PERMISSIONS, UPDATED_AT};

    #[test]
    fn a_collection_step_becomes_a_data_step_writing_data_paths() {
        let s = DataStep::parse(
            "[source]\ntable = \"a\"\nkey = \"id\"\n[target]\ncollection = \"appointments\"\nnatural_key = [\"legacy_id\"]\n[id_map]\nmap = \"appointments\"\n[[fields]]\ntarget = \"legacy_id\"\nsource = \"id\"\n[[fields]]\ntarget = \"schedule.starts_at\"\nsource = \"starts_at\"\n[[fields]]\ntarget = \"_created_at\"\nsource = \"created_at\"\n",
        )
        .unwrap();
        assert_eq!(s.target.table, "appointments");
        assert_eq!(s.target.natural_key, [KEY]);
        assert_eq!(s.target.document_key, ["legacy_id"]);
        assert_eq!(s.id_map.as_ref().map(|m| m.column.as_str()), Some(ID));
        let targets: Vec<&str> = s.fields.iter().map(|f| f.target.as_str()).collect();
        assert_eq!(targets, ["data.legacy_id", "data.schedule.starts_at", "_created_at"]);
        assert_eq!(s.target_columns(), [ID, DATA, CREATED_AT, PERMISSIONS, UPDATED_AT, KEY]);
        // Normalising again changes nothing.
        let mut again = s.clone();
        again.normalize_collection().unwrap();
        assert_eq!(again.fields[0].target, "data.legacy_id");
    }

    fn file_step(source: &str) -> Result<DataStep> {
        DataStep::parse(&format!(
            "[source]\n{source}\n[target]\ntable = \"t\"\nnatural_key = [\"a\"]\n[[fields]]\ntarget = \"a\"\nsource = \"a\"\n"
        ))
    }

    #[test]
    fn a_file_source_keys_by_line_and_is_named_by_its_stem() {
        let s = file_step("file = \"exports/patients.csv\"\ndelimiter = \";\"\nencoding = \"windows-1252\"").unwrap();
        assert_eq!(s.source.key.columns(), [LINE_COLUMN]);
        assert_eq!(s.source_name(), "patients");
        let o = s.source.file_options().unwrap();
        assert_eq!((o.delimiter, o.encoding), (Some(b';'), TextEncoding::Windows1252));
        let s = file_step("file = \"o.xlsx\"\nsheet = \"Orders\"\nheader_row = 2\nname = \"orders\"").unwrap();
        assert_eq!(s.source.file_options().unwrap().sheet.as_deref(), Some("Orders"));
        assert_eq!(
            file_step("file = \"t.tsv\"\ndelimiter = \"\\t\"")
                .unwrap()
                .source
                .file_options()
                .unwrap()
                .delimiter,
            Some(b'\t')
        );
    }

    #[test]
    fn a_bad_lookup_names_the_step_file_problem() {
        let e = DataStep::parse(&format!(
            "{HEAD}[[fields]]\ntarget = \"mrn\"\nsource = \"mrn\"\ntransforms = [{{ lookup = {{ table = \"patients\", column = \"id\", by = [] }} }}]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("needs by = [...] with at least one alternative") && e.contains("line"),
            "{e}"
        );
    }

    #[test]
    fn bad_file_settings_fail_when_the_step_is_parsed() {
        for (source, says) in [
            ("file = \"a.csv\"\ntable = \"a\"", "has table and file"),
            ("table = \"a\"\nkey = \"id\"\nsheet = \"S\"", "setting of a file source"),
            ("file = \"a.csv\"\nencoding = \"ebcdic\"", "not one cutover reads"),
            ("file = \"a.csv\"\ndelimiter = \";;\"", "one ASCII character"),
            ("file = \"a.csv\"\nquote = \"«\"", "one ASCII character"),
            ("file = \"a.csv\"\nkey = \"id\"", "its key is \"_line\""),
            ("file = \"a.csv\"\nsheet = \"S\"", "sheet is a workbook setting"),
            ("file = \"a.xlsx\"\ndelimiter = \";\"", "is a workbook"),
            ("file = \"a.csv\"\nheader_row = 0", "1-based"),
            ("table = \"a\"", "key must name"),
            ("", "needs a table, a query or a file"),
        ] {
            let err = file_step(source).unwrap_err().to_string();
            assert!(err.contains(says), "{source:?}: {err}");
        }
    }

    const EMBED_STEP: &str = "[source]\ntable = \"orders\"\nkey = \"id\"\n[target]\ntable = \"t\"\nnatural_key = [\"legacy_id\"]\n[[fields]]\ntarget = \"legacy_id\"\nsource = \"id\"\n[[embed]]\npath = \"lines\"\ntable = \"order_lines\"\nparent_key = \"order_id\"\n";

    #[test]
    fn an_embed_path_is_a_target_column() {
        let s = DataStep::parse(EMBED_STEP).unwrap();
        assert_eq!(s.target_columns(), vec!["legacy_id", "lines"]);
        let s = DataStep::parse(&EMBED_STEP.replace("path = \"lines\"", "path = \"details.lines\"")).unwrap();
        assert_eq!(s.target_columns(), vec!["legacy_id", "details"]);
    }

    #[test]
    fn bad_embeds_fail_when_the_step_is_parsed() {
        for (from, to, says) in [
            ("path = \"lines\"", "path = \"a..b\"", "name where the array goes"),
            ("table = \"order_lines\"\n", "", "needs a table or a query"),
            (
                "parent_key = \"order_id\"\n",
                "parent_key = \"order_id\"\nmax_items = 0\n",
                "max_items must be at least 1",
            ),
            (
                "path = \"lines\"",
                "path = \"legacy_id\"",
                "a [[fields]] target writes that path too",
            ),
            (
                "parent_key = \"order_id\"\n",
                "parent_key = \"order_id\"\n[[embed.fields]]\ntarget = \"x\"\nsource = \"x\"\ntransforms = [\"new_id\"]\n",
                "new_id is not available in an embedded row",
            ),
            (
                "parent_key = \"order_id\"\n",
                "parent_key = \"order_id\"\n[[embed.fields]]\ntarget = \"x\"\nsource = \"x\"\nvalidate = [{ rule = \"reference_exists\", map = \"m\" }]\n",
                "validation reference_exists is not available",
            ),
        ] {
            assert!(EMBED_STEP.contains(from), "{from}");
            let e = DataStep::parse(&EMBED_STEP.replacen(from, to, 1))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{to}: {e}");
        }
    }
}
