//! The access decision's integration tests, one test binary: the reviewed table
//! (`tests/rbac_decisions.tsv`) and the properties.

mod rbac_props;
mod rbac_table;
