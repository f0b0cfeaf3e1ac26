//! The generated world as pure functions of `(seed, index)`.
//!
//! Nothing here is stored: whether patient 17 is rejected, which user a duplicate stands for or
//! which patient child 42 links to is recomputed on demand from keyed PRNG streams. Later tables
//! can therefore reason about earlier ones (to plant anomalies and count expectations) while the
//! generator keeps flat memory at any size.

use chrono::{Datelike, Days, NaiveDate};

use super::names::{FIRST_NAMES, LAST_NAMES};
use super::rng::Rng;
use super::{AnomalyRates, GeneratorConfig};

// Stream tags: one per decision group, so adding draws to one group never shifts another.
const T_USER_CLASS: u64 = 1;
const T_USER_DUP: u64 = 2;
const T_USER_TIME: u64 = 3;
const T_USER_NAME: u64 = 4;
pub(crate) const T_USER_ROW: u64 = 5;
const T_PAT_DOB: u64 = 10;
const T_PAT_NAME: u64 = 11;
pub(crate) const T_PAT_ROW: u64 = 12;
const T_CHILD_DRAW: u64 = 20;
const T_CHILD_ROW: u64 = 21;
pub(crate) const T_LINK: u64 = 30;
pub(crate) const T_LINK_DUP_CHILD: u64 = 31;
pub(crate) const T_GRANT: u64 = 40;
pub(crate) const T_SCREENING: u64 = 50;
pub(crate) const T_APPOINTMENT: u64 = 60;
pub(crate) const T_DOCUMENT: u64 = 70;

/// Digits in every id: 8 covers 1.5 × 10M appointments and the "nowhere" ids up to 2 × 10M + 1,
/// and a fixed width makes string order equal numeric order ("ties: the smaller id").
pub(crate) const ID_WIDTH: usize = 8;

/// Every timestamp is this instant plus a random offset: no wall clock anywhere.
const BASE_DATE: NaiveDate = ymd(2019, 1, 1);
/// Valid dates of birth lie in 2004-01-01 ..= 2023-12-31: real dates, never "in the future".
const DOB_MIN: NaiveDate = ymd(2004, 1, 1);
const DOB_MAX: NaiveDate = ymd(2023, 12, 31);
const DOB_SPAN_DAYS: u64 = 7305;
/// "Future" dates of birth start at 2100 so they stay future whatever today is.
const FUTURE_MIN: NaiveDate = ymd(2100, 1, 1);

const fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(y, m, d) {
        Some(date) => date,
        None => panic!("invalid constant date"),
    }
}

pub(crate) const DAY: u64 = 86_400;
pub(crate) const YEAR: u64 = 365 * DAY;

pub(crate) fn id(prefix: &str, index: u64) -> String {
    format!("{prefix}{:0width$}", index + 1, width = ID_WIDTH)
}

/// ISO-8601 UTC timestamp `secs` seconds after the base date.
pub(crate) fn ts(secs: u64) -> String {
    let d = BASE_DATE + Days::new(secs / DAY);
    let s = secs % DAY;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        d.year(),
        d.month(),
        d.day(),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

pub(crate) fn iso(d: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

pub(crate) fn mmdd(d: NaiveDate) -> String {
    format!("{:02}/{:02}/{:04}", d.month(), d.day(), d.year())
}

/// A legacy date-of-birth value, kept typed so counters and variants know what they planted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dob {
    Iso(NaiveDate),
    Mmdd(NaiveDate),
    Empty,
    Null,
    /// Not a real date, always in `YYYY-MM-DD` shape (e.g. `2021-02-30`).
    Invalid(String),
    /// A real date in 2100 or later, ISO.
    Future(NaiveDate),
}

impl Dob {
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Dob::Iso(d) | Dob::Future(d) => Some(iso(*d)),
            Dob::Mmdd(d) => Some(mmdd(*d)),
            Dob::Empty => Some(String::new()),
            Dob::Null => None,
            Dob::Invalid(s) => Some(s.clone()),
        }
    }

    /// Rule 7: not a real date, or in the future, rejects the row.
    pub(crate) fn rejects(&self) -> bool {
        matches!(self, Dob::Invalid(_) | Dob::Future(_))
    }

    pub(crate) fn is_blank(&self) -> bool {
        matches!(self, Dob::Empty | Dob::Null)
    }
}

fn valid_dob(rng: &mut Rng) -> NaiveDate {
    DOB_MIN + Days::new(rng.below(DOB_SPAN_DAYS))
}

