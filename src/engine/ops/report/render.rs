//! A run report as Markdown (what `up` writes beside the JSON) and as one self-contained HTML
//! page (inline CSS, no scripts, no external assets). Every piece of text from the target is
//! escaped: a reject reason holding `<script>` stays text.

use super::{RunReport, StepReport};
use std::fmt::Write;

fn fmt_ms(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms.abs() < 1000 => format!("{ms} ms"),
        Some(ms) => {
            let s = ms.abs() / 1000;
            let sign = if ms < 0 { "-" } else { "" };
            if s < 60 {
                format!("{sign}{:.1} s", ms.abs() as f64 / 1000.0)
            } else if s < 3600 {
                format!("{sign}{}m {:02}s", s / 60, s % 60)
            } else {
                format!("{sign}{}h {:02}m", s / 3600, (s % 3600) / 60)
            }
        }
    }
}

/// A Markdown table cell: pipes and line breaks would break the table.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn totals(steps: &[StepReport]) -> [u64; 6] {
    let mut t = [0u64; 6];
    for s in steps {
        for (i, n) in [s.source, s.written, s.skipped, s.rejected, s.merged, s.warnings]
            .into_iter()
            .enumerate()
        {
            t[i] += n;
        }
    }
    t
}

fn row_text(row: &serde_json::Value) -> String {
    match row {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Object(m) => m
            .iter()
            .filter(|(k, _)| !k.starts_with('_'))
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

pub fn markdown(r: &RunReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Run report: {} `{}`\n", cell(&r.project), r.run_id);
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| Operation | {} |", cell(&r.operation));
    let _ = writeln!(o, "| Outcome | **{}** |", cell(&r.outcome));
    let _ = writeln!(o, "| Run by | {}@{} |", cell(&r.os_user), cell(&r.host));
    let _ = writeln!(o, "| Started | {} |", cell(&r.started_at));
    let _ = writeln!(o, "| Finished | {} |", cell(&r.finished_at));
    if let Some(w) = &r.window {
        let _ = writeln!(
            o,
            "| Window | {} – {} ({}) |",
            cell(&w.start),
            cell(&w.end),
            fmt_ms(Some(w.window_ms))
        );
        let _ = writeln!(
            o,
            "| Run time | {} — {} |",
            fmt_ms(Some(w.run_ms)),
            if w.finished_in_window {
                format!("finished in the window, {} to spare", fmt_ms(Some(w.margin_ms)))
            } else if w.margin_ms < 0 {
                format!("finished {} after the window closed", fmt_ms(Some(-w.margin_ms)))
            } else {
                "finished before the window opened".to_string()
            }
        );
    }
    let _ = writeln!(o, "\n## Steps\n");
    if r.steps.is_empty() {
        let _ = writeln!(o, "No step ran.");
    } else {
        let _ = writeln!(
            o,
            "| Step | Name | Status | Source | Written | Skipped | Rejected | Merged | Warnings | Duration |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for s in &r.steps {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(&s.version),
                cell(&s.name),
                cell(&s.status),
                s.source,
                s.written,
                s.skipped,
                s.rejected,
                s.merged,
                s.warnings,
                fmt_ms(s.duration_ms)
            );
        }
        let t = totals(&r.steps);
        let _ = writeln!(
            o,
            "| **total** | | | {} | {} | {} | {} | {} | {} | |",
            t[0], t[1], t[2], t[3], t[4], t[5]
        );
        for s in r.steps.iter().filter(|s| s.error.is_some()) {
            let _ = writeln!(
                o,
                "\n**{} failed:** {}",
                cell(&s.version),
                cell(s.error.as_deref().unwrap_or_default())
            );
        }
    }
    let _ = writeln!(o, "\n## Rejects by rule\n");
    if r.rejects.is_empty() {
        let _ = writeln!(o, "No row was rejected.");
    }
    for g in &r.rejects {
        let _ = writeln!(o, "### {} — {}: {} row(s)\n", cell(&g.step), cell(&g.rule), g.count);
        for e in &g.examples {
            let _ = writeln!(o, "- `{}`: {}", cell(&e.source_key).replace('`', "'"), cell(&e.reason));
            let row = row_text(&e.row);
            if !row.is_empty() {
                let _ = writeln!(o, "  - row: {}", cell(&row));
            }
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(
        o,
        "## Discrepancies\n\n{} opened, {} decided during the run.\n",
        r.discrepancies.opened, r.discrepancies.decided
    );
    let _ = writeln!(o, "## Rollbacks\n");
    if r.rollbacks.is_empty() {
        let _ = writeln!(o, "None.");
    }
    for b in &r.rollbacks {
        let _ = writeln!(
            o,
            "- {} reverted at {} by {}",
            cell(&b.version),
            cell(&b.at),
            cell(&b.by)
        );
    }
    let _ = writeln!(o, "\n## Verify\n");
    match &r.verify {
        None => {
            let _ = writeln!(o, "Not verified after this run (`cutover verify` records its result).");
        }
        Some(v) => {
            let _ = writeln!(
                o,
                "{} at {}: {} passed, {} failed.\n",
                if v.ok { "**Passed**" } else { "**FAILED**" },
                cell(&v.at),
                v.passed,
                v.failed
            );
            for c in v.checks.iter().filter(|c| !c.ok) {
                let _ = writeln!(o, "- FAIL {}: {}", cell(&c.name), cell(&c.detail));
            }
        }
    }
    o
}

/// HTML-escape text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1d232a;line-height:1.45}\
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d5dae0;padding-bottom:.2rem}\
h3{font-size:1rem;margin-bottom:.3rem}table{border-collapse:collapse;width:100%;font-size:.92rem}\
th,td{border:1px solid #d5dae0;padding:.3rem .5rem;text-align:left;vertical-align:top}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
th{background:#f1f4f7}tr.total td{font-weight:600;background:#f8f9fb}.ok{color:#13723a;font-weight:600}.bad{color:#b3261e;font-weight:600}\
.meta td:first-child{width:9rem;color:#57606a}code{background:#f1f4f7;padding:0 .25rem;border-radius:3px}\
ul.ex{margin:.2rem 0 1rem 0}ul.ex li{margin-bottom:.3rem}.row{color:#57606a;font-size:.85rem;word-break:break-all}";

fn outcome_class(outcome: &str) -> &'static str {
    if outcome == "done" { "ok" } else { "bad" }
}

pub fn html(r: &RunReport) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Run report {}</title><style>{CSS}</style></head><body>\n",
        esc(&r.run_id)
    );
    let _ = writeln!(o, "<h1>Run report: {}</h1>", esc(&r.project));
    let _ = writeln!(o, "<table class=\"meta\">");
    let meta: Vec<(&str, String)> = vec![
        ("Run", format!("<code>{}</code>", esc(&r.run_id))),
        ("Operation", esc(&r.operation)),
        (
            "Outcome",
            format!(
                "<span class=\"{}\">{}</span>",
                outcome_class(&r.outcome),
                esc(&r.outcome)
            ),
        ),
        ("Run by", format!("{}@{}", esc(&r.os_user), esc(&r.host))),
        ("Started", esc(&r.started_at)),
        ("Finished", esc(&r.finished_at)),
    ];
    for (k, v) in meta {
        let _ = writeln!(o, "<tr><td>{k}</td><td>{v}</td></tr>");
    }
    if let Some(w) = &r.window {
        let _ = writeln!(
            o,
            "<tr><td>Window</td><td>{} – {} ({})</td></tr>",
            esc(&w.start),
            esc(&w.end),
            esc(&fmt_ms(Some(w.window_ms)))
        );
        let fit = if w.finished_in_window {
            format!(
                "<span class=\"ok\">finished in the window, {} to spare</span>",
                esc(&fmt_ms(Some(w.margin_ms)))
            )
        } else if w.margin_ms < 0 {
            format!(
                "<span class=\"bad\">finished {} after the window closed</span>",
                esc(&fmt_ms(Some(-w.margin_ms)))
            )
        } else {
            "finished before the window opened".to_string()
        };
        let _ = writeln!(
            o,
            "<tr><td>Run time</td><td>{} — {fit}</td></tr>",
            esc(&fmt_ms(Some(w.run_ms)))
        );
    }
    let _ = writeln!(o, "</table>\n<h2>Steps</h2>");
    if r.steps.is_empty() {
        let _ = writeln!(o, "<p>No step ran.</p>");
    } else {
        let _ = writeln!(
            o,
            "<table><thead><tr><th>Step</th><th>Name</th><th>Status</th><th class=\"n\">Source</th><th class=\"n\">Written</th><th class=\"n\">Skipped</th><th class=\"n\">Rejected</th><th class=\"n\">Merged</th><th class=\"n\">Warnings</th><th class=\"n\">Duration</th></tr></thead><tbody>"
        );
        for s in &r.steps {
            let class = if s.status == "applied" { "ok" } else { "bad" };
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&s.version),
                esc(&s.name),
                esc(&s.status),
                s.source,
                s.written,
                s.skipped,
                s.rejected,
                s.merged,
                s.warnings,
                esc(&fmt_ms(s.duration_ms))
            );
        }
        let t = totals(&r.steps);
        let _ = writeln!(
            o,
            "<tr class=\"total\"><td>total</td><td></td><td></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td></td></tr></tbody></table>",
            t[0], t[1], t[2], t[3], t[4], t[5]
        );
        for s in r.steps.iter().filter(|s| s.error.is_some()) {
            let _ = writeln!(
                o,
                "<p><span class=\"bad\">{} failed:</span> {}</p>",
                esc(&s.version),
                esc(s.error.as_deref().unwrap_or_default())
            );
        }
    }
    let _ = writeln!(o, "<h2>Rejects by rule</h2>");
    if r.rejects.is_empty() {
        let _ = writeln!(o, "<p>No row was rejected.</p>");
    }
    for g in &r.rejects {
        let _ = writeln!(
            o,
            "<h3>{} — {}: {} row(s)</h3><ul class=\"ex\">",
            esc(&g.step),
            esc(&g.rule),
            g.count
        );
        for e in &g.examples {
            let row = row_text(&e.row);
            let _ = write!(o, "<li><code>{}</code>: {}", esc(&e.source_key), esc(&e.reason));
            if !row.is_empty() {
                let _ = write!(o, "<div class=\"row\">{}</div>", esc(&row));
            }
            let _ = writeln!(o, "</li>");
        }
        let _ = writeln!(o, "</ul>");
    }
    let _ = writeln!(
        o,
        "<h2>Discrepancies</h2><p>{} opened, {} decided during the run.</p>",
        r.discrepancies.opened, r.discrepancies.decided
    );
    let _ = writeln!(o, "<h2>Rollbacks</h2>");
    if r.rollbacks.is_empty() {
        let _ = writeln!(o, "<p>None.</p>");
    } else {
        let _ = writeln!(o, "<ul>");
        for b in &r.rollbacks {
            let _ = writeln!(
                o,
                "<li>{} reverted at {} by {}</li>",
                esc(&b.version),
                esc(&b.at),
                esc(&b.by)
            );
        }
        let _ = writeln!(o, "</ul>");
    }
    let _ = writeln!(o, "<h2>Verify</h2>");
    match &r.verify {
        None => {
            let _ = writeln!(
                o,
                "<p>Not verified after this run (<code>cutover verify</code> records its result).</p>"
            );
        }
        Some(v) => {
            let _ = writeln!(
                o,
                "<p><span class=\"{}\">{}</span> at {}: {} passed, {} failed.</p>",
                if v.ok { "ok" } else { "bad" },
                if v.ok { "Passed" } else { "FAILED" },
                esc(&v.at),
                v.passed,
                v.failed
            );
            let failed: Vec<_> = v.checks.iter().filter(|c| !c.ok).collect();
            if !failed.is_empty() {
                let _ = writeln!(o, "<ul>");
                for c in failed {
                    let _ = writeln!(
                        o,
                        "<li><span class=\"bad\">FAIL</span> {}: {}</li>",
                        esc(&c.name),
                        esc(&c.detail)
                    );
                }
                let _ = writeln!(o, "</ul>");
            }
        }
    }
    let _ = writeln!(o, "</body></html>");
    o
}

#[cfg(test)]
mod tests {
    use crate::engine::ops::report::render::{esc, fmt_ms};

    #[test]
    fn html_escapes_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_ms(Some(250)), "250 ms");
        assert_eq!(fmt_ms(Some(2500)), "2.5 s");
        assert_eq!(fmt_ms(Some(125_000)), "2m 05s");
        assert_eq!(fmt_ms(Some(7_380_000)), "2h 03m");
        assert_eq!(fmt_ms(None), "—");
    }
}
