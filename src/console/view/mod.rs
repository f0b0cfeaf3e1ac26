//! Drawing. Every pane is a widget over `&AppState`; `draw` lays them out for the terminal's
//! size: all panes at once on a large terminal, the focused pane with a tab bar on a small one.

pub mod assess;
pub mod dialogs;
pub mod header;
pub mod import;
pub mod log;
pub mod migrations;
pub mod progress;
pub mod rejects;
pub mod review;
pub mod sync;
pub mod theme;
pub mod verify;

use crate::console::keymap::{self, Action, Context};
use crate::console::state::{AppState, Pane, StatusLevel};
use crate::console::view::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph, Wrap};
use tui_logger::TuiWidgetState;

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
/// From this size on, all four panes are on screen at once.
const GRID_WIDTH: u16 = 110;
const GRID_HEIGHT: u16 = 34;

pub fn draw(frame: &mut Frame, state: &AppState, log: &TuiWidgetState) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        draw_too_small(frame, state, area);
        return;
    }
    let banner = u16::from(state.foreign_lock().is_some());
    let grid = area.width >= GRID_WIDTH && area.height >= GRID_HEIGHT;
    let [head, lock, body, status, hints] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(banner),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(header::Header { state }, head);
    if banner == 1 {
        frame.render_widget(header::LockBanner { state }, lock);
    }
    if state.import.is_some() {
        // The import pane takes the panes' place while it is open.
        frame.render_widget(import::ImportPane { state }, body);
    } else if state.assess.open {
        frame.render_widget(assess::AssessPane { state }, body);
    } else if grid {
        draw_grid(frame, state, log, body);
    } else {
        draw_tabs(frame, state, log, body);
    }
    frame.render_widget(StatusBar { state }, status);
    frame.render_widget(HintBar { state }, hints);
    dialogs::draw_overlays(frame, state, area);
}

fn draw_grid(frame: &mut Frame, state: &AppState, log: &TuiWidgetState, body: Rect) {
    // The migrations table wants one row per step; progress needs about a dozen rows.
    let top_height = (state.migrations.len() as u16 + 3).clamp(13, body.height / 2);
    let rest = body.height.saturating_sub(top_height);
    let rejects_height = (rest * 11 / 20).max(8);
    let [top, middle, bottom] = Layout::vertical([
        Constraint::Length(top_height),
        Constraint::Length(rejects_height),
        Constraint::Min(4),
    ])
    .areas(body);
    let [left, right] = Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(top);
    render_pane(frame, state, log, Pane::Migrations, left);
    render_pane(frame, state, log, Pane::Progress, right);
    // Rejects, review and verify share the middle: the one focused last is shown, and what the
    // others have to say sits on the frame so it is not forgotten.
    render_pane(frame, state, log, state.middle, middle);
    frame.render_widget(OtherMiddle { state }, middle);
    render_pane(frame, state, log, Pane::Log, bottom);
}

/// What a pane that is not in front has waiting: open rejects or discrepancies, failed checks,
/// a verification on its way. None when there is nothing to say.
fn waiting(state: &AppState, pane: Pane) -> Option<String> {
    match pane {
        Pane::Rejects if state.open_rejects > 0 => Some(format!("{} open", state.open_rejects)),
        Pane::Review => match state.review_counts().0 {
            0 => None,
            n => Some(format!("{n} open")),
        },
        Pane::Verify if state.verify.verifying() => Some("verifying…".into()),
        Pane::Verify if state.verify.failed() > 0 => Some(format!("{} FAILED", state.verify.failed())),
        _ => None,
    }
}

/// On the middle pane's top border, right: the hidden ones of rejects, review and verify that
/// have something waiting.
struct OtherMiddle<'a> {
    state: &'a AppState,
}

impl ratatui::widgets::Widget for OtherMiddle<'_> {
    fn render(self, area: Rect, buf: &mut ratatui::buffer::Buffer) {
        let state = self.state;
        let parts: Vec<String> = Pane::MIDDLE
            .iter()
            .filter(|p| **p != state.middle)
            .filter_map(|p| {
                let what = waiting(state, *p)?;
                Some(format!("{} {}: {what}", p.number(), p.title().to_lowercase()))
            })
            .collect();
        if parts.is_empty() || area.width < 4 {
            return;
        }
        let text = format!(" {} ", parts.join(" · "));
        let width = (text.chars().count() as u16).min(area.width - 4);
        let rect = Rect {
            x: area.x + area.width - 2 - width,
            y: area.y,
            width,
            height: 1,
        };
        Paragraph::new(Line::styled(text, Theme::of(state).warn())).render(rect, buf);
    }
}

