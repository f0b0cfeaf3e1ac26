//! Styles. With NO_COLOR set the console uses no colour at all, only bold and reverse, and
//! every state that colour would signal is also spelled out in text.

use crate::console::state::{AppState, StatusLevel};
use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub fn of(state: &AppState) -> Theme {
        Theme { color: state.color }
    }

    fn fg(self, c: Color) -> Style {
        if self.color { Style::new().fg(c) } else { Style::new() }
    }

    pub fn plain(self) -> Style {
        Style::new()
    }
    pub fn ok(self) -> Style {
        self.fg(Color::Green)
    }
    pub fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }
    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    pub fn accent(self) -> Style {
        self.fg(Color::Cyan)
    }
    pub fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }
    pub fn bold(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
    pub fn banner(self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }
    pub fn border(self, focused: bool) -> Style {
        if focused {
            self.accent().add_modifier(Modifier::BOLD)
        } else {
            self.dim()
        }
    }
    pub fn gauge(self) -> Style {
        self.fg(Color::Green)
    }
    pub fn level(self, level: StatusLevel) -> Style {
        match level {
            StatusLevel::Info => self.plain(),
            StatusLevel::Warn => self.warn(),
            StatusLevel::Error => self.error(),
        }
    }
    /// The colour of a step state word.
    pub fn step_state(self, state: &str) -> Style {
        match state {
            "applied" => self.ok(),
            "failed" => self.error(),
            "running" => self.accent().add_modifier(Modifier::BOLD),
            "modified" | "interrupted" => self.warn(),
            "reverted" => self.dim(),
            _ => self.plain(),
        }
    }
    pub fn log_level(self, c: Color) -> Style {
        self.fg(c)
    }
}
