//! The review pane: the queue of discrepancies found by merge steps, and the selected one's
//! two records, whole, side by side, field by field, with their full labels.
//!
//! Fields in dispute are marked `≠` (and bold), other fields where the records differ `~`, so
//! they show without colour too; the decision keys are in the pane's own footer, from the
//! keymap.

use crate::console::format::{show_value, truncate};
use crate::console::keymap::{self, Context};
use crate::console::state::{AppState, Pane};
use crate::console::view::pane_block;
use crate::console::view::theme::Theme;
use crate::engine::ops::review::Discrepancy;
use crate::engine::protocol::views::RecordField;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget};
use std::collections::BTreeSet;

/// From this inner width on, the list and the records sit side by side.
const WIDE: u16 = 100;

pub struct ReviewPane<'a> {
    pub state: &'a AppState,
    pub focused: bool,
}

impl Widget for ReviewPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let state = self.state;
        let theme = Theme::of(state);
        let (open, decided, void) = state.review_counts();
        let extra = if state.discrepancies.is_empty() {
            String::new()
        } else {
            let filter = if state.review_all { "all shown" } else { "open only" };
            format!("{open} open · {decided} decided · {void} void · {filter}")
        };
        let block = pane_block(state, Pane::Review, self.focused, &extra);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 2 || inner.width < 20 {
            return;
        }
        if !state.loaded {
            Paragraph::new(Line::styled("reading the target…", theme.dim())).render(inner, buf);
            return;
        }
        if state.discrepancies.is_empty() {
            let text = vec![
                Line::from("No discrepancies to review."),
                Line::styled(
                    "Merge steps put the fields where two records of one entity disagree here.",
                    theme.dim(),
                ),
            ];
            Paragraph::new(text).render(inner, buf);
            return;
        }
        let footer = footer_lines(state, inner.width as usize, theme);
        let footer_height = (footer.len() as u16).min(inner.height.saturating_sub(1));
        let [body, foot] = Layout::vertical([Constraint::Min(1), Constraint::Length(footer_height)]).areas(inner);
        Paragraph::new(footer).render(foot, buf);

        let shown = state.shown_discrepancies();
        if shown.is_empty() {
            let text = format!("No open discrepancies; v shows all {}.", state.discrepancies.len());
            Paragraph::new(Line::styled(text, theme.ok())).render(body, buf);
            return;
        }
        let selected = state.selected_discrepancy();
        let (list_area, records_area) = if body.width >= WIDE {
            let [l, r] = Layout::horizontal([Constraint::Percentage(36), Constraint::Percentage(64)]).areas(body);
            let block = Block::default().borders(Borders::LEFT).border_style(theme.dim());
            let r_inner = block.inner(r);
            block.render(r, buf);
            (l, r_inner)
        } else {
            let list_height = (shown.len() as u16 + 1).clamp(2, (body.height * 2 / 5).max(3));
            let [l, r] = Layout::vertical([Constraint::Length(list_height), Constraint::Min(1)]).areas(body);
            let block = Block::default().borders(Borders::TOP).border_style(theme.dim());
            let r_inner = block.inner(r);
            block.render(r, buf);
            (l, r_inner)
        };
        let cx = Cx {
            state,
            deciding: state.deciding_ids(),
            focused: self.focused,
            theme,
        };
        render_list(&cx, &shown, selected.map(|d| d.id), list_area, buf);
        if let Some(d) = selected {
            render_records(&cx, d, records_area, buf);
        }
    }
}

/// What every part of the pane needs, worked out once per frame.
struct Cx<'a> {
    state: &'a AppState,
    deciding: BTreeSet<i64>,
    focused: bool,
    theme: Theme,
}

fn state_marker(cx: &Cx, d: &Discrepancy) -> &'static str {
    if cx.deciding.contains(&d.id) {
        return "…";
    }
    match d.state.as_str() {
        "open" => "?",
        "decided" => "✓",
        _ => "–",
    }
}

