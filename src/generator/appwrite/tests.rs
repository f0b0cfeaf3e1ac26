//! The manifest's arithmetic, its determinism, the planted problems, and the generator's copy of
//! the fixture's rules held against fixtures/appwrite itself.

use super::*;

fn built(users: u64, seed: u64) -> Legacy {
    build(&AppwriteConfig { users, seed }).unwrap()
}

fn table<'a>(l: &'a Legacy, name: &str) -> &'a [Vec<V>] {
    l.rows
        .iter()
        .find(|(t, _)| *t == name)
        .map(|(_, r)| r.as_slice())
        .unwrap_or_else(|| panic!("no table {name}"))
}

fn int(v: &V) -> Option<u64> {
    match v {
        V::Int(i) => Some(*i as u64),
        _ => None,
    }
}

fn text(v: &V) -> &str {
    match v {
        V::Text(s) => s,
        _ => "",
    }
}

fn step<'a>(m: &'a AppwriteManifest, name: &str) -> &'a StepExpectation {
    m.steps
        .values()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}"))
}

#[test]
fn every_step_balances_and_expected_follows_from_the_steps() {
    for (users, seed) in [(300, 42), (57, 1), (1_000, 9)] {
        let l = built(users, seed);
        let m = &l.manifest;
        assert_eq!(m.steps.len(), STEPS.len());
        for (version, name) in STEPS {
            let s = &m.steps[*version];
            assert_eq!(&s.name, name);
            assert_eq!(s.source, s.written + s.skipped + s.rejected, "{name}: {s:?}");
            assert_eq!(s.rejected, s.rejected_by_rule.values().sum::<u64>(), "{name}: {s:?}");
        }
        // Source rows of each step are the legacy table's rows.
        for (name, t) in [
            ("teams", "teams"),
            ("users", "users"),
            ("projects", "projects"),
            ("appointments", "appointments"),
            ("config", "settings"),
        ] {
            assert_eq!(step(m, name).source, m.tables[t], "{name}");
            assert_eq!(m.tables[t], table(&l, t).len() as u64, "{t}");
        }
        let by_bucket = |b: &str| table(&l, "files").iter().filter(|r| text(&r[1]) == b).count() as u64;
        assert_eq!(step(m, "files_avatars").source, by_bucket("avatars"));
        assert_eq!(step(m, "files_records").source, by_bucket("records"));
        assert_eq!(m.tables["files"], by_bucket("avatars") + by_bucket("records"));
        for (collection, name) in [
            ("teams", "teams"),
            ("users", "users"),
            ("projects", "projects"),
            ("appointments", "appointments"),
            ("config", "config"),
        ] {
            assert_eq!(m.expected[&format!("collection:{collection}")], step(m, name).written);
        }
        assert_eq!(
            m.expected["collection:files"],
            step(m, "files_avatars").written + step(m, "files_records").written
        );
        for (bucket, name) in [("avatars", "files_avatars"), ("records", "files_records")] {
            let stored = m.expected[&format!("bucket:{bucket}")];
            assert!(stored > 0 && stored <= step(m, name).written, "{bucket}: {stored}");
        }
        assert_eq!(m.expected.len(), 8, "{:?}", m.expected);
    }
}

#[test]
fn the_default_size_plants_every_problem_and_each_shows_in_the_books() {
    let l = built(300, 42);
    let m = &l.manifest;
    for what in [
        "users.duplicate_email",
        "users.unknown_role",
        "appointments.missing_patient",
        "appointments.no_patient",
        "appointments.oversize_document",
        "files.avatar_gif",
        "files.avatar_over_limit",
        "files.record_wrong_type",
        "files.record_over_limit",
        "settings.unmapped_key",
        "settings.bad_typed_value",
    ] {
        assert!(m.planted.get(what).copied().unwrap_or(0) > 0, "{what}: {:?}", m.planted);
    }
    let users = step(m, "users");
    assert_eq!(users.skipped, m.planted["users.duplicate_email"]);
    assert_eq!(users.rejected_by_rule["roles"], m.planted["users.unknown_role"]);
    let a = step(m, "appointments");
    assert_eq!(a.rejected_by_rule["lookup"], m.planted["appointments.missing_patient"]);
    assert!(a.rejected_by_rule["document_size"] > 0, "{a:?}");
    assert!(a.rejected_by_rule["waiting"] > 0, "{a:?}");
    for name in ["files_avatars", "files_records"] {
        assert!(step(m, name).rejected_by_rule["bucket"] > 0, "{name}");
    }
    let c = step(m, "config");
    assert_eq!(c.rejected_by_rule["config_key"], 2);
    assert_eq!(c.rejected_by_rule["config_type"], 1);
    assert_eq!(c.written, 11);
    // No rule gives warnings in this fixture.
    assert!(m.steps.values().all(|s| s.warnings_by_rule.is_empty()));
}

