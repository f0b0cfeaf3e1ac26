//! The pre-flight pane (`F`): the last `assess` of the pending steps, one row per step (source
//! rows, would write, rejected, duplicate keys, unresolved references, estimate), the total
//! against the maintenance window, and the selected step's rejects by rule with examples.
//! It takes the panes' place while open, like the import pane.

use crate::console::format::{fmt_count, fmt_duration, fmt_secs, truncate};
use crate::console::state::AppState;
use crate::console::view::theme::Theme;
use crate::engine::project::StepKind;
use crate::engine::protocol::assess::{AssessReport, AssessStep};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget, Wrap};

pub struct AssessPane<'a> {
    pub state: &'a AppState,
}

impl Widget for AssessPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let state = self.state;
        let theme = Theme::of(state);
        let a = &state.assess;
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.border(true))
            .title(" [F] Pre-flight · assess (rolled back: nothing is kept) ");
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 3 || inner.width < 30 {
            return;
        }
        let width = inner.width as usize;
        let mut top: Vec<Line> = Vec::new();
        if let Some(since) = a.since {
            let text = format!(
                "assessing the pending steps… (since {}; a dry run rolled back at its end)",
                state.local_time(since).format("%H:%M:%S")
            );
            top.push(Line::styled(truncate(&text, width), theme.warn()));
        }
        if let Some(e) = &a.error {
            top.push(Line::styled(truncate(&format!("✗ {e}"), width), theme.error()));
        }
        let Some(report) = &a.report else {
            if a.since.is_none() {
                top.push(Line::styled("No assessment yet: press r to assess.", theme.dim()));
            }
            Paragraph::new(top).wrap(Wrap { trim: false }).render(inner, buf);
            return;
        };
        top.push(Line::styled(truncate(&summary(state, report), width), theme.bold()));
        if let Some(line) = window_line(state, report) {
            let style = if line.contains("OVERRUNS") {
                theme.error()
            } else {
                theme.ok()
            };
            top.push(Line::styled(truncate(&line, width), style));
        }
        let detail = a.report.as_ref().and_then(|r| r.steps.get(a.selected));
        let detail_lines = detail.map(|s| detail_lines(s, width)).unwrap_or_default();
        let detail_height = (detail_lines.len() as u16).min(inner.height.saturating_sub(top.len() as u16 + 4));
        let [top_area, table_area, detail_area] = Layout::vertical([
            Constraint::Length(top.len() as u16),
            Constraint::Min(3),
            Constraint::Length(detail_height),
        ])
        .areas(inner);
        Paragraph::new(top).render(top_area, buf);
        let header = Row::new(["step", "source", "write", "reject", "dup", "unres", "estimate"]).style(theme.bold());
        let rows: Vec<Row> = report.steps.iter().map(|s| step_row(s, theme)).collect();
        let table = Table::new(
            rows,
            [
                Constraint::Min(16),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(7),
                Constraint::Length(5),
                Constraint::Length(6),
                Constraint::Length(9),
            ],
        )
        .header(header)
        .row_highlight_style(theme.selected());
        let mut ts = TableState::default().with_selected(Some(a.selected));
        StatefulWidget::render(table, table_area, buf, &mut ts);
        Paragraph::new(detail_lines).render(detail_area, buf);
    }
}

fn step_row(s: &AssessStep, theme: Theme) -> Row<'static> {
    let name = format!("{} {}", s.version, s.name);
    if let Some(e) = &s.error {
        return Row::new(vec![
            Cell::from(name),
            Cell::from(format!("✗ {e}")).style(theme.error()),
        ]);
    }
    if s.kind == StepKind::Schema {
        return Row::new(vec![Cell::from(name), Cell::from("schema").style(theme.dim())]);
    }
    let rejects: u64 = s.rejects_by_rule.values().sum();
    Row::new(vec![
        Cell::from(name),
        Cell::from(s.source_rows.map(fmt_count).unwrap_or_else(|| "?".into())),
        Cell::from(fmt_count(s.would_write)),
        Cell::from(fmt_count(rejects)).style(if rejects > 0 { theme.warn() } else { theme.plain() }),
        Cell::from(fmt_count(s.duplicate_keys)),
        Cell::from(fmt_count(s.unresolved_references)),
        Cell::from(fmt_duration(s.estimated_ms)),
    ])
}

fn summary(state: &AppState, r: &AssessReport) -> String {
    let writes: u64 = r.steps.iter().map(|s| s.would_write).sum();
    let rejects: u64 = r.steps.iter().map(|s| s.rejects_by_rule.values().sum::<u64>()).sum();
    let at = state
        .assess
        .at
        .map(|t| format!(" (at {})", state.local_time(t).format("%H:%M:%S")))
        .unwrap_or_default();
    if r.steps.is_empty() {
        return format!("nothing pending{at}");
    }
    format!(
        "{} pending step(s): {} would be written, {} rejected; estimate {} from {}{at}",
        r.steps.len(),
        fmt_count(writes),
        fmt_count(rejects),
        fmt_duration(r.estimated_ms),
        if r.estimate_basis == "ledger" {
            "this target's applied steps"
        } else {
            "this assess's measured rates"
        }
    )
}

/// The assessed total against the window: from now (or its start) to its end.
fn window_line(state: &AppState, r: &AssessReport) -> Option<String> {
    let w = state.window?;
    let from = state.now.max(w.start.with_timezone(&chrono::Utc));
    let left = (w.end.with_timezone(&chrono::Utc) - from).num_seconds();
    let need = r.estimated_ms.div_ceil(1000) as i64;
    Some(if need <= left {
        format!(
            "fits the window: {} of the {} left (ends {})",
            fmt_secs(need),
            fmt_secs(left.max(0)),
            w.end.format("%H:%M")
        )
    } else {
        format!(
            "OVERRUNS the window: needs {}, {} left (ends {})",
            fmt_secs(need),
            fmt_secs(left.max(0)),
            w.end.format("%H:%M")
        )
    })
}

fn detail_lines(s: &AssessStep, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    if s.kind == StepKind::Schema && s.error.is_none() {
        out.push(Line::from(truncate(
            &format!(
                "{}: schema step; its statements ran in the assess's transaction",
                s.version
            ),
            width,
        )));
        return out;
    }
    let pairs = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    };
    let mut head = format!(
        "{}: read {}, would write {}, skip {}",
        s.version,
        fmt_count(s.rows_read),
        fmt_count(s.would_write),
        fmt_count(s.would_skip)
    );
    if s.would_merge > 0 {
        head.push_str(&format!(", merge {}", fmt_count(s.would_merge)));
    }
    out.push(Line::from(truncate(&head, width)));
    if !s.rejects_by_rule.is_empty() {
        out.push(Line::from(truncate(
            &format!("rejects by rule: {}", pairs(&s.rejects_by_rule)),
            width,
        )));
    }
    if !s.warnings_by_rule.is_empty() {
        out.push(Line::from(truncate(
            &format!("warnings by rule: {}", pairs(&s.warnings_by_rule)),
            width,
        )));
    }
    let blanks: Vec<String> = s
        .blank_rates
        .iter()
        .filter(|(_, r)| **r > 0.0)
        .map(|(c, r)| format!("{c} {:.1}%", r * 100.0))
        .collect();
    if !blanks.is_empty() {
        out.push(Line::from(truncate(&format!("blank: {}", blanks.join(", ")), width)));
    }
    for e in s.examples.iter().take(3) {
        out.push(Line::from(truncate(
            &format!("  e.g. key {} [{}]: {}", e.source_key, e.rule, e.reason),
            width,
        )));
    }
    out
}
