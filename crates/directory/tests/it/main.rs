//! The directory client's integration tests, one test binary: against slapd (from
//! `berth-testkit`) and against Samba's Active Directory.

mod samba_ad;
mod slapd;
