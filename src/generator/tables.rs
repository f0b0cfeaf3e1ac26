//! One streaming loop per legacy table. Each loop writes rows and, at the same time, counts the
//! anomalies it planted and the outcome a correct migration gives each row.

use color_eyre::Result;
use sha2::{Digest, Sha256};

use super::names::*;
use super::rng::Rng;
use super::world::{
    ChildKind, DAY, Dob, FieldCmp, Pool, T_APPOINTMENT, T_DOCUMENT, T_GRANT, T_LINK, T_LINK_DUP_CHILD, T_PAT_ROW,
    T_SCREENING, T_USER_ROW, UserClass, World, YEAR, id, is_blank, ts,
};
use super::writer::{Sink, TableWriter, V};
use super::{Manifest, Outcome};

/// Extra per-child stream (gender, notes, timestamps), apart from the child's identity stream.
const T_CHILD_EXTRA: u64 = 22;

pub(crate) async fn generate_all(w: &World, sink: &mut Sink, m: &mut Manifest) -> Result<()> {
    users(w, sink, m).await?;
    patients(w, sink, m).await?;
    children(w, sink, m).await?;
    parent_children(w, sink, m).await?;
    consent_grants(w, sink, m).await?;
    screenings(w, sink, m).await?;
    appointments(w, sink, m).await?;
    documents(w, sink, m).await?;

    let o = m.expected.outcomes.clone();
    let e = &mut m.expected;
    e.accounts = o.users.written;
    e.persons = o.patients.written + o.children.written;
    e.parent_child_views = o.children.written + o.children.merged + o.parent_children.written;
    e.clinician_patient_views = o.patients.written;
    e.access_grants = o.consent_grants.written;
    e.screenings = o.screenings.written;
    e.appointments = o.appointments.written;
    e.documents = o.documents.written;
    e.discrepancies = m.anomalies.disagreeing_fields;
    Ok(())
}

fn written_or_rejected(o: &mut Outcome, rejected: bool) {
    if rejected {
        o.rejected += 1;
    } else {
        o.written += 1;
    }
}

/// A user id, counting it when it names a duplicate (a reference the migration must rewrite).
fn user_ref(w: &World, m: &mut Manifest, j: u64) -> String {
    if w.user_class(j) == UserClass::Duplicate {
        m.anomalies.references_to_duplicates += 1;
    }
    id("u", j)
}

fn mixed_case(rng: &mut Rng, s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if rng.chance(0.3) { c.to_ascii_uppercase() } else { c })
        .collect();
    if out == s.to_lowercase() {
        // Guarantee the anomaly: at least the first letter is upper case.
        out = s[..1].to_uppercase() + &s[1..];
    }
    out
}

fn stray_spaces(rng: &mut Rng, s: &str) -> String {
    match rng.below(3) {
        0 => format!(" {s}"),
        1 => format!("{s}  "),
        _ => format!("  {s} "),
    }
}

/// A readable US number in one of the usual shapes (all become +1XXXXXXXXXX in E.164).
fn phone(rng: &mut Rng) -> String {
    let area = 201 + rng.below(789);
    let exchange = 200 + rng.below(800);
    let line = rng.below(10_000);
    match rng.below(5) {
        0 => format!("({area}) {exchange}-{line:04}"),
        1 => format!("{area}-{exchange}-{line:04}"),
        2 => format!("{area}.{exchange}.{line:04}"),
        3 => format!("+1 {area} {exchange} {line:04}"),
        _ => format!("{area}{exchange}{line:04}"),
    }
}

fn bcrypt_hash(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(60);
    s.push_str("$2b$12$");
    for _ in 0..53 {
        s.push(*rng.pick(BCRYPT_ALPHABET) as char);
    }
    s
}

