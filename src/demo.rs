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
    for (rel, text) in CLINIC_FILES {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| eyre!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&p, text).map_err(|e| eyre!("cannot write {}: {e}", p.display()))?;
    }
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

#[cfg(test)]
mod tests {
    /// Every file of fixtures/clinic is compiled into the demo, so the demo is the fixture.
    #[test]
    fn every_fixture_file_is_embedded() {
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
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clinic");
        let mut on_disk = Vec::new();
        walk(&base, &base, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = super::CLINIC_FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }
}
