//! Printing for the headless face: a readable text form, or JSON (`--json`).

use crate::engine::plan::{StepStatus, one_line};
use crate::engine::project::Project;
use crate::engine::protocol::{EngineEvent, Operation};
use crate::engine::store::ledger::HistoryEntry;
use crate::engine::store::lock::LockHolder;
use serde_json::json;
use std::io::Write;

pub struct EventPrinter {
    json: bool,
    /// stdout is a terminal: the running step's progress is one line redrawn in place.
    live: bool,
    out: Box<dyn std::io::Write + Send>,
    err: Box<dyn std::io::Write + Send>,
    /// A live progress line is on screen (cleared before any other line).
    progress_shown: bool,
    /// When the last progress line was printed (not a terminal: every `STATUS_EVERY`).
    last_status: Option<std::time::Instant>,
    /// Rejected events of the running step, per rule (events are capped per batch; the
    /// printer's caller replaces these with the store's own count where it can).
    pub rejects_by_rule: std::collections::BTreeMap<String, u64>,
    flags: u64,
}

/// Not a terminal: a status line at most this often.
pub const STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

macro_rules! out {
    ($p:expr, $($arg:tt)*) => {{
        $p.clear_progress();
        let _ = writeln!($p.out, $($arg)*);
    }};
}
macro_rules! err {
    ($p:expr, $($arg:tt)*) => {{
        $p.clear_progress();
        let _ = $p.out.flush();
        let _ = writeln!($p.err, $($arg)*);
    }};
}

impl EventPrinter {
    /// To stdout and stderr; progress redrawn in place when stdout is a terminal.
    pub fn new(json: bool) -> Self {
        let live = std::io::IsTerminal::is_terminal(&std::io::stdout());
        Self::to(json, live, Box::new(std::io::stdout()), Box::new(std::io::stderr()))
    }

    pub fn to(
        json: bool,
        live: bool,
        out: Box<dyn std::io::Write + Send>,
        err: Box<dyn std::io::Write + Send>,
    ) -> Self {
        EventPrinter {
            json,
            live,
            out,
            err,
            progress_shown: false,
            last_status: None,
            rejects_by_rule: Default::default(),
            flags: 0,
        }
    }

    pub fn print(&mut self, ev: &EngineEvent) {
        self.print_at(ev, std::time::Instant::now());
    }

    fn clear_progress(&mut self) {
        if self.progress_shown {
            let _ = write!(self.out, "\r\x1b[2K");
            self.progress_shown = false;
        }
    }

    /// The running step's progress: redrawn in place on a terminal, else a line every
    /// `STATUS_EVERY`.
    fn progress(&mut self, version: &str, p: &crate::engine::protocol::Progress, now: std::time::Instant) {
        let eta = if p.rows_per_sec > 0.0 && p.rows_total > p.rows_done {
            format!(
                "ETA {}",
                secs_text(((p.rows_total - p.rows_done) as f64 / p.rows_per_sec).ceil() as u64)
            )
        } else {
            "ETA -".to_string()
        };
        let pct = (p.rows_done * 100).checked_div(p.rows_total).unwrap_or(100);
        let line = format!(
            "  {version} {} / {} rows ({pct}%) · {} rows/s · {eta} · rejected {}",
            p.rows_done,
            p.rows_total,
            p.rows_per_sec.round() as u64,
            p.rejected
        );
        if self.live {
            let _ = write!(self.out, "\r\x1b[2K{line}");
            let _ = self.out.flush();
            self.progress_shown = true;
        } else if self.last_status.is_none_or(|t| now.duration_since(t) >= STATUS_EVERY) {
            self.last_status = Some(now);
            out!(self, "{line}");
        }
    }