fn gender(rng: &mut Rng, odd_rate: f64, odd: &mut u64) -> Option<String> {
    if rng.chance(odd_rate) {
        *odd += 1;
        return Some(rng.pick(ODD_GENDERS).to_string());
    }
    // NULL as often as '' (the weights below leave 4% for it).
    let total: u32 = GENDERS.iter().map(|g| g.1).sum::<u32>() + 4;
    let mut x = rng.below(u64::from(total)) as u32;
    for (g, weight) in GENDERS {
        if x < *weight {
            return Some(g.to_string());
        }
        x -= weight;
    }
    None
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The clean form of an allergy list: items trimmed, empties dropped, joined by ", ".
fn clean_allergies(raw: &str) -> String {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn users(w: &World, sink: &mut Sink, m: &mut Manifest) -> Result<()> {
    let r = &w.r;
    let mut t = TableWriter::new("users");
    for j in 0..w.n_users() {
        let (pool, _) = w.pool(j);
        let class = w.user_class(j);
        let mut rng = Rng::new(w.seed, T_USER_ROW, j);
        let (first, last, canonical) = w.user_identity(j);
        // Duplicates mostly differ from their original by case, the classic legacy bug.
        let mix_rate = if class == UserClass::Duplicate {
            0.7
        } else {
            r.email_mixed_case
        };
        let mut email = if rng.chance(mix_rate) {
            mixed_case(&mut rng, &canonical)
        } else {
            canonical
        };
        if rng.chance(r.email_stray_spaces) {
            email = stray_spaces(&mut rng, &email);
        }
        let a = &mut m.anomalies;
        if email != email.to_lowercase() {
            a.mixed_case_emails += 1;
        }
        if email != email.trim() {
            a.spaced_emails += 1;
        }
        let legacy = rng.chance(r.legacy_role);
        let role = match (class, pool) {
            (UserClass::Unknown, _) => *rng.pick(UNKNOWN_ROLES),
            (_, Pool::Admin) => "admin",
            (_, Pool::Clinician) if legacy => *rng.pick(CLINICIAN_ROLES_LEGACY),
            (_, Pool::Clinician) => "clinician",
            (_, Pool::ParentA | Pool::ParentB) if legacy => *rng.pick(PARENT_ROLES_LEGACY),
            (_, Pool::ParentA | Pool::ParentB) => "parent",
        };
        if PARENT_ROLES_LEGACY.contains(&role) || CLINICIAN_ROLES_LEGACY.contains(&role) {
            a.legacy_roles += 1;
        }
        let full_name = (!rng.chance(0.03)).then(|| format!("{first} {last}"));
        let hash = bcrypt_hash(&mut rng);
        let phone = (!rng.chance(0.2)).then(|| phone(&mut rng));
        let o = &mut m.expected.outcomes.users;
        match class {
            UserClass::Unknown => {
                a.unknown_roles += 1;
                o.rejected += 1;
            }
            UserClass::Duplicate => {
                a.duplicate_emails += 1;
                if w.dup_info(j).tie {
                    a.duplicate_email_ties += 1;
                }
                o.skipped += 1;
            }
            UserClass::Normal => o.written += 1,
        }
        t.push(
            sink,
            [
                id("u", j).into(),
                email.into(),
                full_name.into(),
                role.into(),
                hash.into(),
                phone.into(),
                ts(w.user_created(j)).into(),
            ],
        )
        .await?;
    }
    t.flush(sink).await?;
    m.tables.users = t.rows;
    Ok(())
}

async fn patients(w: &World, sink: &mut Sink, m: &mut Manifest) -> Result<()> {
    let r = &w.r;
    let mut t = TableWriter::new("patients");
    for p in 0..w.n_patients {
        let dob = w.patient_dob(p);
        let rejected = dob.rejects();
        let (first, last) = w.patient_names(p);
        let mut rng = Rng::new(w.seed, T_PAT_ROW, p);

        let clinician = if rng.chance(r.missing_clinician) {
            m.anomalies.missing_clinician += 1;
            if !rejected {
                m.expected.warnings.missing_clinician += 1;
            }
            w.missing_user_id(&mut rng)
        } else {
            let c = w.random_clinician(&mut rng);
            user_ref(w, m, c)
        };
        let a = &mut m.anomalies;
        let gender = gender(&mut rng, r.gender_odd, &mut a.odd_genders);

        let u = rng.unit();
        let email = if u < r.bad_email {
            a.bad_emails += 1;
            if !rejected {
                m.expected.warnings.bad_emails += 1;
            }
            Some(rng.pick(BAD_EMAILS).to_string())
        } else if u < r.bad_email + 0.3 {
            None
        } else if u < r.bad_email + 0.35 {
            Some(String::new())
        } else {
            let name = |v: &Option<String>, fallback: &'static str| {
                v.as_deref()
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or(fallback)
                    .to_lowercase()
            };
            let e = format!(
                "{}.{}{}@{}",
                name(&first, "kid"),
                name(&last, "family"),
                p + 1,
                rng.pick(EMAIL_DOMAINS)
            );
            Some(if rng.chance(0.3) { mixed_case(&mut rng, &e) } else { e })
        };

        let u = rng.unit();
        let phone = if u < r.bad_phone {
            a.bad_phones += 1;
            if !rejected {
                m.expected.warnings.bad_phones += 1;
            }
            Some(rng.pick(BAD_PHONES).to_string())
        } else if u < r.bad_phone + 0.05 {
            None
        } else if u < r.bad_phone + 0.08 {
            Some(String::new())
        } else {
            Some(phone(&mut rng))
        };

        let (city, state) = *rng.pick(CITIES);
        let address = format!("{} {}", 1 + rng.below(9_999), rng.pick(STREETS));
        let postal = format!("{:05}", 10_000 + rng.below(89_999));

        let allergies = if rng.chance(r.messy_allergies) {
            a.messy_allergies += 1;
            Some(messy_allergy_list(&mut rng))
        } else {
            match rng.below(10) {
                0..=1 => None,
                2..=4 => {
                    a.empty_allergies += 1;
                    Some(String::new())
                }
                _ => Some(allergy_items(&mut rng).join(", ")),
            }
        };
        let notes = rng.chance(0.6).then(|| rng.pick(NOTES).to_string());
        let active: i64 = if rng.chance(0.9) { 1 } else { 0 };
        let created = rng.below(4 * YEAR);
        let updated = created + rng.below(YEAR);

        match &dob {
            Dob::Invalid(_) => a.invalid_dob += 1,
            Dob::Future(_) => a.future_dob += 1,
            Dob::Mmdd(_) => a.mmddyyyy_dob += 1,
            Dob::Empty | Dob::Null => a.blank_dob += 1,
            Dob::Iso(_) => {}
        }
        if is_blank(&first) || is_blank(&last) {
            a.blank_patient_names += 1;
        }
        written_or_rejected(&mut m.expected.outcomes.patients, rejected);

        t.push(
            sink,
            [
                id("p", p).into(),
                clinician.into(),
                id("MRN", p).into(),
                first.into(),
                last.into(),
                dob.text().into(),
                gender.into(),
                email.into(),
                phone.into(),
                address.into(),
                city.into(),
                state.into(),
                postal.into(),
                "US".into(),
                allergies.into(),
                notes.into(),
                V::Int(active),
                ts(created).into(),
                ts(updated).into(),
            ],
        )
        .await?;
    }
    t.flush(sink).await?;
    m.tables.patients = t.rows;
    Ok(())
}

fn allergy_items(rng: &mut Rng) -> Vec<&'static str> {
    let n = 1 + rng.below(3);
    let mut items: Vec<&'static str> = Vec::with_capacity(3);
    while (items.len() as u64) < n {
        let a = *rng.pick(ALLERGIES);
        if !items.contains(&a) {
            items.push(a);
        }
    }
    items
}

