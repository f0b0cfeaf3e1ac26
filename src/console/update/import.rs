//! The import pane's part of `update`: choosing a file of the source folder, the table it goes
//! into, reading the engine's preview and suggested mapping, editing a row's target column or
//! transforms, and asking for a dry run or a saved step. Pure: the step text is built here
//! from the state (`step_toml` only formats), the engine does the reading and writing.

use super::common::{refuse_if_running, would_be};
use crate::console::format::one_line;
use crate::console::keymap::Action;
use crate::console::state::{AppState, ImportField, ImportStage, ImportState, MappingRow, StatusLevel};
use crate::engine::preview::step::step_toml;
use crate::engine::preview::suggest::{parse_transforms, transforms_toml};
use crate::engine::preview::{PreviewReport, Suggestion};
use crate::engine::protocol::Command;
use crate::engine::protocol::StepDryRun;

/// Sample rows asked for with a preview.
pub const PREVIEW_ROWS: usize = 5;

/// `i`: open the pane and ask for the source folder's files.
pub fn open(state: &mut AppState) -> Vec<Command> {
    state.import = Some(ImportState {
        waiting: Some("reading the source folder…".into()),
        ..ImportState::default()
    });
    vec![Command::ListImportFiles]
}

/// A key of the pane (not its input line).
pub fn on_action(state: &mut AppState, action: Action) -> Vec<Command> {
    if action == Action::ToggleHelp {
        state.help = true;
        return Vec::new();
    }
    let Some(import) = state.import.as_mut() else {
        return Vec::new();
    };
    match (import.stage, action) {
        (_, Action::Up | Action::Down | Action::Top | Action::Bottom) => move_selection(import, action),
        (ImportStage::Files, Action::Close) => state.import = None,
        (ImportStage::Files, Action::Submit) => match import.files.get(import.selected_file) {
            Some(file) => {
                let stem = file.rsplit_once('.').map_or(file.as_str(), |(s, _)| s);
                import.editing = Some((ImportField::Table, stem.to_string()));
            }
            None => state.set_status(StatusLevel::Info, "no file to open"),
        },
        (ImportStage::Mapping, Action::Close) => {
            import.stage = ImportStage::Files;
            import.preview = None;
            import.rows.clear();
            import.dry_run = None;
            import.error = None;
        }
        (ImportStage::Mapping, Action::Submit | Action::ImportTarget) => {
            if let Some(row) = import.selected() {
                let current = row.suggestion.target.clone().unwrap_or_default();
                import.editing = Some((ImportField::Target, current));
            }
        }
        (ImportStage::Mapping, Action::ImportTransforms) => {
            if let Some(row) = import.selected() {
                let current = transforms_toml(&row.suggestion.transforms);
                import.editing = Some((ImportField::Transforms, current));
            }
        }
        (ImportStage::Mapping, Action::DryRun) => return dry_run(state),
        (ImportStage::Mapping, Action::ImportSave) => {
            if mapped(import) == 0 {
                state.set_status(
                    StatusLevel::Warn,
                    "no column is mapped to a target column: nothing to save",
                );
            } else {
                import.editing = Some((ImportField::StepName, import.table.clone()));
            }
        }
        (ImportStage::Files, Action::DryRun | Action::ImportSave | Action::ImportTarget | Action::ImportTransforms) => {
            state.set_status(StatusLevel::Info, "open a file first (enter)")
        }
        _ => {}
    }
    Vec::new()
}

fn move_selection(import: &mut ImportState, action: Action) {
    let (sel, len) = match import.stage {
        ImportStage::Files => (&mut import.selected_file, import.files.len()),
        ImportStage::Mapping => (&mut import.selected_row, import.rows.len()),
    };
    if len == 0 {
        *sel = 0;
        return;
    }
    *sel = match action {
        Action::Up => sel.saturating_sub(1),
        Action::Down => (*sel + 1).min(len - 1),
        Action::Top => 0,
        _ => len - 1,
    };
}

fn mapped(import: &ImportState) -> usize {
    import.rows.iter().filter(|r| r.suggestion.target.is_some()).count()
}