fn draw_tabs(frame: &mut Frame, state: &AppState, log: &TuiWidgetState, body: Rect) {
    let [tabs, pane] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(body);
    frame.render_widget(TabBar { state }, tabs);
    render_pane(frame, state, log, state.focus, pane);
}

fn render_pane(frame: &mut Frame, state: &AppState, log: &TuiWidgetState, pane: Pane, area: Rect) {
    let focused = state.focus == pane;
    match pane {
        Pane::Migrations => frame.render_widget(migrations::MigrationsPane { state, focused }, area),
        Pane::Progress => frame.render_widget(progress::ProgressPane { state, focused }, area),
        Pane::Rejects => frame.render_widget(rejects::RejectsPane { state, focused }, area),
        Pane::Log => frame.render_widget(log::LogPane { state, log, focused }, area),
        Pane::Review => frame.render_widget(review::ReviewPane { state, focused }, area),
        Pane::Verify => frame.render_widget(verify::VerifyPane { state, focused }, area),
    }
}

/// The frame of a pane: "[1] Migrations" with the focused one highlighted.
pub fn pane_block<'a>(state: &AppState, pane: Pane, focused: bool, extra: &str) -> Block<'a> {
    let theme = Theme::of(state);
    let mut title = format!(" [{}] {} ", pane.number(), pane.title());
    if !extra.is_empty() {
        title.push_str(&format!("· {extra} "));
    }
    Block::default()
        .borders(Borders::ALL)
        .border_type(if focused { BorderType::Thick } else { BorderType::Plain })
        .border_style(theme.border(focused))
        .title(Span::styled(title, if focused { theme.bold() } else { theme.plain() }))
}

fn draw_too_small(frame: &mut Frame, state: &AppState, area: Rect) {
    let theme = Theme::of(state);
    let text = vec![
        Line::styled("window too small (need 80×24)", theme.error()),
        Line::from(format!(
            "now {}×{}: enlarge the terminal; q quits",
            area.width, area.height
        )),
    ];
    let y = area.height.saturating_sub(2) / 2;
    let rect = Rect {
        x: area.x,
        y: area.y + y,
        width: area.width,
        height: area.height.min(2),
    };
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        rect,
    );
}

struct TabBar<'a> {
    state: &'a AppState,
}

impl ratatui::widgets::Widget for TabBar<'_> {
    fn render(self, area: Rect, buf: &mut ratatui::buffer::Buffer) {
        let theme = Theme::of(self.state);
        let running = self.state.run.as_ref().and_then(|r| r.current.as_ref()).map(|c| {
            let p = &c.progress;
            let pct = (p.rows_done * 100).checked_div(p.rows_total).unwrap_or(0);
            format!(" ▶ {} {pct}%", c.name)
        });
        // Full titles when they fit beside the running step; else the focused pane's title and
        // the others shortened, or by their number only (what they have waiting stays).
        #[derive(Clone, Copy, PartialEq)]
        enum Fit {
            Full,
            Short,
            Number,
        }
        let label = |p: Pane, fit: Fit| {
            let name = match fit {
                _ if p == self.state.focus => p.title(),
                Fit::Full => p.title(),
                Fit::Short => p.short_title(),
                Fit::Number => "",
            };
            let waiting = match p {
                Pane::Review => Some(self.state.review_counts().0)
                    .filter(|n| *n > 0)
                    .map(|n| format!("({n})")),
                Pane::Verify => waiting(self.state, p).map(|w| format!("({w})")),
                _ => None,
            };
            let text = [p.number().to_string(), name.to_string(), waiting.unwrap_or_default()]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            format!(" {text} ")
        };
        let width = |fit: Fit| -> usize {
            Pane::ALL
                .iter()
                .map(|p| label(*p, fit).chars().count() + 1)
                .sum::<usize>()
                + running.as_ref().map_or(0, |r| r.chars().count())
        };
        let fit = [Fit::Full, Fit::Short]
            .into_iter()
            .find(|f| width(*f) <= area.width as usize)
            .unwrap_or(Fit::Number);
        let mut spans = Vec::new();
        for p in Pane::ALL {
            let style = if p == self.state.focus {
                theme.selected().patch(theme.bold())
            } else {
                theme.plain()
            };
            spans.push(Span::styled(label(p, fit), style));
            spans.push(Span::raw(" "));
        }
        // The running step stays visible whichever pane is in front.
        if let Some(r) = running {
            spans.push(Span::styled(r, theme.accent()));
        }
        Paragraph::new(Line::from(spans)).render(area, buf);
    }
}

struct StatusBar<'a> {
    state: &'a AppState,
}

