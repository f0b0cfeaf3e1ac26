//! The error inspector: rejected rows (filterable), the selected row's whole source row beside
//! its reason, and what a waiting row waits for.

use crate::console::format::{content_width, fmt_count, truncate};
use crate::console::state::{AppState, Pane};
use crate::console::view::pane_block;
use crate::console::view::theme::Theme;
use crate::engine::ops::snapshot::RejectSummary;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, HighlightSpacing, Paragraph, Row, StatefulWidget, Table, TableState, Widget, Wrap,
};

pub struct RejectsPane<'a> {
    pub state: &'a AppState,
    pub focused: bool,
}

impl Widget for RejectsPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let state = self.state;
        let theme = Theme::of(state);
        let shown = state.shown_rejects();
        let extra = page_title(state);
        let block = pane_block(state, Pane::Rejects, self.focused, &extra);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 2 {
            return;
        }
        let [filter_area, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
        render_filter(state, filter_area, buf, theme);
        if shown.is_empty() {
            let text = if !state.reject_page.loaded {
                "Reading the reject store…"
            } else if state.reject_page.filter.trim().is_empty() {
                "No rejected rows."
            } else {
                "No rejected rows match the filter (esc clears it)."
            };
            Paragraph::new(Line::styled(text, theme.dim())).render(body, buf);
            return;
        }
        // Ids, keys and rules get their whole width; the step name takes what is left of a
        // list sized to its content, and is the one shortened (with …) when room is short.
        let id_w = content_width(
            shown
                .iter()
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
            2,
        );
        let key_w = content_width(shown.iter().map(|r| r.source_key.as_str()), 3);
        let rule_w = content_width(shown.iter().map(|r| r.rule.as_str()), 4);
        let names: Vec<&str> = shown
            .iter()
            .map(|r| state.step_name(&r.step).unwrap_or(&r.step))
            .collect();
        let name_w = content_width(names.iter().copied(), 4);
        // highlight symbol, marker, four gaps
        let fixed = 1 + 1 + id_w + key_w + rule_w + 4;
        let list_w = (fixed + name_w).min(body.width as usize * 55 / 100).max(fixed + 4) as u16;
        let [list_area, detail_area] =
            Layout::horizontal([Constraint::Length(list_w.min(body.width)), Constraint::Min(0)]).areas(body);
        let step_w = (list_area.width as usize).saturating_sub(fixed).max(1);
        let rows: Vec<Row> = shown
            .iter()
            .zip(&names)
            .map(|(r, name)| {
                let marker = match (r.state.as_str(), r.waits_for.is_some()) {
                    ("open", true) => "⧗",
                    ("open", false) if r.level == "error" => "✗",
                    ("open", false) => "!",
                    _ => "✓",
                };
                Row::new(vec![
                    Cell::from(marker),
                    Cell::from(Line::from(r.id.to_string()).right_aligned()),
                    Cell::from(truncate(name, step_w)),
                    Cell::from(r.source_key.clone()),
                    Cell::from(r.rule.clone()),
                ])
                .style(if r.state == "open" { theme.plain() } else { theme.dim() })
            })
            .collect();
        let widths = [
            Constraint::Length(1),
            Constraint::Length(id_w as u16),
            Constraint::Length(step_w as u16),
            Constraint::Length(key_w as u16),
            Constraint::Length(rule_w as u16),
        ];
        let table = Table::new(rows, widths)
            .header(Row::new(["", "ID", "Step", "Key", "Rule"]).style(theme.bold()))
            .column_spacing(1)
            .highlight_symbol(">")
            .highlight_spacing(HighlightSpacing::Always)
            .row_highlight_style(if self.focused { theme.selected() } else { theme.bold() });
        let mut ts = TableState::default().with_selected(Some(state.selected_reject));
        StatefulWidget::render(table, list_area, buf, &mut ts);
        if let Some(r) = shown.get(state.selected_reject) {
            render_detail(state, r, detail_area, buf, theme);
        }
    }
}

/// The frame's title: where the page is among all the rejects the filter matches, and the
/// store's open total ("showing 1 201–1 250 of 7 383 · 7 001 open").
fn page_title(state: &AppState) -> String {
    let p = &state.reject_page;
    let open = format!("{} open", fmt_count(state.open_rejects));
    let filtered = !p.filter.trim().is_empty();
    match p.shown_range(state.rejects.len()) {
        Some((first, last)) => format!(
            "showing {}–{} of {}{} · {open}",
            fmt_count(first),
            fmt_count(last),
            fmt_count(p.matching),
            if filtered { " matching" } else { "" },
        ),
        None => open,
    }
}

fn render_filter(state: &AppState, area: Rect, buf: &mut Buffer, theme: Theme) {
    let line = if state.filter_editing {
        Line::from(vec![
            Span::styled("/ ", theme.accent().patch(theme.bold())),
            Span::raw(state.reject_filter.clone()),
            Span::styled("▏", theme.accent()),
            Span::styled("  enter keeps · esc clears", theme.dim()),
        ])
    } else if state.reject_filter.is_empty() {
        Line::styled("/ filters by step, rule, key or text · pgup/pgdn pages", theme.dim())
    } else {
        Line::from(vec![
            Span::styled("filter: ", theme.dim()),
            Span::styled(state.reject_filter.clone(), theme.bold()),
            Span::styled("  (esc clears)", theme.dim()),
        ])
    };
    Paragraph::new(line).render(area, buf);
}

fn render_detail(state: &AppState, r: &RejectSummary, area: Rect, buf: &mut Buffer, theme: Theme) {
    let block = Block::default().borders(Borders::LEFT).border_style(theme.dim());
    let inner = block.inner(area);
    block.render(area, buf);
    let width = inner.width as usize;
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("#{} ", r.id), theme.bold()),
            Span::styled(
                format!("{} {}", r.level, r.state),
                if r.state == "open" { theme.warn() } else { theme.ok() },
            ),
            Span::raw(format!(" · {} key {}", r.source_table, r.source_key)),
        ]),
        Line::from(vec![Span::styled("rule ", theme.dim()), Span::raw(r.rule.clone())]),
        Line::from(vec![
            Span::styled("why  ", theme.dim()),
            Span::styled(r.reason.clone(), theme.error()),
        ]),
    ];
    if let Some(w) = &r.waits_for {
        lines.push(Line::from(vec![
            Span::styled("waits for ", theme.dim()),
            Span::styled(w.clone(), theme.warn()),
        ]));
    }
    let key_width = r
        .row
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        .min(width / 2);
    for (k, v) in &r.row {
        let failing = r.field.as_deref() == Some(k.as_str());
        let marker = if failing { "▶" } else { " " };
        let key = format!("{marker}{:<key_width$} ", truncate(k, key_width));
        let value_width = width.saturating_sub(key.chars().count());
        let style = if failing { theme.error() } else { theme.plain() };
        lines.push(Line::from(vec![
            Span::styled(key, if failing { style } else { theme.dim() }),
            Span::styled(truncate(v, value_width), style),
        ]));
    }
    let _ = state;
    Paragraph::new(lines).wrap(Wrap { trim: false }).render(inner, buf);
}