/// A character typed into the input line.
pub fn type_char(state: &mut AppState, c: char) -> Vec<Command> {
    if let Some((_, input)) = state.import.as_mut().and_then(|i| i.editing.as_mut()) {
        input.push(c);
    }
    Vec::new()
}

/// Enter, esc or backspace on the input line.
pub fn on_input_action(state: &mut AppState, action: Action) -> Vec<Command> {
    let Some(import) = state.import.as_mut() else {
        return Vec::new();
    };
    match action {
        Action::Backspace => {
            if let Some((_, input)) = import.editing.as_mut() {
                input.pop();
            }
            Vec::new()
        }
        Action::Cancel => {
            import.editing = None;
            import.error = None;
            Vec::new()
        }
        Action::Submit => submit(state),
        _ => Vec::new(),
    }
}

fn submit(state: &mut AppState) -> Vec<Command> {
    let Some(import) = state.import.as_mut() else {
        return Vec::new();
    };
    let Some((field, input)) = import.editing.clone() else {
        return Vec::new();
    };
    let input = input.trim().to_string();
    match field {
        ImportField::Table => {
            if input.is_empty() {
                import.error = Some("type the target table the file goes into".into());
                return Vec::new();
            }
            let Some(file) = import.files.get(import.selected_file).cloned() else {
                import.editing = None;
                return Vec::new();
            };
            import.editing = None;
            import.error = None;
            import.file = Some(file.clone());
            import.table = input.clone();
            import.waiting = Some(format!("previewing {file}…"));
            vec![Command::PreviewFile {
                file,
                sheet: None,
                into: Some(input),
                rows: PREVIEW_ROWS,
            }]
        }
        ImportField::Target => {
            let target = (!input.is_empty()).then_some(input);
            if let Some(t) = &target
                && !import.targets.is_empty()
                && !import.targets.iter().any(|c| c.name == *t)
            {
                let have: Vec<&str> = import.targets.iter().map(|c| c.name.as_str()).collect();
                import.error = Some(format!(
                    "{} has no column '{t}' (it has: {})",
                    import.table,
                    have.join(", ")
                ));
                return Vec::new();
            }
            import.editing = None;
            import.error = None;
            let sel = import.selected_row;
            // One target column takes one file column: the row that had it gives it up.
            let mut moved_from = None;
            if let Some(t) = &target {
                for (i, row) in import.rows.iter_mut().enumerate() {
                    if i != sel && row.suggestion.target.as_ref() == Some(t) {
                        row.suggestion.target = None;
                        row.edited = true;
                        moved_from = Some(row.suggestion.column.clone());
                    }
                }
            }
            if let Some(row) = import.rows.get_mut(sel) {
                row.suggestion.target = target.clone();
                row.edited = true;
                let text = match (&target, moved_from) {
                    (Some(t), Some(from)) => format!("{} -> {t} ({from} no longer goes there)", row.suggestion.column),
                    (Some(t), None) => format!("{} -> {t}", row.suggestion.column),
                    (None, _) => format!("{} is left out", row.suggestion.column),
                };
                import.dry_run = None;
                state.set_status(StatusLevel::Info, text);
            }
            Vec::new()
        }
        ImportField::Transforms => match parse_transforms(&input) {
            Ok(ts) => {
                import.editing = None;
                import.error = None;
                import.dry_run = None;
                if let Some(row) = import.rows.get_mut(import.selected_row) {
                    row.suggestion.transforms = ts;
                    row.edited = true;
                }
                Vec::new()
            }
            // The line stays open so the operator can correct it.
            Err(e) => {
                import.error = Some(format!("transforms: {}", one_line(&e)));
                Vec::new()
            }
        },
        ImportField::StepName => {
            if input.is_empty() {
                import.error = Some("type a name for the step".into());
                return Vec::new();
            }
            let Some(step) = step_text(import) else {
                import.editing = None;
                return Vec::new();
            };
            import.editing = None;
            import.error = None;
            import.waiting = Some(format!("saving step {input}…"));
            vec![Command::SaveImportStep { name: input, step }]
        }
    }
}

