//! An update of one GUN's trust data, validated as Notary's server does
//! (`server/handlers/validation.go`): the uploaded root (rotation signed by the old root's
//! threshold and its own, certificates for the GUN), targets and delegations (signed by
//! their parent's keys, declared by their parent), the snapshot (uploaded and matching, or
//! made by the server with the key it holds), and a new timestamp, always the server's.
//! The result is every file to store, applied together or not at all; versions strictly
//! above the stored ones are the store's check.

use crate::keys::PublicKey;
use crate::metadata::{FormatError, RoleName, Root, SignedFile, Snapshot, Targets, Timestamp};
use crate::sign::{self, ServerKey};
use crate::verify::{check_threshold, valid_root_cert};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// What is stored for a GUN now (the current version of each role).
#[derive(Debug, Clone, Default)]
pub struct Current {
    pub root: Option<SignedFile<Root>>,
    /// `targets` and its delegations.
    pub targets: BTreeMap<RoleName, SignedFile<Targets>>,
    pub snapshot: Option<SignedFile<Snapshot>>,
    pub timestamp: Option<SignedFile<Timestamp>>,
}

/// The private keys the server holds for a GUN, by role: every key it made, of which the
/// root names the one in use.
#[derive(Debug, Clone, Default)]
pub struct HeldKeys {
    pub snapshot: Vec<ServerKey>,
    pub timestamp: Vec<ServerKey>,
}

impl HeldKeys {
    /// The held key of `role` that `root` lists for it.
    pub fn for_role<'a>(&'a self, root: &Root, role: &str) -> Option<&'a ServerKey> {
        let held = match role {
            RoleName::SNAPSHOT => &self.snapshot,
            RoleName::TIMESTAMP => &self.timestamp,
            _ => return None,
        };
        let listed = &root.roles.get(role)?.keyids;
        held.iter().find(|k| listed.contains(&k.public().key_id()))
    }
}

/// A file to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    pub role: RoleName,
    pub version: i64,
    pub bytes: Vec<u8>,
}

/// Why an update was refused, as Notary names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// A part whose name is no role (`INVALID_ROLE`).
    #[error("invalid role: {0}")]
    InvalidRole(String),
    /// A part that is not metadata (`MALFORMED_JSON`).
    #[error("{role}: {error}")]
    Malformed { role: String, error: FormatError },
    #[error("{0}")]
    Validation(String),
    #[error("{msg}")]
    BadHierarchy { missing: String, msg: String },
    #[error("{0}")]
    BadRoot(String),
    #[error("{0}")]
    BadTargets(String),
    #[error("{0}")]
    BadSnapshot(String),
}

impl UpdateError {
    /// The `detail` of Notary's `INVALID_UPDATE` error, as its client parses it back into
    /// a typed error (`{"Name": "ErrBadRoot", "Error": {"Msg": ...}}`); `None` for the
    /// errors that have their own code.
    pub fn detail(&self) -> Option<serde_json::Value> {
        use serde_json::json;
        let (name, error) = match self {
            UpdateError::InvalidRole(_) | UpdateError::Malformed { .. } => return None,
            UpdateError::Validation(m) => ("ErrValidation", json!({"Msg": m})),
            UpdateError::BadHierarchy { missing, msg } => {
                ("ErrBadHierarchy", json!({"Missing": missing, "Msg": msg}))
            }
            UpdateError::BadRoot(m) => ("ErrBadRoot", json!({"Msg": m})),
            UpdateError::BadTargets(m) => ("ErrBadTargets", json!({"Msg": m})),
            UpdateError::BadSnapshot(m) => ("ErrBadSnapshot", json!({"Msg": m})),
        };
        Some(json!({"Name": name, "Error": error}))
    }
}

fn parse<T: crate::metadata::Role>(
    role: &RoleName,
    bytes: &[u8],
) -> Result<SignedFile<T>, UpdateError> {
    SignedFile::parse(bytes).map_err(|error| UpdateError::Malformed {
        role: role.to_string(),
        error,
    })
}

