//! The progress pane: the running step's gauge, rate, ETA, batches, books so far and a
//! throughput sparkline; the whole run's gauge; and, when idle, the last result and what is next.

use crate::console::format::{flow, fmt_count, fmt_duration, fmt_rate, fmt_secs, truncate};
use crate::console::state::{AppState, CurrentStep, Pane, is_runnable};
use crate::console::update::would_be;
use crate::console::view::pane_block;
use crate::console::view::theme::Theme;
use crate::engine::project::StepKind;
use crate::engine::protocol::Operation;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph, Sparkline, Widget, Wrap};

pub struct ProgressPane<'a> {
    pub state: &'a AppState,
    pub focused: bool,
}

impl Widget for ProgressPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let state = self.state;
        let block = pane_block(state, Pane::Progress, self.focused, "");
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height == 0 || inner.width == 0 {
            return;
        }
        // Steps with [sync]: their lag gauges at the foot, when the pane has room for them.
        let gauges = crate::console::view::sync::lines_needed(state, inner.height.saturating_sub(6).min(4));
        let [inner, sync_area] = Layout::vertical([Constraint::Min(0), Constraint::Length(gauges)]).areas(inner);
        crate::console::view::sync::render(state, sync_area, buf);
        let run = state.run.as_ref();
        match run.and_then(|r| r.current.as_ref()) {
            Some(c) => render_running(state, c, inner, buf),
            None => render_idle(state, inner, buf),
        }
    }
}

