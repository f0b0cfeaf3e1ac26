//! The migrations pane: every step in order with kind, state, duration, counts and checksum.

use crate::console::format::{content_width, fmt_count, fmt_duration, truncate};
use crate::console::state::{AppState, Pane};
use crate::console::view::pane_block;
use crate::console::view::theme::Theme;
use crate::engine::ops::snapshot::StepSummary;
use crate::engine::project::StepKind;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, HighlightSpacing, Paragraph, Row, StatefulWidget, Table, TableState, Widget};

pub struct MigrationsPane<'a> {
    pub state: &'a AppState,
    pub focused: bool,
}

impl Widget for MigrationsPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let state = self.state;
        let theme = Theme::of(state);
        let pending = state.pending_count();
        let extra = if state.migrations.is_empty() {
            String::new()
        } else {
            format!("{pending} pending")
        };
        let block = pane_block(state, Pane::Migrations, self.focused, &extra);
        if state.migrations.is_empty() {
            let text = if state.loaded {
                vec![
                    Line::from("No migrations in this project."),
                    Line::styled(
                        "Create one with `cutover create NAME --kind sql|data|merge`.",
                        theme.dim(),
                    ),
                ]
            } else {
                vec![Line::styled("reading the target…", theme.dim())]
            };
            Paragraph::new(text).block(block).render(area, buf);
            return;
        }
        let next = state.next_pending().map(|s| s.version.clone());
        let cells: Vec<StepCells> = state
            .migrations
            .iter()
            .map(|m| step_cells(state, m, next.as_deref()))
            .collect();
        // Every column but the name is sized to its content (numbers and versions are never
        // cut); the name gets the rest and is shortened with … only when that is too little.
        let w = |texts: Vec<&str>, header: &str| content_width(texts, header.chars().count());
        let version_w = w(cells.iter().map(|c| c.version).collect(), "Version");
        let kind_w = w(cells.iter().map(|c| c.kind).collect(), "Kind");
        let state_w = w(cells.iter().map(|c| c.state.as_str()).collect(), "State");
        let time_w = w(cells.iter().map(|c| c.time.as_str()).collect(), "Time");
        let written_w = w(cells.iter().map(|c| c.written.as_str()).collect(), "Written");
        let rejected_w = w(cells.iter().map(|c| c.rejected.as_str()).collect(), "Rejected");
        let checksum_w = w(cells.iter().map(|c| c.checksum).collect(), "Checksum");
        let name_w = content_width(cells.iter().map(|c| c.name), 4);
        let inner = (area.width as usize).saturating_sub(2 + 1);
        let others = version_w + kind_w + state_w + time_w + written_w + rejected_w;
        // Where room is short, an all-ok checksum column gives its place to the names.
        let checksums_ok = cells.iter().all(|c| matches!(c.checksum, "ok" | "-"));
        let show_checksum = !checksums_ok || inner >= others + checksum_w + name_w + 7;
        let gaps = if show_checksum { 7 } else { 6 };
        let fixed = others + gaps + if show_checksum { checksum_w } else { 0 };
        let name_room = inner.saturating_sub(fixed).max(4);
        let rows: Vec<Row> = cells
            .into_iter()
            .map(|c| c.row(name_room, theme, show_checksum))
            .collect();
        let mut headers = vec!["Version", "Name", "Kind", "State", "Time", "Written", "Rejected"];
        let mut widths = vec![
            Constraint::Length(version_w as u16),
            Constraint::Length(name_w.min(name_room) as u16),
            Constraint::Length(kind_w as u16),
            Constraint::Length(state_w as u16),
            Constraint::Length(time_w as u16),
            Constraint::Length(written_w as u16),
            Constraint::Length(rejected_w as u16),
        ];
        if show_checksum {
            headers.push("Checksum");
            widths.push(Constraint::Length(checksum_w as u16));
        }
        let header = Row::new(headers).style(theme.bold());
        let table = Table::new(rows, widths)
            .header(header)
            .block(block)
            .column_spacing(1)
            .highlight_symbol(">")
            .highlight_spacing(HighlightSpacing::Always)
            .row_highlight_style(if self.focused { theme.selected() } else { theme.bold() });
        let mut ts = TableState::default().with_selected(Some(state.selected_step));
        StatefulWidget::render(table, area, buf, &mut ts);
    }
}

