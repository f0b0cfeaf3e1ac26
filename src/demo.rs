//! `cutover demo`: the bundled clinic project (fixtures/clinic, compiled in so the binary works
//! from any folder) with a freshly generated legacy database.

use color_eyre::eyre::{Result, eyre};
use std::path::Path;

/// Files of fixtures/clinic, relative to the project folder.
pub const CLINIC_FILES: &[(&str, &str)] = &[
    ("cutover.toml", include_str!("../fixtures/clinic/cutover.toml")),
    (
        "migrations/20250101T090000_create_v2_schema/down.sql",
        include_str!("../fixtures/clinic/migrations/20250101T090000_create_v2_schema/down.sql"),
    ),
    (
        "migrations/20250101T090000_create_v2_schema/up.sql",
        include_str!("../fixtures/clinic/migrations/20250101T090000_create_v2_schema/up.sql"),
    ),
    (
        "migrations/20250101T090000_create_v2_schema/up.mysql.sql",
        include_str!("../fixtures/clinic/migrations/20250101T090000_create_v2_schema/up.mysql.sql"),
    ),
    (
        "migrations/20250101T090100_accounts/step.toml",
        include_str!("../fixtures/clinic/migrations/20250101T090100_accounts/step.toml"),
    ),
    (
        "migrations/20250101T090200_persons/step.toml",
        include_str!("../fixtures/clinic/migrations/20250101T090200_persons/step.toml"),
    ),
    (
        "migrations/20250101T090300_child_views/step.toml",
        include_str!("../fixtures/clinic/migrations/20250101T090300_child_views/step.toml"),
    ),
    (
        "migrations/20250101T090400_link_views/step.toml",
        include_str!("../fixtures/clinic/migrations/20250101T090400_link_views/step.toml"),
    ),
    (
        "migrations/20250101T090500_clinician_views/step.toml",
        include_str!("../fixtures/clinic/migrations/20250101T090500_clinician_views/step.toml"),
    ),
    (
        "migrations/20250101T090600_access_grants/step.toml",
        include_str!("../fixtures/clinic/migrations/20250101T090600_access_grants/step.toml"),
    ),
    (
        "migrations/20250101T090700_patient_screenings/step.toml",
        include_str!("../fixtures/clinic/migrations/20250101T090700_patient_screenings/step.toml"),
    ),
    (
        "migrations/20250101T090800_child_screenings/step.toml",
        include_str!("../fixtures/clinic/migrations/20250101T090800_child_screenings/step.toml"),
    ),
    (
        "migrations/20250101T090900_appointments/step.toml",
        include_str!("../fixtures/clinic/migrations/20250101T090900_appointments/step.toml"),
    ),
    (
        "migrations/20250101T091000_documents/step.toml",
        include_str!("../fixtures/clinic/migrations/20250101T091000_documents/step.toml"),
    ),
    ("verify.toml", include_str!("../fixtures/clinic/verify.toml")),
];

/// Write the clinic project into `dir` (unless it already holds a project) and generate its
/// legacy database.
pub async fn create(dir: &Path, patients: u64, seed: u64, json: bool) -> Result<()> {
    if dir.join(crate::engine::config::CONFIG_FILE).exists() {
        if !json {
            println!("using the existing demo project in {}", dir.display());
        }
        return Ok(());
    }
    write_project(dir, CLINIC_FILES)?;
    let legacy = dir.join("legacy.db");
    if !legacy.exists() {
        if !json {
            println!("generating a legacy clinic database with {patients} patients (seed {seed})…");
        }
        let cfg = crate::generator::GeneratorConfig {
            patients,
            seed,
            ..Default::default()
        };
        crate::generator::generate(&legacy, &cfg).await?;
    }
    Ok(())
}

/// Write a bundled project's files into `dir`, its maintenance window opening now.
pub fn write_project(dir: &Path, files: &[(&str, &str)]) -> Result<()> {
    let now = chrono::Local::now().fixed_offset();
    for (rel, text) in files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| eyre!("cannot create {}: {e}", parent.display()))?;
        }
        let text = if *rel == crate::engine::config::CONFIG_FILE {
            window_from(text, now)
        } else {
            text.to_string()
        };
        std::fs::write(&p, text).map_err(|e| eyre!("cannot write {}: {e}", p.display()))?;
    }
    Ok(())
}

/// A bundled project is its fixture folder: the same files, the same text.
#[cfg(test)]
pub fn assert_embedded(fixture: &str, files: &[(&str, &str)]) {
    fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(fixture);
    let mut on_disk = Vec::new();
    walk(&base, &base, &mut on_disk);
    on_disk.sort();
    let mut embedded: Vec<String> = files.iter().map(|(p, _)| p.to_string()).collect();
    embedded.sort();
    assert_eq!(embedded, on_disk);
    for (rel, text) in files {
        assert_eq!(&std::fs::read_to_string(base.join(rel)).unwrap(), text, "{rel}");
    }
}

/// The demo's maintenance window opens now and closes in two hours (the fixture's own window
/// is a fixed night long past, which would make a fresh demo's header say it ended).
pub fn window_from(config: &str, now: chrono::DateTime<chrono::FixedOffset>) -> String {
    use chrono::Timelike;
    let start = now.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(now);
    let end = start + chrono::Duration::hours(2);
    let mut in_window = false;
    config
        .lines()
        .map(|line| {
            let t = line.trim_start();
            if t.starts_with('[') {
                in_window = t.starts_with("[window]");
            }
            if in_window && t.starts_with("start") && t.contains('=') {
                format!("start = \"{}\"", start.to_rfc3339())
            } else if in_window && t.starts_with("end") && t.contains('=') {
                format!("end = \"{}\"", end.to_rfc3339())
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    /// A fresh demo's window opens now and ends two hours later, and nothing else changes.
    #[test]
    fn the_demo_window_starts_now_and_lasts_two_hours() {
        let now = chrono::DateTime::parse_from_rfc3339("2027-03-04T10:17:42+01:00").unwrap();
        let config = super::window_from(super::CLINIC_FILES[0].1, now);
        let parsed: toml::Value = toml::from_str(&config).unwrap();
        assert_eq!(parsed["window"]["start"].as_str(), Some("2027-03-04T10:17:00+01:00"));
        assert_eq!(parsed["window"]["end"].as_str(), Some("2027-03-04T12:17:00+01:00"));
        assert_eq!(parsed["project"]["name"].as_str(), Some("clinic-v2"));
        assert_eq!(parsed["source"]["url"].as_str(), Some("sqlite://legacy.db"));
    }

    /// Every file of fixtures/clinic is compiled into the demo, so the demo is the fixture.
    #[test]
    fn every_fixture_file_is_embedded() {
        super::assert_embedded("fixtures/clinic", super::CLINIC_FILES);
    }
}
