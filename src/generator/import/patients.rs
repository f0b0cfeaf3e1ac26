//! patients.csv: rows, planted anomalies, and what the patients step must make of each row.

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, Days, NaiveDate};

use super::rules::{self, Reject, reject};
use crate::generator::names::{CITIES, EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES, STREETS};
use crate::generator::rng::Rng;

/// The header of patients.csv: the contract's columns in an order of the legacy system's
/// choosing, with two extra columns the step ignores.
pub(crate) const HEADER: &[&str] = &[
    "mrn",
    "lastName",
    "firstName",
    "dateOfBirth",
    "gender",
    "legacyFlags",
    "email",
    "phone",
    "address",
    "city",
    "state",
    "zipCode",
    "country",
    "externalId",
    "lastVisit",
    "notes",
];

/// One anomaly per anomalous row, so each row's outcome has exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    FirstNameBlank,
    LastNameBlank,
    MrnBlank,
    DobBlank,
    DobImpossible,
    DobSlashYmd,
    DobDayFirst,
    DobFuture,
    MrnDuplicate,
    MrnOfRejected,
    EmailInvalid,
    PhoneInvalid,
    EmailShared,
    GenderNearMiss,
    AddressBlank,
}

pub(crate) const KINDS: &[Kind] = &[
    Kind::FirstNameBlank,
    Kind::DobImpossible,
    Kind::MrnDuplicate,
    Kind::EmailInvalid,
    Kind::LastNameBlank,
    Kind::DobSlashYmd,
    Kind::PhoneInvalid,
    Kind::EmailShared,
    Kind::MrnBlank,
    Kind::DobDayFirst,
    Kind::GenderNearMiss,
    Kind::MrnOfRejected,
    Kind::DobBlank,
    Kind::DobFuture,
    Kind::AddressBlank,
];

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::FirstNameBlank => "first_name_blank",
            Kind::LastNameBlank => "last_name_blank",
            Kind::MrnBlank => "mrn_blank",
            Kind::DobBlank => "dob_blank",
            Kind::DobImpossible => "dob_impossible",
            Kind::DobSlashYmd => "dob_yyyy_slash_mm_slash_dd",
            Kind::DobDayFirst => "dob_day_first",
            Kind::DobFuture => "dob_future",
            Kind::MrnDuplicate => "mrn_duplicate",
            Kind::MrnOfRejected => "mrn_of_rejected_row",
            Kind::EmailInvalid => "email_invalid",
            Kind::PhoneInvalid => "phone_unparseable",
            Kind::EmailShared => "email_shared",
            Kind::GenderNearMiss => "gender_near_miss",
            Kind::AddressBlank => "address_blank",
        }
    }
}

/// The cells of one row, as written to the file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    pub mrn: String,
    pub last: String,
    pub first: String,
    pub dob: String,
    pub gender: String,
    pub flags: String,
    pub email: String,
    pub phone: String,
    pub line1: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub country: String,
    pub external_id: String,
    pub last_visit: String,
    pub notes: String,
    /// The E.164 form of `phone` when it is a readable number (`None`: blank or unreadable).
    pub phone_e164: Option<String>,
    /// `phone` was planted unreadable.
    pub phone_bad: bool,
}

impl Row {
    pub(crate) fn cells(&self) -> [&str; 16] {
        [
            &self.mrn,
            &self.last,
            &self.first,
            &self.dob,
            &self.gender,
            &self.flags,
            &self.email,
            &self.phone,
            &self.line1,
            &self.city,
            &self.state,
            &self.zip,
            &self.country,
            &self.external_id,
            &self.last_visit,
            &self.notes,
        ]
    }
}

/// What the patients step must store for a written row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredPatient {
    pub mrn: String,
    pub first_name: String,
    pub last_name: String,
    pub date_of_birth: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub gender: String,
    /// `{line1, city, state, zip, country}` with NULL leaves, or NULL when every leaf is blank.
    pub address: Option<serde_json::Value>,
    pub external_id: Option<String>,
    pub notes: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Written(Box<StoredPatient>),
    Skipped,
    Rejected(Reject),
}

