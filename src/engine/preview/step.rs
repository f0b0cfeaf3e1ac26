//! From a preview to a data step: the target table's columns (read through the backend, as the
//! writer reads them), the `step.toml` text a suggestion makes, saving it as a new migration,
//! and a dry run of it that changes nothing.

use super::{Preview, Suggestion, TargetColumn};
use crate::engine::backend::{Db, Role};
use crate::engine::config::Config;
use crate::engine::project::{Project, StepDef, new_version, sanitise_name};
use color_eyre::eyre::{Result, eyre};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The project's source folder, when its source is `file://…`.
pub fn source_folder(config: &Config) -> Option<PathBuf> {
    config.source_folder.clone()
}

/// The files of a folder a step can read (CSV, TSV, text and workbooks), sorted by name.
pub fn list_files(folder: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(folder).map_err(|e| eyre!("cannot read {}: {e}", folder.display()))?;
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            let lower = n.to_ascii_lowercase();
            [".csv", ".tsv", ".txt", ".xlsx", ".xlsm", ".xlsb", ".xls", ".ods"]
                .iter()
                .any(|ext| lower.ends_with(ext))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The columns of `table` in the project's target, sorted by name; `None` when the target has
/// no such table (yet).
pub async fn target_columns(config: &Config, table: &str) -> Result<Option<Vec<TargetColumn>>> {
    let db = Db::connect(&config.target, &config.dir, Role::Target).await?;
    let read = async {
        let mut tx = db.begin_read().await?;
        let cols = crate::engine::data::writer::table_columns(&mut tx, table).await;
        tx.rollback().await?;
        cols
    }
    .await;
    db.close().await;
    let cols = read?;
    if cols.is_empty() {
        return Ok(None);
    }
    let mut out: Vec<TargetColumn> = cols
        .into_iter()
        .map(|(name, sql_type)| TargetColumn { name, sql_type })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(out))
}

/// What the step's `[source]` names: the file relative to the project's source folder when it
/// is in it, else its absolute path.
pub fn source_file_name(file: &Path, folder: Option<&Path>) -> String {
    let abs = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    if let Some(folder) = folder.and_then(|f| f.canonicalize().ok())
        && let Ok(rel) = abs.strip_prefix(&folder)
    {
        return rel.display().to_string();
    }
    abs.display().to_string()
}

/// The `step.toml` of a data step from `file` into `table` with the suggested fields: every
/// suggestion with a target becomes a `[[fields]]`; the others are listed as comments. The
/// comments tell the operator what to check before running it.
pub fn step_toml(
    preview: &Preview,
    source_file: &str,
    table: &str,
    targets: &[TargetColumn],
    suggestions: &[Suggestion],
) -> String {
    let mut out = String::new();
    let stem = Path::new(source_file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let source_name = sanitise_name(&stem).unwrap_or(stem);
    out.push_str(&format!(
        "# Written by `cutover preview` from {} ({} rows). Every field below is a suggestion:\n\
         # check each target column and transform, then dry-run it (`cutover up --dry-run`).\n",
        source_file, preview.rows
    ));
    out.push_str("kind = \"data\"\n");
    out.push_str(&format!(
        "description = {}\n\n",
        quote(&format!("{source_file} -> {table}"))
    ));
    out.push_str("[source]\n");
    out.push_str(&format!("file = {}\n", quote(source_file)));
    if let Some(sheet) = &preview.sheet {
        out.push_str(&format!("sheet = {}\n", quote(sheet)));
    }
    out.push_str(&format!("name = {}\n", quote(&source_name)));
    out.push_str("# Each row's key is its line in the file: rejects name it, a rerun resumes after it.\n");
    out.push_str("key = \"_line\"\n\n");

    let mapped: Vec<&Suggestion> = suggestions.iter().filter(|s| s.target.is_some()).collect();
    let natural_key = natural_key(&mapped);
    out.push_str("[target]\n");
    out.push_str(&format!("table = {}\n", quote(table)));
    out.push_str(
        "# CHECK: natural_key must name the column(s) that identify a row in the target (a\n\
         # unique key): it finds duplicates, in the target and earlier in the file.\n",
    );
    match &natural_key {
        Some(k) => out.push_str(&format!("natural_key = [{}]\non_duplicate = \"skip\"\n\n", quote(k))),
        None => out.push_str("# natural_key = [\"...\"]\n# on_duplicate = \"skip\"\n\n"),
    }
    let id_column = targets
        .iter()
        .find(|t| t.name == "id" && !mapped.iter().any(|s| s.target.as_deref() == Some("id")));
    if id_column.is_some() {
        out.push_str(
            "# CHECK: [id_map] gives each row a new id (uuid v7) and remembers line -> id, so later\n\
             # steps can `lookup = { map = ... }`. Drop it if the table's id is generated by the target.\n",
        );
        out.push_str(&format!("[id_map]\ncolumn = \"id\"\nmap = {}\n\n", quote(&source_name)));
    } else if natural_key.is_none() {
        out.push_str("# CHECK: a data step needs [id_map] or a natural_key so rollback finds the rows it wrote.\n\n");
    }
    for s in &mapped {
        let target = s.target.as_deref().unwrap_or_default();
        out.push_str(&format!(
            "# {} -> {target}: confidence {:.2}{}\n",
            s.column,
            s.confidence,
            if s.why.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.why)
            }
        ));
        out.push_str("[[fields]]\n");
        out.push_str(&format!("target = {}\n", quote(target)));
        out.push_str(&format!("source = {}\n", quote(&s.column)));
        if !s.transforms.is_empty() {
            out.push_str(&format!(
                "transforms = {}\n",
                super::suggest::transforms_toml(&s.transforms)
            ));
        }
        if !s.validate.is_empty() {
            out.push_str(&format!("validate = {}\n", inline_list(&s.validate)));
        }
        out.push('\n');
    }
    let unmapped: Vec<&Suggestion> = suggestions.iter().filter(|s| s.target.is_none()).collect();
    if !unmapped.is_empty() {
        out.push_str("# Not mapped (no target column fits; add a [[fields]] if one should go somewhere):\n");
        for s in unmapped {
            out.push_str(&format!("#   {}\n", s.column));
        }
    }
    out
}