fn render_list(cx: &Cx, shown: &[&Discrepancy], selected: Option<i64>, area: Rect, buf: &mut Buffer) {
    let theme = cx.theme;
    // The queue can be long: rows are built only for the window that shows the selection.
    // The legacy keys say more to the reviewer than the new entity's id: whole, on two lines
    // when one is too narrow (the field names give way first).
    let field_w = shown
        .iter()
        .map(|d| d.field.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 14);
    let one_line_w = shown
        .iter()
        .map(|d| d.keys[0].chars().count() + 3 + d.keys[1].chars().count())
        .max()
        .unwrap_or(8);
    let keys_w = (area.width as usize)
        .saturating_sub(2 + 1 + 5 + field_w + 3)
        .min(one_line_w)
        .max(8);
    let keys_text = |d: &Discrepancy| {
        let line = format!("{} + {}", d.keys[0], d.keys[1]);
        if line.chars().count() <= keys_w {
            vec![line]
        } else {
            // A above B.
            let mut lines = wrap(&d.keys[0], keys_w);
            lines.extend(wrap(&d.keys[1], keys_w));
            lines
        }
    };
    let row_h = shown.iter().map(|d| keys_text(d).len()).max().unwrap_or(1);
    let pos = selected.and_then(|id| shown.iter().position(|d| d.id == id));
    let visible = ((area.height as usize).saturating_sub(1) / row_h).max(1);
    let start = pos.map_or(0, |p| (p + 1).saturating_sub(visible));
    let window = &shown[start..shown.len().min(start + visible)];
    let rows: Vec<Row> = window
        .iter()
        .map(|d| {
            let keys: Vec<Line> = keys_text(d).into_iter().map(Line::from).collect();
            Row::new(vec![
                Cell::from(state_marker(cx, d)),
                Cell::from(d.id.to_string()),
                Cell::from(Text::from(keys)),
                Cell::from(truncate(&d.field, field_w)),
            ])
            .height(row_h as u16)
            .style(if d.state == "open" { theme.plain() } else { theme.dim() })
        })
        .collect();
    let widths = [
        Constraint::Length(1),
        Constraint::Length(5),
        Constraint::Length(keys_w as u16),
        Constraint::Min(5),
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(["", "ID", "Records A + B", "Field"]).style(theme.bold()))
        .column_spacing(1)
        .highlight_symbol(">")
        .row_highlight_style(if cx.focused { theme.selected() } else { theme.bold() });
    let mut ts = TableState::default().with_selected(pos.map(|p| p - start));
    StatefulWidget::render(table, area, buf, &mut ts);
}

