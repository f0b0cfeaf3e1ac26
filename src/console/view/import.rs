//! The import pane (`i`): the source folder's files; then the chosen file's columns with their
//! inferred type, blank share and suggested target column and transforms, the selected
//! column's samples, and the last dry run's books and first rejects. Reads state only.

use crate::console::format::{fmt_count, truncate};
use crate::console::state::{AppState, ImportField, ImportStage, ImportState};
use crate::console::view::theme::Theme;
use crate::engine::preview::suggest::transform_label;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget};

pub struct ImportPane<'a> {
    pub state: &'a AppState,
}

impl Widget for ImportPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let Some(import) = &self.state.import else {
            return;
        };
        let theme = Theme::of(self.state);
        let title = match (&import.file, import.stage) {
            (Some(f), ImportStage::Mapping) => format!(" Import · {f} → {} ", import.table),
            _ => format!(" Import · {} ", import.folder.as_deref().unwrap_or("the source folder")),
        };
        let block = Block::default()
            .borders(Borders::ALL)
            .border_type(BorderType::Thick)
            .border_style(theme.border(true))
            .title(Span::styled(
                truncate(&title, area.width.saturating_sub(4) as usize),
                theme.bold(),
            ));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 4 || inner.width < 30 {
            return;
        }
        // The input line and the error or waiting line sit at the bottom.
        let foot = foot_lines(import, theme, inner.width as usize);
        let [main, foot_area] =
            Layout::vertical([Constraint::Min(1), Constraint::Length(foot.len() as u16)]).areas(inner);
        Paragraph::new(foot).render(foot_area, buf);
        match import.stage {
            ImportStage::Files => render_files(import, theme, main, buf),
            ImportStage::Mapping => render_mapping(import, theme, main, buf),
        }
    }
}

fn foot_lines(import: &ImportState, theme: Theme, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    if let Some(e) = &import.error {
        out.push(Line::styled(truncate(&format!("✗ {e}"), width), theme.error()));
    }
    if let Some(w) = &import.waiting {
        out.push(Line::styled(truncate(w, width), theme.warn()));
    }
    if let Some((field, input)) = &import.editing {
        let column = import.selected().map(|r| r.suggestion.column.as_str()).unwrap_or("");
        let label = match field {
            ImportField::Table => "into target table: ".to_string(),
            ImportField::Target => format!("{column} → target column (empty: leave out): "),
            ImportField::Transforms => format!("{column} transforms: "),
            ImportField::StepName => "save as step named: ".to_string(),
        };
        let room = width.saturating_sub(label.chars().count() + 1);
        // The end of a long input is what is being typed.
        let shown: String = {
            let n = input.chars().count();
            input.chars().skip(n.saturating_sub(room)).collect()
        };
        out.push(Line::from(vec![
            Span::styled(label, theme.accent().patch(theme.bold())),
            Span::raw(shown),
            Span::styled("▏", theme.accent()),
        ]));
    }
    out
}

fn render_files(import: &ImportState, theme: Theme, area: Rect, buf: &mut Buffer) {
    let width = area.width as usize;
    let mut lines: Vec<Line> = Vec::new();
    if import.files.is_empty() {
        if import.waiting.is_none() && import.error.is_none() {
            lines.push(Line::styled(
                "No CSV or workbook files in the source folder.",
                theme.dim(),
            ));
        }
        Paragraph::new(lines).render(area, buf);
        return;
    }
    lines.push(Line::styled(
        truncate("Choose a file (enter), then the table it goes into.", width),
        theme.dim(),
    ));
    let room = (area.height as usize).saturating_sub(1);
    let first = import.selected_file.saturating_sub(room.saturating_sub(1));
    for (i, f) in import.files.iter().enumerate().skip(first).take(room) {
        let selected = i == import.selected_file;
        let text = format!("{} {f}", if selected { "▶" } else { " " });
        lines.push(Line::styled(
            truncate(&text, width),
            if selected { theme.selected() } else { theme.plain() },
        ));
    }
    Paragraph::new(lines).render(area, buf);
}