/// The natural key of the suggested step: the first mapped column that names a row (a
/// medical record number, something `…number` or `…code`, an email, an external id).
fn natural_key(mapped: &[&Suggestion]) -> Option<String> {
    let targets: Vec<&str> = mapped.iter().filter_map(|s| s.target.as_deref()).collect();
    let by = |pred: &dyn Fn(&[String]) -> bool| {
        targets
            .iter()
            .find(|t| pred(&super::suggest::words(t)))
            .map(|t| t.to_string())
    };
    by(&|w| w == ["mrn"])
        .or_else(|| by(&|w| w.last().is_some_and(|l| l == "number" || l == "code" || l == "no")))
        .or_else(|| by(&|w| w == ["email"]))
        .or_else(|| by(&|w| w == ["external", "id"]))
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `[a, { b = { c = 1 } }]`: serialisable items as one inline TOML array.
fn inline_list<T: Serialize>(items: &[T]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|t| match toml::Value::try_from(t) {
            Ok(v) => v.to_string(),
            Err(e) => format!("\"(cannot write: {e})\""),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Write `text` as a new data step `VERSION_NAME/step.toml` under `migrations_dir`; the
/// version is now (UTC), one second later while a step already has it.
pub fn save_step(migrations_dir: &Path, existing: &[StepDef], name: &str, text: &str) -> Result<PathBuf> {
    let name = sanitise_name(name)?;
    let mut now = chrono::Utc::now();
    let taken = |v: &str| {
        existing.iter().any(|s| s.version == v)
            || std::fs::read_dir(migrations_dir)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .any(|e| e.file_name().to_string_lossy().starts_with(v))
                })
                .unwrap_or(false)
    };
    while taken(&new_version(now)) {
        now += chrono::Duration::seconds(1);
    }
    let dir = migrations_dir.join(format!("{}_{name}", new_version(now)));
    std::fs::create_dir_all(&dir).map_err(|e| eyre!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("step.toml");
    std::fs::write(&path, text).map_err(|e| eyre!("cannot write {}: {e}", path.display()))?;
    Ok(dir)
}

/// The answer to `Command::PreviewFile`: the preview (read on a blocking thread) and, with
/// `into`, the target's columns and the suggested mapping. Errors are in the report.
pub async fn preview_report(
    project: &Project,
    file: &str,
    sheet: Option<String>,
    into: Option<String>,
    rows: usize,
) -> super::PreviewReport {
    let mut report = super::PreviewReport {
        file: file.to_string(),
        into: into.clone(),
        ..Default::default()
    };
    let path = match (Path::new(file).is_absolute(), source_folder(&project.config)) {
        (true, _) => PathBuf::from(file),
        (false, Some(folder)) => folder.join(file),
        (false, None) => project.config.dir.join(file),
    };
    let opts = crate::engine::source::file::records::FileOptions {
        sheet,
        ..Default::default()
    };
    let read = tokio::task::spawn_blocking(move || super::preview_file(&path, &opts, rows)).await;
    let preview = match read {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            report.error = Some(e.to_string());
            return report;
        }
        Err(e) => {
            report.error = Some(format!("the preview stopped: {e}"));
            return report;
        }
    };
    if let Some(table) = &into {
        match target_columns(&project.config, table).await {
            Ok(Some(cols)) => {
                report.suggestions = super::suggest(&preview, &cols);
                report.targets = Some(cols);
            }
            Ok(None) => {
                report.error = Some(format!(
                    "the target has no table '{table}' yet: apply the schema step that creates it first"
                ));
            }
            Err(e) => report.error = Some(crate::engine::config::redact_url(&format!("{e:#}"))),
        }
    }
    report.preview = Some(preview);
    report
}
