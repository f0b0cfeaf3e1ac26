//! Steps: what each kind of migration does when it runs and when it is rolled back. Siblings
//! never import each other; what spans kinds (retry, rollback, review) lives in `ops`.

pub mod data;
pub mod index_deferral;
pub mod key_deferral;
pub mod merge;
pub mod schema;
