//! The migrations pane: every step in order with kind, state, duration, counts and checksum.

use crate::console::format::{fmt_count, fmt_duration};
use crate::console::state::{AppState, Pane};
use crate::console::view::pane_block;
use crate::console::view::theme::Theme;
use crate::engine::ops::snapshot::StepSummary;
use crate::engine::project::StepKind;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget};

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
        let rows: Vec<Row> = state
            .migrations
            .iter()
            .map(|m| step_row(state, m, next.as_deref(), theme))
            .collect();
        let header = Row::new([
            "Version", "Name", "Kind", "State", "Time", "Written", "Rejected", "Checksum",
        ])
        .style(theme.bold());
        let widths = [
            Constraint::Length(15),
            Constraint::Min(8),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(8),
        ];
        let table = Table::new(rows, widths)
            .header(header)
            .block(block)
            .column_spacing(1)
            .highlight_symbol(">")
            .row_highlight_style(if self.focused { theme.selected() } else { theme.bold() });
        let mut ts = TableState::default().with_selected(Some(state.selected_step));
        StatefulWidget::render(table, area, buf, &mut ts);
    }
}

fn step_row<'a>(state: &AppState, m: &'a StepSummary, next: Option<&str>, theme: Theme) -> Row<'a> {
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
    let rejected_style = if rejected.trim_start_matches('~') != "0" && rejected != "-" && !rejected.is_empty() {
        theme.warn()
    } else {
        theme.plain()
    };
    let checksum_style = if m.checksum_state == "ok" || m.checksum_state == "-" {
        theme.plain()
    } else {
        theme.warn()
    };
    Row::new(vec![
        Cell::from(m.version.as_str()),
        Cell::from(m.name.as_str()),
        Cell::from(m.kind.as_str()),
        Cell::from(Span::styled(state_word, state_style)),
        Cell::from(Line::from(time).right_aligned()),
        Cell::from(Line::from(written).right_aligned()),
        Cell::from(Line::styled(rejected, rejected_style).right_aligned()),
        Cell::from(Span::styled(m.checksum_state.as_str(), checksum_style)),
    ])
}