    /// The step's rejects per rule, once, when it ends.
    /// `rejected`: the step's own count, when known. Rules summed from the events (capped per
    /// batch) can fall short of it: then the line says it is a sample, not the whole.
    fn step_summary(&mut self, version: &str, dry_run: bool, rejected: Option<u64>) {
        let by_rule = std::mem::take(&mut self.rejects_by_rule);
        let flags = std::mem::take(&mut self.flags);
        self.last_status = None;
        if !by_rule.is_empty() {
            let list: Vec<String> = by_rule.iter().map(|(rule, n)| format!("{rule} {n}")).collect();
            let listed: u64 = by_rule.values().sum();
            if let Some(all) = rejected.filter(|all| *all > listed) {
                out!(
                    self,
                    "    rejects by rule, of the first {listed} reported ({all} in all): {}; every one: `cutover rejects list --step {version}`",
                    list.join(", ")
                );
            } else if dry_run {
                out!(self, "    rejects by rule: {} (a dry run keeps none)", list.join(", "));
            } else {
                out!(
                    self,
                    "    rejects by rule: {}; every one: `cutover rejects list --step {version}`",
                    list.join(", ")
                );
            }
        }
        if flags > 0 {
            out!(
                self,
                "    {flags} row(s) written with warnings; see `cutover rejects list --warnings --step {version}`"
            );
        }
    }

    pub fn print_at(&mut self, ev: &EngineEvent, now: std::time::Instant) {
        if self.json {
            if let Ok(s) = serde_json::to_string(ev) {
                let _ = writeln!(self.out, "{s}");
            }
            return;
        }
        match ev {
            EngineEvent::Planned {
                operation: Operation::Sync,
                steps,
                ..
            } => {
                if !steps.is_empty() {
                    out!(
                        self,
                        "syncing {} step{}",
                        steps.len(),
                        if steps.len() == 1 { "" } else { "s" }
                    );
                }
            }
            EngineEvent::Planned {
                operation,
                dry_run,
                steps,
                ..
            } => {
                if steps.is_empty() {
                    out!(
                        self,
                        "nothing to do: no {} migrations",
                        if *operation == Operation::Down {
                            "applied"
                        } else {
                            "pending"
                        }
                    );
                } else {
                    out!(
                        self,
                        "{}{} {} migration{}",
                        if *dry_run { "dry run: " } else { "" },
                        if *operation == Operation::Down {
                            "reverting"
                        } else {
                            "applying"
                        },
                        steps.len(),
                        if steps.len() == 1 { "" } else { "s" }
                    );
                }
            }
            EngineEvent::StepStarted {
                version, name, kind, ..
            } => out!(self, "▶ {version} {name} ({})", kind.as_str()),
            EngineEvent::Statement { index, sql, .. } => out!(self, "  [{index}] {sql};"),
            EngineEvent::Progress { version, progress } => self.progress(version, progress, now),
            // One line per reject would bury the run: they are counted per rule and summed up
            // when the step ends (every one stays in `cutover rejects list`).
            EngineEvent::Rejected { rule, .. } => *self.rejects_by_rule.entry(rule.clone()).or_default() += 1,
            EngineEvent::Flagged { .. } => self.flags += 1,
            EngineEvent::Paused { .. } => out!(self, "  paused"),
            EngineEvent::Resumed { .. } => out!(self, "  resumed"),
            EngineEvent::StepFinished {
                status,
                counts,
                duration_ms,
                dry_run,
                ..
            } => {
                let status = status.finished_label(*dry_run);
                if counts.source > 0 || counts.written > 0 {
                    out!(self, "  ✓ {status} in {duration_ms} ms: {}", counts.equation());
                } else {
                    out!(self, "  ✓ {status} in {duration_ms} ms");
                }
            }
            EngineEvent::Aborted { version, counts } => {
                out!(
                    self,
                    "  ■ aborted {version} at a batch boundary: {}; `cutover up` resumes it",
                    counts.equation()
                )
            }
            EngineEvent::Failed {
                version,
                error,
                statement,
                counts,
                ..
            } => {
                match version {
                    Some(v) => err!(self, "  ✗ {v} failed: {error}"),
                    None => err!(self, "error: {error}"),
                }
                if let Some(s) = statement {
                    err!(self, "    statement: {}", one_line(s));
                }
                if let Some(c) = counts.filter(|c| c.source > 0) {
                    err!(self, "    committed before the failure: {}", c.equation());
                }
            }
            EngineEvent::Finished {
                ok,
                steps_done,
                dry_run,
                operation,
                ..
            } => {
                if *ok && *operation == Operation::Sync {
                    out!(
                        self,
                        "synced {steps_done} step{}",
                        if *steps_done == 1 { "" } else { "s" }
                    );
                } else if *ok && *steps_done > 0 {
                    out!(
                        self,
                        "{} {steps_done} migration{}{}",
                        match (operation.as_str(), *dry_run) {
                            ("down", false) => "reverted",
                            ("down", true) => "would revert",
                            (_, false) => "applied",
                            (_, true) => "would apply",
                        },
                        if *steps_done == 1 { "" } else { "s" },
                        if *dry_run {
                            " (dry run: nothing was written)"
                        } else {
                            ""
                        }
                    );
                }
            }
            EngineEvent::Notice { message, .. }
            | EngineEvent::Unverified { message }
            | EngineEvent::Decided { message, .. }
            | EngineEvent::Fixed { message, .. } => out!(self, "{message}"),
            EngineEvent::Retried {
                written,
                still_rejected,
                first_still_rejected,
                error,
            } => match error {
                Some(e) => out!(self, "{e}"),
                None => out!(
                    self,
                    "retry: {written} written, {still_rejected} still rejected{}",
                    first_still_rejected
                        .as_ref()
                        .map(|(i, why)| format!(" ({i}: {why})"))
                        .unwrap_or_default()
                ),
            },
            EngineEvent::Synced {
                version,
                pass,
                inserted,
                updated,
                deleted,
                rejected,
                lag_rows,
                lag_seconds,
                mark,
            } => out!(
                self,
                "  ⟳ {version} pass {pass}: {inserted} inserted, {updated} updated, {deleted} deleted, {rejected} rejected · lag {lag_rows} rows{}{}",
                lag_seconds.map(|s| format!(" (oldest {s:.1}s)")).unwrap_or_default(),
                mark.as_ref().map(|m| format!(" · mark {m}")).unwrap_or_default()
            ),
            EngineEvent::Snapshot(_)
            | EngineEvent::RollbackPreview(_)
            | EngineEvent::Verified(_)
            | EngineEvent::RejectPage(_)
            | EngineEvent::ReviewRecords(_)
            | EngineEvent::RejectsExported { .. }
            | EngineEvent::SourceCounts { .. }
            | EngineEvent::ImportFiles { .. }
            | EngineEvent::Preview(_)
            | EngineEvent::ImportDryRun { .. }
            | EngineEvent::ImportSaved { .. }
            | EngineEvent::Assessed(_)
            | EngineEvent::BackedUp { .. } => {}
        }
        match ev {
            EngineEvent::StepFinished {
                version,
                dry_run,
                counts,
                ..
            } => self.step_summary(version, *dry_run, Some(counts.rejected)),
            EngineEvent::Aborted { version, counts } => self.step_summary(version, false, Some(counts.rejected)),
            EngineEvent::Failed {
                version: Some(v),
                counts,
                ..
            } => self.step_summary(v, false, counts.as_ref().map(|c| c.rejected)),
            EngineEvent::Finished { .. } => {
                self.clear_progress();
                let _ = self.out.flush();
            }
            _ => {}
        }
    }
}