/// The selected discrepancy's two records, whole and side by side: every field either brings
/// to the entity, then the source columns no field takes (a parent, a link). The fields in
/// dispute between them are marked `≠`, other fields where they differ `~`, and the field under
/// decision carries the selection. Until the records arrive, the fields in dispute alone.
fn render_records(cx: &Cx, sel: &Discrepancy, area: Rect, buf: &mut Buffer) {
    let (state, theme) = (cx.state, cx.theme);
    let same_entity =
        |d: &&Discrepancy| d.step == sel.step && d.entity_table == sel.entity_table && d.entity_id == sel.entity_id;
    let disputed: Vec<&Discrepancy> = state
        .discrepancies
        .iter()
        .filter(same_entity)
        .filter(|d| d.keys == sel.keys)
        .collect();
    let others = state.discrepancies.iter().filter(same_entity).count() - disputed.len();
    let records = state.selected_records();

    let width = area.width as usize;
    let step = state.step_name(&sel.step).unwrap_or(&sel.step);
    let mut head = vec![Line::from(vec![
        Span::styled(format!("{} {}", sel.entity_table, sel.entity_id), theme.bold()),
        Span::styled(format!(" · merged by {step}"), theme.dim()),
    ])];
    if others > 0 {
        head.push(Line::styled(
            format!("(+{others} with other records; select them in the list)"),
            theme.dim(),
        ));
    }
    match records {
        None => head.push(Line::styled("reading both records…", theme.dim())),
        Some(r) => {
            if let Some(e) = &r.error {
                head.extend(wrap(e, width).into_iter().map(|l| Line::styled(l, theme.error())));
            }
            for n in &r.notes {
                head.extend(wrap(n, width).into_iter().map(|l| Line::styled(l, theme.warn())));
            }
        }
    }
    let mut tail: Vec<Line> = Vec::new();
    if let Some(r) = &sel.reviewer {
        tail.push(Line::styled(
            format!("decided by {r} at {}", sel.decided_at.as_deref().unwrap_or("?")),
            theme.dim(),
        ));
    }
    if let Some(n) = &sel.note {
        tail.push(Line::from(vec![
            Span::styled("note ", theme.dim()),
            Span::raw(n.clone()),
        ]));
    }

    // The rows: the records' fields when they are here, else the fields in dispute.
    let fields: Vec<FieldRow> = match records.filter(|r| !r.fields.is_empty()) {
        Some(r) => r
            .fields
            .iter()
            // A field one record lacks and the other leaves blank says nothing.
            .filter(|f| f.values.iter().any(Option::is_some) || (f.present[0] && f.present[1]))
            .map(|f| {
                let dispute = disputed.iter().copied().find(|d| d.field == f.name);
                FieldRow {
                    name: &f.name,
                    // In dispute: the values the discrepancy holds, which `a` and `b` apply.
                    values: match dispute {
                        Some(d) => [show_value(&d.values[0]), show_value(&d.values[1])],
                        None => [shown(f, 0), shown(f, 1)],
                    },
                    dispute,
                    differ: f.present[0] && f.present[1] && compare_form(&f.values[0]) != compare_form(&f.values[1]),
                }
            })
            .collect(),
        None => disputed
            .iter()
            .map(|d| FieldRow {
                name: &d.field,
                values: [show_value(&d.values[0]), show_value(&d.values[1])],
                dispute: Some(*d),
                differ: d.values[0] != d.values[1],
            })
            .collect(),
    };

    // Columns: ▶ field ≠ A B decision, the values sharing what is left; at narrow widths the
    // field names give way (abbreviated with …), never the keys or values (they wrap).
    let name_w = fields.iter().map(|f| f.name.chars().count()).max().unwrap_or(5);
    let field_w = name_w.clamp(5, if width >= 90 { 18 } else { 13 });
    // The selection mark, the field, `≠`, and the spaces between the columns.
    let fixed = 1 + field_w + 1 + 1 + 1 + 1 + 1;
    let side = |i: usize| format!("{} · {} {}", ["A", "B"][i], sel.sides[i], sel.keys[i]);
    // The decision column gives way first, so the labels stay on one line where they can (the
    // ✓ on the value taken and the list's marks still say what was decided).
    let label_w = side(0).chars().count().max(side(1).chars().count());
    let mut decision_w = 10;
    let mut value_w = width.saturating_sub(fixed + decision_w + 1) / 2;
    if value_w < label_w {
        decision_w = 0;
        value_w = width.saturating_sub(fixed) / 2;
    }
    let value_w = value_w.max(1);
    let labels = [wrap(&side(0), value_w), wrap(&side(1), value_w)];
    let header_h = labels.iter().map(Vec::len).max().unwrap_or(1) as u16;
    let mut header = vec![
        Cell::from("Field"),
        Cell::from(""),
        Cell::from(Text::from(
            labels[0].iter().cloned().map(Line::from).collect::<Vec<_>>(),
        )),
        Cell::from(Text::from(
            labels[1].iter().cloned().map(Line::from).collect::<Vec<_>>(),
        )),
    ];
    if decision_w > 0 {
        header.push(Cell::from("Decision"));
    }
    let [head_area, table_area, tail_area] = Layout::vertical([
        Constraint::Length(head.len() as u16),
        Constraint::Min(1),
        Constraint::Length(tail.len() as u16),
    ])
    .areas(area);
    // When not every field fits, those that say least give way: fields equal in both records
    // first, then fields of one record only, keeping the disputes, the differences, the keys
    // and what only record B has (its parent, its link). Enter lists every field.
    let all = fields.len();
    let rank = |f: &FieldRow| -> u8 {
        let has = |i: usize| !f.values[i].is_empty();
        if f.dispute.is_some() || f.differ {
            0
        } else if f.values.iter().any(|v| sel.keys.contains(v)) || (has(1) && !has(0)) {
            1
        } else if has(0) != has(1) {
            2
        } else {
            3
        }
    };
    let height = |fs: &[FieldRow]| fs.iter().map(|f| f.height(value_w)).sum::<u16>();
    let fields = if height(&fields) + header_h <= table_area.height {
        fields
    } else {
        // One line for saying so.
        let room = table_area.height.saturating_sub(header_h + 1);
        let mut order: Vec<usize> = (0..fields.len()).collect();
        order.sort_by_key(|&i| {
            let f = &fields[i];
            (f.dispute.is_none_or(|d| d.id != sel.id), rank(f), i)
        });
        let mut keep = vec![false; fields.len()];
        let mut used = 0;
        for i in order {
            let h = fields[i].height(value_w);
            if used + h <= room {
                keep[i] = true;
                used += h;
            }
        }
        fields
            .into_iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(f, _)| f)
            .collect()
    };
    let rows: Vec<Row> = fields
        .iter()
        .map(|f| record_row(cx, f, [field_w, value_w, decision_w]))
        .collect();
    let selected = fields.iter().position(|f| f.dispute.is_some_and(|d| d.id == sel.id));
    let rows_h = height(&fields);
    Paragraph::new(head).render(head_area, buf);
    Paragraph::new(tail).render(tail_area, buf);
    let mut widths = vec![
        Constraint::Length(field_w as u16),
        Constraint::Length(1),
        Constraint::Length(value_w as u16),
        Constraint::Length(value_w as u16),
    ];
    if decision_w > 0 {
        widths.push(Constraint::Min(decision_w as u16));
    }
    // Fields left out or scrolled away are said to be there (enter lists them all).
    let cut = fields.len() < all || rows_h + header_h > table_area.height;
    let [table_area, more_area] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(u16::from(cut))]).areas(table_area);
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.bold()).height(header_h))
        .column_spacing(1)
        .highlight_symbol("▶")
        .row_highlight_style(if cx.focused { theme.selected() } else { theme.bold() });
    let mut ts = TableState::default().with_selected(selected);
    StatefulWidget::render(table, table_area, buf, &mut ts);
    if cut {
        let text = if fields.len() < all {
            format!(
                "{} of {all} fields shown (the rest say less) · enter lists them all",
                fields.len()
            )
        } else {
            format!("{all} fields; more above or below · enter lists them all")
        };
        Paragraph::new(Line::styled(truncate(&text, width), theme.dim())).render(more_area, buf);
    }
}