/// Applies the contract's patient rules to one row (in the step's field order, first error
/// wins) and its duplicate rule against the MRNs written so far.
pub(crate) fn outcome(row: &Row, written_mrns: &HashSet<String>) -> (Outcome, Vec<&'static str>) {
    let mut warnings = Vec::new();
    let mrn = row.mrn.trim().to_uppercase();
    if mrn.is_empty() {
        return (Outcome::Rejected(reject("required", "mrn")), warnings);
    }
    let Some(first) = rules::non_blank(&row.first) else {
        return (Outcome::Rejected(reject("required", "first_name")), warnings);
    };
    let Some(last) = rules::non_blank(&row.last) else {
        return (Outcome::Rejected(reject("required", "last_name")), warnings);
    };
    let dob = match rules::non_blank(&row.dob) {
        None => return (Outcome::Rejected(reject("required", "date_of_birth")), warnings),
        Some(t) => match rules::parse_date(&t) {
            None => return (Outcome::Rejected(reject("date", "date_of_birth")), warnings),
            Some(d) if rules::is_future(d) => {
                return (Outcome::Rejected(reject("not_in_future", "date_of_birth")), warnings);
            }
            Some(d) => d,
        },
    };
    let email = rules::non_blank(&row.email).map(|e| e.to_lowercase());
    let email = match email {
        Some(e) if !rules::is_email(&e) => {
            warnings.push("email");
            None
        }
        e => e,
    };
    if row.phone_bad {
        warnings.push("phone");
    }
    let leaves = [
        ("line1", rules::non_blank(&row.line1)),
        ("city", rules::non_blank(&row.city)),
        ("state", rules::non_blank(&row.state).map(|s| s.to_uppercase())),
        ("zip", rules::non_blank(&row.zip)),
        ("country", rules::non_blank(&row.country)),
    ];
    let address = leaves.iter().any(|(_, v)| v.is_some()).then(|| {
        serde_json::Value::Object(
            leaves
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone().map_or(serde_json::Value::Null, Into::into)))
                .collect(),
        )
    });
    if written_mrns.contains(&mrn) {
        return (Outcome::Skipped, warnings);
    }
    let stored = StoredPatient {
        mrn,
        first_name: first,
        last_name: last,
        date_of_birth: dob.format("%Y-%m-%d").to_string(),
        email,
        phone: row.phone_e164.clone(),
        gender: rules::gender(&row.gender).to_string(),
        address,
        external_id: rules::non_blank(&row.external_id),
        notes: (!row.notes.is_empty()).then(|| row.notes.clone()),
    };
    (Outcome::Written(Box::new(stored)), warnings)
}

/// A written patient as the orders can name it.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub mrn: String,
    pub email: Option<String>,
    pub external_id: Option<String>,
}

/// A rejected patient with a non-blank MRN.
#[derive(Debug, Clone)]
pub(crate) struct Rejected {
    /// The file line its record starts on: the reject's source key.
    pub line: u64,
    pub kind: Option<Kind>,
    /// The identifiers as written in the file.
    pub mrn: String,
    pub external_id: String,
}

/// What later rows and the orders need to know about the rows generated so far.
#[derive(Default)]
pub(crate) struct Known {
    pub written: Vec<Written>,
    pub written_mrns: HashSet<String>,
    /// Stored email → number of written patients with it.
    pub emails: HashMap<String, u32>,
    /// Stored external id → number of written patients with it.
    pub external_ids: HashMap<String, u32>,
    pub rejected: Vec<Rejected>,
    /// Normalised identifiers of rejected rows (what a waiting order may name) → the line of
    /// the first such reject.
    pub rejected_mrns: HashMap<String, u64>,
    pub rejected_emails: HashMap<String, u64>,
    pub rejected_external_ids: HashMap<String, u64>,
}

impl Known {
    pub(crate) fn add_written(&mut self, p: &StoredPatient) {
        self.written_mrns.insert(p.mrn.clone());
        if let Some(e) = &p.email {
            *self.emails.entry(e.clone()).or_default() += 1;
        }
        if let Some(x) = &p.external_id {
            *self.external_ids.entry(x.clone()).or_default() += 1;
        }
        self.written.push(Written {
            mrn: p.mrn.clone(),
            email: p.email.clone(),
            external_id: p.external_id.clone(),
        });
    }

    /// Any rejected row is what a waiting order may name, by any of its identifiers
    /// (normalised like the lookup's alternatives: MRN upper, email lower, external id as is).
    pub(crate) fn add_rejected(&mut self, row: &Row, line: u64, kind: Option<Kind>) {
        let mrn = row.mrn.trim().to_uppercase();
        let email = row.email.trim().to_lowercase();
        let ext = row.external_id.trim().to_string();
        for (set, k) in [
            (&mut self.rejected_mrns, mrn.clone()),
            (&mut self.rejected_emails, email),
            (&mut self.rejected_external_ids, ext),
        ] {
            if !k.is_empty() {
                set.entry(k).or_insert(line);
            }
        }
        if !mrn.is_empty() {
            self.rejected.push(Rejected {
                line,
                kind,
                mrn: row.mrn.clone(),
                external_id: row.external_id.clone(),
            });
        }
    }
}