/// An allergy list with stray spaces and/or empty items; never equal to its clean form.
fn messy_allergy_list(rng: &mut Rng) -> String {
    const SEPARATORS: &[&str] = &[",", ", ", " , ", ",  ", ", ,", ",,"];
    const TAILS: &[&str] = &[",", ", ", " "];
    let items = allergy_items(rng);
    let mut s = String::new();
    if rng.chance(0.3) {
        s.push(' ');
    }
    for (k, item) in items.iter().enumerate() {
        if k > 0 {
            let sep = *rng.pick(SEPARATORS);
            s.push_str(sep);
        }
        s.push_str(item);
    }
    if rng.chance(0.3) {
        let tail = *rng.pick(TAILS);
        s.push_str(tail);
    }
    if s == clean_allergies(&s) {
        s.push_str(", ");
    }
    s
}

async fn children(w: &World, sink: &mut Sink, m: &mut Manifest) -> Result<()> {
    let r = &w.r;
    let mut t = TableWriter::new("children");
    // The previous child's linked patient: O(1) state to count co-registrations exactly.
    let mut prev_link: Option<u64> = None;
    for i in 0..w.n_children {
        let c = w.child(i);
        let mut rng = Rng::new(w.seed, T_CHILD_EXTRA, i);
        let parent = user_ref(w, m, c.parent);
        let a = &mut m.anomalies;
        let gender = gender(&mut rng, r.gender_odd, &mut a.odd_genders);
        let notes = rng.chance(0.4).then(|| rng.pick(PARENT_NOTES).to_string());
        let created = rng.below(5 * YEAR);
        let updated = created + rng.below(YEAR);
        let link = match c.kind {
            ChildKind::Linked => c.patient.map(|p| id("p", p)),
            ChildKind::Dangling => c.dangling.map(|n| id("p", n)),
            ChildKind::Unlinked => None,
        };

        match c.kind {
            ChildKind::Linked => a.linked_children += 1,
            ChildKind::Dangling => a.dangling_links += 1,
            ChildKind::Unlinked => a.unlinked_children += 1,
        }
        if c.patient.is_some() && c.patient == prev_link {
            a.co_registered_children += 1;
        }
        prev_link = c.patient;
        if c.patient_rejected {
            a.children_of_rejected_patients += 1;
        }
        if c.parent_rejected {
            a.children_of_rejected_parents += 1;
        }
        match &c.dob {
            Dob::Invalid(_) => a.child_invalid_dob += 1,
            Dob::Future(_) => a.child_future_dob += 1,
            Dob::Mmdd(_) => a.child_mmddyyyy_dob += 1,
            Dob::Empty | Dob::Null => a.child_blank_dob += 1,
            Dob::Iso(_) => {}
        }
        if c.merged() {
            for cmp in c.cmp {
                match cmp {
                    FieldCmp::Different => a.disagreeing_fields += 1,
                    FieldCmp::Equivalent => a.equivalent_fields += 1,
                    FieldCmp::BlankSide => a.blank_side_fields += 1,
                    FieldCmp::Same | FieldCmp::BothBlank => {}
                }
            }
        }
        let o = &mut m.expected.outcomes.children;
        if c.rejected() {
            o.rejected += 1;
        } else if c.merged() {
            o.merged += 1;
        } else {
            o.written += 1;
            if c.kind == ChildKind::Dangling {
                m.expected.warnings.dangling_links += 1;
            }
        }

        t.push(
            sink,
            [
                id("c", i).into(),
                parent.into(),
                c.first.into(),
                c.last.into(),
                c.dob.text().into(),
                gender.into(),
                link.into(),
                notes.into(),
                ts(created).into(),
                ts(updated).into(),
            ],
        )
        .await?;
    }
    t.flush(sink).await?;
    m.tables.children = t.rows;
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LinkKind {
    /// A first (parent, patient) pair.
    Ordinary,
    /// Repeats an earlier link of the same pair, later.
    Repeat,
    /// Repeats a merged child's (parent_id, linked_patient_id).
    ChildView,
}

struct Links<'a> {
    w: &'a World,
    t: TableWriter,
}