/// Validates `uploads` (role name as the client sent it -> bytes) against `current` for
/// `gun` at `now`, and returns every file to store: the uploaded ones, the snapshot (the
/// uploaded one or the server's) and the server's new timestamp.
pub fn validate(
    gun: &str,
    now: DateTime<Utc>,
    current: &Current,
    uploads: &BTreeMap<String, Vec<u8>>,
    keys: &HeldKeys,
) -> Result<Vec<NewFile>, UpdateError> {
    let mut roles = BTreeMap::new();
    for (name, bytes) in uploads {
        let clean = name.strip_suffix(".json").unwrap_or(name);
        let role = RoleName::parse(clean).ok_or_else(|| UpdateError::InvalidRole(name.clone()))?;
        roles.insert(role, bytes.as_slice());
    }
    // The client's timestamp is ignored: the server always makes its own.
    roles.remove(&RoleName::parse(RoleName::TIMESTAMP).expect("base role"));
    let mut out = Vec::new();

    // The root: the uploaded one, validated against the stored one, or the stored one.
    let new_root = match roles.get(&base(RoleName::ROOT)) {
        Some(bytes) => {
            let root: SignedFile<Root> = parse(&base(RoleName::ROOT), bytes)?;
            validate_root(gun, now, current.root.as_ref(), &root)?;
            Some(root)
        }
        None => None,
    };
    let root = match (&new_root, &current.root) {
        (Some(r), _) | (None, Some(r)) => r,
        (None, None) => {
            return Err(UpdateError::Validation(
                "no pre-existing root and no root provided in update.".into(),
            ))
        }
    };
    let mut written: BTreeMap<RoleName, Vec<u8>> = BTreeMap::new();
    if let Some(r) = &new_root {
        written.insert(base(RoleName::ROOT), r.bytes.clone());
        out.push(new_file(base(RoleName::ROOT), r.version(), &r.bytes));
    }

    // Targets and delegations, shallowest first, each checked against its parent (from
    // this update or the store).
    let mut targets_roles: Vec<&RoleName> = roles
        .keys()
        .filter(|r| r.as_str() == RoleName::TARGETS || r.is_delegation())
        .collect();
    targets_roles.sort_by_key(|r| (r.depth(), r.as_str().to_string()));
    let mut accepted: BTreeMap<RoleName, SignedFile<Targets>> = BTreeMap::new();
    for role in targets_roles {
        let file: SignedFile<Targets> = parse(role, roles[role])?;
        validate_targets(now, &root.signed, role, &file, |parent| {
            accepted.get(parent).or_else(|| current.targets.get(parent))
        })?;
        written.insert(role.clone(), file.bytes.clone());
        out.push(new_file(role.clone(), file.version(), &file.bytes));
        accepted.insert(role.clone(), file);
    }

    // The snapshot: uploaded and matching what this update wrote, or the server's.
    let snapshot = match roles.get(&base(RoleName::SNAPSHOT)) {
        Some(bytes) => {
            let snap: SignedFile<Snapshot> = parse(&base(RoleName::SNAPSHOT), bytes)?;
            validate_snapshot(now, &root.signed, &snap, &written)?;
            snap
        }
        None => {
            let key = keys
                .for_role(&root.signed, RoleName::SNAPSHOT)
                .ok_or_else(|| UpdateError::BadHierarchy {
                    missing: RoleName::SNAPSHOT.into(),
                    msg: "no snapshot was included in update and server does not hold current \
                          snapshot key for repository"
                        .into(),
                })?;
            // A first snapshot names every role stored or written.
            let mut named = written.clone();
            if current.snapshot.is_none() {
                if let Some(r) = &current.root {
                    named
                        .entry(base(RoleName::ROOT))
                        .or_insert_with(|| r.bytes.clone());
                }
                for (role, file) in &current.targets {
                    named
                        .entry(role.clone())
                        .or_insert_with(|| file.bytes.clone());
                }
            }
            let prev = current.snapshot.as_ref().map(|s| &s.signed);
            sign::snapshot(prev, &named, key, now)
        }
    };
    out.push(new_file(
        base(RoleName::SNAPSHOT),
        snapshot.version(),
        &snapshot.bytes,
    ));

    // The timestamp, always the server's.
    let key = keys
        .for_role(&root.signed, RoleName::TIMESTAMP)
        .ok_or_else(|| UpdateError::BadRoot("no timestamp keys exist on the server".into()))?;
    let prev = current.timestamp.as_ref().map(|t| &t.signed);
    let ts = sign::timestamp(prev, &snapshot.bytes, key, now);
    out.push(new_file(base(RoleName::TIMESTAMP), ts.version(), &ts.bytes));
    Ok(out)
}

