//! `cutover demo --import`: the bundled import project (fixtures/import, compiled in so the
//! binary works from any folder) with a freshly generated export folder.

use std::path::Path;

use color_eyre::eyre::Result;

use super::{ImportConfig, ImportManifest, OrdersFormat, generate};

/// Files of fixtures/import, relative to the project folder.
pub const IMPORT_FILES: &[(&str, &str)] = &[
    ("cutover.toml", include_str!("../../../fixtures/import/cutover.toml")),
    (
        "migrations/20250301T090000_create_tables/up.sql",
        include_str!("../../../fixtures/import/migrations/20250301T090000_create_tables/up.sql"),
    ),
    (
        "migrations/20250301T090000_create_tables/down.sql",
        include_str!("../../../fixtures/import/migrations/20250301T090000_create_tables/down.sql"),
    ),
    (
        "migrations/20250301T090100_patients/step.toml",
        include_str!("../../../fixtures/import/migrations/20250301T090100_patients/step.toml"),
    ),
    (
        "migrations/20250301T090200_orders/step.toml",
        include_str!("../../../fixtures/import/migrations/20250301T090200_orders/step.toml"),
    ),
    ("verify.toml", include_str!("../../../fixtures/import/verify.toml")),
];

/// The export folder inside the demo project (the fixture's `file://export/`).
pub const EXPORT_DIR: &str = "export";

/// Writes the import project into `dir` (unless it already holds one) and generates its
/// export folder with `patients` patients and 2.5 orders per patient. Returns the manifest
/// when it generated one.
pub fn create(dir: &Path, patients: u64, seed: u64, json: bool) -> Result<Option<ImportManifest>> {
    if dir.join(crate::engine::config::CONFIG_FILE).exists() {
        if !json {
            println!("using the existing import demo project in {}", dir.display());
        }
        return Ok(None);
    }
    crate::demo::write_project(dir, IMPORT_FILES)?;
    let orders = patients.saturating_mul(5) / 2;
    if !json {
        println!("generating an export folder with {patients} patients and {orders} orders (seed {seed})…");
    }
    let cfg = ImportConfig {
        patients,
        orders,
        seed,
        orders_format: OrdersFormat::Xlsx,
        ..ImportConfig::default()
    };
    Ok(Some(generate(&dir.join(EXPORT_DIR), &cfg)?))
}

#[cfg(test)]
mod tests {
    /// Every file of fixtures/import is compiled into the demo, so the demo is the fixture.
    #[test]
    fn every_fixture_file_is_embedded() {
        crate::demo::assert_embedded("fixtures/import", super::IMPORT_FILES);
    }
}
