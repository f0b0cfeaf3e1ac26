//! `phone`: numbers written any common way become E.164 (`+15551234567`), using a small
//! table of numbering plans instead of a phone library.

use std::borrow::Cow;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::OnError;
use super::output::{Buf, reuse_or_new};
use super::reason::{Quoted, Shown, kind_name};
use crate::engine::value::Value;

/// Options of `phone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhoneSpec {
    /// ISO 3166 alpha-2 code of the country that numbers without an international prefix
    /// belong to. Checked against the supported table when the step is parsed.
    #[serde(deserialize_with = "de_country")]
    pub country: String,
    pub on_error: OnError,
}

impl Default for PhoneSpec {
    fn default() -> Self {
        Self {
            country: "US".into(),
            on_error: OnError::Reject,
        }
    }
}

/// A numbering plan, enough to turn a national number into E.164 without a phone library.
struct Country {
    iso: &'static str,
    /// Country calling code.
    cc: &'static str,
    /// National numbers are written with a leading trunk `0` that E.164 drops.
    trunk: bool,
    /// Length range of the national significant number (without trunk prefix).
    nsn: (usize, usize),
}

impl Country {
    fn valid_nsn(&self, nsn: &str) -> bool {
        let first = nsn.as_bytes().first().copied().unwrap_or(b'0');
        let len_ok = (self.nsn.0..=self.nsn.1).contains(&nsn.len());
        let total_ok = self.cc.len() + nsn.len() <= 15;
        // NANP area codes start with 2-9; in trunk countries a leading 0 is the trunk, never
        // part of the number.
        let first_ok = match self.cc {
            "1" => first >= b'2',
            _ => !(self.trunk && first == b'0'),
        };
        len_ok && total_ok && first_ok
    }
}

const COUNTRIES: &[Country] = &[
    Country {
        iso: "US",
        cc: "1",
        trunk: false,
        nsn: (10, 10),
    },
    Country {
        iso: "CA",
        cc: "1",
        trunk: false,
        nsn: (10, 10),
    },
    Country {
        iso: "GB",
        cc: "44",
        trunk: true,
        nsn: (7, 10),
    },
    Country {
        iso: "IE",
        cc: "353",
        trunk: true,
        nsn: (7, 9),
    },
    Country {
        iso: "DE",
        cc: "49",
        trunk: true,
        nsn: (6, 13),
    },
    Country {
        iso: "AT",
        cc: "43",
        trunk: true,
        nsn: (4, 13),
    },
    Country {
        iso: "CH",
        cc: "41",
        trunk: true,
        nsn: (9, 9),
    },
    Country {
        iso: "FR",
        cc: "33",
        trunk: true,
        nsn: (9, 9),
    },
    Country {
        iso: "BE",
        cc: "32",
        trunk: true,
        nsn: (8, 9),
    },
    Country {
        iso: "NL",
        cc: "31",
        trunk: true,
        nsn: (9, 9),
    },
    Country {
        iso: "ES",
        cc: "34",
        trunk: false,
        nsn: (9, 9),
    },
    // Italy keeps the leading 0 of landlines in E.164, so it is not a trunk prefix.
    Country {
        iso: "IT",
        cc: "39",
        trunk: false,
        nsn: (6, 11),
    },
    Country {
        iso: "PT",
        cc: "351",
        trunk: false,
        nsn: (9, 9),
    },
    Country {
        iso: "DK",
        cc: "45",
        trunk: false,
        nsn: (8, 8),
    },
    Country {
        iso: "NO",
        cc: "47",
        trunk: false,
        nsn: (8, 8),
    },
    Country {
        iso: "SE",
        cc: "46",
        trunk: true,
        nsn: (7, 10),
    },
    Country {
        iso: "PL",
        cc: "48",
        trunk: false,
        nsn: (9, 9),
    },
    Country {
        iso: "AU",
        cc: "61",
        trunk: true,
        nsn: (9, 9),
    },
    Country {
        iso: "NZ",
        cc: "64",
        trunk: true,
        nsn: (8, 10),
    },
    Country {
        iso: "IN",
        cc: "91",
        trunk: true,
        nsn: (10, 10),
    },
    Country {
        iso: "JP",
        cc: "81",
        trunk: true,
        nsn: (9, 10),
    },
    Country {
        iso: "ZA",
        cc: "27",
        trunk: true,
        nsn: (9, 9),
    },
    Country {
        iso: "MX",
        cc: "52",
        trunk: false,
        nsn: (10, 10),
    },
];

fn country(iso: &str) -> Option<&'static Country> {
    let iso = if iso.eq_ignore_ascii_case("UK") { "GB" } else { iso };
    COUNTRIES.iter().find(|c| c.iso.eq_ignore_ascii_case(iso))
}