/// One field of the two records.
struct FieldRow<'a> {
    name: &'a str,
    values: [String; 2],
    /// The discrepancy about this field between these two records, if one.
    dispute: Option<&'a Discrepancy>,
    /// Both records have the field and their values differ (compared like the merge does).
    differ: bool,
}

impl FieldRow<'_> {
    /// Which side's value the decision took, if it took one.
    fn taken(&self) -> Option<usize> {
        let d = self.dispute.filter(|d| d.state == "decided")?;
        match d.decision.as_deref() {
            Some("take_a") => Some(0),
            Some("take_b") => Some(1),
            _ => None,
        }
    }

    /// A value as shown: `✓` on the one taken.
    fn shown(&self, i: usize) -> String {
        let mark = if self.taken() == Some(i) { "✓ " } else { "" };
        format!("{mark}{}", self.values[i])
    }

    fn height(&self, value_w: usize) -> u16 {
        (0..2).map(|i| wrap(&self.shown(i), value_w).len()).max().unwrap_or(1) as u16
    }
}

/// A record's value as shown: blank for a field the record does not have.
fn shown(f: &RecordField, i: usize) -> String {
    if f.present[i] {
        show_value(&f.values[i])
    } else {
        String::new()
    }
}

/// Trimmed and case-folded, blank as nothing: how the merge compares two values.
fn compare_form(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

/// `text` in lines of at most `width` characters, broken at spaces where it can and inside a
/// word where it must: nothing cut.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let sep = usize::from(!line.is_empty());
        if line.chars().count() + sep + word.chars().count() <= width {
            if sep == 1 {
                line.push(' ');
            }
            line.push_str(word);
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        let chars: Vec<char> = word.chars().collect();
        let mut chunks = chars.chunks(width).peekable();
        while let Some(chunk) = chunks.next() {
            if chunks.peek().is_some() {
                lines.push(chunk.iter().collect());
            } else {
                line = chunk.iter().collect();
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// `widths`: field, each value, decision (0: no decision column).
fn record_row<'a>(cx: &Cx, f: &FieldRow, widths: [usize; 3]) -> Row<'a> {
    let theme = cx.theme;
    let [field_w, value_w, decision_w] = widths;
    let d = f.dispute;
    let open = d.is_some_and(|d| d.state == "open");
    let taken = f.taken();
    let value_style = |i: usize| -> Style {
        match (d, taken) {
            (Some(_), _) if open => theme.bold(),
            (Some(_), Some(t)) if t == i => theme.ok(),
            (Some(_), _) => theme.dim(),
            (None, _) if f.differ => theme.plain(),
            (None, _) => theme.dim(),
        }
    };
    let value = |i: usize| {
        let lines: Vec<Line> = wrap(&f.shown(i), value_w)
            .into_iter()
            .map(|l| Line::styled(l, value_style(i)))
            .collect();
        Cell::from(Text::from(lines))
    };
    let (rel, rel_style) = match d {
        Some(_) => ("≠", theme.warn().patch(theme.bold())),
        None if f.differ => ("~", theme.warn()),
        None => (" ", theme.dim()),
    };
    let mut cells = vec![
        Cell::from(Span::styled(
            truncate(f.name, field_w),
            if open { theme.bold() } else { theme.plain() },
        )),
        Cell::from(Span::styled(rel, rel_style)),
        value(0),
        value(1),
    ];
    if decision_w > 0 {
        let text = d.map(|d| decision_text(cx, d)).unwrap_or_default();
        let style = if open { theme.warn() } else { theme.dim() };
        cells.push(Cell::from(Span::styled(text, style)));
    }
    Row::new(cells).height(f.height(value_w))
}

fn decision_text(cx: &Cx, d: &Discrepancy) -> String {
    if cx.deciding.contains(&d.id) {
        return "deciding…".to_string();
    }
    match (d.state.as_str(), d.decision.as_deref()) {
        ("open", _) => "open".into(),
        ("void", _) => "void".into(),
        (_, Some("take_a")) => "took A".into(),
        (_, Some("take_b")) => "took B".into(),
        (_, Some("split")) => "split".into(),
        (_, Some(v)) => match v.strip_prefix("value=") {
            Some(v) => format!("set {v}"),
            None => v.to_string(),
        },
        (s, None) => s.to_string(),
    }
}

/// The note waiting for the next decision, why decisions are refused now, and the decision keys
/// (from the keymap), packed into as few lines as the width allows.
fn footer_lines(state: &AppState, width: usize, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(n) = &state.review_note {
        lines.push(Line::from(vec![
            Span::styled("note for the next decision: ", theme.accent()),
            Span::raw(truncate(n, width.saturating_sub(28))),
        ]));
    }
    if let Some(h) = state.foreign_lock() {
        let text = format!(
            "read-only: {}@{} holds the lock; no decisions until it is released",
            h.owner, h.host
        );
        lines.push(Line::styled(truncate(&text, width), theme.warn()));
        return lines;
    }
    if state.running() {
        lines.push(Line::styled(
            truncate("a run is in progress; decisions wait until it ends", width),
            theme.warn(),
        ));
        return lines;
    }
    let items: Vec<(String, &str)> = keymap::REVIEW_DECISIONS
        .iter()
        .filter_map(|a| {
            let key = keymap::first_key(Context::Review, *a)?;
            let help = keymap::KEYMAP
                .iter()
                .find(|b| b.context == Context::Review && b.action == *a)
                .map(|b| b.help)?;
            Some((key, help))
        })
        .collect();
    let mut spans: Vec<Span> = Vec::new();
    let mut used = 0;
    for (key, help) in items {
        let piece = key.chars().count() + 1 + help.chars().count() + 2;
        if used > 0 && used + piece > width {
            lines.push(Line::from(std::mem::take(&mut spans)));
            used = 0;
        }
        used += piece;
        spans.push(Span::styled(key, theme.accent().patch(theme.bold())));
        spans.push(Span::styled(format!(" {help}  "), theme.dim()));
    }
    if !spans.is_empty() {
        lines.push(Line::from(spans));
    }
    lines
}
