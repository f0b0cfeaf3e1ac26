//! The verify pane: the checks of `cutover verify` against the target (and the source), failing
//! ones first. A failing check is marked `FAIL` and bold (red with colour), so it shows without
//! colour too; the selected check's detail is shown in full under the table.

use crate::console::format::{fmt_secs, truncate};
use crate::console::state::{AppState, Pane, VerifyState};
use crate::console::view::pane_block;
use crate::console::view::theme::Theme;
use crate::engine::ops::verify::{Check, Measure};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget, Wrap};

/// From this inner width on, measures (digests, counts) get more room.
const WIDE: u16 = 100;

pub struct VerifyPane<'a> {
    pub state: &'a AppState,
    pub focused: bool,
}

impl Widget for VerifyPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let state = self.state;
        let theme = Theme::of(state);
        let v = &state.verify;
        // The frame title: " [6] Verify · " plus what fits of the summary.
        let room = (area.width as usize).saturating_sub(" [6] Verify · ".len() + 3);
        let block = pane_block(state, Pane::Verify, self.focused, &title_extra(state, room));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 2 || inner.width < 20 {
            return;
        }
        let width = inner.width as usize;
        let mut top: Vec<Line> = Vec::new();
        if let Some(e) = &v.error {
            top.push(Line::styled(truncate(&format!("✗ {e}"), width), theme.error()));
        }
        let Some(report) = &v.report else {
            top.extend(no_report_lines(state, theme));
            Paragraph::new(top).wrap(Wrap { trim: false }).render(inner, buf);
            return;
        };
        if v.verifying() {
            let at = v.at.map(|t| state.local_time(t).format("%H:%M:%S").to_string());
            let text = format!("verifying… (the checks below are from {})", at.unwrap_or_default());
            top.push(Line::styled(truncate(&text, width), theme.warn()));
        }
        if report.checks.is_empty() {
            top.push(Line::styled("The engine ran no checks.", theme.dim()));
            Paragraph::new(top).render(inner, buf);
            return;
        }
        // Every check has a row when it fits; the selected check in full goes under the table
        // (up to three lines under a rule), or as one line without the rule when that is what
        // lets every row show. When the rows do not fit, the table scrolls and says how many
        // are out of view.
        let rows_needed = 1 + report.checks.len() as u16;
        let avail = inner.height.saturating_sub(top.len() as u16);
        let selected_text = v
            .selected_check()
            .map(|c| selected_line(c, theme).width().div_ceil(width).clamp(1, 3) as u16);
        let (footer_height, rule) = match selected_text {
            Some(text) if inner.height >= 8 && avail > rows_needed + text => (text + 1, true),
            Some(_) if avail > rows_needed => (1, false),
            Some(_) if avail < rows_needed && avail >= 6 => (1, false),
            _ => (0, false),
        };
        let table_height = avail.saturating_sub(footer_height);
        let marker_height = u16::from(rows_needed > table_height && table_height >= 3);
        let [top_area, table_area, marker_area, foot_area] = Layout::vertical([
            Constraint::Length(top.len() as u16),
            Constraint::Length(table_height - marker_height),
            Constraint::Length(marker_height),
            Constraint::Length(footer_height),
        ])
        .areas(inner);
        Paragraph::new(top).render(top_area, buf);
        let offset = render_table(state, report.checks.as_slice(), self.focused, table_area, buf);
        if marker_height > 0 {
            let shown = table_area.height.saturating_sub(1) as usize;
            let above = offset;
            let below = report.checks.len().saturating_sub(offset + shown);
            let mut parts = Vec::new();
            if above > 0 {
                parts.push(format!("↑ {above} more above"));
            }
            if below > 0 {
                parts.push(format!("↓ {below} more below"));
            }
            let text = format!("{} (j/k scrolls)", parts.join(" · "));
            Paragraph::new(Line::styled(truncate(&text, width), theme.dim())).render(marker_area, buf);
        }
        if footer_height > 0
            && let Some(c) = v.selected_check()
        {
            render_selected(c, theme, rule, foot_area, buf);
        }
    }
}

/// "35 of 37 checks passed · 2 FAILED · checked at 23:10:04 (2m05s ago)", shortened to `room`.
fn title_extra(state: &AppState, room: usize) -> String {
    let v = &state.verify;
    let Some((passed, total)) = v.passed() else {
        return if v.verifying() {
            "verifying…".into()
        } else {
            String::new()
        };
    };
    let mut parts = Vec::new();
    if v.verifying() {
        parts.push("verifying…".to_string());
    }
    parts.push(format!("{passed} of {total} checks passed"));
    if passed < total {
        parts.push(format!("{} FAILED", total - passed));
    }
    if let Some(r) = &v.report {
        let count = |label: &str| r.checks.iter().filter(|c| c.result_label() == label).count();
        let (fixed, skipped) = (count("fixed"), count("skip"));
        if fixed > 0 {
            parts.push(format!("{fixed} pass after a fix"));
        }
        if skipped > 0 {
            parts.push(format!("{skipped} not checked (rolled back)"));
        }
    }
    let candidates: Vec<String> = match v.at {
        Some(at) => {
            let when = state.local_time(at).format("%H:%M:%S");
            let ago = fmt_secs((state.now - at).num_seconds());
            vec![
                format!("checked at {when} ({ago} ago)"),
                format!("checked at {when}"),
                format!("at {when}"),
            ]
        }
        None => vec![String::new()],
    };
    let join = |when: &str| {
        let mut all = parts.clone();
        if !when.is_empty() {
            all.push(when.to_string());
        }
        all.join(" · ")
    };
    candidates
        .iter()
        .map(|w| join(w))
        .find(|t| t.chars().count() <= room)
        .unwrap_or_else(|| join(""))
}

