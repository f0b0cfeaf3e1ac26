//! Merge steps: two sources that may describe one entity (side A, side B linking to it). Each
//! A row becomes an entity; each B row whose link names an A row merges into that entity
//! (blank fields filled from B, compared fields checked, every disagreement a discrepancy for
//! review); every other B row becomes an entity of its own. Both sides' legacy keys map to the
//! entity in the ID map. Nothing here knows about clinics: the step file says it all.

mod entity;
mod linked;
mod phases;
mod retry;
mod spec;

pub use entity::apply_defaults;
pub use phases::run;
pub use retry::{a_own_values, retry_row};
pub use spec::{FollowsB, MergeField, MergeIdMap, MergeStep, MergeStepFile, MergeTarget, SideSpec};

#[cfg(test)]
mod tests {
    use super::entity::*;
    use super::spec::*;
    use crate::engine::value::Value;

    #[test]
    fn the_template_parses() {
        let m = MergeStep::parse(
            "20250101T000000",
            include_str!("../../../../assets/templates/merge.step.toml"),
        )
        .unwrap();
        assert_eq!(m.a.map_name.as_deref(), Some("patients"));
        assert_eq!(m.b.map_name.as_deref(), Some("children"));
        assert_eq!(m.a.target_columns, m.b.target_columns);
    }

    #[test]
    fn blanks_fill_and_only_real_differences_are_discrepancies() {
        let m = MergeStep::parse(
            "v",
            "kind = \"merge\"\n[a]\ntable = \"p\"\nkey = \"id\"\n[b]\ntable = \"c\"\nkey = \"id\"\nlink = \"pid\"\n[target]\ntable = \"t\"\n[id_map]\ncolumn = \"id\"\n[[fields]]\ntarget = \"name\"\na = \"name\"\nb = \"name\"\ncompare = true\n[[fields]]\ntarget = \"city\"\na = \"city\"\nb = \"city\"\n",
        )
        .unwrap();
        // columns: id, name, city
        let own = vec![Value::Text("e1".into()), Value::Text(" Ann ".into()), Value::Null];
        let mut entity = own.clone();
        let b = vec![Value::Null, Value::Text("ann".into()), Value::Text("Oslo".into())];
        assert!(
            merge_into(&m, &mut entity, &own, &b, "e1", "p1", "c1").is_empty(),
            "case and spaces are not a difference"
        );
        assert_eq!(entity[2], Value::Text("Oslo".into()), "a blank of A is filled from B");
        let b2 = vec![Value::Null, Value::Text("Anna".into()), Value::Text("Bergen".into())];
        let ds = merge_into(&m, &mut entity, &own, &b2, "e1", "p1", "c2");
        assert_eq!(ds.len(), 1);
        assert_eq!(ds[0].field, "name");
        assert_eq!(entity[2], Value::Text("Oslo".into()), "an already filled value is kept");
    }
}
