//! orders.xlsx / orders.csv: rows, planted anomalies, and what the orders step must make of
//! each row.

use std::collections::HashSet;

use chrono::{Days, NaiveDate};

use super::patients::{Known, past_date, written_date};
use super::rules::{self, PRIORITIES, Reject, STATUSES, reject};
use crate::generator::names::LAST_NAMES;
use crate::generator::rng::Rng;

pub(crate) const HEADER: &[&str] = &[
    "orderNumber",
    "patientIdentifier",
    "orderDate",
    "testType",
    "status",
    "priority",
    "orderingProvider",
    "facility",
    "department",
    "resultDate",
    "resultValue",
    "resultUnit",
    "interpretation",
    "notes",
    "enteredBy",
];

/// A cell of the orders file. In a CSV every cell is text; a workbook also has date cells
/// and plain numbers (Excel serial dates).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Text(String),
    Date(NaiveDate),
    Serial(i64),
}

impl Cell {
    fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    /// The value the contract reads: a date cell or a whole serial is a date; text is parsed.
    fn date(&self) -> Result<Option<NaiveDate>, ()> {
        match self {
            Cell::Date(d) => Ok(Some(*d)),
            Cell::Serial(n) => serial_to_date(*n).map(Some).ok_or(()),
            Cell::Text(t) if t.trim().is_empty() => Ok(None),
            Cell::Text(t) => rules::parse_date(t).map(Some).ok_or(()),
        }
    }

    /// How the cell reads in a CSV.
    pub(crate) fn as_text(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Date(d) => d.format("%Y-%m-%d").to_string(),
            Cell::Serial(n) => n.to_string(),
        }
    }
}

/// Excel's 1900 date system: 1 = 1900-01-01, 60 is the fake 1900-02-29, 61 = 1900-03-01.
pub(crate) fn serial_to_date(n: i64) -> Option<NaiveDate> {
    let epoch = NaiveDate::from_ymd_opt(1899, 12, 31)?;
    match n {
        1..=59 => epoch.checked_add_days(Days::new(n as u64)),
        61.. => epoch.checked_add_days(Days::new(n as u64 - 1)),
        _ => None,
    }
}

pub(crate) fn date_to_serial(d: NaiveDate) -> i64 {
    let base = NaiveDate::from_ymd_opt(1899, 12, 30).unwrap_or_default();
    (d - base).num_days()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    UnknownPatient,
    AmbiguousEmail,
    RejectedPatient,
    BadStatus,
    BadPriority,
    BadOrderDate,
    FutureOrderDate,
    BlankTestType,
    BlankOrderNumber,
    BlankIdentifier,
    DuplicateOrderNumber,
    OrderNumberOtherCase,
    BadResultDate,
    FutureResultDate,
}

pub(crate) const KINDS: &[Kind] = &[
    Kind::UnknownPatient,
    Kind::RejectedPatient,
    Kind::DuplicateOrderNumber,
    Kind::BadStatus,
    Kind::AmbiguousEmail,
    Kind::BadOrderDate,
    Kind::BadResultDate,
    Kind::RejectedPatient,
    Kind::BadPriority,
    Kind::FutureOrderDate,
    Kind::BlankTestType,
    Kind::OrderNumberOtherCase,
    Kind::UnknownPatient,
    Kind::FutureResultDate,
    Kind::BlankOrderNumber,
    Kind::BlankIdentifier,
];

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::UnknownPatient => "unknown_patient",
            Kind::AmbiguousEmail => "ambiguous_email",
            Kind::RejectedPatient => "patient_rejected",
            Kind::BadStatus => "status_invalid",
            Kind::BadPriority => "priority_invalid",
            Kind::BadOrderDate => "order_date_invalid",
            Kind::FutureOrderDate => "order_date_future",
            Kind::BlankTestType => "test_type_blank",
            Kind::BlankOrderNumber => "order_number_blank",
            Kind::BlankIdentifier => "patient_identifier_blank",
            Kind::DuplicateOrderNumber => "order_number_duplicate",
            Kind::OrderNumberOtherCase => "order_number_other_case",
            Kind::BadResultDate => "result_date_invalid",
            Kind::FutureResultDate => "result_date_future",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub order_number: String,
    pub identifier: String,
    pub order_date: Cell,
    pub test_type: String,
    pub status: String,
    pub priority: String,
    pub provider: String,
    pub facility: String,
    pub department: String,
    pub result_date: Cell,
    pub result_value: String,
    pub result_unit: String,
    pub interpretation: String,
    pub notes: String,
    pub entered_by: String,
}

