//! The legacy healthcare schema on MariaDB: what an old practice-management system left behind.
//! No foreign keys (the application checked them, mostly); dates the old front end could not
//! read are stored as `0000-00-00`; every table has an `updated_at` that MariaDB bumps on every
//! update (the change cursor of an incremental sync).

/// Legacy tables in dependency order.
pub const TABLES: &[&str] = &[
    "specialties",
    "physicians",
    "patients",
    "appointments",
    "medical_records",
    "record_files",
];

const UPDATED_AT: &str = "updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)";

/// One `CREATE TABLE` per legacy table, in [`TABLES`] order.
pub fn create_statements() -> Vec<String> {
    let opts = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";
    vec![
        format!(
            "CREATE TABLE specialties (
  id INT PRIMARY KEY,
  name VARCHAR(100) NOT NULL,
  {UPDATED_AT},
  KEY specialties_updated_at (updated_at)
) {opts}"
        ),
        format!(
            "CREATE TABLE physicians (
  id INT PRIMARY KEY,
  first_name VARCHAR(100),
  last_name VARCHAR(100),
  specialty_id INT COMMENT 'a few name a specialty that was deleted',
  email VARCHAR(255),
  license_no VARCHAR(20),
  {UPDATED_AT},
  KEY physicians_updated_at (updated_at)
) {opts}"
        ),
        format!(
            "CREATE TABLE patients (
  id INT PRIMARY KEY,
  first_name VARCHAR(100),
  last_name VARCHAR(100),
  date_of_birth DATE COMMENT '0000-00-00 when the front end had none',
  email VARCHAR(255) NOT NULL,
  phone VARCHAR(40),
  {UPDATED_AT},
  deleted_at DATETIME(6) NULL COMMENT 'soft delete',
  KEY patients_updated_at (updated_at)
) {opts}"
        ),
        format!(
            "CREATE TABLE appointments (
  id INT PRIMARY KEY,
  patient_id INT COMMENT 'a few name a patient that is gone',
  physician_id INT,
  starts_at DATETIME,
  status VARCHAR(20),
  notes TEXT,
  {UPDATED_AT},
  KEY appointments_updated_at (updated_at)
) {opts}"
        ),
        format!(
            "CREATE TABLE medical_records (
  id INT PRIMARY KEY,
  patient_id INT,
  physician_id INT,
  recorded_on DATE,
  diagnosis VARCHAR(20) COMMENT 'ICD-10, as typed',
  notes TEXT,
  {UPDATED_AT},
  KEY medical_records_updated_at (updated_at)
) {opts}"
        ),
        format!(
            "CREATE TABLE record_files (
  id INT PRIMARY KEY,
  record_id INT,
  file_name VARCHAR(255),
  mime_type VARCHAR(100),
  content LONGBLOB,
  {UPDATED_AT},
  KEY record_files_updated_at (updated_at)
) {opts}"
        ),
    ]
}

/// Insert columns per table (`updated_at` is set by the generator so a seed gives one database;
/// `deleted_at` is left NULL).
pub fn columns(table: &str) -> &'static [&'static str] {
    match table {
        "specialties" => &["id", "name", "updated_at"],
        "physicians" => &[
            "id",
            "first_name",
            "last_name",
            "specialty_id",
            "email",
            "license_no",
            "updated_at",
        ],
        "patients" => &[
            "id",
            "first_name",
            "last_name",
            "date_of_birth",
            "email",
            "phone",
            "updated_at",
        ],
        "appointments" => &[
            "id",
            "patient_id",
            "physician_id",
            "starts_at",
            "status",
            "notes",
            "updated_at",
        ],
        "medical_records" => &[
            "id",
            "patient_id",
            "physician_id",
            "recorded_on",
            "diagnosis",
            "notes",
            "updated_at",
        ],
        "record_files" => &["id", "record_id", "file_name", "mime_type", "content", "updated_at"],
        _ => &[],
    }
}