impl Links<'_> {
    async fn emit(
        &mut self,
        sink: &mut Sink,
        m: &mut Manifest,
        rng: &mut Rng,
        (parent, patient, created): (u64, u64, u64),
        kind: LinkKind,
    ) -> Result<()> {
        let w = self.w;
        let parent_rejected = w.user_rejected(parent);
        let patient_rejected = w.patient_rejected(patient);
        let parent_id = user_ref(w, m, parent);
        let a = &mut m.anomalies;
        if parent_rejected {
            a.links_of_rejected_parents += 1;
        }
        if patient_rejected {
            a.links_of_rejected_patients += 1;
        }
        match kind {
            LinkKind::ChildView => a.links_duplicating_child_views += 1,
            LinkKind::Repeat => a.duplicate_links += 1,
            LinkKind::Ordinary => {}
        }
        // A duplicating child view is never rejected: its child merged, so parent and patient
        // are both accepted.
        let o = &mut m.expected.outcomes.parent_children;
        if parent_rejected || patient_rejected {
            o.rejected += 1;
        } else if kind == LinkKind::Ordinary {
            o.written += 1;
        } else {
            o.skipped += 1;
        }
        let relationship = (!rng.chance(0.1)).then(|| rng.pick(RELATIONSHIPS).to_string());
        let row_id = id("pc", self.t.rows);
        self.t
            .push(
                sink,
                [
                    row_id.into(),
                    parent_id.into(),
                    id("p", patient).into(),
                    relationship.into(),
                    ts(created).into(),
                ],
            )
            .await
    }
}