fn case_variant(rng: &mut Rng, s: &str) -> String {
    match rng.below(4) {
        0 => s.to_lowercase(),
        1 => format!("  {s} "),
        2 => format!(" {}", s.to_lowercase()),
        _ => s.to_string(),
    }
}

/// Real area codes and exchanges that are not 555/N11, so any phone library reads them.
const AREA_CODES: &[&str] = &["212", "415", "617", "312", "202", "305", "503", "713", "206", "404"];

fn good_phone(rng: &mut Rng) -> (String, String) {
    let area = *rng.pick(AREA_CODES);
    let exchange = loop {
        let e = 201 + rng.below(799);
        if e % 100 != 11 && e != 555 {
            break e;
        }
    };
    let line = rng.below(10_000);
    let e164 = format!("+1{area}{exchange}{line:04}");
    let shown = match rng.below(6) {
        0 => format!("({area}) {exchange}-{line:04}"),
        1 => format!("{area}-{exchange}-{line:04}"),
        2 => format!("{area}.{exchange}.{line:04}"),
        3 => format!("+1 {area} {exchange} {line:04}"),
        4 => format!("1-{area}-{exchange}-{line:04}"),
        _ => format!("{area}{exchange}{line:04}"),
    };
    (shown, e164)
}

pub(crate) const BAD_PHONES: &[&str] = &["12345", "867-5309", "000"];
const BAD_EMAILS: &[&str] = &[
    "{u}.example.com",
    "{u} @example.com",
    "{u}@localhost",
    "{u}@@example.com",
];
const GENDER_SPELLINGS: &[&str] = &[
    "M", "m", "male", "Male", "F", "f", "female", "FEMALE", "O", "other", "", "F", "M",
];
const GENDER_NEAR_MISSES: &[&str] = &["femal", "mail", "X", "N/A", "?", "Man"];
const NOTES: &[&str] = &[
    "Allergic to penicillin, latex.",
    "Prefers \"Bobby\" over Robert.",
    "Moved from Austin, TX.\nNew address confirmed by phone.",
    "Line one\nLine two, with a comma\nLine \"three\"",
    "Interpreter needed (Spanish)",
    "Call before 5pm; ask for the \"front desk\"",
];

/// A past date between 1930 and 2019, and how it is written.
pub(crate) fn past_date(rng: &mut Rng, from_year: i32, years: u64) -> NaiveDate {
    let start = NaiveDate::from_ymd_opt(from_year, 1, 1).unwrap_or_default();
    start
        .checked_add_days(Days::new(rng.below(years * 365)))
        .unwrap_or(start)
}

/// The date in one of the accepted formats.
pub(crate) fn written_date(rng: &mut Rng, d: NaiveDate) -> String {
    match rng.below(10) {
        0..=6 => d.format("%Y-%m-%d").to_string(),
        7 | 8 => d.format("%m/%d/%Y").to_string(),
        _ => format!("{}/{}/{}", d.month(), d.day(), d.year()),
    }
}

