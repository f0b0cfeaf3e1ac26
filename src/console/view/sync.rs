//! The sync lag gauges, at the foot of the progress pane: one line per step with `[sync]`
//! that has a mark, saying how far the target is behind its source (rows changed after the
//! mark, and the age of the oldest of them). The bar is the freshness over the last minute:
//! full when nothing is behind, empty when the oldest unsynced change is a minute old.

use crate::console::format::{fmt_count, fmt_secs, truncate};
use crate::console::state::AppState;
use crate::console::view::theme::Theme;
use crate::engine::protocol::views::SyncLag;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::widgets::{LineGauge, Widget};

/// How many lines the gauges need (one per synced step, at most `max`).
pub fn lines_needed(state: &AppState, max: u16) -> u16 {
    (state.migrations.iter().filter(|m| m.sync.is_some()).count() as u16).min(max)
}

/// The age at which the bar is empty.
const STALE_SECS: f64 = 60.0;

/// How fresh a step is, 0..=1.
pub fn freshness(lag: &SyncLag) -> f64 {
    if lag.lag_rows == 0 {
        return 1.0;
    }
    match lag.lag_seconds {
        Some(s) => (1.0 - s / STALE_SECS).clamp(0.0, 1.0),
        // Rows behind, age unknown (an integer cursor): half, so it never reads as in step.
        None => 0.5,
    }
}

/// The gauge's words: `⟳ patients: in step` or `⟳ patients: 12 behind · oldest 3s`.
pub fn label(name: &str, lag: &SyncLag, width: usize) -> String {
    let what = if lag.lag_rows == 0 {
        "in step".to_string()
    } else {
        let age = lag
            .lag_seconds
            .map(|s| format!(" · oldest {}", fmt_secs(s.round() as i64)))
            .unwrap_or_default();
        format!("{} behind{age}", fmt_count(lag.lag_rows))
    };
    truncate(&format!("⟳ {name}: {what}"), width)
}

pub fn render(state: &AppState, area: Rect, buf: &mut Buffer) {
    let theme = Theme::of(state);
    let synced = state.migrations.iter().filter_map(|m| m.sync.as_ref().map(|l| (m, l)));
    for (i, (m, lag)) in synced.take(area.height as usize).enumerate() {
        let line = Rect {
            y: area.y + i as u16,
            height: 1,
            ..area
        };
        let fresh = freshness(lag);
        let style = if lag.lag_rows == 0 {
            theme.ok()
        } else if fresh <= 0.0 {
            theme.error()
        } else {
            theme.warn()
        };
        // The words first; the bar takes what is left (at least a few cells).
        let label_width = (area.width as usize).saturating_sub(4);
        LineGauge::default()
            .ratio(fresh)
            .label(label(&m.name, lag, label_width))
            .filled_style(style)
            .render(line, buf);
    }
}