impl Row {
    pub(crate) fn cells(&self) -> [Cell; 15] {
        [
            Cell::text(&self.order_number),
            Cell::text(&self.identifier),
            self.order_date.clone(),
            Cell::text(&self.test_type),
            Cell::text(&self.status),
            Cell::text(&self.priority),
            Cell::text(&self.provider),
            Cell::text(&self.facility),
            Cell::text(&self.department),
            self.result_date.clone(),
            Cell::text(&self.result_value),
            Cell::text(&self.result_unit),
            Cell::text(&self.interpretation),
            Cell::text(&self.notes),
            Cell::text(&self.entered_by),
        ]
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Written {
        status: &'static str,
        priority: &'static str,
    },
    Skipped,
    Rejected(Reject),
}

/// The patient an identifier names, by the contract's lookup: MRN (upper-cased), then email
/// (lower-cased), then external id, each trimmed; then a rejected patient it waits for.
pub(crate) enum Lookup {
    Found,
    Ambiguous,
    /// The line of the rejected patient it waits for.
    Waiting(u64),
    None,
}

pub(crate) fn lookup(known: &Known, identifier: &str) -> Lookup {
    let t = identifier.trim();
    if known.written_mrns.contains(&t.to_uppercase()) {
        return Lookup::Found;
    }
    for n in [known.emails.get(&t.to_lowercase()), known.external_ids.get(t)]
        .into_iter()
        .flatten()
    {
        match n {
            1 => return Lookup::Found,
            2.. => return Lookup::Ambiguous,
            0 => {}
        }
    }
    [
        known.rejected_mrns.get(&t.to_uppercase()),
        known.rejected_emails.get(&t.to_lowercase()),
        known.rejected_external_ids.get(t),
    ]
    .into_iter()
    .flatten()
    .next()
    .map_or(Lookup::None, |line| Lookup::Waiting(*line))
}

/// The orders step's rules for one row, in its field order (first error wins), then the
/// duplicate rule against the order numbers written so far.
pub(crate) fn outcome(row: &Row, known: &Known, written_numbers: &HashSet<String>) -> (Outcome, Vec<&'static str>) {
    let mut warnings = Vec::new();
    let rejected = |r: Reject| (Outcome::Rejected(r), Vec::new());
    if row.identifier.trim().is_empty() {
        return rejected(reject("required", "patient_id"));
    }
    match lookup(known, &row.identifier) {
        Lookup::Found => {}
        Lookup::Ambiguous => {
            return rejected(Reject {
                rule: "lookup",
                field: "patient_id",
                reason: "ambiguous",
            });
        }
        Lookup::Waiting(_) => {
            return rejected(Reject {
                rule: "waiting",
                field: "patient_id",
                reason: "waiting",
            });
        }
        Lookup::None => {
            return rejected(Reject {
                rule: "lookup",
                field: "patient_id",
                reason: "no patient",
            });
        }
    }
    let number = row.order_number.trim().to_string();
    if number.is_empty() {
        return rejected(reject("required", "order_number"));
    }
    match row.order_date.date() {
        Err(()) => return rejected(reject("date", "order_date")),
        Ok(None) => return rejected(reject("required", "order_date")),
        Ok(Some(d)) if rules::is_future(d) => return rejected(reject("not_in_future", "order_date")),
        Ok(Some(_)) => {}
    }
    if row.test_type.trim().is_empty() {
        return rejected(reject("required", "test_type"));
    }
    let Some(status) = rules::enum_value(&row.status, STATUSES, "pending") else {
        return rejected(reject("map", "status"));
    };
    let Some(priority) = rules::enum_value(&row.priority, PRIORITIES, "routine") else {
        return rejected(reject("map", "priority"));
    };
    match row.result_date.date() {
        Err(()) => warnings.push("result_date"),
        Ok(Some(d)) if rules::is_future(d) => warnings.push("result_date"),
        Ok(_) => {}
    }
    if written_numbers.contains(&number) {
        return (Outcome::Skipped, warnings);
    }
    (Outcome::Written { status, priority }, warnings)
}

const TESTS: &[(&str, &str, &[&str])] = &[
    ("CBC", "10^9/L", &["6.1", "4.8", "11.2"]),
    ("HbA1c", "%", &["5.4", "6.9", "8.1"]),
    ("Lipid panel", "mg/dL", &["182", "240", "156"]),
    ("TSH", "mIU/L", &["2.1", "0.3", "5.8"]),
    ("Urinalysis", "", &["negative", "trace protein"]),
    ("COVID-19 PCR", "", &["not detected", "detected"]),
];
const STATUS_SPELLINGS: &[&str] = &[
    "pending",
    "Pending",
    "PENDING",
    "in_progress",
    "In_Progress",
    "completed",
    "Completed",
    " completed ",
    "cancelled",
    "failed",
    "",
    "completed",
];
const PRIORITY_SPELLINGS: &[&str] = &["routine", "Routine", "urgent", "URGENT", "stat", "Stat", "", "routine"];
const BAD_STATUSES: &[&str] = &["complete", "canceled", "in progress", "done"];
const BAD_PRIORITIES: &[&str] = &["asap", "normal", "high"];
const FACILITIES: &[&str] = &["North Clinic", "Riverside Lab", "Main Hospital"];
const DEPARTMENTS: &[&str] = &["Hematology", "Chemistry", "Microbiology", "Endocrinology"];
const INTERPRETATIONS: &[&str] = &["normal", "high", "low", "critical", ""];
const NOTES: &[&str] = &[
    "Fasting sample.",
    "Repeat in 3 months, if abnormal.",
    "Sample hemolyzed; \"redraw\" requested.\nPatient informed.",
    "",
    "",
];

pub(crate) fn number_of(index: u64, rng: &mut Rng) -> String {
    format!("ORD-{:08}", 20_000_000 + index * 3 + rng.below(3))
}

/// How a past date is written in the orders file.
fn date_cell(rng: &mut Rng, d: NaiveDate, xlsx: bool) -> Cell {
    match (xlsx, rng.below(10)) {
        (true, 0..=3) => Cell::Date(d),
        (true, 4..=6) => Cell::Serial(date_to_serial(d)),
        _ => Cell::Text(written_date(rng, d)),
    }
}

/// The order at `index` with anomaly `kind`. `ambiguous` lists emails of two or more written
/// patients; `written_numbers` holds the order numbers written so far (in file order).
pub(crate) fn row(
    seed: u64,
    index: u64,
    kind: Option<Kind>,
    known: &Known,
    ambiguous: &[String],
    written_numbers: &[String],
    xlsx: bool,
) -> Row {
    let mut rng = Rng::new(seed, 0x2_0002, index);
    let (test, unit, values) = *rng.pick(TESTS);
    let order_date = past_date(&mut rng, 2015, 9);
    let resulted = rng.chance(0.6);
    let mut r = Row {
        order_number: number_of(index, &mut rng),
        identifier: patient_identifier(&mut rng, known),
        order_date: date_cell(&mut rng, order_date, xlsx),
        test_type: test.to_string(),
        status: (*rng.pick(STATUS_SPELLINGS)).to_string(),
        priority: (*rng.pick(PRIORITY_SPELLINGS)).to_string(),
        provider: format!("Dr. {}, MD", rng.pick(LAST_NAMES)),
        facility: (*rng.pick(FACILITIES)).to_string(),
        department: (*rng.pick(DEPARTMENTS)).to_string(),
        result_date: if resulted {
            let d = order_date
                .checked_add_days(Days::new(rng.below(10)))
                .unwrap_or(order_date);
            date_cell(&mut rng, d, xlsx)
        } else {
            Cell::text("")
        },
        result_value: if resulted {
            (*rng.pick(values)).to_string()
        } else {
            String::new()
        },
        result_unit: if resulted { unit.to_string() } else { String::new() },
        interpretation: if resulted {
            (*rng.pick(INTERPRETATIONS)).to_string()
        } else {
            String::new()
        },
        notes: (*rng.pick(NOTES)).to_string(),
        entered_by: format!("user{}", rng.below(40)),
    };
    match kind {
        None => {}
        Some(Kind::UnknownPatient) => {
            r.identifier = match rng.below(3) {
                0 => format!("MRN9{:07}", index),
                1 => format!("ghost{index}@example.com"),
                _ => format!("EXT-X{index}"),
            }
        }
        Some(Kind::AmbiguousEmail) if !ambiguous.is_empty() => {
            let e = &ambiguous[rng.below(ambiguous.len() as u64) as usize];
            r.identifier = if rng.chance(0.5) { e.to_uppercase() } else { e.clone() };
        }
        Some(Kind::AmbiguousEmail) => {}
        Some(Kind::RejectedPatient) => {
            // A rejected patient whose MRN no written row took: the order waits for it.
            let candidates: Vec<_> = known
                .rejected
                .iter()
                .filter(|p| !known.written_mrns.contains(&p.mrn.trim().to_uppercase()))
                .collect();
            if !candidates.is_empty() {
                let p = candidates[rng.below(candidates.len() as u64) as usize];
                r.identifier = match rng.below(4) {
                    0 if !p.external_id.trim().is_empty() => p.external_id.clone(),
                    _ => p.mrn.clone(),
                };
            }
        }
        Some(Kind::BadStatus) => r.status = (*rng.pick(BAD_STATUSES)).to_string(),
        Some(Kind::BadPriority) => r.priority = (*rng.pick(BAD_PRIORITIES)).to_string(),
        Some(Kind::BadOrderDate) => {
            r.order_date = Cell::text(*rng.pick(&["2021-02-30", "1985/03/14", "31/12/2020", "yesterday"]))
        }
        Some(Kind::FutureOrderDate) => {
            let d = NaiveDate::from_ymd_opt(
                2100 + rng.below(50) as i32,
                1 + rng.below(12) as u32,
                1 + rng.below(28) as u32,
            )
            .unwrap_or_default();
            r.order_date = date_cell(&mut rng, d, xlsx);
        }
        Some(Kind::BlankTestType) => r.test_type = " ".into(),
        Some(Kind::BlankOrderNumber) => r.order_number = String::new(),
        Some(Kind::BlankIdentifier) => r.identifier = "  ".into(),
        Some(Kind::DuplicateOrderNumber) => {
            if let Some(n) = recent(&mut rng, written_numbers) {
                r.order_number = format!(" {n}  ");
            }
        }
        Some(Kind::OrderNumberOtherCase) => {
            if let Some(n) = recent(&mut rng, written_numbers) {
                r.order_number = n.to_lowercase();
            }
        }
        Some(Kind::BadResultDate) => r.result_date = Cell::text(*rng.pick(&["2021-13-45", "soon", "1985/03/14"])),
        Some(Kind::FutureResultDate) => r.result_date = Cell::text("2102-03-04"),
    }
    r
}

fn recent<'a>(rng: &mut Rng, xs: &'a [String]) -> Option<&'a String> {
    let n = xs.len() as u64;
    (n > 0).then(|| &xs[(n - 1 - rng.below(n.min(100))) as usize])
}

