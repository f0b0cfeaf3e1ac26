//! The header: project, target, and the maintenance-window clock with the ETA of all pending
//! work; and the banner shown while another run holds the target's lock.

use crate::console::eta::{self, RateSource};
use crate::console::format::{fmt_count, fmt_rate, fmt_secs, truncate};
use crate::console::state::AppState;
use crate::console::view::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

pub struct Header<'a> {
    pub state: &'a AppState,
}

impl Widget for Header<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let state = self.state;
        let theme = Theme::of(state);
        let est = eta::estimate(state);
        let clock = eta::clock(state, &est);

        let title = Line::from(vec![
            Span::styled(" cutover ", theme.selected().patch(theme.bold())),
            Span::styled(format!(" {} ", state.project), theme.bold()),
            Span::styled(format!(" target {}", state.target), theme.dim()),
        ]);
        let now = Span::styled(format!("{} ", clock.now.format("%H:%M:%S")), theme.bold());
        let now_width = now.width() as u16;
        Paragraph::new(title).render(
            Rect {
                width: area.width.saturating_sub(now_width),
                height: 1,
                ..area
            },
            buf,
        );
        Paragraph::new(Line::from(now)).render(
            Rect {
                x: area.x + area.width.saturating_sub(now_width),
                width: now_width.min(area.width),
                height: 1,
                ..area
            },
            buf,
        );

        let mut spans = vec![Span::raw(" ")];
        let window_style = if clock.overrun { theme.error() } else { theme.plain() };
        match state.window {
            Some(w) => {
                // A window within a day that starts today reads best as times; one on another
                // day (or longer than a day) needs its dates.
                let today = clock.now.date_naive() == w.start.date_naive();
                let (start_fmt, end_fmt) = match ((w.end - w.start).num_hours() < 24, today) {
                    (true, true) => ("%H:%M", "%H:%M"),
                    (true, false) => ("%Y-%m-%d %H:%M", "%H:%M"),
                    (false, _) => ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M"),
                };
                spans.push(Span::styled(
                    format!("window {}–{}", w.start.format(start_fmt), w.end.format(end_fmt)),
                    window_style,
                ));
                let left = clock.left.unwrap_or(0);
                let when = match clock.opens_in {
                    Some(s) => format!(" · opens in {}", fmt_secs(s)),
                    None if left > 0 => format!(" · {} left", fmt_secs(left)),
                    None => format!(" · ENDED {} ago", fmt_secs(-left)),
                };
                spans.push(Span::styled(when, window_style));
            }
            None => spans.push(Span::styled("no maintenance window configured", theme.dim())),
        }
        spans.push(Span::raw(" │ "));
        spans.extend(eta_spans(state, &est, &clock, theme));
        Paragraph::new(Line::from(spans)).render(
            Rect {
                y: area.y + 1,
                height: 1,
                ..area
            },
            buf,
        );
    }
}

