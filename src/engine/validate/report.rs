//! Wording a failed check: the generated reason or the step's own `message`, with the value
//! shown (shortened, quoted) unless the field is secret.

use super::{Compiled, Fail, Level, Subject, Test, Violation};
use crate::engine::transform::{Quoted, Shown, kind_name};
use crate::engine::value::Value;

impl Compiled {
    pub(super) fn violation(&self, field: &str, v: &Value, fail: Fail, subject: Subject<'_>) -> Violation {
        let secret = is_secret_field(field);
        let shown = if secret {
            "<redacted>".to_owned()
        } else {
            match subject {
                Subject::Whole => Shown(v).to_string(),
                Subject::Element(s) => Quoted(s).to_string(),
            }
        };
        let reason = match &self.message {
            Some(m) => m.replace("{field}", field).replace("{value}", &shown),
            None => self.reason(field, &shown, v, fail, secret),
        };
        Violation {
            rule: self.rule,
            level: self.level,
            reason,
            null_value: self.null_value && self.level == Level::Warning,
        }
    }

    fn reason(&self, field: &str, shown: &str, v: &Value, fail: Fail, secret: bool) -> String {
        // A secret's length narrows a brute-force search, so it stays out of reports too.
        let count = |n: usize| {
            if secret { String::new() } else { format!(" ({n})") }
        };
        match fail {
            Fail::Blank => format!("{field} is required but blank"),
            Fail::TooLong { len, max } => {
                format!("{field} {shown} is longer than {max} characters{}", count(len))
            }
            Fail::TooShort { len, min } => {
                format!("{field} {shown} is shorter than {min} characters{}", count(len))
            }
            Fail::NoMatch => {
                let pattern = match &self.test {
                    Test::Pattern(re) => re.as_str(),
                    _ => "",
                };
                format!("{field} {shown} does not match the pattern {pattern}")
            }
            Fail::NotEmail => format!("{field} {shown} is not a valid email address"),
            Fail::NotInEnum => {
                let allowed = match &self.test {
                    Test::Enum { declared, .. } => list(declared),
                    _ => String::new(),
                };
                format!("{field} {shown} is not one of {allowed}")
            }
            Fail::NotText => format!("{field} {shown} is {}, not text", kind_name(v)),
            Fail::NotDate => format!("{field} {shown} is not an ISO date (YYYY-MM-DD)"),
            Fail::InFuture => format!("{field} {shown} is in the future"),
            Fail::Before(d) => format!("{field} {shown} is before {d}"),
            Fail::After(d) => format!("{field} {shown} is after {d}"),
            Fail::NotNumber => format!("{field} {shown} is not a number"),
            Fail::Below(x) => format!("{field} {shown} is below the minimum {x}"),
            Fail::Above(x) => format!("{field} {shown} is above the maximum {x}"),
        }
    }
}

/// Enum values for a reason; long lists are cut so a report line stays readable.
fn list(values: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = values
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if values.len() > SHOWN {
        s.push_str(&format!(", … ({} more)", values.len() - SHOWN));
    }
    s
}

/// Fields whose values must never appear in a reason, warning or report. Deliberately broad:
/// redacting a harmless field costs little, leaking a credential costs a lot.
pub fn is_secret_field(field: &str) -> bool {
    const MARKERS: &[&str] = &[
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "private_key",
        "credential",
        "hash",
    ];
    let b = field.as_bytes();
    MARKERS
        .iter()
        .any(|m| b.windows(m.len()).any(|w| w.eq_ignore_ascii_case(m.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::validate::testing::{check, run, text, today};
    use crate::engine::validate::{Check, Rule, Validator};

    #[test]
    fn levels_null_on_warning_and_messages() {
        let v = Validator::compile(&[
            Check {
                level: Level::Warning,
                null_on_warning: true,
                ..check(Rule::Email)
            },
            Check {
                level: Level::Warning,
                ..check(Rule::MaxLength { max: 3 })
            },
            Check {
                message: Some("{field} must be a corporate address, got {value}".into()),
                ..check(Rule::Pattern {
                    pattern: "@corp\\.com$".into(),
                })
            },
        ])
        .unwrap();
        let out = v.check("email", &text("nope"), today());
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[0],
            Violation {
                rule: "email",
                level: Level::Warning,
                reason: "email 'nope' is not a valid email address".into(),
                null_value: true,
            }
        );
        assert_eq!(
            (out[1].rule, out[1].level, out[1].null_value),
            ("max_length", Level::Warning, false)
        );
        assert_eq!((out[2].rule, out[2].level), ("pattern", Level::Error));
        assert_eq!(out[2].reason, "email must be a corporate address, got 'nope'");
        assert_eq!(v.check("email", &text("ab@corp.com"), today())[0].rule, "max_length");
    }

    #[test]
    fn secrets_are_redacted() {
        let v = Validator::compile(&[
            check(Rule::MinLength { min: 12 }),
            check(Rule::Pattern {
                pattern: "[0-9]".into(),
            }),
            Check {
                message: Some("{field}={value}".into()),
                ..check(Rule::Enum {
                    values: vec!["x".into()],
                })
            },
        ])
        .unwrap();
        for field in [
            "password",
            "user_password_hash",
            "PasswordHash",
            "client_secret",
            "api_token",
            "apiKey",
            "pin_hash",
        ] {
            let reasons = run(&v, field, text("hunter"));
            assert_eq!(reasons.len(), 3, "{field}");
            for r in &reasons {
                assert!(!r.contains("hunter"), "{field}: {r}");
                assert!(r.contains("<redacted>"), "{field}: {r}");
                // The length of a secret stays out too.
                assert!(!r.contains("(6)"), "{field}: {r}");
            }
            assert_eq!(reasons[0], format!("{field} <redacted> is shorter than 12 characters"));
            assert_eq!(reasons[2], format!("{field}=<redacted>"));
        }
        assert_eq!(
            run(&v, "username", text("hunter"))[0],
            "username 'hunter' is shorter than 12 characters (6)"
        );
        assert!(!is_secret_field("display_name"));
    }

    #[test]
    fn password_hash_paths_are_secret() {
        // A users document's hash, before and after its path is put into `data`, and the
        // usual legacy spellings of a password column.
        for field in [
            "password.hash",
            "data.password.hash",
            "data.password.algorithm",
            "password_hash",
            "pwd",
            "user_pwd",
            "passphrase",
            "hash",
        ] {
            assert!(is_secret_field(field), "{field}");
        }
        for field in ["email", "data.roles", "_permissions", "legacy_id"] {
            assert!(!is_secret_field(field), "{field}");
        }
    }
}