/// A written patient named by MRN, email or external id (whichever names it alone), written
/// with stray case and spaces.
fn patient_identifier(rng: &mut Rng, known: &Known) -> String {
    if known.written.is_empty() {
        return "MRN00000000".into();
    }
    let p = &known.written[rng.below(known.written.len() as u64) as usize];
    let by = rng.below(10);
    if (6..9).contains(&by)
        && let Some(e) = p.email.as_ref().filter(|e| known.emails.get(*e) == Some(&1))
    {
        return if rng.chance(0.3) { e.to_uppercase() } else { e.clone() };
    }
    if by == 9
        && let Some(x) = p
            .external_id
            .as_ref()
            .filter(|x| known.external_ids.get(*x) == Some(&1))
    {
        return x.clone();
    }
    match rng.below(3) {
        0 => p.mrn.to_lowercase(),
        1 => format!(" {} ", p.mrn),
        _ => p.mrn.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excel_serials_follow_the_1900_system() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        assert_eq!(serial_to_date(1), Some(d(1900, 1, 1)));
        assert_eq!(serial_to_date(59), Some(d(1900, 2, 28)));
        assert_eq!(serial_to_date(60), None);
        assert_eq!(serial_to_date(61), Some(d(1900, 3, 1)));
        assert_eq!(serial_to_date(45_000), Some(d(2023, 3, 15)));
        assert_eq!(date_to_serial(d(2023, 3, 15)), 45_000);
    }
}