fn eta_spans(state: &AppState, est: &eta::Estimate, clock: &eta::Clock, theme: Theme) -> Vec<Span<'static>> {
    if est.pending_steps == 0 {
        return vec![Span::styled("nothing pending", theme.ok())];
    }
    let style = if clock.overrun { theme.error() } else { theme.plain() };
    let unknown = match est.unknown_steps {
        0 => String::new(),
        1 => "1 step of unknown size".to_string(),
        n => format!("{n} steps of unknown size"),
    };
    let mut spans = Vec::new();
    // A rate assumed, not measured: the ETA is an estimate and says so.
    let approx = if matches!(est.rate, Some((_, RateSource::Default))) {
        "~"
    } else {
        ""
    };
    match est.secs {
        Some(0) if est.unknown_steps > 0 && state.counting_sources => {
            spans.push(Span::styled("ETA: counting the source rows…", style));
        }
        // Only schema steps, or only steps nobody has measured: say so rather than "0s".
        Some(0) if est.unknown_steps > 0 => {
            spans.push(Span::styled(format!("ETA unknown: {unknown}"), style));
        }
        Some(0) => spans.push(Span::styled("ETA seconds (schema steps only)", style)),
        Some(secs) => {
            let at_least = if est.unknown_steps > 0 { "≥ " } else { "" };
            spans.push(Span::styled(
                format!("ETA {at_least}{approx}{}", fmt_secs(secs as i64)),
                style,
            ));
            if let Some(end) = clock.eta_end {
                spans.push(Span::styled(format!(" → {}", end.format("%H:%M")), style));
            }
            if clock.overrun {
                if let (Some(end), Some(w)) = (clock.eta_end, state.window) {
                    let by = fmt_secs((end - w.end).num_seconds());
                    spans.push(Span::styled(format!(" · OVERRUNS the window by {by}"), theme.error()));
                }
            } else if state.window.is_some() && est.unknown_steps == 0 {
                // Only claim it fits when every pending step's size is known.
                spans.push(Span::styled(" · fits", theme.ok()));
            }
            if !unknown.is_empty() {
                spans.push(Span::styled(format!(" · +{unknown}"), theme.dim()));
            }
        }
        None => {
            spans.push(Span::styled("ETA unknown: no rate yet", style));
            spans.push(Span::styled(
                format!(" ({} rows left)", fmt_count(est.rows_left)),
                theme.dim(),
            ));
        }
    }
    if state.run.as_ref().is_some_and(|r| r.paused) {
        spans.push(Span::styled(" · paused", theme.warn()));
    }
    if clock.overrun && est.secs.is_none_or(|s| s == 0) {
        spans.push(Span::styled(" · window OVER with work pending", theme.error()));
    }
    // An assumed rate is only worth showing when it makes an estimate.
    if let Some((r, source)) = est
        .rate
        .filter(|(_, s)| *s != RateSource::Default || est.secs.is_some_and(|s| s > 0))
    {
        let from = match source {
            RateSource::Live => "now",
            RateSource::Session => "last step",
            RateSource::Ledger => "past runs",
            RateSource::Default => "assumed",
            RateSource::Assessed => "assessed",
        };
        let approx = if source == RateSource::Default { "~" } else { "" };
        spans.push(Span::styled(format!(" · {approx}{} {from}", fmt_rate(r)), theme.dim()));
    }
    spans
}

pub struct LockBanner<'a> {
    pub state: &'a AppState,
}

impl Widget for LockBanner<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let theme = Theme::of(self.state);
        let Some(h) = self.state.foreign_lock() else {
            return;
        };
        // The whole sentence when it fits; else shorter ones, so the banner is never cut off
        // mid-sentence (the status line repeats who holds the lock).
        let short_since = chrono::DateTime::parse_from_rfc3339(&h.since)
            .map(|t| {
                let t = self.state.local_time(t.with_timezone(&chrono::Utc));
                let same_day = t.date_naive() == self.state.local_time(self.state.now).date_naive();
                t.format(if same_day { "%H:%M" } else { "%Y-%m-%d %H:%M" }).to_string()
            })
            .unwrap_or_else(|_| h.since.clone());
        let who = format!("{}@{}", h.owner, h.host);
        let candidates = [
            format!(
                " READ-ONLY: the target is locked by {who} since {} (pid {}, `{}`); runs, rollbacks, retries and review decisions are refused ",
                h.since, h.pid, h.command
            ),
            format!(
                " READ-ONLY: locked by {who} (pid {}, `{}`) since {short_since}; runs, rollbacks, retries and review decisions are refused ",
                h.pid, h.command
            ),
            format!(
                " READ-ONLY: locked by {who} (pid {} `{}`) since {short_since}; changes refused ",
                h.pid, h.command
            ),
            format!(" READ-ONLY: locked by {who} (pid {}) since {short_since} ", h.pid),
            format!(" READ-ONLY: locked by {who} "),
        ];
        let width = area.width as usize;
        let text = candidates
            .iter()
            .find(|t| t.chars().count() <= width)
            .cloned()
            .unwrap_or_else(|| truncate(&candidates[candidates.len() - 1], width));
        Paragraph::new(Line::styled(text, theme.banner()))
            .style(theme.banner())
            .render(area, buf);
    }
}