fn pct(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

fn render_mapping(import: &ImportState, theme: Theme, area: Rect, buf: &mut Buffer) {
    let Some(preview) = &import.preview else {
        return;
    };
    let width = area.width as usize;
    let summary = format!(
        "{} rows · {} columns · {} mapped{}",
        fmt_count(preview.rows),
        preview.columns.len(),
        import.rows.iter().filter(|r| r.suggestion.target.is_some()).count(),
        import
            .saved
            .as_ref()
            .map(|p| format!(" · saved {p}"))
            .unwrap_or_default()
    );
    // Under the table: the selected column's samples and why, then the dry run.
    let mut below: Vec<Line> = Vec::new();
    if let Some(row) = import.selected() {
        let col = preview.columns.iter().find(|c| c.name == row.suggestion.column);
        let samples = col.map(|c| c.samples.join(", ")).unwrap_or_default();
        below.push(Line::from(vec![
            Span::styled("samples ", theme.dim()),
            Span::raw(truncate(&samples, width.saturating_sub(8))),
        ]));
        let why = if row.edited {
            "edited".to_string()
        } else {
            row.suggestion.why.clone()
        };
        if !why.is_empty() {
            below.push(Line::from(vec![
                Span::styled("why     ", theme.dim()),
                Span::raw(truncate(&why, width.saturating_sub(8))),
            ]));
        }
    }
    if let Some(d) = &import.dry_run {
        let head = match (&d.counts, d.ok) {
            (Some(c), true) => format!(
                "dry run: would write {}, skip {}, reject {} of {} rows; nothing written",
                fmt_count(c.written),
                fmt_count(c.skipped),
                fmt_count(c.rejected),
                fmt_count(c.source)
            ),
            _ => format!(
                "dry run failed: {}",
                d.errors.first().map(String::as_str).unwrap_or("see the log")
            ),
        };
        below.push(Line::styled(
            truncate(&head, width),
            if d.ok { theme.ok() } else { theme.error() },
        ));
        for (key, rule, reason) in d.rejects.iter().take(3) {
            below.push(Line::styled(
                truncate(&format!("  line {key} ({rule}): {reason}"), width),
                theme.warn(),
            ));
        }
    }
    let table_height = area.height.saturating_sub(1 + below.len() as u16).max(3);
    let [top, table_area, below_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table_height),
        Constraint::Min(0),
    ])
    .areas(area);
    Paragraph::new(Line::styled(truncate(&summary, width), theme.dim())).render(top, buf);
    Paragraph::new(below).render(below_area, buf);

    let wide = width >= 110;
    let col_w: u16 = if wide { 22 } else { 16 };
    let type_w: u16 = if wide { 14 } else { 7 };
    let target_w: u16 = if wide { 18 } else { 13 };
    let header = Row::new(["column", "type", "blank", "→ target", "conf", "transforms"]).style(theme.bold());
    let rows: Vec<Row> = import
        .rows
        .iter()
        .map(|r| {
            let col = preview.columns.iter().find(|c| c.name == r.suggestion.column);
            let kind = col.map_or(String::new(), |c| {
                if wide && !c.formats.is_empty() {
                    format!("date {}", c.formats.join(" "))
                } else if c.gender_like {
                    "gender".to_string()
                } else {
                    c.kind.as_str().to_string()
                }
            });
            let blank = col.map_or(String::new(), |c| pct(c.blank_rate));
            let (target, style) = match &r.suggestion.target {
                Some(t) => (t.clone(), theme.plain()),
                None => ("—".to_string(), theme.dim()),
            };
            let conf = if r.edited {
                "edit".to_string()
            } else if r.suggestion.target.is_some() {
                format!("{:.2}", r.suggestion.confidence)
            } else {
                String::new()
            };
            let transforms: Vec<String> = r.suggestion.transforms.iter().map(transform_label).collect();
            let transforms = transforms.join(", ");
            Row::new(vec![
                Cell::from(r.suggestion.column.clone()),
                Cell::from(kind),
                Cell::from(blank),
                Cell::from(target),
                Cell::from(conf),
                Cell::from(transforms),
            ])
            .style(style)
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(col_w),
            Constraint::Length(type_w),
            Constraint::Length(5),
            Constraint::Length(target_w),
            Constraint::Length(4),
            Constraint::Min(10),
        ],
    )
    .header(header)
    .row_highlight_style(theme.selected())
    .highlight_symbol("▶ ");
    let mut ts = TableState::default().with_selected(Some(import.selected_row));
    StatefulWidget::render(table, table_area, buf, &mut ts);
}