impl ratatui::widgets::Widget for StatusBar<'_> {
    fn render(self, area: Rect, buf: &mut ratatui::buffer::Buffer) {
        let theme = Theme::of(self.state);
        let (style, text) = match &self.state.status {
            Some(s) => {
                let prefix = match s.level {
                    StatusLevel::Info => "",
                    StatusLevel::Warn => "! ",
                    StatusLevel::Error => "✗ ",
                };
                (theme.level(s.level), format!(" {prefix}{}", s.text))
            }
            None if !self.state.loaded => (theme.dim(), " reading the target…".to_string()),
            None => (theme.dim(), " ready".to_string()),
        };
        Paragraph::new(Line::styled(text, style)).render(area, buf);
    }
}

/// The global action a help text belongs to.
fn global_action(help: &str) -> Option<Action> {
    keymap::KEYMAP
        .iter()
        .find(|b| b.context == Context::Global && b.help == help)
        .map(|b| b.action)
}

/// The keys of the context in front, from the keymap, with help and quit always at the right.
struct HintBar<'a> {
    state: &'a AppState,
}

impl ratatui::widgets::Widget for HintBar<'_> {
    fn render(self, area: Rect, buf: &mut ratatui::buffer::Buffer) {
        let theme = Theme::of(self.state);
        let context = keymap::active_context(self.state);
        let in_pane = matches!(
            context,
            Context::Migrations
                | Context::Progress
                | Context::Rejects
                | Context::Log
                | Context::Review
                | Context::Verify
        );
        // Movement and pane switching are the same everywhere; the help lists them.
        let routine = |a: Action| {
            matches!(
                a,
                Action::Up
                    | Action::Down
                    | Action::Top
                    | Action::Bottom
                    | Action::PageUp
                    | Action::PageDown
                    | Action::NotHere
                    | Action::Focus(_)
                    | Action::NextPane
                    | Action::PrevPane
                    | Action::ToggleHelp
                    | Action::Quit
                    | Action::ForceQuit
                    | Action::Refresh
            )
        };
        let mut items: Vec<(String, &str)> = Vec::new();
        // Running steps is what the migrations and progress panes are for: those keys first.
        let contexts: &[Context] = match context {
            Context::Migrations | Context::Progress => &[Context::Global, context],
            Context::Rejects | Context::Log | Context::Review | Context::Verify => &[context, Context::Global],
            _ => &[context],
        };
        for ctx in contexts {
            for b in keymap::KEYMAP.iter().filter(|b| b.context == *ctx) {
                // The import pane's movement keys are the panes' (its help lists them).
                let moves = (in_pane || context == Context::Import) && routine(b.action);
                if moves || items.iter().any(|(_, h)| *h == b.help) {
                    continue;
                }
                // The review pane lists its decision keys in its own footer.
                if context == Context::Review && keymap::REVIEW_DECISIONS.contains(&b.action) {
                    continue;
                }
                // A global key the pane uses for something else (`a` in the review pane).
                let event = crossterm::event::KeyEvent::new(b.code, b.modifiers);
                if keymap::lookup(context, &event) != Some(b.action) {
                    continue;
                }
                items.push((keymap::key_label(b.code, b.modifiers), b.help));
            }
        }
        // Verifying is what the verify pane is for; elsewhere its key comes after the pane's own.
        if let Some(i) = items.iter().position(|(_, h)| global_action(h) == Some(Action::Verify)) {
            let v = items.remove(i);
            if context == Context::Verify {
                items.insert(0, v);
            } else {
                items.push(v);
            }
        }
        let mut right: Vec<Span> = Vec::new();
        if in_pane {
            for action in [Action::ToggleHelp, Action::Quit] {
                if let Some(k) = keymap::first_key(Context::Global, action) {
                    let label = if action == Action::Quit { " quit " } else { " help  " };
                    right.push(Span::styled(k, theme.accent().patch(theme.bold())));
                    right.push(Span::styled(label, theme.dim()));
                }
            }
        }
        let right_width: usize = right.iter().map(|s| s.width()).sum();
        let mut spans = vec![Span::raw(" ")];
        let mut used = 1usize;
        for (key, help) in items {
            let piece = key.chars().count() + help.chars().count() + 3;
            if used + piece + right_width > area.width as usize {
                break;
            }
            used += piece;
            spans.push(Span::styled(key, theme.accent().patch(theme.bold())));
            spans.push(Span::styled(format!(" {help}"), theme.dim()));
            spans.push(Span::raw("  "));
        }
        let pad = (area.width as usize).saturating_sub(used + right_width);
        spans.push(Span::raw(" ".repeat(pad)));
        spans.extend(right);
        Paragraph::new(Line::from(spans)).style(Style::new()).render(area, buf);
    }
}
