//! The metadata stores' integration tests, one test binary: the conformance suites against
//! SQLite and PostgreSQL, plus each one's own cases.

mod postgres;
mod sqlite;