fn no_report_lines(state: &AppState, theme: Theme) -> Vec<Line<'static>> {
    let v: &VerifyState = &state.verify;
    if v.verifying() {
        let since = v
            .since
            .map(|t| format!(" (since {})", state.local_time(t).format("%H:%M:%S")))
            .unwrap_or_default();
        return vec![
            Line::styled(format!("verifying…{since}"), theme.accent().patch(theme.bold())),
            Line::styled(
                "The checks of `cutover verify` run against the target and the source; they only read.",
                theme.dim(),
            ),
        ];
    }
    vec![
        Line::from("Not verified in this console yet: V runs the checks of `cutover verify`."),
        Line::styled(
            "They only read, so V works while another process holds the lock. They also run by \
             themselves once a run of all pending steps (a) ends well.",
            theme.dim(),
        ),
    ]
}

fn measure(m: &Option<Measure>) -> String {
    m.as_ref().map_or_else(|| "-".to_string(), |m| m.to_string())
}

/// Draws the checks; returns the index of the first one in view.
fn render_table(state: &AppState, checks: &[Check], focused: bool, area: Rect, buf: &mut Buffer) -> usize {
    let theme = Theme::of(state);
    // Widths: the result and kind as long as they are, the measures up to a cap (digests are
    // long; the details show them whole), and what is left shared by the name and the detail.
    let longest =
        |f: &dyn Fn(&Check) -> usize, min: usize, max: usize| checks.iter().map(f).max().unwrap_or(0).clamp(min, max);
    let result_w = 6;
    let kind_w = longest(&|c| c.kind.as_str().len(), 4, 12);
    let cap = if area.width >= WIDE { 16 } else { 10 };
    let source_w = longest(&|c| measure(&c.source).chars().count(), 6, cap);
    let target_w = longest(&|c| measure(&c.target).chars().count(), 6, cap);
    // The highlight symbol and the five gaps between six columns.
    let rest = (area.width as usize).saturating_sub(1 + 5 + result_w + kind_w + source_w + target_w);
    let name_w = longest(&|c| c.name.chars().count(), 5, rest * 45 / 100).min(rest);
    let detail_w = rest.saturating_sub(name_w);

    let rows: Vec<Row> = checks
        .iter()
        .map(|c| {
            let (result, style) = match c.result_label() {
                "FAIL" => (Span::styled("FAIL", theme.error()), theme.error()),
                "skip" => (Span::styled("skip", theme.dim()), theme.dim()),
                label => (Span::styled(label, theme.ok()), theme.plain()),
            };
            Row::new(vec![
                Cell::from(result),
                Cell::from(c.kind.as_str()),
                Cell::from(truncate(&c.name, name_w)),
                Cell::from(truncate(&measure(&c.source), source_w)),
                Cell::from(truncate(&measure(&c.target), target_w)),
                Cell::from(truncate(&c.detail, detail_w)),
            ])
            .style(style)
        })
        .collect();
    let widths = [
        Constraint::Length(result_w as u16),
        Constraint::Length(kind_w as u16),
        Constraint::Length(name_w as u16),
        Constraint::Length(source_w as u16),
        Constraint::Length(target_w as u16),
        Constraint::Min(0),
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(["Result", "Kind", "Check", "Source", "Target", "Detail"]).style(theme.bold()))
        .column_spacing(1)
        .highlight_symbol(">")
        .row_highlight_style(if focused { theme.selected() } else { theme.bold() });
    let mut ts = TableState::default().with_selected(Some(state.verify.selected.min(checks.len() - 1)));
    StatefulWidget::render(table, area, buf, &mut ts);
    ts.offset()
}

/// The selected check: result, name and detail.
fn selected_line(c: &Check, theme: Theme) -> Line<'static> {
    let (mark, style) = match c.result_label() {
        "FAIL" => ("FAIL ", theme.error()),
        "skip" => ("skip ", theme.dim()),
        "fixed" => ("fixed ", theme.ok()),
        _ => ("ok ", theme.ok()),
    };
    Line::from(vec![
        Span::styled(mark, style),
        Span::styled(c.name.clone(), theme.bold()),
        Span::styled(" · ", theme.dim()),
        Span::raw(c.detail.clone()),
    ])
}

/// The selected check's line, wrapped, under a rule when there is room for one (cut to the
/// pane; enter shows it all).
fn render_selected(c: &Check, theme: Theme, rule: bool, area: Rect, buf: &mut Buffer) {
    let block = if rule {
        Block::default().borders(Borders::TOP).border_style(theme.dim())
    } else {
        Block::default()
    };
    let inner = block.inner(area);
    block.render(area, buf);
    Paragraph::new(selected_line(c, theme))
        .wrap(Wrap { trim: false })
        .render(inner, buf);
}
