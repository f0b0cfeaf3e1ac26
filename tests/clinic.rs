//! The clinic scenario end to end on a generated legacy database, checked count by count
//! against the generator's manifest, on SQLite and on PostgreSQL as target; then the review
//! queue (a split), an orphan grant, a dangling link, primary caregivers, and a rejected
//! patient whose dependants wait and go through once its date of birth is fixed.

mod common;
#[macro_use]
mod support;

use serde_json::Value as J;
use support::{Backend, TestProject, stderr};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The clinic project (fixtures/clinic, unchanged) on a freshly generated legacy database.
fn clinic(b: Backend, patients: u32, seed: u32) -> (TestProject, J) {
    let p = TestProject::with_config(b, "\n[defaults]\nbatch_size = 500\ncontinue_on_error = true\n");
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clinic/migrations"),
        &p.path().join("migrations"),
    );
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clinic/verify.toml"),
        p.path().join("verify.toml"),
    )
    .unwrap();
    let src = p.path().join("source.db");
    let o = std::process::Command::new(support::bin())
        .args([
            "generate",
            src.to_str().unwrap(),
            "--patients",
            &patients.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest: J =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("source.db.manifest.json")).unwrap()).unwrap();
    (p, manifest)
}

fn n(v: &J) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn scalar(p: &TestProject, sql: &str) -> i64 {
    p.target_sql(sql)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql}: {}", p.target_sql(sql)))
}

fn check_against_manifest(p: &TestProject, m: &J) {
    let e = &m["expected"];
    for (table, key) in [
        ("accounts", "accounts"),
        ("persons", "persons"),
        ("parent_child_views", "parent_child_views"),
        ("clinician_patient_views", "clinician_patient_views"),
        ("access_grants", "access_grants"),
        ("screenings", "screenings"),
        ("appointments", "appointments"),
        ("documents", "documents"),
    ] {
        assert_eq!(p.count(table), n(&e[key]), "{table}");
    }
    assert_eq!(
        p.count("cutover_discrepancies"),
        n(&e["discrepancies"]),
        "discrepancies"
    );
    // every source row ends written, skipped, merged or rejected, table by table
    let map = |name: &str, alias: i32| {
        scalar(
            p,
            &format!("SELECT COUNT(*) FROM cutover_id_map WHERE map = '{name}' AND alias = {alias}"),
        )
    };
    let rejected = |t: &str| {
        scalar(
            p,
            &format!(
                "SELECT COUNT(*) FROM cutover_rejects WHERE source_table = '{t}' AND level = 'error' AND state = 'open'"
            ),
        )
    };
    let o = &e["outcomes"];
    for (table, written, skipped, merged) in [
        ("users", map("users", 0), map("users", 1), 0),
        ("patients", map("patients", 0), 0, 0),
        ("children", map("children", 0), 0, map("children", 1)),
        (
            "parent_children",
            map("parent_children", 0),
            map("parent_children", 1),
            0,
        ),
        ("consent_grants", map("consent_grants", 0), 0, 0),
        ("screenings", map("screenings", 0), 0, 0),
        ("appointments", map("appointments", 0), 0, 0),
        ("documents", map("documents", 0), 0, 0),
    ] {
        let got = (written, skipped, merged, rejected(table));
        let want = (
            n(&o[table]["written"]),
            n(&o[table]["skipped"]),
            n(&o[table]["merged"]),
            n(&o[table]["rejected"]),
        );
        assert_eq!(got, want, "{table}: (written, skipped, merged, rejected)");
        assert_eq!(
            got.0 + got.1 + got.2 + got.3,
            n(&m["tables"][table]),
            "{table}: the books balance"
        );
    }
    let w = &e["warnings"];
    let warned = |rule: &str| {
        scalar(
            p,
            &format!("SELECT COUNT(*) FROM cutover_rejects WHERE level = 'warning' AND rule = '{rule}'"),
        )
    };
    assert_eq!(warned("dangling_link"), n(&w["dangling_links"]));
    assert_eq!(warned("matches_source"), n(&w["sha256_mismatches"]));
    assert_eq!(
        scalar(
            p,
            "SELECT COUNT(*) FROM cutover_rejects r JOIN cutover_ledger l ON l.version = r.version WHERE r.level = 'warning' AND r.rule = 'lookup' AND l.name = 'clinician_views'"
        ),
        n(&w["missing_clinician"])
    );
    assert_eq!(
        scalar(
            p,
            "SELECT COUNT(*) FROM cutover_rejects WHERE level = 'warning' AND rule = 'phone' AND source_table = 'patients'"
        ),
        n(&w["bad_phones"])
    );
    // orphan grants: rejected with a reason that says the patient does not exist
    assert_eq!(
        scalar(
            p,
            "SELECT COUNT(*) FROM cutover_rejects WHERE source_table = 'consent_grants' AND rule = 'lookup' AND reason LIKE '%no patients with legacy id%'"
        ),
        n(&m["anomalies"]["orphan_grants"])
    );
    // exactly one primary caregiver per person with views
    assert_eq!(
        p.target_sql("SELECT person_id FROM parent_child_views GROUP BY person_id HAVING SUM(CASE WHEN is_primary_caregiver THEN 1 ELSE 0 END) <> 1"),
        ""
    );
    // needs_review exactly where discrepancies are open
    assert_eq!(
        scalar(p, "SELECT COUNT(*) FROM persons WHERE needs_review"),
        scalar(
            p,
            "SELECT COUNT(DISTINCT entity_id) FROM cutover_discrepancies WHERE state = 'open'"
        )
    );
}