async fn parent_children(w: &World, sink: &mut Sink, m: &mut Manifest) -> Result<()> {
    let r = &w.r;
    let mut links = Links {
        w,
        t: TableWriter::new("parent_children"),
    };
    let mut next_child = 0u64;
    for p in 0..w.n_patients {
        let mut rng = Rng::new(w.seed, T_LINK, p);
        if rng.chance(r.patient_has_links) {
            let want = if rng.chance(r.multi_parent) {
                if rng.chance(0.25) { 3 } else { 2 }
            } else {
                1
            };
            // Distinct *resolved* parents, so ordinary links never duplicate each other.
            let mut chosen = [(0u64, 0u64); 3];
            let mut k = 0;
            for _ in 0..32 {
                if k == want {
                    break;
                }
                let q = w.random_parent_b(&mut rng);
                let rq = w.resolve(q);
                if chosen[..k].iter().any(|c| c.1 == rq) {
                    continue;
                }
                chosen[k] = (q, rq);
                k += 1;
            }
            if k >= 2 {
                m.anomalies.multi_parent_patients += 1;
            }
            let mut first_created = 0;
            for (n, (q, _)) in chosen[..k].iter().enumerate() {
                let created = rng.below(5 * YEAR);
                if n == 0 {
                    first_created = created;
                }
                links
                    .emit(sink, m, &mut rng, (*q, p, created), LinkKind::Ordinary)
                    .await?;
            }
            if k > 0 && rng.chance(r.duplicate_link) {
                let created = first_created + 1 + rng.below(YEAR);
                links
                    .emit(sink, m, &mut rng, (chosen[0].0, p, created), LinkKind::Repeat)
                    .await?;
            }
        }
        // Walk the children in step with the patients, so every child gets its chance of a
        // duplicating link while staying in one streaming pass.
        let end = ((u128::from(p) + 1) * u128::from(w.n_children) / u128::from(w.n_patients)) as u64;
        while next_child < end {
            let i = next_child;
            next_child += 1;
            let c = w.child(i);
            let mut crng = Rng::new(w.seed, T_LINK_DUP_CHILD, i);
            // Only children that certainly have a view (merged, nothing to review), so the link
            // is a duplicate whatever a reviewer later decides.
            if c.merged()
                && c.disagreements() == 0
                && crng.chance(r.link_duplicates_child_view)
                && let Some(patient) = c.patient
            {
                let created = crng.below(5 * YEAR);
                let row = (c.parent, patient, created);
                links.emit(sink, m, &mut crng, row, LinkKind::ChildView).await?;
            }
        }
    }
    links.t.flush(sink).await?;
    m.tables.parent_children = links.t.rows;
    Ok(())
}

async fn consent_grants(w: &World, sink: &mut Sink, m: &mut Manifest) -> Result<()> {
    let r = &w.r;
    let mut t = TableWriter::new("consent_grants");
    for g in 0..w.n_grants {
        let mut rng = Rng::new(w.seed, T_GRANT, g);
        let parent = w.valid_parent(&mut rng);
        let parent_id = user_ref(w, m, parent);
        let (patient_id, orphan, patient_rejected) = if rng.chance(r.orphan_grant) {
            (w.missing_patient_id(&mut rng), true, false)
        } else {
            let p = rng.below(w.n_patients);
            (id("p", p), false, w.patient_rejected(p))
        };
        let clinician = if rng.chance(0.8) {
            let c = w.random_clinician(&mut rng);
            Some(user_ref(w, m, c))
        } else {
            None
        };
        let scope = *rng.pick(SCOPES);
        let granted = rng.below(5 * YEAR);
        let revoked = rng.chance(0.15).then(|| ts(granted + DAY + rng.below(YEAR)));
        let a = &mut m.anomalies;
        if orphan {
            a.orphan_grants += 1;
        }
        if patient_rejected {
            a.grants_of_rejected_patients += 1;
        }
        written_or_rejected(&mut m.expected.outcomes.consent_grants, orphan || patient_rejected);
        t.push(
            sink,
            [
                id("g", g).into(),
                parent_id.into(),
                patient_id.into(),
                clinician.into(),
                scope.into(),
                ts(granted).into(),
                revoked.into(),
            ],
        )
        .await?;
    }
    t.flush(sink).await?;
    m.tables.consent_grants = t.rows;
    Ok(())
}

