//! The legacy application schema on PostgreSQL: what an in-house scheduling app left behind
//! before the move to a document store. No foreign keys (the application checked them, mostly);
//! files live in the database as `bytea`.

/// Legacy tables in dependency order, with their columns (in INSERT order) and SQL types.
pub const TABLES: &[(&str, &[(&str, &str)])] = &[
    (
        "teams",
        &[
            ("id", "INTEGER PRIMARY KEY"),
            ("name", "TEXT NOT NULL"),
            ("created_at", "TIMESTAMP NOT NULL"),
        ],
    ),
    (
        "users",
        &[
            ("id", "INTEGER PRIMARY KEY"),
            ("email", "TEXT NOT NULL"),
            ("full_name", "TEXT"),
            ("password_hash", "TEXT NOT NULL"),
            ("roles", "TEXT NOT NULL"),
            ("team_id", "INTEGER"),
            ("created_at", "TIMESTAMP NOT NULL"),
        ],
    ),
    (
        "projects",
        &[
            ("id", "INTEGER PRIMARY KEY"),
            ("name", "TEXT NOT NULL"),
            ("owner_user_id", "INTEGER"),
            ("team_id", "INTEGER"),
            ("description", "TEXT"),
            ("created_at", "TIMESTAMP NOT NULL"),
        ],
    ),
    (
        "appointments",
        &[
            ("id", "INTEGER PRIMARY KEY"),
            ("patient_user_id", "INTEGER"),
            ("clinician_user_id", "INTEGER"),
            ("team_id", "INTEGER"),
            ("starts_at", "TIMESTAMP NOT NULL"),
            ("ends_at", "TIMESTAMP NOT NULL"),
            ("status", "TEXT NOT NULL"),
            ("created_at", "TIMESTAMP NOT NULL"),
        ],
    ),
    (
        "appointment_notes",
        &[
            ("id", "INTEGER PRIMARY KEY"),
            ("appointment_id", "INTEGER NOT NULL"),
            ("body", "TEXT NOT NULL"),
            ("written_at", "TIMESTAMP NOT NULL"),
        ],
    ),
    (
        "files",
        &[
            ("id", "INTEGER PRIMARY KEY"),
            ("bucket", "TEXT NOT NULL"),
            ("owner_user_id", "INTEGER"),
            ("file_name", "TEXT NOT NULL"),
            ("mime_type", "TEXT"),
            ("content", "BYTEA NOT NULL"),
            ("created_at", "TIMESTAMP NOT NULL"),
        ],
    ),
    (
        "settings",
        &[
            ("key", "TEXT PRIMARY KEY"),
            ("value", "TEXT"),
            ("updated_at", "TIMESTAMP NOT NULL"),
        ],
    ),
];

/// Names of the legacy tables, in dependency order.
pub fn table_names() -> impl Iterator<Item = &'static str> {
    TABLES.iter().map(|(t, _)| *t)
}

/// The columns of `table` (empty for an unknown name).
pub fn columns(table: &str) -> &'static [(&'static str, &'static str)] {
    TABLES.iter().find(|(t, _)| *t == table).map(|(_, c)| *c).unwrap_or(&[])
}

/// `CREATE TABLE` of `table`.
pub fn create_statement(table: &str) -> String {
    let cols: Vec<String> = columns(table).iter().map(|(c, ty)| format!("  {c} {ty}")).collect();
    format!("CREATE TABLE {table} (\n{}\n)", cols.join(",\n"))
}