fn whole_project_matches_the_manifest(b: Backend) {
    let (p, m) = clinic(b, 1500, 7);
    let o = p.run(&["up"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(p.states().iter().all(|(_, s)| s == "applied"), "{:?}", p.states());
    check_against_manifest(&p, &m);
    // `cutover verify` agrees: accounting, expectations, checksums, foreign keys, documents
    let v = p.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["checks"].as_array().unwrap().len() > 30);
    // document bytes in the store hash to their row's sha256
    let rows = p.target_sql("SELECT storage_key || '|' || sha256 || '|' || size_bytes FROM documents");
    for line in rows.lines() {
        let parts: Vec<&str> = line.split('|').collect();
        let bytes = std::fs::read(p.path().join("document-store").join(parts[0])).unwrap();
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, parts[1]);
        assert_eq!(bytes.len().to_string(), parts[2]);
    }
    // a rollback of everything, then a second run, gives the same content (ids aside)
    let content = |p: &TestProject| {
        p.target_sql(
            "SELECT COALESCE(legacy_patient_id, '') || '/' || COALESCE(legacy_child_id, '') || '/' || COALESCE(first_name, '') || '/' || COALESCE(CAST(date_of_birth AS TEXT), '') || '/' || gender || '/' || allergies FROM persons ORDER BY 1",
        )
    };
    let before = content(&p);
    p.ok(&["down", "--all", "--yes"]);
    assert_eq!(p.user_tables(), Vec::<String>::new());
    p.ok(&["up"]);
    assert_eq!(content(&p), before);
    check_against_manifest(&p, &m);
}
both!(whole_project_matches_the_manifest);