/// The row at `index` with anomaly `kind`; `known` supplies earlier rows for duplicates.
pub(crate) fn row(seed: u64, index: u64, kind: Option<Kind>, known: &Known) -> Row {
    let mut rng = Rng::new(seed, 0x1_0001, index);
    let first = (*rng.pick(FIRST_NAMES)).to_string();
    let last = (*rng.pick(LAST_NAMES)).to_string();
    let user = format!("{}.{}{}", first.to_lowercase(), last.to_lowercase(), index);
    let mrn = format!("MRN{:08}", 10_000_000 + index * 7 + rng.below(7));
    let dob_date = past_date(&mut rng, 1930, 90);
    let dob = written_date(&mut rng, dob_date);
    let domain = *rng.pick(EMAIL_DOMAINS);
    let email = match rng.below(10) {
        0 => String::new(),
        1 => format!("{user}+lab@{domain}"),
        2 => format!("  {}@{domain} ", user.to_uppercase()),
        3 => format!("{first}.{last}{index}@{}", domain.to_uppercase()),
        _ => format!("{user}@{domain}"),
    };
    let (phone, phone_e164) = if rng.chance(0.1) {
        (String::new(), None)
    } else {
        let (shown, e164) = good_phone(&mut rng);
        (shown, Some(e164))
    };
    let (city, state) = *rng.pick(CITIES);
    let mut r = Row {
        mrn: case_variant(&mut rng, &mrn),
        first: if rng.chance(0.1) { format!(" {first} ") } else { first },
        last,
        dob,
        gender: (*rng.pick(GENDER_SPELLINGS)).to_string(),
        flags: if rng.chance(0.2) {
            "VIP,legacy".into()
        } else {
            String::new()
        },
        email,
        phone,
        line1: format!("{} {}", 1 + rng.below(9_999), rng.pick(STREETS)),
        city: city.to_string(),
        state: if rng.chance(0.2) {
            state.to_lowercase()
        } else {
            state.to_string()
        },
        zip: format!("{:05}", rng.below(100_000)),
        country: "US".into(),
        external_id: if rng.chance(0.15) {
            String::new()
        } else {
            format!("EXT-{}", 500_000 + index)
        },
        last_visit: if rng.chance(0.5) {
            past_date(&mut rng, 2018, 6).format("%Y-%m-%d").to_string()
        } else {
            String::new()
        },
        notes: if rng.chance(0.3) {
            (*rng.pick(NOTES)).to_string()
        } else {
            String::new()
        },
        phone_e164,
        phone_bad: false,
    };
    // Partly blank addresses: the JSON keeps the other leaves.
    if rng.chance(0.1) {
        r.line1.clear();
    }
    match kind {
        None => {}
        Some(Kind::FirstNameBlank) => r.first = (*rng.pick(&["", "   "])).to_string(),
        Some(Kind::LastNameBlank) => r.last = (*rng.pick(&["", " "])).to_string(),
        Some(Kind::MrnBlank) => r.mrn = (*rng.pick(&["", "  "])).to_string(),
        Some(Kind::DobBlank) => r.dob = (*rng.pick(&["", " "])).to_string(),
        Some(Kind::DobImpossible) => {
            r.dob = (*rng.pick(&["2021-02-30", "02/30/2019", "2019-13-01", "1990-04-31", "13/13/1988"])).to_string()
        }
        Some(Kind::DobSlashYmd) => r.dob = dob_date.format("%Y/%m/%d").to_string(),
        Some(Kind::DobDayFirst) => {
            // A day above 12 so the value cannot be read month-first either.
            let d = NaiveDate::from_ymd_opt(dob_date.year(), dob_date.month(), 13 + (dob_date.day() % 16))
                .unwrap_or(dob_date);
            r.dob = match rng.below(2) {
                0 => d.format("%d/%m/%Y").to_string(),
                _ => d.format("%d.%m.%Y").to_string(),
            };
        }
        Some(Kind::DobFuture) => {
            let d = NaiveDate::from_ymd_opt(
                2100 + rng.below(60) as i32,
                1 + rng.below(12) as u32,
                1 + rng.below(28) as u32,
            )
            .unwrap_or_default();
            r.dob = written_date(&mut rng, d);
        }
        Some(Kind::MrnDuplicate) => {
            if let Some(w) = pick_earlier(&mut rng, &known.written) {
                r.mrn = variant_of(&mut rng, &w.mrn);
            }
        }
        Some(Kind::MrnOfRejected) => {
            if let Some(p) = pick_earlier(&mut rng, &known.rejected) {
                r.mrn = variant_of(&mut rng, p.mrn.trim());
            }
        }
        Some(Kind::EmailInvalid) => {
            r.email = rng.pick(BAD_EMAILS).replace("{u}", &user);
        }
        Some(Kind::PhoneInvalid) => {
            r.phone = (*rng.pick(BAD_PHONES)).to_string();
            r.phone_e164 = None;
            r.phone_bad = true;
        }
        Some(Kind::EmailShared) => {
            let with_email: Vec<&String> = known
                .written
                .iter()
                .rev()
                .take(64)
                .filter_map(|w| w.email.as_ref())
                .collect();
            if !with_email.is_empty() {
                let e = with_email[rng.below(with_email.len() as u64) as usize];
                r.email = if rng.chance(0.5) { e.to_uppercase() } else { e.clone() };
            }
        }
        Some(Kind::GenderNearMiss) => r.gender = (*rng.pick(GENDER_NEAR_MISSES)).to_string(),
        Some(Kind::AddressBlank) => {
            for f in [&mut r.line1, &mut r.city, &mut r.state, &mut r.zip, &mut r.country] {
                *f = if rng.chance(0.5) { String::new() } else { " ".into() };
            }
        }
    }
    r
}

/// An earlier row, mostly a recent one (duplicates in an export are usually near each other).
fn pick_earlier<'a, T>(rng: &mut Rng, xs: &'a [T]) -> Option<&'a T> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as u64;
    let back = if rng.chance(0.7) {
        rng.below(n.min(50))
    } else {
        rng.below(n)
    };
    xs.get((n - 1 - back) as usize)
}

/// The same MRN written differently (case, surrounding spaces): still the same key.
fn variant_of(rng: &mut Rng, mrn: &str) -> String {
    match rng.below(3) {
        0 => mrn.to_lowercase(),
        1 => format!(" {mrn}  "),
        _ => format!("   {}", mrn.to_lowercase()),
    }
}
