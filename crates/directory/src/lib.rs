//! The company directory (LDAP or Active Directory): a client that binds, authenticates
//! users and reads users and groups, and a pure sync plan that compares a directory
//! snapshot with Berth's accounts and team memberships.
//!
//! Modules:
//! - [`config`]: [`DirectoryConfig`], what to connect to and how to read it, with the
//!   group-to-team mapping ([`SyncPolicy`]).
//! - [`dn`]: [`dn::normalize_dn`], distinguished names parsed per RFC 4514 and written in
//!   one canonical form, so that every spelling of a DN compares equal.
//! - [`names`]: [`names::account_name_for`], the documented mapping from a directory
//!   login name to an account name that fits Berth's one name rule.
//! - [`snapshot`]: [`DirectorySnapshot`], users and groups as read at one moment.
//! - [`sync`]: [`plan`], the pure diff from a snapshot to account and team changes.
//! - [`client`]: [`DirectoryClient`], the LDAP client (ldap3 over rustls) that logs users
//!   in and reads snapshots, with errors that tell an unreachable directory from a refusal.

pub mod client;
pub mod config;
pub mod dn;
pub mod names;
pub mod snapshot;
pub mod sync;

pub use client::{DirectoryClient, DirectoryError, DirectoryStatus, DirectoryTraffic};
pub use config::{
    ConfigError, CreateUsers, DirectoryConfig, GroupMapping, MembershipMode, Secret, SyncPolicy,
    TeamRef, TlsConfig,
};
pub use snapshot::{DirectoryGroup, DirectorySnapshot, DirectoryUser};
pub use sync::{
    plan, BerthUser, IdAdoption, Membership, NewUser, Origin, ProfileUpdate, SyncError, SyncPlan,
};