fn review_split_and_waiting_rows(b: Backend) {
    let (p, _m) = clinic(b, 800, 11);
    p.ok(&["up"]);
    // --- a split: "not the same person"
    let queue = p.json(&["review", "list", "--open"]);
    let d = queue
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["field"] == "date_of_birth")
        .expect("a date-of-birth discrepancy")
        .clone();
    for k in ["id", "field", "values", "state"] {
        assert!(!d[k].is_null(), "{k} in {d}");
    }
    let (id, child, old) = (
        d["id"].as_i64().unwrap(),
        d["keys"][1].as_str().unwrap().to_string(),
        d["entity_id"].as_str().unwrap().to_string(),
    );
    let persons = p.count("persons");
    let child_screenings = scalar(
        &p,
        &format!("SELECT COUNT(*) FROM screenings s WHERE s.person_id = '{old}'"),
    );
    p.ok(&[
        "review",
        "decide",
        &id.to_string(),
        "--take",
        "split",
        "--note",
        "different birth dates on the records",
    ]);
    assert_eq!(p.count("persons"), persons + 1);
    let new = p.target_sql(&format!("SELECT id FROM persons WHERE legacy_child_id = '{child}'"));
    assert!(!new.is_empty() && new != old);
    assert_eq!(
        p.target_sql(&format!(
            "SELECT person_id FROM parent_child_views WHERE legacy_child_id = '{child}'"
        )),
        new,
        "the child's view moved"
    );
    let moved = scalar(
        &p,
        &format!("SELECT COUNT(*) FROM screenings WHERE person_id = '{new}'"),
    );
    assert_eq!(
        moved
            + scalar(
                &p,
                &format!("SELECT COUNT(*) FROM screenings WHERE person_id = '{old}'")
            ),
        child_screenings
    );
    let after = p.json(&["review", "list"]);
    for other in after
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["keys"][1] == child.as_str() && x["id"] != id)
    {
        assert_eq!(other["state"], "void", "{other}");
    }
    let decided = after
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(decided["state"], "decided");
    assert_eq!(decided["note"], "different birth dates on the records");
    // deciding it again changes nothing
    p.ok(&["review", "decide", &id.to_string(), "--take", "split"]);
    assert_eq!(p.count("persons"), persons + 1);
    // take b on another: applied to the target, and needs_review clears with the last one
    if let Some(d2) = p
        .json(&["review", "list", "--open"])
        .as_array()
        .unwrap()
        .first()
        .cloned()
    {
        let entity = d2["entity_id"].as_str().unwrap().to_string();
        let field = d2["field"].as_str().unwrap().to_string();
        for open in p
            .json(&["review", "list", "--open"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["entity_id"] == entity.as_str())
        {
            p.ok(&["review", "decide", &open["id"].to_string(), "--take", "b"]);
        }
        let v = p.target_sql(&format!(
            "SELECT CAST({field} AS TEXT) FROM persons WHERE id = '{entity}'"
        ));
        assert_eq!(v, d2["values"][1].as_str().unwrap());
        assert_eq!(
            scalar(
                &p,
                &format!("SELECT COUNT(*) FROM persons WHERE id = '{entity}' AND needs_review")
            ),
            0
        );
    }
    let history = p.json(&["history"]);
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "review_decided" && e["detail"]["decision"] == "split")
    );

    // --- a rejected patient whose children, grants and screenings wait, then go through
    let rejects = p.json(&["rejects", "list", "--open"]);
    let items = rejects.as_array().unwrap();
    let waiting_on = |key: &str| {
        items
            .iter()
            .filter(|r| r["waits_for"] == format!("patients {key}").as_str())
            .count()
    };
    let patient = items
        .iter()
        .filter(|r| r["source_table"] == "patients" && r["field"] == "date_of_birth")
        .max_by_key(|r| waiting_on(r["source_key"].as_str().unwrap()))
        .expect("a patient rejected for its date of birth")
        .clone();
    let key = patient["source_key"].as_str().unwrap().to_string();
    let waiters = waiting_on(&key);
    assert!(waiters > 0, "patient {key} has rows waiting for it");
    assert!(
        patient["reason"].as_str().unwrap().contains("date_of_birth"),
        "{patient}"
    );
    let rid = patient["id"].to_string();
    p.ok(&["rejects", "fix", &rid, "date_of_birth=2015-06-01"]);
    let r = p.json(&["rejects", "retry", &rid]);
    assert!(
        r["written"].as_array().unwrap().len() > waiters,
        "the patient and what waited for it: {r}"
    );
    let person = p.target_sql(&format!(
        "SELECT id || '|' || CAST(date_of_birth AS TEXT) FROM persons WHERE legacy_patient_id = '{key}'"
    ));
    assert!(person.ends_with("|2015-06-01"), "{person}");
    let person_id = person.split('|').next().unwrap().to_string();
    assert_eq!(
        scalar(
            &p,
            &format!("SELECT COUNT(*) FROM clinician_patient_views WHERE person_id = '{person_id}'")
        ),
        1
    );
    let still = p.json(&["rejects", "list", "--open"]);
    assert_eq!(
        still
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["waits_for"] == format!("patients {key}").as_str())
            .count(),
        0
    );
    let v = p.json(&["verify"]);
    assert_eq!(v["ok"], true, "after decisions and a retry: {v}");
    // a tampered document is caught
    let key = p.target_sql("SELECT storage_key FROM documents ORDER BY legacy_id LIMIT 1");
    std::fs::write(p.path().join("document-store").join(key.trim()), b"tampered").unwrap();
    let o = p.run(&["verify"]);
    assert_eq!(o.status.code(), Some(5), "{}", support::stdout(&o));
    // the books still balance for every step
    for m in p.json(&["status"])["migrations"].as_array().unwrap() {
        let c = &m["counts"];
        assert_eq!(
            n(&c["source"]),
            n(&c["written"]) + n(&c["skipped"]) + n(&c["rejected"]) + n(&c["merged"]),
            "{m}"
        );
    }
}
both!(review_split_and_waiting_rows);
