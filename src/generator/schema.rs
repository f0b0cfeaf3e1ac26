//! The legacy schema, copied verbatim from `SCENARIO-clinic.md` (comments included, so the
//! `sqlite_master.sql` text of a generated file reads like the scenario).

/// The legacy clinic schema: one `CREATE TABLE` per legacy table, in dependency order.
pub const LEGACY_SCHEMA: &str = r#"
CREATE TABLE users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL,            -- mixed case, stray spaces; a few case-insensitive duplicates
  full_name TEXT,
  role TEXT NOT NULL,             -- 'parent','clinician','admin', also legacy spellings: 'Parent','PARENT','doctor','Doctor'
  password_hash TEXT,             -- bcrypt string: a secret, never logged, shown or exported
  phone TEXT,
  created_at TEXT NOT NULL        -- ISO-8601
);
CREATE TABLE patients (
  id TEXT PRIMARY KEY,
  clinician_id TEXT,              -- users.id of a clinician
  mrn TEXT,
  first_name TEXT, last_name TEXT,
  date_of_birth TEXT,             -- 'YYYY-MM-DD', or 'MM/DD/YYYY', or '' / NULL
  gender TEXT,                    -- 'M','F','male','female','U','other','' ...
  email TEXT, phone TEXT,
  address_line1 TEXT, city TEXT, state TEXT, postal_code TEXT, country TEXT,
  allergies TEXT,                 -- comma-separated, may be empty
  clinical_notes TEXT,
  is_active INTEGER,              -- 0/1
  created_at TEXT, updated_at TEXT
);
CREATE TABLE children (
  id TEXT PRIMARY KEY,
  parent_id TEXT NOT NULL,        -- users.id of a parent
  first_name TEXT, last_name TEXT, date_of_birth TEXT, gender TEXT,
  linked_patient_id TEXT,         -- NULL, or a patients.id, or an id that does not exist (dangling)
  parent_notes TEXT,
  created_at TEXT, updated_at TEXT
);
CREATE TABLE parent_children (    -- parent ↔ patient links; a patient may have several parents
  id TEXT PRIMARY KEY,
  parent_id TEXT NOT NULL,
  patient_id TEXT NOT NULL,
  relationship TEXT,
  created_at TEXT
);
CREATE TABLE consent_grants (
  id TEXT PRIMARY KEY,
  parent_id TEXT NOT NULL,
  patient_id TEXT NOT NULL,       -- may name a patient that does not exist (orphan)
  clinician_id TEXT,
  scope TEXT,
  granted_at TEXT, revoked_at TEXT
);
CREATE TABLE screenings (         -- exactly one of patient_id / child_id is set
  id TEXT PRIMARY KEY, patient_id TEXT, child_id TEXT,
  kind TEXT, score REAL, performed_at TEXT
);
CREATE TABLE appointments (
  id TEXT PRIMARY KEY, patient_id TEXT, clinician_id TEXT,
  scheduled_at TEXT, status TEXT, notes TEXT
);
CREATE TABLE documents (
  id TEXT PRIMARY KEY, patient_id TEXT,
  file_name TEXT, mime_type TEXT,
  sha256 TEXT,                    -- hex digest of content as recorded by the legacy system (a few are wrong)
  content BLOB,
  uploaded_at TEXT
);
"#;

/// Legacy tables and their columns, in schema order (also the insert column order).
pub const LEGACY_TABLES: &[(&str, &[&str])] = &[
    (
        "users",
        &[
            "id",
            "email",
            "full_name",
            "role",
            "password_hash",
            "phone",
            "created_at",
        ],
    ),
    (
        "patients",
        &[
            "id",
            "clinician_id",
            "mrn",
            "first_name",
            "last_name",
            "date_of_birth",
            "gender",
            "email",
            "phone",
            "address_line1",
            "city",
            "state",
            "postal_code",
            "country",
            "allergies",
            "clinical_notes",
            "is_active",
            "created_at",
            "updated_at",
        ],
    ),
    (
        "children",
        &[
            "id",
            "parent_id",
            "first_name",
            "last_name",
            "date_of_birth",
            "gender",
            "linked_patient_id",
            "parent_notes",
            "created_at",
            "updated_at",
        ],
    ),
    (
        "parent_children",
        &["id", "parent_id", "patient_id", "relationship", "created_at"],
    ),
    (
        "consent_grants",
        &[
            "id",
            "parent_id",
            "patient_id",
            "clinician_id",
            "scope",
            "granted_at",
            "revoked_at",
        ],
    ),
    (
        "screenings",
        &["id", "patient_id", "child_id", "kind", "score", "performed_at"],
    ),
    (
        "appointments",
        &["id", "patient_id", "clinician_id", "scheduled_at", "status", "notes"],
    ),
    (
        "documents",
        &[
            "id",
            "patient_id",
            "file_name",
            "mime_type",
            "sha256",
            "content",
            "uploaded_at",
        ],
    ),
];

/// The columns of one legacy table (empty for an unknown name).
pub(crate) fn columns(table: &str) -> &'static [&'static str] {
    LEGACY_TABLES
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, c)| *c)
        .unwrap_or(&[])
}