/// One step's cells as text, before the columns are sized to them.
struct StepCells<'a> {
    version: &'a str,
    name: &'a str,
    kind: &'a str,
    state: String,
    state_style: ratatui::style::Style,
    time: String,
    written: String,
    rejected: String,
    rejected_warn: bool,
    checksum: &'a str,
    checksum_warn: bool,
}

impl<'a> StepCells<'a> {
    fn row(self, name_width: usize, theme: Theme, checksum: bool) -> Row<'a> {
        let mut cells = vec![
            Cell::from(self.version),
            Cell::from(truncate(self.name, name_width)),
            Cell::from(self.kind),
            Cell::from(Span::styled(self.state, self.state_style)),
            Cell::from(Line::from(self.time).right_aligned()),
            Cell::from(Line::from(self.written).right_aligned()),
            Cell::from(
                Line::styled(
                    self.rejected,
                    if self.rejected_warn {
                        theme.warn()
                    } else {
                        theme.plain()
                    },
                )
                .right_aligned(),
            ),
        ];
        if checksum {
            cells.push(Cell::from(Span::styled(
                self.checksum,
                if self.checksum_warn {
                    theme.warn()
                } else {
                    theme.plain()
                },
            )));
        }
        Row::new(cells)
    }
}

fn step_cells<'a>(state: &AppState, m: &'a StepSummary, next: Option<&str>) -> StepCells<'a> {
    let theme = Theme::of(state);
    let current = state
        .run
        .as_ref()
        .and_then(|r| r.current.as_ref())
        .filter(|c| c.version == m.version);
    let live = current.filter(|c| !c.dry_run).map(|c| c.progress);
    let state_word = match (live, m.state.as_str()) {
        (Some(_), _) if state.run.as_ref().is_some_and(|r| r.paused) => "paused".to_string(),
        (Some(_), _) => "running".to_string(),
        (None, "pending") if next == Some(m.version.as_str()) => "next".to_string(),
        (None, s) => s.to_string(),
    };
    let state_style = theme.step_state(if state_word == "paused" {
        "running"
    } else {
        m.state.as_str()
    });
    let time = match (live, m.duration_ms) {
        (Some(p), _) => fmt_duration(p.elapsed_ms),
        // A reverted step's ledger row still holds the undone run's figures: not shown as current.
        (None, Some(ms)) if !matches!(m.state.as_str(), "pending" | "reverted") => fmt_duration(ms.max(0) as u64),
        _ => String::new(),
    };
    let (written, rejected) = if m.kind == StepKind::Schema {
        ("-".to_string(), "-".to_string())
    } else if let Some(p) = live {
        (fmt_count(p.written), fmt_count(p.rejected))
    } else if let (true, Some(c)) = (
        matches!(m.state.as_str(), "pending" | "reverted"),
        state.dry_runs.get(&m.version),
    ) {
        // A dry run's would-be counts, marked as such.
        (
            format!("~{}", fmt_count(c.written)),
            format!("~{}", fmt_count(c.rejected)),
        )
    } else if matches!(m.state.as_str(), "pending" | "reverted") {
        (String::new(), String::new())
    } else {
        (fmt_count(m.counts.written), fmt_count(m.counts.rejected))
    };
    let rejected_warn = rejected.trim_start_matches('~') != "0" && rejected != "-" && !rejected.is_empty();
    StepCells {
        version: m.version.as_str(),
        name: m.name.as_str(),
        kind: m.kind.as_str(),
        state: state_word,
        state_style,
        time,
        written,
        rejected,
        rejected_warn,
        checksum: m.checksum_state.as_str(),
        checksum_warn: !(m.checksum_state == "ok" || m.checksum_state == "-"),
    }
}
