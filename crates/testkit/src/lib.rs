//! Test support shared by the integration tests of several crates (a dev-dependency only,
//! never linked into a production library):
//!
//! - [`slapd`]: a throwaway OpenLDAP server per test, loaded with one of the two sample
//!   directories (plain OpenLDAP, Active-Directory-like).
//! - [`wire`]: media types and credentials as clients and headers carry them.
//! - [`world`] (feature `world`): the registry in process, with an organisation, repositories
//!   and a caller of every kind, behind the router the test names; for the http crate.
//! - [`server`], [`clients`], [`images`], [`certs`] (feature `e2e`): the real `berth` binary
//!   on a free port over either store pair, unmodified registry clients with isolated
//!   configuration, small random images built in Rust, and throwaway TLS certificates; for
//!   the binary's end-to-end tests, which take them all with `use berth_testkit::e2e::*`.
//!
//! The kit depends on no crate whose tests use it for what they test (`berth-http`,
//! `berth`): the http crate hands [`world::World`] its router, and the binary is found
//! where cargo built it ([`server::berth_bin`]).
//!
//! Services that live for the whole run (PostgreSQL, S3, the Docker engine, crane, the
//! reference registry and notary-server) are started by `cargo xtask peers`, not here.

#[cfg(feature = "e2e")]
pub mod certs;
#[cfg(feature = "e2e")]
pub mod clients;
#[cfg(feature = "e2e")]
pub mod images;
#[cfg(feature = "e2e")]
pub mod nginx;
#[cfg(feature = "e2e")]
pub mod server;
pub mod slapd;
pub mod wire;
#[cfg(feature = "world")]
pub mod world;

pub use slapd::{Directory, Slapd};

/// Everything the end-to-end tests use, for one glob import.
#[cfg(feature = "e2e")]
pub mod e2e {
    pub use crate::both_backends;
    pub use crate::certs;
    pub use crate::clients::*;
    pub use crate::images::*;
    pub use crate::nginx::Nginx;
    pub use crate::server::*;
    pub use crate::wire::*;
}