/// `d`: dry-run the mapping as it stands.
fn dry_run(state: &mut AppState) -> Vec<Command> {
    if refuse_if_running(state) {
        return Vec::new();
    }
    let Some(import) = state.import.as_mut() else {
        return Vec::new();
    };
    if mapped(import) == 0 {
        state.set_status(
            StatusLevel::Warn,
            "no column is mapped to a target column: nothing to dry-run",
        );
        return Vec::new();
    }
    let Some(step) = step_text(import) else {
        return Vec::new();
    };
    import.waiting = Some("dry run (nothing is written)…".into());
    import.dry_run = None;
    vec![Command::DryRunImport {
        name: import.table.clone(),
        step,
    }]
}

/// The step.toml the mapping makes.
pub fn step_text(import: &ImportState) -> Option<String> {
    let preview = import.preview.as_ref()?;
    let file = import.file.as_ref()?;
    let suggestions: Vec<Suggestion> = import.rows.iter().map(|r| r.suggestion.clone()).collect();
    Some(step_toml(preview, file, &import.table, &import.targets, &suggestions))
}

/// `EngineEvent::ImportFiles`.
pub fn on_files(state: &mut AppState, folder: Option<String>, files: Vec<String>, error: Option<String>) {
    let Some(import) = state.import.as_mut() else {
        return;
    };
    import.waiting = None;
    import.folder = folder;
    import.selected_file = import.selected_file.min(files.len().saturating_sub(1));
    import.files = files;
    import.error = error.map(|e| one_line(&e));
}

/// `EngineEvent::Preview`: the mapping to edit (an answer for another file is dropped).
pub fn on_preview(state: &mut AppState, report: PreviewReport) {
    let Some(import) = state.import.as_mut() else {
        return;
    };
    if import.file.as_deref() != Some(report.file.as_str()) || report.into.as_deref() != Some(import.table.as_str()) {
        return;
    }
    import.waiting = None;
    import.error = report.error.map(|e| one_line(&e));
    import.dry_run = None;
    import.saved = None;
    let Some(preview) = report.preview else {
        return;
    };
    // Without the table there are no suggestions: one row per column, none mapped.
    let suggestions = if report.suggestions.is_empty() {
        preview
            .columns
            .iter()
            .map(|c| {
                let (transforms, validate, _) = crate::engine::preview::suggest::transforms_for(c, None);
                Suggestion {
                    column: c.name.clone(),
                    target: None,
                    confidence: 0.0,
                    transforms,
                    validate,
                    why: String::new(),
                }
            })
            .collect()
    } else {
        report.suggestions
    };
    import.rows = suggestions
        .into_iter()
        .map(|suggestion| MappingRow {
            suggestion,
            edited: false,
        })
        .collect();
    import.targets = report.targets.unwrap_or_default();
    import.preview = Some(preview);
    import.selected_row = 0;
    import.stage = ImportStage::Mapping;
}

/// `EngineEvent::ImportDryRun`.
pub fn on_dry_run(state: &mut AppState, report: StepDryRun, error: Option<String>) {
    let Some(import) = state.import.as_mut() else {
        return;
    };
    import.waiting = None;
    if let Some(e) = error {
        let e = one_line(&e);
        import.error = Some(e.clone());
        state.set_status(StatusLevel::Error, format!("dry run failed: {e}"));
        return;
    }
    let text = match (&report.counts, report.errors.first()) {
        (Some(c), _) if report.ok => format!("dry run: {} (nothing written)", would_be(c)),
        (_, Some(e)) => format!("dry run failed: {}", one_line(e)),
        _ => "dry run failed".to_string(),
    };
    let level = if report.ok {
        StatusLevel::Info
    } else {
        StatusLevel::Error
    };
    import.dry_run = Some(report);
    state.set_status(level, text);
}

/// `EngineEvent::ImportSaved`.
pub fn on_saved(state: &mut AppState, path: String, error: Option<String>) {
    let Some(import) = state.import.as_mut() else {
        return;
    };
    import.waiting = None;
    match error {
        Some(e) => {
            let e = one_line(&e);
            import.error = Some(e.clone());
            state.set_status(StatusLevel::Error, format!("not saved: {e}"));
        }
        None => {
            import.saved = Some(path.clone());
            state.set_status(
                StatusLevel::Info,
                format!("saved {path}/step.toml; `cutover up` (or the console after a restart) runs it"),
            );
        }
    }
}