async fn screenings(w: &World, sink: &mut Sink, m: &mut Manifest) -> Result<()> {
    let r = &w.r;
    let mut t = TableWriter::new("screenings");
    for s in 0..w.n_screenings {
        let mut rng = Rng::new(w.seed, T_SCREENING, s);
        let a = &mut m.anomalies;
        let (patient_id, child_id, rejected) = if rng.chance(r.screening_on_child) {
            let i = rng.below(w.n_children);
            let c = w.child(i);
            a.screenings_on_children += 1;
            if c.merged() {
                a.screenings_on_merged_children += 1;
            }
            if c.rejected() {
                a.screenings_on_rejected_children += 1;
            }
            (None, Some(id("c", i)), c.rejected())
        } else {
            let p = rng.below(w.n_patients);
            let rejected = w.patient_rejected(p);
            if rejected {
                a.screenings_of_rejected_patients += 1;
            }
            (Some(id("p", p)), None, rejected)
        };
        written_or_rejected(&mut m.expected.outcomes.screenings, rejected);
        let kind = *rng.pick(SCREENING_KINDS);
        // Whole tenths: exact in binary-decimal round trips.
        let score = rng.below(1001) as f64 / 10.0;
        let performed = rng.below(5 * YEAR);
        t.push(
            sink,
            [
                id("s", s).into(),
                patient_id.into(),
                child_id.into(),
                kind.into(),
                V::Real(score),
                ts(performed).into(),
            ],
        )
        .await?;
    }
    t.flush(sink).await?;
    m.tables.screenings = t.rows;
    Ok(())
}

async fn appointments(w: &World, sink: &mut Sink, m: &mut Manifest) -> Result<()> {
    let mut t = TableWriter::new("appointments");
    for n in 0..w.n_appointments {
        let mut rng = Rng::new(w.seed, T_APPOINTMENT, n);
        let p = rng.below(w.n_patients);
        let rejected = w.patient_rejected(p);
        if rejected {
            m.anomalies.appointments_of_rejected_patients += 1;
        }
        written_or_rejected(&mut m.expected.outcomes.appointments, rejected);
        let c = w.random_clinician(&mut rng);
        let clinician = user_ref(w, m, c);
        let scheduled = rng.below(6 * YEAR);
        let status = *rng.pick(APPOINTMENT_STATUSES);
        let notes = rng.chance(0.3).then(|| rng.pick(APPOINTMENT_NOTES).to_string());
        t.push(
            sink,
            [
                id("a", n).into(),
                id("p", p).into(),
                clinician.into(),
                ts(scheduled).into(),
                status.into(),
                notes.into(),
            ],
        )
        .await?;
    }
    t.flush(sink).await?;
    m.tables.appointments = t.rows;
    Ok(())
}

async fn documents(w: &World, sink: &mut Sink, m: &mut Manifest) -> Result<()> {
    let r = &w.r;
    let mut t = TableWriter::new("documents");
    for d in 0..w.n_documents {
        let mut rng = Rng::new(w.seed, T_DOCUMENT, d);
        let p = rng.below(w.n_patients);
        let rejected = w.patient_rejected(p);
        let (ext, mime) = *rng.pick(DOCUMENT_KINDS);
        let stem = *rng.pick(&["scan", "report", "referral", "lab_result", "consent_form"]);
        let mut content = vec![0u8; 64 + rng.below(2048 - 64 + 1) as usize];
        rng.fill(&mut content);
        let mut digest = Sha256::digest(&content);
        if rng.chance(r.wrong_sha256) {
            // A digest of slightly different bytes: right shape, wrong value.
            let mut h = Sha256::new();
            h.update(&content);
            h.update([0u8]);
            digest = h.finalize();
            m.anomalies.wrong_sha256 += 1;
            if !rejected {
                m.expected.warnings.sha256_mismatches += 1;
            }
        }
        if rejected {
            m.anomalies.documents_of_rejected_patients += 1;
        }
        written_or_rejected(&mut m.expected.outcomes.documents, rejected);
        let uploaded = rng.below(5 * YEAR);
        t.push(
            sink,
            [
                id("d", d).into(),
                id("p", p).into(),
                format!("{stem}_{}.{ext}", d + 1).into(),
                mime.into(),
                hex(&digest).into(),
                V::Blob(content),
                ts(uploaded).into(),
            ],
        )
        .await?;
    }
    t.flush(sink).await?;
    m.tables.documents = t.rows;
    Ok(())
}