fn render_running(state: &AppState, c: &CurrentStep, area: Rect, buf: &mut Buffer) {
    let theme = Theme::of(state);
    let run = state.run.as_ref();
    let p = &c.progress;
    let mut tags = Vec::new();
    if c.dry_run {
        tags.push(Span::styled(" DRY RUN", theme.warn()));
    }
    if run.is_some_and(|r| r.paused) {
        tags.push(Span::styled(" PAUSED", theme.warn().patch(theme.bold())));
    }
    if run.is_some_and(|r| r.aborting) {
        tags.push(Span::styled(" ABORTING", theme.error()));
    }
    let verb = if run.is_some_and(|r| r.operation == Operation::Down) {
        "rolling back"
    } else {
        "running"
    };
    let mut title = vec![
        Span::styled(format!("▶ {verb} "), theme.accent()),
        Span::styled(c.name.clone(), theme.bold()),
        Span::raw(format!(" ({})", c.kind.as_str())),
    ];
    title.extend(tags);

    let left = p.rows_total.saturating_sub(p.rows_done);
    let eta = if p.rows_per_sec > 0.0 {
        format!("ETA {}", fmt_secs((left as f64 / p.rows_per_sec).ceil() as i64))
    } else {
        "ETA unknown".to_string()
    };
    // Each fact whole on one line: a line too narrow for the next fact moves it down,
    // never cuts its number ("rejected 14" for 148).
    let plain = theme.plain();
    let facts_items: Vec<(String, ratatui::style::Style)> = vec![
        (fmt_rate(p.rows_per_sec), plain),
        (eta, plain),
        (
            format!("batch {}/{}", fmt_count(p.batches_done), fmt_count(p.batches_total)),
            plain,
        ),
        (format!("elapsed {}", fmt_duration(p.elapsed_ms)), plain),
        (format!("written {}", fmt_count(p.written)), plain),
        (format!("skipped {}", fmt_count(p.skipped)), plain),
        (
            format!("rejected {}", fmt_count(p.rejected)),
            if p.rejected > 0 { theme.warn() } else { plain },
        ),
        (format!("merged {}", fmt_count(p.merged)), plain),
        (format!("warnings {}", fmt_count(p.warnings)), plain),
        (format!("flags {}", fmt_count(c.flags)), plain),
    ];
    let fact_widths: Vec<usize> = facts_items.iter().map(|(t, _)| t.chars().count()).collect();
    let fact_lines = flow(&fact_widths, area.width as usize, 3);
    let [title_area, gauge_area, facts_area, spark_area, plan_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(if c.kind == StepKind::Schema {
            2
        } else {
            fact_lines.len().max(4) as u16
        }),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    Paragraph::new(Line::from(title)).render(title_area, buf);

    if c.kind == StepKind::Schema || p.rows_total == 0 {
        let text = match &c.last_statement {
            Some(sql) => format!("statement {} done: {}", c.statements_done, sql),
            None => "running statements…".to_string(),
        };
        Paragraph::new(Line::styled(truncate(&text, area.width as usize), theme.dim())).render(gauge_area, buf);
        let elapsed = format!("elapsed {}", fmt_duration(p.elapsed_ms));
        Paragraph::new(Line::from(elapsed)).render(facts_area, buf);
    } else {
        let ratio = (p.rows_done as f64 / p.rows_total as f64).clamp(0.0, 1.0);
        let label = format!(
            "{:.0}% · {} / {} rows",
            ratio * 100.0,
            fmt_count(p.rows_done),
            fmt_count(p.rows_total)
        );
        Gauge::default()
            .ratio(ratio)
            .label(label)
            .gauge_style(theme.gauge())
            .use_unicode(true)
            .render(gauge_area, buf);
        let facts: Vec<Line> = fact_lines
            .into_iter()
            .map(|range| {
                let mut spans = Vec::new();
                for (i, (text, style)) in facts_items[range.clone()].iter().enumerate() {
                    if i > 0 {
                        spans.push(Span::raw("   "));
                    }
                    spans.push(Span::styled(text.clone(), *style));
                }
                Line::from(spans)
            })
            .collect();
        Paragraph::new(facts).render(facts_area, buf);
    }

    if spark_area.height > 0 {
        let mut spark_lines = spark_area;
        if let Some(reject) = &c.last_reject {
            let line = Line::styled(
                truncate(&format!("last reject {reject}"), area.width as usize),
                theme.warn(),
            );
            Paragraph::new(line).render(
                Rect {
                    height: 1,
                    ..spark_area
                },
                buf,
            );
            spark_lines.y += 1;
            spark_lines.height -= 1;
        }
        if spark_lines.height >= 2 && !c.rate_history.is_empty() {
            let max = c.rate_history.iter().copied().max().unwrap_or(0);
            let caption = format!("rows/s, peak {}", fmt_count(max));
            Paragraph::new(Line::styled(caption, theme.dim())).render(
                Rect {
                    height: 1,
                    ..spark_lines
                },
                buf,
            );
            let graph = Rect {
                y: spark_lines.y + 1,
                height: (spark_lines.height - 1).min(4),
                ..spark_lines
            };
            // The newest samples that fit the width, so the graph scrolls left as time passes.
            let start = c.rate_history.len().saturating_sub(graph.width as usize);
            Sparkline::default()
                .data(&c.rate_history[start..])
                .style(theme.accent())
                .render(graph, buf);
        }
    }
    render_plan_gauge(state, plan_area, buf);
}

/// The whole run: steps done plus the running step's fraction, over the planned steps.
fn render_plan_gauge(state: &AppState, area: Rect, buf: &mut Buffer) {
    let theme = Theme::of(state);
    let Some(run) = &state.run else {
        return;
    };
    let planned = run.planned.len().max(1);
    let fraction = run
        .current
        .as_ref()
        .map(|c| {
            if c.progress.rows_total > 0 {
                (c.progress.rows_done as f64 / c.progress.rows_total as f64).clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .unwrap_or(0.0);
    let ratio = ((run.steps_done as f64 + fraction) / planned as f64).clamp(0.0, 1.0);
    let step_no = (run.steps_done + 1).min(planned);
    let label = format!("run: step {step_no} of {planned}");
    Gauge::default()
        .ratio(ratio)
        .label(label)
        .gauge_style(theme.accent())
        .use_unicode(true)
        .render(area, buf);
}

fn render_idle(state: &AppState, area: Rect, buf: &mut Buffer) {
    let theme = Theme::of(state);
    let mut lines = Vec::new();
    if state.run.is_some() {
        lines.push(Line::styled("starting…", theme.accent()));
    } else {
        lines.push(Line::styled("No step is running.", theme.dim()));
    }
    if let Some(f) = &state.last_finished {
        lines.push(Line::from(""));
        if f.dry_run {
            lines.push(Line::from(vec![
                Span::raw("dry run of "),
                Span::styled(f.name.clone(), theme.bold()),
            ]));
            lines.push(Line::from(
                state
                    .dry_run_statements_text(&f.version)
                    .unwrap_or_else(|| would_be(&f.counts)),
            ));
        } else {
            lines.push(Line::from(vec![
                Span::raw("last: "),
                Span::styled(f.name.clone(), theme.bold()),
                Span::styled(format!(" {}", f.status), theme.step_state(&f.status)),
                Span::raw(format!(" in {}", fmt_duration(f.duration_ms))),
            ]));
            if f.counts.source > 0 || f.counts.written > 0 {
                lines.push(Line::from(format!(
                    "{} written, {} rejected, {} skipped",
                    fmt_count(f.counts.written),
                    fmt_count(f.counts.rejected),
                    fmt_count(f.counts.skipped)
                )));
            }
        }
    }
    lines.push(Line::from(""));
    match state.next_pending() {
        Some(n) => lines.push(Line::from(vec![
            Span::raw("next: "),
            Span::styled(n.name.clone(), theme.bold()),
            Span::raw(format!(" ({}) · n runs it", n.kind.as_str())),
        ])),
        None if state.loaded && !state.migrations.is_empty() => {
            lines.push(Line::styled("nothing pending: every step is applied", theme.ok()))
        }
        None => {}
    }
    let [text_area, gauge_area] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(area);
    Paragraph::new(lines).wrap(Wrap { trim: true }).render(text_area, buf);
    if !state.migrations.is_empty() && state.run.is_none() {
        let total = state.migrations.len();
        let done = total - state.migrations.iter().filter(|m| is_runnable(m)).count();
        let label = format!("plan: {done} of {total} steps applied");
        Gauge::default()
            .ratio(done as f64 / total as f64)
            .label(label)
            .gauge_style(theme.accent())
            .use_unicode(true)
            .render(gauge_area, buf);
    } else {
        render_plan_gauge(state, gauge_area, buf);
    }
}