fn invalid_date_text(rng: &mut Rng) -> String {
    let mut year = 2004 + rng.below(20);
    let (m, d) = match rng.below(6) {
        0 => (2, 30 + rng.below(2)),
        1 => (*rng.pick(&[4, 6, 9, 11]), 31),
        2 => {
            // 29 February of a common year: looks right, is not a date.
            if year.is_multiple_of(4) {
                year += 1;
            }
            (2, 29)
        }
        3 => (13, 1 + rng.below(28)),
        4 => (0, 1 + rng.below(28)),
        _ => (1 + rng.below(12), *rng.pick(&[0, 32])),
    };
    format!("{year:04}-{m:02}-{d:02}")
}

/// One date-of-birth draw: the categories are exclusive, cumulated in this order.
fn dob_draw(rng: &mut Rng, invalid: f64, future: f64, blank: f64, mmdd: f64) -> Dob {
    let u = rng.unit();
    if u < invalid {
        Dob::Invalid(invalid_date_text(rng))
    } else if u < invalid + future {
        Dob::Future(FUTURE_MIN + Days::new(rng.below(50 * 365)))
    } else if u < invalid + future + blank {
        if rng.chance(0.5) { Dob::Empty } else { Dob::Null }
    } else if u < invalid + future + blank + mmdd {
        Dob::Mmdd(valid_dob(rng))
    } else {
        Dob::Iso(valid_dob(rng))
    }
}

