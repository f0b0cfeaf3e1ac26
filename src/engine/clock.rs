//! The time and the person: when a step ran, who ran it, on which host. One place, so the
//! ledger, the lock and the reject store agree, and tests can see what a run records.

/// Now, as the ledger stores it: RFC 3339, UTC, milliseconds.
pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Today's date in UTC (age rules and date defaults in transforms).
pub fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

/// The operator's login name, as the OS knows it (a directory user too); `$USER` first so a
/// `sudo -u` or a container's environment names the person.
pub fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| whoami::username().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// This machine's host name.
pub fn host_name() -> String {
    whoami::hostname()
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_rfc3339_utc_with_millis() {
        let n = now_iso();
        assert!(chrono::DateTime::parse_from_rfc3339(&n).is_ok(), "{n}");
        assert!(n.ends_with('Z') && n.len() == "2026-01-01T00:00:00.000Z".len(), "{n}");
    }
}
