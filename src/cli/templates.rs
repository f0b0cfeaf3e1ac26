//! Templates `cutover init` and `cutover create` write.

pub const DATA_STEP: &str = include_str!("../../assets/templates/data.step.toml");
pub const MERGE_STEP: &str = include_str!("../../assets/templates/merge.step.toml");

pub fn schema_up(name: &str) -> String {
    format!(
        "-- {name}: schema change, run in one transaction with its ledger entry.\n-- Statements are split on semicolons; a failure names the statement.\n\n"
    )
}

pub fn schema_down(name: &str) -> String {
    format!("-- {name}: undo everything up.sql did, in reverse order.\n\n")
}