#[test]
fn the_same_seed_gives_the_same_rows_and_another_seed_other_rows() {
    let (a, b, c) = (built(120, 5), built(120, 5), built(120, 6));
    assert_eq!(a.manifest, b.manifest);
    assert_eq!(a.rows, b.rows);
    assert_ne!(table(&a, "users"), table(&c, "users"));
}

#[test]
fn users_written_are_the_distinct_emails_of_users_with_known_roles() {
    let l = built(300, 42);
    let mut emails = HashSet::new();
    let mut rejected = 0;
    for r in table(&l, "users") {
        let roles: Vec<String> = text(&r[4])
            .split([',', ';', ' '])
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        if roles.iter().any(|r| !ROLES.contains(&r.as_str())) {
            rejected += 1;
        } else {
            emails.insert(text(&r[1]).trim().to_lowercase());
        }
        // bcrypt-looking: $2b$12$ then 53 characters of bcrypt's alphabet.
        let h = text(&r[3]);
        assert!(h.len() == 60 && h.starts_with("$2b$12$"), "{h}");
        assert!(h[7..].bytes().all(|c| BCRYPT_ALPHABET.contains(&c)), "{h}");
    }
    let s = step(&l.manifest, "users");
    assert_eq!(s.written, emails.len() as u64);
    assert_eq!(s.rejected, rejected);
}

