//! Overlays: confirmation, rollback (type the name), reject edit, details, and the help screen
//! generated from the keymap.

use crate::console::format::show_value;
use crate::console::keymap::{self, Action, Context, HelpLine};
use crate::console::state::{AppState, ConfirmAction, Dialog};
use crate::console::view::theme::Theme;
use crate::engine::validate::is_secret_field;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Widget, Wrap};

pub fn draw_overlays(frame: &mut Frame, state: &AppState, area: Rect) {
    if let Some(d) = &state.dialog {
        frame.render_widget(DialogView { state, dialog: d }, area);
    }
    if state.help {
        frame.render_widget(HelpView { state }, area);
    }
}

/// A centred rectangle of at most `width`×`height` that leaves a margin around it.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width.saturating_sub(4)).max(1);
    let h = height.min(area.height.saturating_sub(2)).max(1);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn frame_block<'a>(title: String, theme: Theme) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .border_style(theme.accent())
        .title(Span::styled(format!(" {title} "), theme.bold()))
}

/// "y, enter yes, do it   n, esc no" from the keymap.
fn key_footer(context: Context, theme: Theme) -> Line<'static> {
    let mut spans = Vec::new();
    for HelpLine { keys, help } in keymap::help_lines(context) {
        spans.push(Span::styled(keys, theme.accent().patch(theme.bold())));
        spans.push(Span::styled(format!(" {help}   "), theme.dim()));
    }
    Line::from(spans)
}

pub struct DialogView<'a> {
    pub state: &'a AppState,
    pub dialog: &'a Dialog,
}

impl Widget for DialogView<'_> {
    fn render(self, area: Rect, buf: &mut ratatui::buffer::Buffer) {
        let theme = Theme::of(self.state);
        let (title, mut lines, context): (String, Vec<Line>, Context) = match self.dialog {
            // The run-all question also offers `b` (back up first), in its own footer.
            Dialog::Confirm { title, lines, action } => (
                title.clone(),
                lines.iter().map(|l| Line::from(l.clone())).collect(),
                if *action == ConfirmAction::RunAll {
                    Context::ConfirmRunAll
                } else {
                    Context::Confirm
                },
            ),
            Dialog::Rollback {
                version,
                name,
                preview,
                typed,
                to_here,
            } => (
                if *to_here {
                    format!("Roll back to here: down to {version}_{name}?")
                } else {
                    format!("Roll back {version}_{name}?")
                },
                rollback_lines(name, preview, typed, *to_here, theme),
                Context::TextInput,
            ),
            Dialog::EditReject {
                id,
                fields,
                field,
                input,
            } => (
                format!("Fix reject {id}"),
                fix_lines(*id, fields, *field, input, theme),
                Context::FixField,
            ),
            Dialog::DecideValue { id, input } => (
                format!("Another value for discrepancy {id}"),
                decide_value_lines(self.state, *id, input, theme),
                Context::TextInput,
            ),
            Dialog::ReviewNote { input } => {
                let lines = vec![
                    Line::from("Recorded with the next decision (a, b, e, s or U); empty clears it."),
                    Line::from(""),
                    Line::from(vec![
                        Span::styled("note > ", theme.accent()),
                        Span::styled(input.clone(), theme.bold()),
                        Span::styled("▏", theme.accent()),
                    ]),
                ];
                ("Note for the next decision".to_string(), lines, Context::TextInput)
            }
            Dialog::Details { title, lines, scroll } => {
                let lines = lines
                    .iter()
                    .skip(*scroll as usize)
                    .map(|l| Line::from(l.clone()))
                    .collect();
                (title.clone(), lines, Context::Details)
            }
        };
        lines.push(Line::from(""));
        lines.push(key_footer(context, theme));
        let wide = matches!(self.dialog, Dialog::Details { .. } | Dialog::Rollback { .. });
        let width = if wide { 100 } else { 72 };
        // Height after wrapping, so long errors and statements are not cut off.
        let inner_width = width.min(area.width.saturating_sub(4)).saturating_sub(2).max(1) as usize;
        let height: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner_width)).sum();
        let rect = centered(area, width, height as u16 + 2);
        Clear.render(rect, buf);
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(frame_block(title, theme))
            .render(rect, buf);
    }
}