fn secs_text(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

pub fn print_status(json: bool, project: &Project, status: &[StepStatus], holder: Option<&LockHolder>) {
    if json {
        let v = json!({
            "project": project.config.name,
            "target": project.config.target.redacted(),
            "locked_by": holder,
            "migrations": status.iter().map(|s| json!({
                "version": s.version,
                "name": s.name,
                "kind": s.kind,
                "state": s.state,
                "checksum": s.checksum,
                "checksum_state": s.checksum_state,
                "modified_file": s.modified_file,
                "baseline": s.baseline,
                "applied_at": s.ledger.as_ref().and_then(|l| l.applied_at.clone()),
                "applied_by": s.ledger.as_ref().and_then(|l| l.applied_by.clone()),
                "duration_ms": s.ledger.as_ref().and_then(|l| l.duration_ms),
                // A reverted step's books describe a run that was undone: `counts` is null and
                // the undone run's figures are under `reverted_counts`.
                "counts": s.ledger.as_ref().filter(|_| s.state != crate::engine::plan::StepState::Reverted).map(|l| l.counts),
                "reverted_counts": s.ledger.as_ref().filter(|_| s.state == crate::engine::plan::StepState::Reverted).map(|l| l.counts),
                "error": s.ledger.as_ref().and_then(|l| l.error.clone()),
                "failing_statement": s.ledger.as_ref().and_then(|l| l.failing_statement.clone()),
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
        return;
    }
    println!(
        "project {}  target {}",
        project.config.name,
        project.config.target.redacted()
    );
    if let Some(h) = holder {
        println!("locked by {h}");
    }
    if status.is_empty() {
        println!("no migrations yet: `cutover create NAME --kind sql|data|merge`");
        return;
    }
    println!(
        "{:<16} {:<32} {:<7} {:<11} {:<9} {:<24} {:>9} {:>9}",
        "VERSION", "NAME", "KIND", "STATE", "CHECKSUM", "APPLIED", "WRITTEN", "REJECTED"
    );
    for s in status {
        let l = s.ledger.as_ref();
        // A reverted step's ledger row still holds the undone run's books: they describe
        // nothing in the target now, so they are not listed as if they did.
        let books = l.filter(|_| s.state != crate::engine::plan::StepState::Reverted);
        println!(
            "{:<16} {:<32} {:<7} {:<11} {:<9} {:<24} {:>9} {:>9}",
            s.version,
            truncate(&s.name, 32),
            s.kind.as_str(),
            if s.baseline { "baseline" } else { s.state.as_str() },
            s.checksum_state,
            l.and_then(|l| l.applied_at.clone()).unwrap_or_default(),
            books
                .map(|l| l.counts.written.to_string())
                .unwrap_or_else(|| "-".into()),
            books
                .map(|l| l.counts.rejected.to_string())
                .unwrap_or_else(|| "-".into()),
        );
        if let Some(f) = &s.modified_file {
            println!("    modified since applied: {f}");
        }
        if let Some(e) = l.and_then(|l| l.error.as_ref()) {
            println!("    error: {}", one_line(e));
        }
        if s.state == crate::engine::plan::StepState::Interrupted {
            println!("    {}", resume_hint(s));
        }
    }
}

/// What resumes an interrupted step (said by `status` and the console's details alike).
pub fn resume_hint(s: &StepStatus) -> String {
    let done = s.ledger.as_ref().map(|l| l.counts.source).unwrap_or(0);
    interrupted_hint(s.kind, done)
}

pub fn interrupted_hint(kind: crate::engine::project::StepKind, rows_done: u64) -> String {
    if kind == crate::engine::project::StepKind::Schema {
        "interrupted: nothing of it committed; `cutover repair`, then `cutover up` runs it again".to_string()
    } else {
        format!("interrupted after {rows_done} source rows: `cutover up` resumes it from its last checkpoint")
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

pub fn print_history(json: bool, h: &[HistoryEntry]) {
    if json {
        println!("{}", serde_json::to_string(h).unwrap_or_else(|_| "[]".into()));
        return;
    }
    for e in h {
        println!(
            "{:<25} {:<16} {:<14} {}@{} {}",
            e.at,
            e.version.as_deref().unwrap_or("-"),
            e.event,
            e.os_user,
            e.host,
            if e.detail.is_null() {
                String::new()
            } else {
                e.detail.to_string()
            }
        );
    }
}

pub fn print_list(json: bool, what: &str, items: &[String]) {
    if json {
        println!("{}", json!({ what: items }));
    } else if items.is_empty() {
        println!("{what}: nothing to do");
    } else {
        for i in items {
            println!("{what}: {i}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::project::StepKind;
    use crate::engine::protocol::{Counts, Progress, StepState};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().map(|b| b.clone()).unwrap_or_default()).into_owned()
        }
    }

    const V: &str = "20250101T090100";

    /// A step of 50 000 rows: started, 30 rejects (two rules), progress every second for 25
    /// seconds, finished.
    fn a_step(printer: &mut EventPrinter) {
        let t0 = Instant::now();
        printer.print_at(
            &EngineEvent::StepStarted {
                version: V.into(),
                name: "accounts".into(),
                kind: StepKind::Data,
                dry_run: false,
            },
            t0,
        );
        for i in 0..30 {
            printer.print_at(
                &EngineEvent::Rejected {
                    version: V.into(),
                    source_table: "users".into(),
                    source_key: format!("u{i:05}"),
                    rule: if i % 3 == 0 { "required" } else { "email" }.into(),
                    reason: "bad".into(),
                },
                t0,
            );
        }
        for s in 0..=25u64 {
            let progress = Progress {
                rows_done: s * 2_000,
                rows_total: 50_000,
                rows_per_sec: 2_000.0,
                rejected: 30,
                ..Progress::default()
            };
            printer.print_at(
                &EngineEvent::Progress {
                    version: V.into(),
                    progress,
                },
                t0 + Duration::from_secs(s),
            );
        }
        printer.print_at(
            &EngineEvent::StepFinished {
                version: V.into(),
                name: "accounts".into(),
                status: StepState::Applied,
                counts: Counts {
                    source: 50_000,
                    written: 49_970,
                    rejected: 30,
                    ..Counts::default()
                },
                duration_ms: 25_000,
                dry_run: false,
            },
            t0 + Duration::from_secs(25),
        );
    }

    /// Reject events are capped per batch: when the step's own count is larger than the rules
    /// add up to, the line says it is a sample (a sync pass prints these from events alone).
    #[test]
    fn rules_from_capped_events_say_they_are_a_sample() {
        let out = Captured::default();
        let mut p = EventPrinter::to(false, false, Box::new(out.clone()), Box::new(Captured::default()));
        let t0 = Instant::now();
        for i in 0..3 {
            p.print_at(
                &EngineEvent::Rejected {
                    version: V.into(),
                    source_table: "users".into(),
                    source_key: format!("u{i}"),
                    rule: "email".into(),
                    reason: "bad".into(),
                },
                t0,
            );
        }
        p.print_at(
            &EngineEvent::StepFinished {
                version: V.into(),
                name: "accounts".into(),
                status: StepState::Applied,
                counts: Counts {
                    source: 100,
                    written: 60,
                    rejected: 40,
                    ..Counts::default()
                },
                duration_ms: 10,
                dry_run: false,
            },
            t0,
        );
        let text = out.text();
        assert!(
            text.contains("rejects by rule, of the first 3 reported (40 in all): email 3"),
            "{text}"
        );
    }

    #[test]
    fn not_a_terminal_a_status_line_every_ten_seconds_and_rejects_per_rule() {
        let out = Captured::default();
        let mut p = EventPrinter::to(false, false, Box::new(out.clone()), Box::new(Captured::default()));
        a_step(&mut p);
        let text = out.text();
        let status: Vec<&str> = text.lines().filter(|l| l.contains("rows/s")).collect();
        // at 0 s, 10 s and 20 s
        assert_eq!(status.len(), 3, "{text}");
        assert!(
            status[1].contains("20000 / 50000 rows (40%) · 2000 rows/s · ETA 15s"),
            "{text}"
        );
        assert!(!text.contains("u00001"), "no line per reject: {text}");
        assert!(text.contains("rejects by rule: email 20, required 10"), "{text}");
        assert!(text.contains("cutover rejects list --step 20250101T090100"), "{text}");
        assert!(!text.contains('\r'), "nothing redrawn in a file: {text:?}");
    }

    #[test]
    fn on_a_terminal_the_progress_line_is_redrawn_in_place_and_cleared() {
        let out = Captured::default();
        let mut p = EventPrinter::to(false, true, Box::new(out.clone()), Box::new(Captured::default()));
        a_step(&mut p);
        let text = out.text();
        // every progress event redraws the one line
        assert_eq!(text.matches("\r\x1b[2K  20250101T090100").count(), 26, "{text:?}");
        // the line is cleared before the step's result is printed on a line of its own
        assert!(text.contains("ETA - · rejected 30\r\x1b[2K  ✓ applied"), "{text:?}");
    }

    #[test]
    fn json_prints_every_event_unchanged() {
        let out = Captured::default();
        let mut p = EventPrinter::to(true, true, Box::new(out.clone()), Box::new(Captured::default()));
        a_step(&mut p);
        let text = out.text();
        assert_eq!(text.lines().count(), 1 + 30 + 26 + 1, "{text}");
        assert_eq!(text.matches("\"event\":\"rejected\"").count(), 30);
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
    }
}