/// The type a detector reading magic numbers sees (what the bucket rules go by).
fn sniffed(b: &[u8]) -> &'static str {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if b.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else if b.starts_with(b"%PDF") {
        "application/pdf"
    } else if b.starts_with(b"GIF89a") {
        "image/gif"
    } else if std::str::from_utf8(b).is_ok() && !b.contains(&0) {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

#[test]
fn bucket_outcomes_follow_from_the_bytes_and_each_bucket_keeps_distinct_contents() {
    let l = built(300, 42);
    let m = &l.manifest;
    let users = table(&l, "users");
    let rejected_user = |uid: u64| {
        let r = &users[(uid - 1) as usize];
        text(&r[4])
            .split([',', ';', ' '])
            .map(|s| s.trim().to_lowercase())
            .any(|s| !s.is_empty() && !ROLES.contains(&s.as_str()))
    };
    for (bucket, max, mime) in BUCKETS {
        let (mut bad, mut waiting) = (0, 0);
        let mut stored = HashSet::new();
        for r in table(&l, "files").iter().filter(|r| text(&r[1]) == *bucket) {
            let V::Bytes(content) = &r[5] else { panic!("no bytes") };
            if rejected_user(int(&r[2]).unwrap()) {
                waiting += 1;
            } else if content.len() > *max || !mime.contains(&sniffed(content)) {
                bad += 1;
            } else {
                stored.insert(Sha256::digest(content).to_vec());
            }
        }
        let s = step(m, &format!("files_{bucket}"));
        assert_eq!(s.rejected_by_rule.get("bucket").copied().unwrap_or(0), bad, "{bucket}");
        assert_eq!(
            s.rejected_by_rule.get("waiting").copied().unwrap_or(0),
            waiting,
            "{bucket}"
        );
        assert_eq!(m.expected[&format!("bucket:{bucket}")], stored.len() as u64, "{bucket}");
    }
    // Several users kept the default avatar: fewer stored files than written documents.
    assert!(m.expected["bucket:avatars"] < step(m, "files_avatars").written);
}

#[test]
fn every_appointment_document_is_far_from_the_size_limit() {
    // The engine may spell a timestamp a few bytes differently; a margin of 300 bytes keeps
    // every document on its side of the limit whatever the spelling.
    let l = built(300, 42);
    let mut notes: HashMap<u64, Vec<(String, NaiveDateTime)>> = HashMap::new();
    for r in table(&l, "appointment_notes") {
        let V::Ts(at) = r[3] else { panic!() };
        notes
            .entry(int(&r[1]).unwrap())
            .or_default()
            .push((text(&r[2]).to_string(), at));
    }
    let mut over = 0;
    for r in table(&l, "appointments") {
        let (V::Ts(starts), V::Ts(ends)) = (&r[4], &r[5]) else {
            panic!()
        };
        let id = int(&r[0]).unwrap();
        let mut n = notes.remove(&id).unwrap_or_default();
        n.sort_by_key(|(_, at)| *at);
        assert!(n.len() <= 50, "max_items");
        let size = appointment_document(id, r[1] != V::Null, r[3] != V::Null, *starts, *ends, text(&r[6]), &n)
            .to_string()
            .len();
        assert!(
            !(MAX_DOCUMENT_BYTES - 300..=MAX_DOCUMENT_BYTES + 300).contains(&size),
            "appointment {id}: {size} bytes"
        );
        over += u64::from(size > MAX_DOCUMENT_BYTES);
    }
    assert_eq!(over, m_planted(&l, "appointments.oversize_document"));
}

fn m_planted(l: &Legacy, what: &str) -> u64 {
    l.manifest.planted.get(what).copied().unwrap_or(0)
}

#[test]
fn samples_are_an_admin_a_clinician_and_a_patient_with_their_permissions() {
    let l = built(300, 42);
    let s = &l.manifest.samples;
    let roles: Vec<&str> = s.iter().map(|s| s.role.as_str()).collect();
    assert_eq!(roles, ["admin", "clinician", "patient"]);
    assert_eq!(
        s[0].documents[0].permissions,
        [
            "read(\"any\")",
            "read(\"user:{_id}\")",
            "write(\"any\")",
            "write(\"user:{_id}\")"
        ]
    );
    assert_eq!(
        s[1].documents[0].permissions,
        [
            "read(\"team:clinicians\")",
            "read(\"user:{_id}\")",
            "write(\"team:clinicians\")",
            "write(\"user:{_id}\")"
        ]
    );
    assert_eq!(
        s[2].documents[0].permissions,
        ["read(\"user:{_id}\")", "write(\"user:{_id}\")"]
    );
    let appointment = &s[2].documents[1];
    assert_eq!(
        (appointment.collection.as_str(), appointment.legacy_id),
        ("appointments", 1)
    );
    let team = int(&table(&l, "appointments")[0][3]).unwrap();
    let mut want = vec![
        "read(\"user:{users:3}\")".to_string(),
        "read(\"user:{users:2}\")".into(),
        "write(\"user:{users:2}\")".into(),
        format!("read(\"team:{{teams:{team}}}\")"),
    ];
    want.sort();
    assert_eq!(appointment.permissions, want);
    assert_eq!(s[1].documents[1], *appointment);
    // The project sample belongs to the admin.
    assert_eq!(s[0].documents[1].collection, "projects");
    assert!(
        s[0].documents[1]
            .permissions
            .contains(&"write(\"user:{users:1}\")".to_string())
    );
    // Sample emails are stored emails.
    for sample in s {
        assert_eq!(sample.email, sample.email.trim().to_lowercase());
    }
}

#[test]
fn a_permission_whose_placeholder_is_null_is_left_out() {
    let got = render(
        APPOINTMENT_PERMISSIONS,
        &[
            ("patient_id", None),
            ("clinician_id", Some("c".into())),
            ("team_id", Some("t".into())),
        ],
    );
    assert_eq!(got, ["read(\"team:t\")", "read(\"user:c\")", "write(\"user:c\")"]);
}

// ---- The generator's copy of the rules is the fixture's. -----------------------------------

fn fixture(path: &str) -> toml::Value {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/appwrite")
        .join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn strings(v: &toml::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn step_file(name: &str) -> toml::Value {
    let version = STEPS.iter().find(|(_, n)| *n == name).unwrap().0;
    fixture(&format!("migrations/{version}_{name}/step.toml"))
}

#[test]
fn the_rules_here_are_the_fixtures_rules() {
    let dirs: Vec<String> =
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/appwrite/migrations"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    let mut want: Vec<String> = STEPS.iter().map(|(v, n)| format!("{v}_{n}")).collect();
    let mut got = dirs;
    want.sort();
    got.sort();
    assert_eq!(got, want, "the fixture's step folders");

    let config = fixture("cutover.toml");
    for (bucket, max, mime) in BUCKETS {
        let b = &config["buckets"][*bucket];
        assert_eq!(b["max_bytes"].as_integer(), Some(*max as i64), "{bucket}");
        assert_eq!(strings(&b["mime"]), mime.to_vec(), "{bucket}");
    }

    let users = step_file("users");
    assert_eq!(users["kind"].as_str(), Some("users"));
    assert_eq!(users["users"]["on_unknown_role"].as_str(), Some("reject"));
    let rp = users["users"]["role_permissions"].as_table().unwrap();
    assert_eq!(rp.len(), ROLE_PERMISSIONS.len());
    for (role, perms) in ROLE_PERMISSIONS {
        assert_eq!(strings(&rp[*role]), perms.to_vec(), "{role}");
    }
    let known: Vec<&str> = rp.keys().map(String::as_str).filter(|r| *r != "*").collect();
    assert_eq!(known, ROLES);

    let appointments = step_file("appointments");
    assert_eq!(
        strings(&appointments["target"]["permissions"]),
        APPOINTMENT_PERMISSIONS.to_vec()
    );
    assert_eq!(
        appointments["target"]["max_document_bytes"].as_integer(),
        Some(MAX_DOCUMENT_BYTES as i64)
    );
    let embed = &appointments["embed"][0];
    assert_eq!(embed["max_items"].as_integer(), Some(50));
    assert_eq!(
        strings(&step_file("projects")["target"]["permissions"]),
        PROJECT_PERMISSIONS.to_vec()
    );

    for (bucket, _, _) in BUCKETS {
        let s = step_file(&format!("files_{bucket}"));
        let query = s["source"]["query"].as_str().unwrap();
        assert!(query.ends_with(&format!("WHERE bucket = '{bucket}'")), "{query}");
        let fields = s["fields"].as_array().unwrap();
        let last = fields.last().unwrap();
        assert_eq!(last["target"].as_str(), Some("storage_key"), "store last: {bucket}");
        assert_eq!(last["transforms"][0]["store_file"]["bucket"].as_str(), Some(*bucket));
        // The owner lookup comes first: a file of a rejected account waits before any bucket rule.
        assert_eq!(fields[1]["target"].as_str(), Some("owner_id"));
    }

    let cfg = step_file("config");
    assert_eq!(cfg["config"]["unmapped"].as_str(), Some("reject"));
    let keys = cfg["config"]["keys"].as_table().unwrap();
    assert_eq!(keys.len(), CONFIG_KEYS.len());
    for (old, new) in CONFIG_KEYS {
        assert_eq!(keys[*old].as_str(), Some(*new), "{old}");
    }
    let types = cfg["config"]["types"].as_table().unwrap();
    assert_eq!(types.len(), CONFIG_TYPES.len());
    for (key, ty) in CONFIG_TYPES {
        assert_eq!(types[*key].as_str(), Some(*ty), "{key}");
    }
}

#[test]
fn urls_must_be_postgres_and_errors_hide_the_password() {
    let e = connect_options("mysql://u:Secret9@h/db").unwrap_err().to_string();
    assert!(e.contains("needs a PostgreSQL URL"), "{e}");
    assert!(!e.contains("Secret9"), "{e}");
    assert!(connect_options("postgres://u:pw@localhost/db").is_ok());
    assert!(build(&AppwriteConfig { users: 2, seed: 1 }).is_err());
}