/// The fix dialog: the field as a label (tab chooses another), its current value, and the new
/// value alone. Secret fields show neither their value nor its length.
fn fix_lines(id: i64, fields: &[(String, String)], field: usize, input: &str, theme: Theme) -> Vec<Line<'static>> {
    let Some((name, now)) = fields.get(field) else {
        return Vec::new();
    };
    let secret = is_secret_field(name);
    let shown = if secret {
        if input.is_empty() {
            String::new()
        } else {
            "••••••".to_string()
        }
    } else {
        input.to_string()
    };
    let label = |s: &str| Span::styled(format!("{s:<7}"), theme.dim());
    vec![
        Line::from("Set one field of the rejected row's source data; r retries it."),
        Line::from(""),
        Line::from(vec![
            label("field"),
            Span::styled(name.clone(), theme.accent().patch(theme.bold())),
            Span::styled(
                format!("  ({} of {}, tab/↑↓ choose)", field + 1, fields.len()),
                theme.dim(),
            ),
        ]),
        Line::from(vec![
            label("now"),
            Span::raw(if secret { "<redacted>".to_string() } else { now.clone() }),
        ]),
        Line::from(vec![
            label("new >"),
            Span::styled(shown, theme.bold()),
            Span::styled("▏", theme.accent()),
            Span::styled(if secret { "  (secret: hidden)" } else { "" }, theme.dim()),
        ]),
        Line::from(""),
        Line::styled(
            format!("The value alone (empty sets NULL); as `cutover rejects fix {id} {name}=VALUE`."),
            theme.dim(),
        ),
    ]
}

fn decide_value_lines(state: &AppState, id: i64, input: &str, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(d) = state.discrepancy(id) {
        lines.push(Line::from(vec![
            Span::styled(format!("{} {} · ", d.entity_table, d.entity_id), theme.dim()),
            Span::styled(d.field.clone(), theme.bold()),
        ]));
        for i in 0..2 {
            lines.push(Line::from(vec![
                Span::styled(
                    format!("{} · {} {}: ", ["A", "B"][i], d.sides[i], d.keys[i]),
                    theme.dim(),
                ),
                Span::raw(show_value(&d.values[i])),
            ]));
        }
    }
    lines.push(Line::styled(
        "The value is checked like the field's own values before it is written.",
        theme.dim(),
    ));
    if let Some(n) = &state.review_note {
        lines.push(Line::styled(format!("note: {n}"), theme.dim()));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::styled("VALUE > ", theme.accent()),
        Span::styled(input.to_string(), theme.bold()),
        Span::styled("▏", theme.accent()),
    ]));
    lines
}

fn rollback_lines(
    name: &str,
    preview: &Option<crate::engine::ops::snapshot::RollbackPreview>,
    typed: &str,
    to_here: bool,
    theme: Theme,
) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let mut prompt = " and press enter to roll it back:".to_string();
    match preview {
        None => lines.push(Line::styled("asking the engine what this undoes…", theme.dim())),
        Some(p) if to_here => {
            lines.push(Line::styled(
                format!("These {} steps are rolled back, newest first:", p.steps.len()),
                theme.bold(),
            ));
            for s in &p.steps {
                lines.push(Line::from(vec![
                    Span::styled(format!("  {}_{}: ", s.version, s.name), theme.bold()),
                    Span::raw(s.summary()),
                ]));
            }
            prompt = format!(" and press enter to roll back all {}:", p.steps.len());
        }
        Some(p) => {
            let alone = if p.refused.is_some() { " (refused)" } else { "" };
            lines.push(Line::styled(format!("Rolling back {name}{alone} will:"), theme.bold()));
            for l in &p.lines {
                lines.push(Line::from(format!("  {l}")));
            }
            if let Some(why) = &p.refused {
                lines.push(Line::from(""));
                lines.push(Line::styled(format!("REFUSED: {why}"), theme.error()));
                if p.to_here.is_some() {
                    lines.push(Line::from(vec![
                        Span::styled("enter", theme.accent().patch(theme.bold())),
                        Span::raw(format!(
                            " rolls back to here instead: the {} later steps, then {name}, each with what it undoes",
                            p.later.len()
                        )),
                    ]));
                }
                return lines;
            }
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::raw("Type the step's name "),
        Span::styled(name.to_string(), theme.bold()),
        Span::raw(prompt),
    ]));
    let verdict = if typed == name {
        Span::styled("  ✓ matches", theme.ok())
    } else if typed.is_empty() {
        Span::raw("")
    } else {
        Span::styled("  (does not match)", theme.warn())
    };
    lines.push(Line::from(vec![
        Span::styled("> ", theme.accent()),
        Span::styled(typed.to_string(), theme.bold()),
        Span::styled("▏", theme.accent()),
        verdict,
    ]));
    lines
}

