//! `cutover preview FILE`: what a file holds and, with `--into TABLE`, where its columns would
//! go; `--write-step NAME` saves that as a data step to edit.

use crate::cli::exit;
use crate::engine::config::{CONFIG_FILE, Overrides};
use crate::engine::data::spec::SourceSpec;
use crate::engine::preview::step::{save_step, source_file_name, source_folder, step_toml, target_columns};
use crate::engine::preview::{Preview, Suggestion, TargetColumn, preview_file, suggest};
use crate::engine::project::Project;
use crate::engine::source::file::records::FileOptions;
use clap::Args;
use color_eyre::eyre::{Result, eyre};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct PreviewArgs {
    /// The file (CSV or a workbook); a relative name is looked for here, then in the project's
    /// source folder (`[source] url = "file://…"`).
    pub file: PathBuf,
    /// The workbook sheet (default: the first).
    #[arg(long)]
    pub sheet: Option<String>,
    /// CSV field delimiter, as `[source] delimiter` (default: detected among , ; tab |).
    #[arg(long)]
    pub delimiter: Option<String>,
    /// CSV text encoding, as `[source] encoding`: utf-8 (default) or windows-1252.
    #[arg(long)]
    pub encoding: Option<String>,
    /// The 1-based line (CSV) or row (workbook) of the header, as `[source] header_row`.
    #[arg(long)]
    pub header_row: Option<u64>,
    /// Suggest a mapping into this target table (read from the project's target).
    #[arg(long)]
    pub into: Option<String>,
    /// Sample rows to show.
    #[arg(long, default_value_t = 5)]
    pub rows: usize,
    /// Write the suggested mapping as a new data step (needs --into).
    #[arg(long, value_name = "NAME")]
    pub write_step: Option<String>,
}

pub async fn run(project_dir: &Path, overrides: &Overrides, json: bool, args: &PreviewArgs) -> Result<i32> {
    if args.write_step.is_some() && args.into.is_none() {
        return Err(eyre!("--write-step needs --into TABLE: the step's target"));
    }
    let project = if project_dir.join(CONFIG_FILE).exists() {
        Some(Project::load(project_dir, overrides)?)
    } else if args.into.is_some() {
        return Err(eyre!(
            "--into reads the target table from a project: no {} in {} (pass -C DIR)",
            CONFIG_FILE,
            project_dir.display()
        ));
    } else {
        None
    };
    let folder = project.as_ref().and_then(|p| source_folder(&p.config));
    let file = locate(&args.file, folder.as_deref())?;
    // The same settings, checked the same way, as a step's [source] table.
    let spec = SourceSpec {
        sheet: args.sheet.clone(),
        delimiter: args.delimiter.clone(),
        encoding: args.encoding.clone(),
        header_row: args.header_row,
        ..SourceSpec::default()
    };
    let opts: FileOptions = spec.file_options().map_err(|e| {
        eyre!(
            "{}",
            e.to_string()
                .replace("[source] ", "--")
                .replace("header_row", "header-row")
        )
    })?;
    let preview = preview_file(&file, &opts, args.rows)?;

    let mut targets: Option<Vec<TargetColumn>> = None;
    let mut suggestions: Vec<Suggestion> = Vec::new();
    let mut note: Option<String> = None;
    if let (Some(table), Some(project)) = (&args.into, &project) {
        match target_columns(&project.config, table).await? {
            Some(cols) => {
                suggestions = suggest(&preview, &cols);
                targets = Some(cols);
            }
            None => {
                let msg = format!(
                    "the target has no table '{table}' yet: apply the schema step that creates it (`cutover up --to VERSION`), then preview again for a mapping"
                );
                if args.write_step.is_some() {
                    return Err(eyre!("{msg}"));
                }
                note = Some(msg);
            }
        }
    }
    let mut written: Option<PathBuf> = None;
    if let (Some(name), Some(table), Some(cols), Some(project)) = (&args.write_step, &args.into, &targets, &project) {
        let source = source_file_name(&file, folder.as_deref());
        let text = step_toml(&preview, &source, table, cols, &suggestions);
        written = Some(save_step(&project.config.migrations_dir, &project.steps, name, &text)?.join("step.toml"));
    }
    if json {
        let mut out = serde_json::to_value(&preview)?;
        if let Some(obj) = out.as_object_mut() {
            obj.insert("into".into(), serde_json::json!(args.into));
            obj.insert("target_columns".into(), serde_json::to_value(&targets)?);
            obj.insert("suggestions".into(), serde_json::to_value(&suggestions)?);
            if let Some(n) = &note {
                obj.insert("note".into(), serde_json::json!(n));
            }
            if let Some(w) = &written {
                obj.insert("step".into(), serde_json::json!(w.display().to_string()));
            }
        }
        println!("{out}");
    } else {
        print!(
            "{}",
            render_plain(&preview, args.into.as_deref(), targets.as_deref(), &suggestions)
        );
        if let Some(n) = &note {
            println!("\n! {n}");
        }
        if let Some(w) = &written {
            println!(
                "\nwrote {}: check the CHECK comments (natural key, id map), then `cutover up --dry-run`",
                w.display()
            );
        }
    }
    Ok(exit::OK)
}

