//! Number, duration and text formatting shared by the panes and the status line.

/// 1234567 -> "1 234 567": digit groups the eye can read at a glance.
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Milliseconds as "0.4s", "12.3s", "4m05s", "1h02m".
pub fn fmt_duration(ms: u64) -> String {
    let secs = ms / 1000;
    if secs < 60 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// Whole seconds as "45s", "4m05s", "1h02m" (clock and ETA precision).
pub fn fmt_secs(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 48 * 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

pub fn fmt_rate(rows_per_sec: f64) -> String {
    format!("{} rows/s", fmt_count(rows_per_sec.max(0.0).round() as u64))
}

/// Collapse whitespace (SQL and error messages span lines) so a value fits a table cell.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cut to `width` characters, ending with `…` when anything was cut: the one way the console
/// shortens text. Only names and prose are shortened; keys and numbers get their width.
pub fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// The widest of `texts` in characters, at least `min` (a column sized to its content).
pub fn content_width<'a>(texts: impl IntoIterator<Item = &'a str>, min: usize) -> usize {
    texts.into_iter().map(|t| t.chars().count()).fold(min, usize::max)
}

/// Pieces laid out in lines of `width` characters, `gap` apart, never splitting a piece: the
/// ranges of `widths` that go on each line. A piece wider than a line gets a line of its own.
pub fn flow(widths: &[usize], width: usize, gap: usize) -> Vec<std::ops::Range<usize>> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, w) in widths.iter().enumerate() {
        if i > start && used + gap + w > width {
            lines.push(start..i);
            start = i;
            used = 0;
        }
        used += if i > start { gap + w } else { *w };
    }
    if start < widths.len() {
        lines.push(start..widths.len());
    }
    lines
}

/// A value that may be missing (SQL NULL): shown as "(none)", never as an empty string.
pub fn show_value(v: &Option<String>) -> String {
    match v {
        Some(s) => s.clone(),
        None => "(none)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1000), "1 000");
        assert_eq!(fmt_count(1234567), "1 234 567");
    }

    #[test]
    fn truncation_is_marked_and_flow_never_splits_a_piece() {
        assert_eq!(truncate("child_visits", 9), "child_vi…");
        assert_eq!(truncate("u00002000", 9), "u00002000");
        assert_eq!(flow(&[11, 11, 12], 24, 2), vec![0..2, 2..3]);
        assert_eq!(flow(&[11, 11, 12], 40, 2), vec![0..3]);
        assert_eq!(flow(&[30, 5], 10, 2), vec![0..1, 1..2]);
        assert_eq!(content_width(["ab", "abcd"], 3), 4);
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(400), "0.4s");
        assert_eq!(fmt_duration(245_000), "4m05s");
        assert_eq!(fmt_duration(3_720_000), "1h02m");
        assert_eq!(fmt_secs(59), "59s");
    }
}