/// The global action a help line describes.
fn global_action(help: &str) -> Option<Action> {
    keymap::KEYMAP
        .iter()
        .find(|b| b.context == Context::Global && b.help == help)
        .map(|b| b.action)
}

/// Every key of the focused pane and the global keys, from `KEYMAP`.
pub struct HelpView<'a> {
    pub state: &'a AppState,
}

impl Widget for HelpView<'_> {
    fn render(self, area: Rect, buf: &mut ratatui::buffer::Buffer) {
        let theme = Theme::of(self.state);
        let pane = if self.state.import.is_some() {
            Context::Import
        } else if self.state.assess.open {
            Context::Assess
        } else {
            Context::of_pane(self.state.focus)
        };
        // The import pane takes all keys while open: the global ones do not apply there.
        let sections: &[Context] = if pane == Context::Import {
            &[Context::Import]
        } else if pane == Context::Assess {
            &[Context::Assess]
        } else {
            &[pane, Context::Global]
        };
        let columns: Vec<Vec<Line>> = sections
            .iter()
            .map(|ctx| {
                let entries = keymap::help_lines(*ctx);
                let key_width = entries.iter().map(|e| e.keys.chars().count()).max().unwrap_or(0);
                let mut lines = vec![Line::styled(
                    ctx.title().to_string(),
                    theme.bold().patch(theme.accent()),
                )];
                lines.extend(entries.into_iter().map(|e| {
                    // A global key the focused pane uses for something else does not work here.
                    let shadowed =
                        *ctx == Context::Global && global_action(e.help).is_some_and(|a| keymap::shadowed(pane, a));
                    if shadowed {
                        Line::styled(format!("{:<key_width$}  ✗ {}", e.keys, e.help), theme.dim())
                    } else {
                        Line::from(vec![
                            Span::styled(format!("{:<key_width$}  ", e.keys), theme.accent()),
                            Span::raw(e.help.to_string()),
                        ])
                    }
                }));
                lines
            })
            .collect();
        let notes = keymap::help_notes(pane);
        let columns_height = columns.iter().map(Vec::len).max().unwrap_or(0) as u16;
        let notes_height = if notes.is_empty() { 0 } else { notes.len() as u16 + 1 };
        let rect = centered(area, 96, columns_height + notes_height + 2);
        Clear.render(rect, buf);
        let block = frame_block(format!("Keys · {} pane (esc closes)", self.state.focus.title()), theme);
        let inner = block.inner(rect);
        block.render(rect, buf);
        let inner = Rect {
            x: inner.x + 1,
            width: inner.width.saturating_sub(2),
            ..inner
        };
        let [keys, below] =
            Layout::vertical([Constraint::Length(columns_height), Constraint::Length(notes_height)]).areas(inner);
        let mut note_lines = vec![Line::from("")];
        note_lines.extend(notes.iter().map(|n| Line::from(n.to_string())));
        Paragraph::new(note_lines).wrap(Wrap { trim: false }).render(below, buf);
        let [left, right] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(keys);
        let mut it = columns.into_iter();
        if let Some(c) = it.next() {
            Paragraph::new(c).render(left, buf);
        }
        if let Some(c) = it.next() {
            Paragraph::new(c).render(right, buf);
        }
    }
}