enum PhoneFail {
    NotNumber,
    WrongLength(usize),
}

/// Drops a trailing extension (`x123`, `ext. 123`, `extension 123`, `#123`).
fn strip_extension(s: &str) -> &str {
    let t = s.trim_end();
    let head = t.trim_end_matches(|c: char| c.is_ascii_digit());
    if head.len() == t.len() {
        return s;
    }
    let head = head.trim_end();
    for marker in ["extension", "ext.", "ext", "x", "#"] {
        let Some(cut) = head.len().checked_sub(marker.len()) else {
            continue;
        };
        if head.is_char_boundary(cut) && head[cut..].eq_ignore_ascii_case(marker) {
            return &head[..cut];
        }
    }
    s
}

fn e164(home: &'static Country, raw: &str) -> Result<Buf, PhoneFail> {
    let body = strip_extension(raw).trim();
    let (plus, rest) = match body.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, body),
    };
    let mut digits = Buf::new();
    let mut count = 0usize;
    for c in rest.chars() {
        match c {
            '0'..='9' => {
                count += 1;
                digits.push(c as u8);
            }
            ' ' | '.' | '-' | '(' | ')' | '/' | '\t' | '\u{a0}' => {}
            _ => return Err(PhoneFail::NotNumber),
        }
    }
    if count == 0 {
        return Err(PhoneFail::NotNumber);
    }
    if count > 20 {
        return Err(PhoneFail::WrongLength(count));
    }
    let d = digits.as_str();
    let intl = if plus {
        Some(d)
    } else if let Some(r) = d.strip_prefix("00") {
        Some(r)
    } else if home.cc == "1" {
        // 011 is the NANP international call prefix.
        d.strip_prefix("011")
    } else {
        None
    };
    let (cc, nsn) = match intl {
        Some(full) => international(full)?,
        None => national(home, d)?,
    };
    let mut out = Buf::new();
    out.push(b'+');
    out.push_str(cc);
    out.push_str(nsn);
    Ok(out)
}

fn international(full: &str) -> Result<(&'static str, &str), PhoneFail> {
    let fail = Err(PhoneFail::WrongLength(full.len()));
    if full.starts_with('0') {
        return fail;
    }
    match COUNTRIES.iter().find(|c| full.starts_with(c.cc)) {
        Some(c) => {
            let mut nsn = &full[c.cc.len()..];
            if c.trunk {
                // "+44 (0)20 ..." writes the trunk 0 after the country code; E.164 drops it.
                nsn = nsn.strip_prefix('0').unwrap_or(nsn);
            }
            if c.valid_nsn(nsn) { Ok((c.cc, nsn)) } else { fail }
        }
        None if (8..=15).contains(&full.len()) => Ok(("", full)),
        None => fail,
    }
}

fn national<'a>(home: &'static Country, d: &'a str) -> Result<(&'static str, &'a str), PhoneFail> {
    let candidates = [
        if home.trunk { d.strip_prefix('0') } else { None },
        Some(d),
        // The country code written without '+' or 00 (e.g. 1-555-123-4567 in the US).
        d.strip_prefix(home.cc),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|nsn| home.valid_nsn(nsn))
        .map(|nsn| (home.cc, nsn))
        .ok_or(PhoneFail::WrongLength(d.len()))
}

pub(super) fn to_phone(spec: &PhoneSpec, v: Value) -> Result<Value, (Value, String)> {
    let Some(home) = country(&spec.country) else {
        let reason = format!("phone country '{}' is not supported", spec.country);
        return Err((v, reason));
    };
    let text: Cow<'_, str> = match &v {
        Value::Null => return Ok(v),
        Value::Text(s) => Cow::Borrowed(s.as_str()),
        // Legacy schemas sometimes store numbers as integers.
        Value::Int(i) if *i > 0 => Cow::Owned(i.to_string()),
        other => {
            let reason = format!("phone expects text, got {} {}", kind_name(other), Shown(other));
            return Err((v, reason));
        }
    };
    let t = text.trim();
    if t.is_empty() {
        return Ok(Value::Null);
    }
    match e164(home, t) {
        Ok(out) => Ok(reuse_or_new(v, out.as_str())),
        Err(fail) => {
            let reason = match fail {
                PhoneFail::NotNumber => format!("phone {} is not a number", Quoted(t)),
                PhoneFail::WrongLength(n) => format!(
                    "phone {} is not a valid {} number ({n} digits)",
                    Quoted(t),
                    if t.starts_with('+') { "international" } else { home.iso }
                ),
            };
            Err((v, reason))
        }
    }
}