pub(crate) fn is_blank(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(|s| s.trim().is_empty())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pool {
    Admin,
    Clinician,
    /// Parents who register children (the `children.parent_id` pool).
    ParentA,
    /// Parents who appear only through `parent_children` (disjoint from A, so an ordinary link
    /// can never coincide with a child's view by accident).
    ParentB,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserClass {
    Normal,
    /// Role the rules do not know: rejected. Only parent slots get one.
    Unknown,
    /// Case-insensitive duplicate email of an earlier Normal user of the same pool: skipped.
    Duplicate,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct DupInfo {
    pub original: u64,
    pub tie: bool,
    delta: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildKind {
    Linked,
    Dangling,
    Unlinked,
}

/// How a linked child's field compares with its patient's under rule 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldCmp {
    Same,
    /// Differs only by case/whitespace (names) or date format: not a disagreement.
    Equivalent,
    /// Exactly one side blank: never a disagreement.
    BlankSide,
    BothBlank,
    Different,
}

#[derive(Debug, Clone)]
pub(crate) struct Child {
    pub kind: ChildKind,
    pub parent: u64,
    /// The linked patient index (Linked only).
    pub patient: Option<u64>,
    /// The number behind a dangling id (Dangling only); always beyond the last patient.
    pub dangling: Option<u64>,
    pub parent_rejected: bool,
    pub patient_rejected: bool,
    pub first: Option<String>,
    pub last: Option<String>,
    pub dob: Dob,
    /// first_name, last_name, date_of_birth against the patient (Linked only).
    pub cmp: [FieldCmp; 3],
}

impl Child {
    pub(crate) fn rejected(&self) -> bool {
        self.parent_rejected || self.patient_rejected || self.dob.rejects()
    }

    /// Merges into its (accepted) patient's person.
    pub(crate) fn merged(&self) -> bool {
        self.kind == ChildKind::Linked && !self.rejected()
    }

    pub(crate) fn disagreements(&self) -> u64 {
        if !self.merged() {
            return 0;
        }
        self.cmp.iter().filter(|c| **c == FieldCmp::Different).count() as u64
    }
}

struct ChildDraw {
    kind: ChildKind,
    co_registered: bool,
    same_parent: bool,
    patient: u64,
    parent: u64,
}

/// Sizes and pure lookups for one configuration.
///
/// Ratios per patient:
/// - users: 0.6 parents (0.25 who register children, 0.35 linked only), one clinician per 200
///   patients (min 3), 3 admins;
/// - children 0.5; parent_children ≈ 0.8 (emergent: 55% of patients have 1–3 links, plus the
///   planted duplicates); consent_grants 0.5; screenings 1; appointments 1.5; documents 0.2.
#[derive(Debug, Clone)]
pub(crate) struct World {
    pub seed: u64,
    pub r: AnomalyRates,
    pub n_patients: u64,
    pub n_admins: u64,
    pub n_clinicians: u64,
    pub n_pool_a: u64,
    pub n_pool_b: u64,
    pub n_children: u64,
    pub n_grants: u64,
    pub n_screenings: u64,
    pub n_appointments: u64,
    pub n_documents: u64,
}

impl World {
    pub(crate) fn new(cfg: &GeneratorConfig) -> Self {
        let n = cfg.patients;
        World {
            seed: cfg.seed,
            r: cfg.rates.clone(),
            n_patients: n,
            n_admins: 3,
            n_clinicians: (n / 200).max(3),
            n_pool_a: (n / 4).max(4),
            n_pool_b: (n * 7 / 20).max(4),
            n_children: (n / 2).max(1),
            n_grants: (n / 2).max(1),
            n_screenings: n,
            n_appointments: n * 3 / 2,
            n_documents: (n / 5).max(1),
        }
    }

    fn rng(&self, tag: u64, index: u64) -> Rng {
        Rng::new(self.seed, tag, index)
    }

    // ---- users -------------------------------------------------------------------------------

    fn clinician_start(&self) -> u64 {
        self.n_admins
    }
    fn pool_a_start(&self) -> u64 {
        self.n_admins + self.n_clinicians
    }
    fn pool_b_start(&self) -> u64 {
        self.pool_a_start() + self.n_pool_a
    }
    pub(crate) fn n_users(&self) -> u64 {
        self.pool_b_start() + self.n_pool_b
    }

    /// The pool of user `j` and the pool's first index.
    pub(crate) fn pool(&self, j: u64) -> (Pool, u64) {
        if j < self.clinician_start() {
            (Pool::Admin, 0)
        } else if j < self.pool_a_start() {
            (Pool::Clinician, self.clinician_start())
        } else if j < self.pool_b_start() {
            (Pool::ParentA, self.pool_a_start())
        } else {
            (Pool::ParentB, self.pool_b_start())
        }
    }

    pub(crate) fn user_class(&self, j: u64) -> UserClass {
        let (pool, start) = self.pool(j);
        // The first user of each pool is always Normal: duplicates always find an original.
        if pool == Pool::Admin || j == start || j >= self.n_users() {
            return UserClass::Normal;
        }
        let unknown = match pool {
            Pool::ParentA | Pool::ParentB => self.r.unknown_role,
            _ => 0.0,
        };
        let u = self.rng(T_USER_CLASS, j).unit();
        if u < unknown {
            UserClass::Unknown
        } else if u < unknown + self.r.duplicate_email {
            UserClass::Duplicate
        } else {
            UserClass::Normal
        }
    }

    /// For a Duplicate: the Normal user of the same pool, with a smaller index, it repeats.
    pub(crate) fn dup_info(&self, j: u64) -> DupInfo {
        let (_, start) = self.pool(j);
        let mut rng = self.rng(T_USER_DUP, j);
        let mut c = start + rng.below((j - start).max(1));
        while c > start && self.user_class(c) != UserClass::Normal {
            c -= 1;
        }
        let tie = rng.chance(self.r.duplicate_email_tie);
        let delta = if tie { 0 } else { 1 + rng.below(400 * DAY) };
        DupInfo {
            original: c,
            tie,
            delta,
        }
    }

    /// The user whose account a reference to `j` ends up on (rule 1 rewrite).
    pub(crate) fn resolve(&self, j: u64) -> u64 {
        match self.user_class(j) {
            UserClass::Duplicate => self.dup_info(j).original,
            _ => j,
        }
    }

    pub(crate) fn user_rejected(&self, j: u64) -> bool {
        self.user_class(j) == UserClass::Unknown
    }

    /// Seconds after the base date; a duplicate is never earlier than its original.
    pub(crate) fn user_created(&self, j: u64) -> u64 {
        match self.user_class(j) {
            UserClass::Duplicate => {
                let d = self.dup_info(j);
                self.rng(T_USER_TIME, d.original).below(3 * YEAR) + d.delta
            }
            _ => self.rng(T_USER_TIME, j).below(3 * YEAR),
        }
    }

    /// Name and canonical (trimmed, lower-case) email; a duplicate shares its original's.
    pub(crate) fn user_identity(&self, j: u64) -> (&'static str, &'static str, String) {
        let k = self.resolve(j);
        let mut rng = self.rng(T_USER_NAME, k);
        let first = *rng.pick(FIRST_NAMES);
        let last = *rng.pick(LAST_NAMES);
        let domain = *rng.pick(super::names::EMAIL_DOMAINS);
        // The index before '@' makes every canonical email unique among non-duplicates.
        let email = format!("{}.{}{}@{}", first.to_lowercase(), last.to_lowercase(), k + 1, domain);
        (first, last, email)
    }

    pub(crate) fn random_clinician(&self, rng: &mut Rng) -> u64 {
        self.clinician_start() + rng.below(self.n_clinicians)
    }

    /// A parent slot (A or B) that is not rejected; may be a duplicate, which resolves.
    pub(crate) fn valid_parent(&self, rng: &mut Rng) -> u64 {
        let mut j = self.pool_a_start() + rng.below(self.n_pool_a + self.n_pool_b);
        let (_, start) = self.pool(j);
        while j > start && self.user_rejected(j) {
            j -= 1;
        }
        j
    }

    pub(crate) fn random_parent_b(&self, rng: &mut Rng) -> u64 {
        self.pool_b_start() + rng.below(self.n_pool_b)
    }

    /// An id that names no user (a deleted clinician).
    pub(crate) fn missing_user_id(&self, rng: &mut Rng) -> String {
        id("u", self.n_users() + rng.below(self.n_users()))
    }

    /// An id in patient shape that names no patient.
    pub(crate) fn missing_patient_id(&self, rng: &mut Rng) -> String {
        id("p", self.n_patients + rng.below(self.n_patients))
    }

    // ---- patients ----------------------------------------------------------------------------

    pub(crate) fn patient_dob(&self, p: u64) -> Dob {
        let r = &self.r;
        dob_draw(
            &mut self.rng(T_PAT_DOB, p),
            r.dob_invalid,
            r.dob_future,
            r.dob_blank,
            r.dob_mmddyyyy,
        )
    }

    pub(crate) fn patient_rejected(&self, p: u64) -> bool {
        self.patient_dob(p).rejects()
    }

    /// `(first_name, last_name)`; one of them blank ('' or NULL) at `blank_patient_name`.
    pub(crate) fn patient_names(&self, p: u64) -> (Option<String>, Option<String>) {
        let mut rng = self.rng(T_PAT_NAME, p);
        let mut first = Some(rng.pick(FIRST_NAMES).to_string());
        let mut last = Some(rng.pick(LAST_NAMES).to_string());
        if rng.chance(self.r.blank_patient_name) {
            let blank = if rng.chance(0.5) { Some(String::new()) } else { None };
            if rng.chance(0.5) {
                first = blank;
            } else {
                last = blank;
            }
        }
        (first, last)
    }

    // ---- children ----------------------------------------------------------------------------

    fn child_draw(&self, i: u64) -> ChildDraw {
        let r = &self.r;
        let mut rng = self.rng(T_CHILD_DRAW, i);
        let u = rng.unit();
        let kind = if u < r.child_linked {
            ChildKind::Linked
        } else if u < r.child_linked + r.child_dangling {
            ChildKind::Dangling
        } else {
            ChildKind::Unlinked
        };
        ChildDraw {
            kind,
            co_registered: rng.chance(r.child_co_registered),
            // A co-registration by the same parent: two child records of one parent.
            same_parent: rng.chance(0.25),
            patient: rng.below(self.n_patients),
            parent: self.pool_a_start() + rng.below(self.n_pool_a),
        }
    }

    /// `(linked patient, parent, kind)`. A co-registered linked child links to the same patient
    /// as the previous child record, so chains are walked back (short: geometric).
    fn child_link_and_parent(&self, i: u64) -> (Option<u64>, u64, ChildKind) {
        let d = self.child_draw(i);
        if d.kind != ChildKind::Linked {
            return (None, d.parent, d.kind);
        }
        let (mut k, mut dk) = (i, d);
        let mut parent = None;
        while dk.co_registered && k > 0 {
            let prev = self.child_draw(k - 1);
            if prev.kind != ChildKind::Linked {
                break;
            }
            if parent.is_none() && !dk.same_parent {
                parent = Some(dk.parent);
            }
            k -= 1;
            dk = prev;
        }
        (Some(dk.patient), parent.unwrap_or(dk.parent), ChildKind::Linked)
    }

    pub(crate) fn child(&self, i: u64) -> Child {
        let r = &self.r;
        let (link, parent, kind) = self.child_link_and_parent(i);
        let mut rng = self.rng(T_CHILD_ROW, i);
        let parent_rejected = self.user_rejected(parent);
        match link {
            Some(p) => {
                let pdob = self.patient_dob(p);
                let patient_rejected = pdob.rejects();
                // Disagreements are only planted where they will surface (child accepted), so
                // `disagreeing_fields` equals the discrepancies a correct migration produces.
                let accepted = !parent_rejected && !patient_rejected;
                let (pf, pl) = self.patient_names(p);
                let (first, c1) = self.name_variant(&mut rng, &pf, FIRST_NAMES, accepted);
                let (last, c2) = self.name_variant(&mut rng, &pl, LAST_NAMES, accepted);
                let (dob, c3) = self.dob_variant(&mut rng, &pdob, accepted);
                Child {
                    kind,
                    parent,
                    patient: Some(p),
                    dangling: None,
                    parent_rejected,
                    patient_rejected,
                    first,
                    last,
                    dob,
                    cmp: [c1, c2, c3],
                }
            }
            None => {
                let first = Some(rng.pick(FIRST_NAMES).to_string());
                let last = Some(rng.pick(LAST_NAMES).to_string());
                let dob = dob_draw(
                    &mut rng,
                    r.child_dob_invalid,
                    r.child_dob_future,
                    r.dob_blank,
                    r.dob_mmddyyyy,
                );
                let dangling = (kind == ChildKind::Dangling).then(|| self.n_patients + rng.below(self.n_patients));
                Child {
                    kind,
                    parent,
                    patient: None,
                    dangling,
                    parent_rejected,
                    patient_rejected: false,
                    first,
                    last,
                    dob,
                    cmp: [FieldCmp::Same; 3],
                }
            }
        }
    }

    fn name_variant(
        &self,
        rng: &mut Rng,
        patient: &Option<String>,
        list: &[&str],
        accepted: bool,
    ) -> (Option<String>, FieldCmp) {
        let r = &self.r;
        let pv = match patient.as_deref() {
            Some(v) if !v.trim().is_empty() => v,
            _ => return (Some(rng.pick(list).to_string()), FieldCmp::BlankSide),
        };
        let u = rng.unit();
        if accepted && u < r.field_disagree {
            let pl = pv.to_lowercase();
            let mut other = *rng.pick(list);
            while other.to_lowercase() == pl {
                other = *rng.pick(list);
            }
            (Some(other.to_string()), FieldCmp::Different)
        } else if u < r.field_disagree + r.field_blank {
            let v = if rng.chance(0.5) { Some(String::new()) } else { None };
            (v, FieldCmp::BlankSide)
        } else if u < r.field_disagree + r.field_blank + r.field_equivalent {
            let v = match rng.below(4) {
                0 => pv.to_uppercase(),
                1 => pv.to_lowercase(),
                2 => format!(" {pv}"),
                _ => format!("{}  ", pv.to_lowercase()),
            };
            (Some(v), FieldCmp::Equivalent)
        } else {
            (Some(pv.to_string()), FieldCmp::Same)
        }
    }

    fn dob_variant(&self, rng: &mut Rng, patient: &Dob, accepted: bool) -> (Dob, FieldCmp) {
        let r = &self.r;
        let d = match patient {
            Dob::Iso(d) | Dob::Mmdd(d) => *d,
            Dob::Empty | Dob::Null => {
                let own = dob_draw(rng, 0.0, 0.0, r.dob_blank, r.dob_mmddyyyy);
                let cmp = if own.is_blank() {
                    FieldCmp::BothBlank
                } else {
                    FieldCmp::BlankSide
                };
                return (own, cmp);
            }
            // The patient is rejected and the child waits: nothing is compared.
            Dob::Invalid(_) | Dob::Future(_) => return (Dob::Iso(valid_dob(rng)), FieldCmp::Same),
        };
        let u = rng.unit();
        if accepted && u < r.field_disagree {
            let delta = Days::new(1 + rng.below(365));
            let other = if d + delta <= DOB_MAX { d + delta } else { d - delta };
            let v = if rng.chance(0.5) {
                Dob::Iso(other)
            } else {
                Dob::Mmdd(other)
            };
            (v, FieldCmp::Different)
        } else if u < r.field_disagree + r.field_blank {
            let v = if rng.chance(0.5) { Dob::Empty } else { Dob::Null };
            (v, FieldCmp::BlankSide)
        } else if u < r.field_disagree + r.field_blank + r.field_equivalent {
            let v = match patient {
                Dob::Iso(_) => Dob::Mmdd(d),
                _ => Dob::Iso(d),
            };
            (v, FieldCmp::Equivalent)
        } else {
            (patient.clone(), FieldCmp::Same)
        }
    }
}