fn base(name: &str) -> RoleName {
    RoleName::parse(name).expect("a base role's name")
}

fn new_file(role: RoleName, version: i64, bytes: &[u8]) -> NewFile {
    NewFile {
        role,
        version,
        bytes: bytes.to_vec(),
    }
}

fn check_common(
    role: &str,
    version: i64,
    expires: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    if version < 1 {
        return Err(format!("{role}: version {version} is below 1"));
    }
    if expires < now {
        return Err(format!("{role} expired at {}", expires.to_rfc3339()));
    }
    Ok(())
}

/// Notary's root checks: the four base roles, each key id listed, certificates for the GUN,
/// a version at most one past the stored one, and a rotation signed by the previous root's
/// threshold of its keys as well as by its own.
fn validate_root(
    gun: &str,
    now: DateTime<Utc>,
    prev: Option<&SignedFile<Root>>,
    root: &SignedFile<Root>,
) -> Result<(), UpdateError> {
    let bad = UpdateError::BadRoot;
    let r = &root.signed;
    check_common("root", root.version(), root.expires(), now).map_err(bad)?;
    if let Some(prev) = prev {
        let (old, new) = (prev.version(), root.version());
        if new != old && Some(new) != old.checked_add(1) {
            return Err(bad(format!(
                "Root modifications must increment the version. Current {old}, new {new}"
            )));
        }
    }
    for name in [
        RoleName::ROOT,
        RoleName::TARGETS,
        RoleName::SNAPSHOT,
        RoleName::TIMESTAMP,
    ] {
        let role = r
            .roles
            .get(name)
            .ok_or_else(|| bad(format!("root does not define the {name} role")))?;
        if role.threshold < 1 {
            return Err(bad(format!("{name} role has threshold {}", role.threshold)));
        }
        if let Some(missing) = role.keyids.iter().find(|id| !r.keys.contains_key(*id)) {
            return Err(bad(format!(
                "{name} role names key {missing}, which root does not list"
            )));
        }
    }
    let secs = now.timestamp();
    // The root role's keys that are certificates valid for this GUN now.
    let own = &r.roles[RoleName::ROOT];
    let valid_keys = root_certs(r, gun, secs, true);
    if (valid_keys.len() as i64) < own.threshold {
        let why = own
            .keyids
            .iter()
            .filter_map(|id| r.keys.get(id))
            .find_map(|k| valid_root_cert(k, gun, secs, true).err())
            .unwrap_or_else(|| "too few root keys".into());
        return Err(bad(format!(
            "could not validate the root's certificates: {why}"
        )));
    }
    if let Some(prev) = prev {
        let p = &prev.signed;
        let old = &p.roles[RoleName::ROOT];
        let old_keys = root_certs(p, gun, secs, false);
        check_threshold(
            "root",
            &root.canonical,
            &root.signatures,
            &old_keys,
            &old.keyids,
            old.threshold,
        )
        .map_err(|e| {
            bad(format!(
                "rotation not signed by the previous root's keys: {e}"
            ))
        })?;
    }
    check_threshold(
        "root",
        &root.canonical,
        &root.signatures,
        &valid_keys,
        &own.keyids,
        own.threshold,
    )
    .map_err(bad)?;
    Ok(())
}

/// The keys of `root`'s root role that are certificates Notary accepts for `gun` at `secs`
/// (expiry checked or not: a previous root's certificates may since have expired).
fn root_certs(
    root: &Root,
    gun: &str,
    secs: i64,
    check_expiry: bool,
) -> BTreeMap<String, PublicKey> {
    let listed = &root.roles[RoleName::ROOT].keyids;
    root.keys
        .iter()
        .filter(|(id, key)| {
            listed.contains(id) && valid_root_cert(key, gun, secs, check_expiry).is_ok()
        })
        .map(|(id, key)| (id.clone(), key.clone()))
        .collect()
}