fn de_country<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let iso = String::deserialize(d)?;
    match country(&iso) {
        Some(c) => Ok(c.iso.to_owned()),
        None => {
            let known: Vec<&str> = COUNTRIES.iter().map(|c| c.iso).collect();
            Err(de::Error::custom(format_args!(
                "phone country '{iso}' is not supported (supported: {})",
                known.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transform::Transform;
    use crate::engine::transform::testing::{err, ok, text};

    fn phone(country: &str) -> Transform {
        Transform::Phone(PhoneSpec {
            country: country.into(),
            on_error: OnError::Reject,
        })
    }

    #[test]
    fn phone_us() {
        let p = phone("US");
        for input in [
            "(555) 234-5678",
            "555.234.5678",
            "555 234 5678",
            "5552345678",
            "1-555-234-5678",
            "+1 555 234 5678",
            "001 555 234 5678",
            "555-234-5678 x123",
            "555-234-5678 ext. 9",
            "555-234-5678 Extension 12",
        ] {
            assert_eq!(ok(&p, text(input)), text("+15552345678"), "{input}");
        }
        assert_eq!(ok(&p, Value::Int(5552345678)), text("+15552345678"));
        assert_eq!(ok(&phone("CA"), text("416 555 0123")), text("+14165550123"));
        assert_eq!(ok(&p, text("011 44 20 7946 0958")), text("+442079460958"));
        assert_eq!(ok(&p, Value::Null), Value::Null);
        assert_eq!(ok(&p, text("  ")), Value::Null);
    }

    #[test]
    fn phone_e164_input_is_reused() {
        let s = String::from("+15552345678");
        let ptr = s.as_ptr();
        let Value::Text(out) = ok(&phone("US"), Value::Text(s)) else {
            panic!()
        };
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn phone_other_countries() {
        assert_eq!(ok(&phone("GB"), text("020 7946 0958")), text("+442079460958"));
        assert_eq!(ok(&phone("GB"), text("07700 900123")), text("+447700900123"));
        assert_eq!(ok(&phone("GB"), text("+44 (0)20 7946 0958")), text("+442079460958"));
        assert_eq!(ok(&phone("DE"), text("030 123456")), text("+4930123456"));
        assert_eq!(ok(&phone("DE"), text("0151 23456789")), text("+4915123456789"));
        assert_eq!(ok(&phone("FR"), text("01 23 45 67 89")), text("+33123456789"));
        assert_eq!(ok(&phone("NL"), text("020-1234567")), text("+31201234567"));
        assert_eq!(ok(&phone("AU"), text("(02) 9876 5432")), text("+61298765432"));
        assert_eq!(ok(&phone("AU"), text("0412 345 678")), text("+61412345678"));
        assert_eq!(ok(&phone("IT"), text("06 1234 5678")), text("+390612345678"));
        // An international number is kept in its own country whatever the default country.
        assert_eq!(ok(&phone("DE"), text("+1 555 234 5678")), text("+15552345678"));
        assert_eq!(ok(&phone("US"), text("+86 10 1234 5678")), text("+861012345678"));
        assert_eq!(ok(&phone("US"), text("0086 10 1234 5678")), text("+861012345678"));
    }

    #[test]
    fn phone_errors() {
        let p = phone("US");
        assert_eq!(err(&p, text("call me")), "phone 'call me' is not a number");
        assert_eq!(err(&p, text("555-CALL-NOW")), "phone '555-CALL-NOW' is not a number");
        assert_eq!(err(&p, text("x123")), "phone 'x123' is not a number");
        assert_eq!(err(&p, text("555+2345678")), "phone '555+2345678' is not a number");
        assert_eq!(
            err(&p, text("555-1234")),
            "phone '555-1234' is not a valid US number (7 digits)"
        );
        assert_eq!(
            err(&p, text("155523456789")),
            "phone '155523456789' is not a valid US number (12 digits)"
        );
        // Area codes never start with 0 or 1.
        assert!(err(&p, text("055 234 5678")).contains("not a valid US number"));
        assert_eq!(
            err(&p, text("+12 34")),
            "phone '+12 34' is not a valid international number (4 digits)"
        );
        assert!(err(&p, text("+1234567890123456")).contains("international"));
        assert!(err(&p, text("+1 555 234 567")).contains("international"));
        assert!(err(&phone("GB"), text("020 79")).contains("not a valid GB number"));
        assert_eq!(err(&p, Value::Real(5.5)), "phone expects text, got real '5.5'");
        assert!(err(&phone("ZZ"), text("5552345678")).contains("'ZZ' is not supported"));
    }
}