/// The file as given when it exists, else in the project's source folder.
fn locate(file: &Path, folder: Option<&Path>) -> Result<PathBuf> {
    if file.is_file() {
        return Ok(file.to_path_buf());
    }
    if file.is_relative()
        && let Some(f) = folder
    {
        let there = f.join(file);
        if there.is_file() {
            return Ok(there);
        }
        return Err(eyre!(
            "no file {} (looked here and in the source folder {})",
            file.display(),
            f.display()
        ));
    }
    if file.exists() {
        return Err(eyre!("{} is not a file", file.display()));
    }
    Err(eyre!("no file {}", file.display()))
}

fn pct(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

fn cut(s: &str, width: usize) -> String {
    let one_line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if one_line.chars().count() <= width {
        one_line
    } else {
        let mut t: String = one_line.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The readable report: the columns, sample rows, and the suggested mapping.
pub fn render_plain(
    preview: &Preview,
    into: Option<&str>,
    targets: Option<&[TargetColumn]>,
    suggestions: &[Suggestion],
) -> String {
    let mut out = String::new();
    let sheet = preview
        .sheet
        .as_ref()
        .map(|s| format!(" (sheet {s})"))
        .unwrap_or_default();
    out.push_str(&format!(
        "{}{sheet}: {} rows, {} columns{}\n\n",
        preview.file,
        preview.rows,
        preview.columns.len(),
        if preview.bad_rows > 0 {
            format!(", {} rows with too few cells or an error cell", preview.bad_rows)
        } else {
            String::new()
        }
    ));
    let name_w = preview
        .columns
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(6)
        .clamp(6, 28);
    let types: Vec<String> = preview
        .columns
        .iter()
        .map(|c| {
            if c.formats.is_empty() {
                c.kind.as_str().to_string()
            } else {
                format!("date {}", c.formats.join(" "))
            }
        })
        .collect();
    let type_w = types.iter().map(|t| t.chars().count()).max().unwrap_or(4).clamp(4, 30);
    out.push_str(&format!(
        "{:<name_w$}  {:<type_w$}  {:>5}  samples\n",
        "column", "type", "blank"
    ));
    for (c, t) in preview.columns.iter().zip(&types) {
        out.push_str(&format!(
            "{:<name_w$}  {:<type_w$}  {:>5}  {}\n",
            cut(&c.name, name_w),
            cut(t, type_w),
            pct(c.blank_rate),
            cut(&c.samples.join(", "), 40)
        ));
    }
    if !preview.sample_rows.is_empty() {
        out.push_str(&format!("\nfirst {} rows (line: cells)\n", preview.sample_rows.len()));
        for r in &preview.sample_rows {
            let cells: Vec<String> = r.cells.iter().map(|c| cut(c, 16)).collect();
            out.push_str(&format!("{:>6}: {}\n", r.line, cut(&cells.join(" | "), 110)));
        }
    }
    if let (Some(table), Some(targets)) = (into, targets) {
        out.push_str(&format!("\nsuggested mapping into {table}\n"));
        let tw = targets
            .iter()
            .map(|t| t.name.chars().count())
            .max()
            .unwrap_or(6)
            .clamp(6, 28);
        for s in suggestions {
            let transforms: Vec<String> = s
                .transforms
                .iter()
                .map(crate::engine::preview::suggest::transform_label)
                .chain(s.validate.iter().map(|c| {
                    serde_json::to_value(c)
                        .ok()
                        .and_then(|v| v.get("rule").and_then(|r| r.as_str()).map(|r| format!("check {r}")))
                        .unwrap_or_default()
                }))
                .collect();
            match &s.target {
                Some(t) => out.push_str(&format!(
                    "  {:<name_w$} -> {:<tw$}  {:.2}  {}\n",
                    cut(&s.column, name_w),
                    cut(t, tw),
                    s.confidence,
                    transforms.join(", ")
                )),
                None => out.push_str(&format!(
                    "  {:<name_w$} -> {:<tw$}  ----  (no target column fits)\n",
                    cut(&s.column, name_w),
                    "-"
                )),
            }
        }
        let unfilled: Vec<&str> = targets
            .iter()
            .filter(|t| !suggestions.iter().any(|s| s.target.as_deref() == Some(t.name.as_str())))
            .map(|t| t.name.as_str())
            .collect();
        if !unfilled.is_empty() {
            out.push_str(&format!(
                "target columns no file column fills: {}\n",
                unfilled.join(", ")
            ));
        }
    }
    out
}