/// A targets role: signed by its parent's keys (root for `targets`, the parent's
/// delegation entry for a delegation), unexpired, and declaring only valid child roles.
fn validate_targets<'a>(
    now: DateTime<Utc>,
    root: &Root,
    role: &RoleName,
    file: &SignedFile<Targets>,
    parent_of: impl Fn(&RoleName) -> Option<&'a SignedFile<Targets>>,
) -> Result<(), UpdateError> {
    let bad = UpdateError::BadTargets;
    check_common(role.as_str(), file.version(), file.expires(), now).map_err(bad)?;
    // The paths this role may sign for: everything for `targets`, its entry's for a
    // delegation.
    let mut own_paths = vec![String::new()];
    match role.parent() {
        None => {
            let entry = &root.roles[RoleName::TARGETS];
            check_threshold(
                role.as_str(),
                &file.canonical,
                &file.signatures,
                &root.keys,
                &entry.keyids,
                entry.threshold,
            )
            .map_err(bad)?;
        }
        Some(parent) => {
            let parent_file = parent_of(&parent)
                .ok_or_else(|| bad(format!("{role}: parent role {parent} does not exist")))?;
            let d = &parent_file.signed.delegations;
            let entry = d
                .roles
                .iter()
                .find(|r| r.name == role.as_str())
                .ok_or_else(|| bad(format!("{role} is not delegated by {parent}")))?;
            check_threshold(
                role.as_str(),
                &file.canonical,
                &file.signatures,
                &d.keys,
                &entry.keyids,
                entry.threshold,
            )
            .map_err(bad)?;
            own_paths.clone_from(&entry.paths);
        }
    }
    let within = |path: &str| own_paths.iter().any(|p| path.starts_with(p.as_str()));
    if let Some(name) = file.signed.targets.keys().find(|t| !within(t)) {
        return Err(bad(format!("{role} signs {name:?}, outside its paths")));
    }
    let d = &file.signed.delegations;
    for child in &d.roles {
        let name = RoleName::parse(&child.name)
            .filter(|n| n.is_delegation())
            .ok_or_else(|| {
                bad(format!(
                    "{role} delegates to an invalid role name {:?}",
                    child.name
                ))
            })?;
        if name.parent().as_ref() != Some(role) {
            return Err(bad(format!(
                "{role} cannot delegate {name}, which is not its child"
            )));
        }
        if let Some(path) = child.paths.iter().find(|p| !within(p)) {
            return Err(bad(format!(
                "{name} claims the path {path:?}, outside {role}'s paths"
            )));
        }
        if child.threshold < 1 {
            return Err(bad(format!(
                "{name}: threshold {} is below 1",
                child.threshold
            )));
        }
        for id in &child.keyids {
            let key = d
                .keys
                .get(id)
                .ok_or_else(|| bad(format!("{name} names key {id}, which {role} does not list")))?;
            if key.keytype.is_x509() {
                // Certificates of delegations: the SHA-1 and key checks, not expiry.
                let chain = crate::x509::CertChain::from_pem(&key.public)
                    .map_err(|e| bad(format!("{name}: {e}")))?;
                if chain.facts().iter().any(|c| c.sha1_signed) {
                    return Err(bad(format!("{name}: certificate signed with SHA-1")));
                }
            }
            key.check().map_err(|e| bad(format!("{name}: {e}")))?;
        }
    }
    Ok(())
}

/// An uploaded snapshot: signed by the root's snapshot keys, unexpired, and naming every
/// root and targets file of this update with its length and hashes.
fn validate_snapshot(
    now: DateTime<Utc>,
    root: &Root,
    snap: &SignedFile<Snapshot>,
    written: &BTreeMap<RoleName, Vec<u8>>,
) -> Result<(), UpdateError> {
    let bad = UpdateError::BadSnapshot;
    check_common("snapshot", snap.version(), snap.expires(), now).map_err(bad)?;
    let entry = &root.roles[RoleName::SNAPSHOT];
    check_threshold(
        "snapshot",
        &snap.canonical,
        &snap.signatures,
        &root.keys,
        &entry.keyids,
        entry.threshold,
    )
    .map_err(bad)?;
    for (role, bytes) in written {
        let meta = snap
            .signed
            .meta
            .get(role.as_str())
            .ok_or_else(|| bad(format!("snapshot does not name {role}")))?;
        let actual = crate::metadata::FileMeta::of(bytes);
        let hashes_match = !meta.hashes.is_empty()
            && meta
                .hashes
                .iter()
                .all(|(alg, h)| actual.hashes.get(alg).is_some_and(|a| a == h));
        if meta.length != actual.length || !hashes_match {
            return Err(bad(format!(
                "snapshot's meta for {role} does not match the uploaded file"
            )));
        }
    }
    Ok(())
}
