//! The import scenario's rules (`SCENARIO-import.md`), written out again here by hand so the
//! manifest is a second, independent computation of what the engine must do: nothing in this
//! file calls the engine's transforms or validations.

use chrono::NaiveDate;

/// Why a row is rejected: the rule name the fixture's steps record in the reject store, the
/// target field, and (for lookups) the class of reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reject {
    pub rule: &'static str,
    pub field: &'static str,
    /// `no patient`, `ambiguous`, `waiting`, or the rule itself.
    pub reason: &'static str,
}

pub(crate) const fn reject(rule: &'static str, field: &'static str) -> Reject {
    Reject {
        rule,
        field,
        reason: rule,
    }
}

/// A date as the contract reads it: exactly `YYYY-MM-DD`, `MM/DD/YYYY` or `M/D/YYYY`, and a
/// real calendar day. `None` for anything else (day-first, `1985/03/14`, `2021-02-30`, ...).
pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    let digits =
        |p: &str, min: usize, max: usize| (min..=max).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    let (y, m, d) = if let [y, m, d] = s.split('-').collect::<Vec<_>>()[..] {
        if !(digits(y, 4, 4) && digits(m, 2, 2) && digits(d, 2, 2)) {
            return None;
        }
        (y, m, d)
    } else if let [m, d, y] = s.split('/').collect::<Vec<_>>()[..] {
        if !(digits(m, 1, 2) && digits(d, 1, 2) && digits(y, 4, 4)) {
            return None;
        }
        (y, m, d)
    } else {
        return None;
    };
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// Every planted "future" date is in 2100 or later and every past one before 2025, so the
/// counts never depend on the day the test runs; this is the cut between them.
pub(crate) fn is_future(d: NaiveDate) -> bool {
    d > chrono::Local::now().date_naive()
}

/// One `@`, no spaces, a dot in the domain (`+` tags are fine).
pub(crate) fn is_email(s: &str) -> bool {
    let mut parts = s.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty()
        && !s.contains(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

/// `gender`: M/m/male → male, F/f/female → female, O/other → other, blank or anything else →
/// unknown (compared case-insensitively after trimming).
pub(crate) fn gender(raw: &str) -> &'static str {
    match raw.trim().to_lowercase().as_str() {
        "m" | "male" => "male",
        "f" | "female" => "female",
        "o" | "other" => "other",
        _ => "unknown",
    }
}

pub(crate) const STATUSES: &[&str] = &["pending", "in_progress", "completed", "cancelled", "failed"];
pub(crate) const PRIORITIES: &[&str] = &["routine", "urgent", "stat"];

/// An enum column: blank → the default, a listed value in any case → itself, else `None`.
pub(crate) fn enum_value(raw: &str, allowed: &[&'static str], blank: &'static str) -> Option<&'static str> {
    let t = raw.trim().to_lowercase();
    if t.is_empty() {
        return Some(blank);
    }
    allowed.iter().copied().find(|a| *a == t)
}

/// Trimmed, or `None` when blank.
pub(crate) fn non_blank(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_accept_exactly_the_listed_formats() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd);
        assert_eq!(parse_date("1985-03-14"), d(1985, 3, 14));
        assert_eq!(parse_date("03/14/1985"), d(1985, 3, 14));
        assert_eq!(parse_date("3/4/1985"), d(1985, 3, 4));
        for bad in [
            "1985/03/14",
            "14/03/1985",
            "2021-02-30",
            "1985-3-4",
            "14.03.1985",
            "",
            "March 3",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn emails_and_genders() {
        assert!(is_email("a.b+lab@example.com"));
        for bad in [
            "a.example.com",
            "a b@example.com",
            "a@localhost",
            "a@@example.com",
            "@x.com",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        assert_eq!(gender(" FEMALE "), "female");
        assert_eq!(gender("O"), "other");
        assert_eq!(gender("femal"), "unknown");
        assert_eq!(enum_value("Completed", STATUSES, "pending"), Some("completed"));
        assert_eq!(enum_value(" ", STATUSES, "pending"), Some("pending"));
        assert_eq!(enum_value("in progress", STATUSES, "pending"), None);
    }
}
