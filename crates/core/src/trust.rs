//! Docker Content Trust: the Notary service of every repository, in process, on the
//! metadata store.
//!
//! [`Trust`] answers what the Notary v1 routes ask: role files (current, by version, by
//! checksum), updates (validated by `berth_trust::update`, stored all or nothing), the
//! server's snapshot and timestamp keys (made here, sealed with the [`Kek`] before they
//! reach the store), deletion and the changefeed. The timestamp is re-signed when a
//! client asks for it expired (and the snapshot with it when that expired too), so a
//! repository nobody pushes to keeps verifying; the re-signing job does it before expiry.

use berth_meta::{MetaError, MetaStore, Signed, TrustChange, TrustFile, TrustKey, TrustSigner};
use berth_oci::RepoName;
pub use berth_trust::metadata::RoleName;
use berth_trust::metadata::{Root, Snapshot, Targets, Timestamp};
pub use berth_trust::update::UpdateError;
use berth_trust::update::{self, Current, HeldKeys};
use berth_trust::{sign, KeyType, PublicKey, ServerKey, SignedFile};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::kek::Kek;

/// What went wrong in a trust operation; `http` maps each to Notary's code.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("trust data not found")]
    NotFound,
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// A file's version is not above the stored one (or another update won a race).
    #[error("A newer version of metadata is already available.")]
    Version,
    #[error("{0}")]
    InvalidParameters(String),
    /// A part of an update without a file name (the role).
    #[error("a part of the update has no file name")]
    NoFilename,
    /// A sealed key that does not open, or a stored file that does not parse.
    #[error("{0}")]
    Key(String),
    #[error(transparent)]
    Meta(MetaError),
}

impl From<MetaError> for TrustError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Conflict(_) => TrustError::Version,
            other => TrustError::Meta(other),
        }
    }
}

/// Which version of a role a client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Current,
    Version(i64),
    /// Lowercase hex SHA-256 of the file's bytes.
    Checksum(String),
}

/// The roles whose keys the server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    Snapshot,
    Timestamp,
}

impl ServerRole {
    pub fn parse(role: &str) -> Option<ServerRole> {
        match role {
            RoleName::SNAPSHOT => Some(ServerRole::Snapshot),
            RoleName::TIMESTAMP => Some(ServerRole::Timestamp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServerRole::Snapshot => RoleName::SNAPSHOT,
            ServerRole::Timestamp => RoleName::TIMESTAMP,
        }
    }
}

/// A repository's trust data as the management API and `berth admin trust status` show
/// it: whether it has any (`signed`), the earliest expiry of its current roles (RFC 3339),
/// each current role (version, expiry, signing keys and threshold) and each signed tag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrustStatus {
    pub repository: String,
    pub signed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    pub roles: Vec<RoleStatus>,
    pub targets: Vec<SignedTarget>,
}

/// One current role file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoleStatus {
    pub role: String,
    pub version: i64,
    pub expires: String,
    /// The ids of the keys that may sign it (listed by the root, or by the parent of a
    /// delegation), and how many must.
    pub key_ids: Vec<String>,
    pub threshold: i64,
}

/// A tag signed into a targets role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignedTarget {
    pub tag: String,
    /// `sha256:<hex>` of the manifest, when the target carries a SHA-256.
    pub digest: Option<String>,
    pub size: i64,
    /// The role whose file signs it (`targets`, `targets/releases`, ...).
    pub role: String,
}

/// The trust service over the metadata store.
#[derive(Clone)]
pub struct Trust {
    meta: Arc<dyn MetaStore>,
    kek: Kek,
    hostnames: Arc<[String]>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust").finish_non_exhaustive()
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every target the targets roles sign, by role, with the keys whose signatures on the
/// role's file verify (a role no parent declares any more has none) and the earliest expiry
/// along its chain; and the signers of those keys, `by` for keys not seen before.
fn signed_targets(
    root: &Root,
    targets: &BTreeMap<RoleName, SignedFile<Targets>>,
    by: i64,
) -> Signed {
    use berth_trust::verify::valid_signers;
    let mut signed = Signed::default();
    for (name, file) in targets {
        // The role's keys, from the root or the parent's delegations; the expiry, the
        // earliest along the chain.
        let mut expires = file.expires();
        let keys = match name.parent() {
            None => root
                .roles
                .get(RoleName::TARGETS)
                .map(|r| (&root.keys, r.keyids.clone())),
            Some(parent) => targets.get(&parent).and_then(|p| {
                let mut up = Some(parent.clone());
                while let Some(r) = up {
                    if let Some(f) = targets.get(&r) {
                        expires = expires.min(f.expires());
                    }
                    up = r.parent();
                }
                let d = &p.signed.delegations;
                d.roles
                    .iter()
                    .find(|e| e.name == name.as_str())
                    .map(|e| (&d.keys, e.keyids.clone()))
            }),
        };
        let key_ids: Vec<String> = match keys {
            Some((keys, ids)) => valid_signers(&file.canonical, &file.signatures, keys, &ids)
                .into_iter()
                .collect(),
            None => vec![],
        };
        for id in &key_ids {
            signed.signers.push(TrustSigner {
                key_id: id.clone(),
                account: by,
            });
        }
        for (tag, meta) in &file.signed.targets {
            if let Some(h) = meta.sha256() {
                signed.targets.push(berth_meta::SignedTarget {
                    tag: tag.clone(),
                    digest: format!("sha256:{}", hex_of(h)),
                    role: name.to_string(),
                    key_ids: key_ids.clone(),
                    expires_at: expires.timestamp_millis(),
                });
            }
        }
    }
    signed.targets.sort();
    signed.targets.dedup();
    signed.signers.sort();
    signed.signers.dedup();
    signed
}

fn parse<T: berth_trust::metadata::Role>(f: &TrustFile) -> Result<SignedFile<T>, TrustError> {
    SignedFile::parse(&f.data).map_err(|e| {
        TrustError::Key(format!(
            "stored {} v{} does not parse: {e}",
            f.role, f.version
        ))
    })
}

impl Trust {
    /// The service over `meta`, sealing keys with `kek`; `hostnames` are the names (with
    /// port where clients write one) a GUN's host may be besides the request's own `Host`.
    pub fn new(meta: Arc<dyn MetaStore>, kek: Kek, hostnames: Vec<String>) -> Trust {
        let hostnames = hostnames
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        Trust {
            meta,
            kek,
            hostnames,
        }
    }

    /// The private half of a server key of `repo`, opened.
    fn open_key(&self, repo: &str, key: &TrustKey) -> Result<Vec<u8>, TrustError> {
        self.kek
            .open(&[repo, &key.key_id], &key.sealed)
            .map_err(|e| TrustError::Key(format!("key {} of {repo} {e}", key.key_id)))
    }

    /// Whether a GUN's host part names this registry: the `Host` the client sent, or one of
    /// the configured names. Any other GUN is not ours (Notary answers 404).
    pub fn is_ours(&self, gun_host: &str, request_host: Option<&str>) -> bool {
        let gun_host = gun_host.to_ascii_lowercase();
        request_host.is_some_and(|h| h.eq_ignore_ascii_case(&gun_host))
            || self.hostnames.contains(&gun_host)
    }

    /// The first of the names this registry's GUNs may have ("" when none is known).
    pub fn hostname(&self) -> &str {
        self.hostnames.first().map_or("", String::as_str)
    }

    /// The current files of `repo`, parsed.
    async fn current(&self, repo: &RepoName) -> Result<Current, TrustError> {
        let mut current = Current::default();
        for f in self.meta.trust_current_all(repo.as_str()).await? {
            match f.role.as_str() {
                RoleName::ROOT => current.root = Some(parse::<Root>(&f)?),
                RoleName::SNAPSHOT => current.snapshot = Some(parse::<Snapshot>(&f)?),
                RoleName::TIMESTAMP => current.timestamp = Some(parse::<Timestamp>(&f)?),
                role => {
                    if let Some(name) = RoleName::parse(role) {
                        current.targets.insert(name, parse::<Targets>(&f)?);
                    }
                }
            }
        }
        Ok(current)
    }

    /// Every key held for `repo`, opened.
    async fn held(&self, repo: &RepoName) -> Result<HeldKeys, TrustError> {
        let mut held = HeldKeys::default();
        for k in self.meta.trust_keys(repo.as_str()).await? {
            let secret = self.open_key(repo.as_str(), &k)?;
            let key =
                ServerKey::from_secret(&secret).map_err(|e| TrustError::Key(e.to_string()))?;
            match ServerRole::parse(&k.role) {
                Some(ServerRole::Snapshot) => held.snapshot.push(key),
                Some(ServerRole::Timestamp) => held.timestamp.push(key),
                None => {}
            }
        }
        Ok(held)
    }

    /// Validates and stores one update (role name -> bytes, as the multipart parts were
    /// named) of `repo`, whose GUN is `gun`, made by account `by` (0: none).
    pub async fn update(
        &self,
        repo: &RepoName,
        gun: &str,
        uploads: &BTreeMap<String, Vec<u8>>,
        by: i64,
    ) -> Result<(), TrustError> {
        let current = self.current(repo).await?;
        let held = self.held(repo).await?;
        let files = update::validate(gun, Utc::now(), &current, uploads, &held)?;
        // The signed targets after this update, when it changes a targets role or the root
        // (which lists the targets keys): what GC keeps while the tags exist, and what
        // signature policies read, signed by the account `by` for keys it brings.
        let mut after = current.targets;
        let mut targets_changed = false;
        for f in &files {
            targets_changed |= f.role.as_str() == RoleName::ROOT;
            if f.role.is_targets() {
                // Validated just now: it parses.
                let parsed = SignedFile::parse(&f.bytes).map_err(|e| {
                    TrustError::Key(format!("validated {} does not parse: {e}", f.role))
                })?;
                after.insert(f.role.clone(), parsed);
                targets_changed = true;
            }
        }
        let root = files
            .iter()
            .find(|f| f.role.as_str() == RoleName::ROOT)
            .map(|f| SignedFile::<Root>::parse(&f.bytes))
            .transpose()
            .map_err(|e| TrustError::Key(format!("validated root does not parse: {e}")))?;
        let root = root.as_ref().or(current.root.as_ref());
        let signed = match root {
            Some(root) if targets_changed => Some(signed_targets(&root.signed, &after, by)),
            _ => None,
        };
        let files = files
            .into_iter()
            .map(|f| TrustFile::new(f.role.as_str(), f.version, f.bytes))
            .collect();
        self.meta.trust_put(repo.as_str(), files, signed).await?;
        Ok(())
    }

    /// The file `role` of `repo` as `lookup` asks. The current timestamp is re-signed first
    /// when it has expired and the server holds its key.
    pub async fn get(
        &self,
        repo: &RepoName,
        role: &RoleName,
        lookup: &Lookup,
    ) -> Result<TrustFile, TrustError> {
        let r = repo.as_str();
        let found = match lookup {
            Lookup::Version(v) => self.meta.trust_version(r, role.as_str(), *v).await?,
            Lookup::Checksum(sha) => self.meta.trust_checksum(r, role.as_str(), sha).await?,
            Lookup::Current if role.as_str() == RoleName::TIMESTAMP => {
                // The common case reads and parses one small file; an expired timestamp is
                // signed again first (an expiring snapshot is the re-signing job's).
                let file = self.meta.trust_current(r, RoleName::TIMESTAMP).await?;
                let expired = match &file {
                    Some(f) => parse::<Timestamp>(f)?.expires() <= Utc::now(),
                    None => false,
                };
                if expired && self.refresh(repo, Utc::now()).await? {
                    self.meta.trust_current(r, RoleName::TIMESTAMP).await?
                } else {
                    file
                }
            }
            Lookup::Current => self.meta.trust_current(r, role.as_str()).await?,
        };
        found.ok_or(TrustError::NotFound)
    }

    /// Re-signs the timestamp of `repo` if it expires before `by` (and the snapshot too if
    /// that does); `true` if it stored new files. A racing refresh that stored first wins.
    pub async fn refresh(&self, repo: &RepoName, by: DateTime<Utc>) -> Result<bool, TrustError> {
        let current = self.current(repo).await?;
        let (Some(root), Some(snapshot), Some(timestamp)) =
            (&current.root, &current.snapshot, &current.timestamp)
        else {
            return Ok(false);
        };
        let snapshot_due = snapshot.expires() <= by;
        if timestamp.expires() > by && !snapshot_due {
            return Ok(false);
        }
        let held = self.held(repo).await?;
        let now = Utc::now();
        let mut files = Vec::new();
        let mut snapshot_bytes = snapshot.bytes.clone();
        if snapshot_due {
            // Only with the snapshot key the root names; a client-held one cannot be renewed.
            if let Some(key) = held.for_role(&root.signed, RoleName::SNAPSHOT) {
                let next = sign::snapshot(Some(&snapshot.signed), &BTreeMap::new(), key, now);
                snapshot_bytes = next.bytes.clone();
                files.push(TrustFile::new(
                    RoleName::SNAPSHOT,
                    next.version(),
                    next.bytes,
                ));
            }
        }
        let Some(key) = held.for_role(&root.signed, RoleName::TIMESTAMP) else {
            return Ok(false);
        };
        let next = sign::timestamp(Some(&timestamp.signed), &snapshot_bytes, key, now);
        files.push(TrustFile::new(
            RoleName::TIMESTAMP,
            next.version(),
            next.bytes,
        ));
        match self.meta.trust_put(repo.as_str(), files, None).await {
            Ok(()) => Ok(true),
            Err(MetaError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The public key of the server's `role` key for `repo`: the one the current root names
    /// if the server holds it, else the newest key not yet named (made now if there is
    /// none). With `rotate`, always a new key, which takes effect when a root names it.
    pub async fn key(
        &self,
        repo: &RepoName,
        role: ServerRole,
        rotate: bool,
    ) -> Result<PublicKey, TrustError> {
        if !rotate {
            // Public halves only: nothing needs opening to answer which key is in use.
            let stored: Vec<TrustKey> = (self.meta.trust_keys(repo.as_str()).await?)
                .into_iter()
                .filter(|k| k.role == role.as_str())
                .collect();
            let root = self
                .meta
                .trust_current(repo.as_str(), RoleName::ROOT)
                .await?;
            let root = root.map(|f| parse::<Root>(&f)).transpose()?;
            let root = root.as_ref().map(|r| &r.signed);
            let listed = |k: &&TrustKey| {
                root.and_then(|r| r.roles.get(role.as_str()))
                    .is_some_and(|l| l.keyids.contains(&k.key_id))
            };
            let named = |k: &&TrustKey| root.is_some_and(|r| r.keys.contains_key(&k.key_id));
            let in_use = stored.iter().find(listed);
            if let Some(k) = in_use.or_else(|| stored.iter().rev().find(|k| !named(k))) {
                return Ok(PublicKey::new(KeyType::Ecdsa, k.public.clone()));
            }
        }
        let key = ServerKey::from_signing(p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng));
        let key_id = key.public().key_id();
        let sealed = self.kek.seal(&[repo.as_str(), &key_id], &key.secret());
        self.meta
            .trust_key_add(
                repo.as_str(),
                TrustKey {
                    role: role.as_str().to_string(),
                    key_id,
                    public: key.public().public.clone(),
                    sealed,
                },
            )
            .await?;
        Ok(key.public().clone())
    }

    /// Whether the trust service works on this replica: its store answers and the
    /// key-encryption key opens a key it sealed (a replica given another `kek_file` than
    /// the others fails here, where trust updates would fail). `Err` says why.
    pub async fn check(&self) -> Result<(), String> {
        let repos = self
            .meta
            .trust_repos("", 1)
            .await
            .map_err(|e| e.to_string())?;
        let Some(repo) = repos.first() else {
            return Ok(());
        };
        let keys = self
            .meta
            .trust_keys(repo)
            .await
            .map_err(|e| e.to_string())?;
        match keys.last() {
            Some(k) => self.open_key(repo, k).map(drop).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// What `repo`'s current trust data says.
    pub async fn status(&self, repo: &RepoName) -> Result<TrustStatus, TrustError> {
        let current = self.current(repo).await?;
        let mut roles = Vec::new();
        let mut targets = Vec::new();
        let rfc = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut expires: Option<DateTime<Utc>> = None;
        let mut role =
            |name: &str, version: i64, at: DateTime<Utc>, keys: Option<(&[String], i64)>| {
                expires = Some(expires.map_or(at, |e| e.min(at)));
                let (key_ids, threshold) = keys.map_or((vec![], 0), |(k, t)| (k.to_vec(), t));
                roles.push(RoleStatus {
                    role: name.to_string(),
                    version,
                    expires: rfc(at),
                    key_ids,
                    threshold,
                });
            };
        if let Some(root) = &current.root {
            let r = &root.signed;
            let listed = |n: &str| r.roles.get(n).map(|k| (k.keyids.as_slice(), k.threshold));
            role(
                RoleName::ROOT,
                root.version(),
                root.expires(),
                listed(RoleName::ROOT),
            );
            for (name, file) in &current.targets {
                let keys = match name.parent() {
                    None => listed(RoleName::TARGETS),
                    Some(parent) => current.targets.get(&parent).and_then(|p| {
                        let d = &p.signed.delegations.roles;
                        d.iter()
                            .find(|e| e.name == name.as_str())
                            .map(|e| (e.keyids.as_slice(), e.threshold))
                    }),
                };
                role(name.as_str(), file.version(), file.expires(), keys);
                for (tag, meta) in &file.signed.targets {
                    targets.push(SignedTarget {
                        tag: tag.clone(),
                        digest: meta.sha256().map(|h| format!("sha256:{}", hex_of(h))),
                        size: meta.length,
                        role: name.to_string(),
                    });
                }
            }
            let server_roles = [
                (
                    RoleName::SNAPSHOT,
                    current
                        .snapshot
                        .as_ref()
                        .map(|f| (f.version(), f.expires())),
                ),
                (
                    RoleName::TIMESTAMP,
                    current
                        .timestamp
                        .as_ref()
                        .map(|f| (f.version(), f.expires())),
                ),
            ];
            for (name, file) in server_roles {
                if let Some((version, at)) = file {
                    role(name, version, at, listed(name));
                }
            }
        }
        Ok(TrustStatus {
            repository: repo.to_string(),
            signed: current.root.is_some(),
            expires: expires.map(rfc),
            roles,
            targets,
        })
    }

    /// Deletes the trust data of `repo` (its files; the keys stay for a new root to name).
    pub async fn delete(&self, repo: &RepoName) -> Result<bool, TrustError> {
        Ok(self.meta.trust_delete(repo.as_str(), false).await?)
    }

    /// Deletes everything of `repo`'s trust, keys included (the repository is deleted).
    pub async fn purge(&self, repo: &RepoName) -> Result<(), TrustError> {
        self.meta.trust_delete(repo.as_str(), true).await?;
        Ok(())
    }

    /// Notary's changefeed: `records` changes of `repo` (all repositories when `None`)
    /// from `change_id` ("" or 0: the start, -1: the newest), backwards when `records` is
    /// negative.
    pub async fn changes(
        &self,
        repo: Option<&RepoName>,
        change_id: &str,
        records: &str,
    ) -> Result<Vec<TrustChange>, TrustError> {
        let mut records: i64 = records.parse().map_err(|_| {
            TrustError::InvalidParameters(format!("records {records:?} is not an integer"))
        })?;
        if records == 0 {
            records = 100;
        }
        let mut from: i64 = match change_id {
            "" => 0,
            id => id.parse().map_err(|_| {
                TrustError::InvalidParameters(format!("change_id {id:?} is not an integer"))
            })?,
        };
        let backwards = records < 0;
        if from == -1 {
            from = self.meta.trust_last_change().await? + i64::from(backwards);
        }
        let limit = records.unsigned_abs().min(1000) as i64;
        let repo = repo.map(RepoName::as_str);
        Ok(self
            .meta
            .trust_changes(repo, from, limit, backwards)
            .await?)
    }
}

/// The name of the re-signing job (and of its lease).
pub const RESIGN_JOB: &str = "trust-resign";

/// How long before its expiry the job re-signs a timestamp (or snapshot): a timestamp lives
/// 14 days, so it is renewed once a week even in a repository nobody signs into.
pub const RESIGN_MARGIN: chrono::Duration = chrono::Duration::days(7);

/// Repositories read per page by the re-signing job.
const RESIGN_PAGE: i64 = 500;

impl Trust {
    /// Re-signs, in every repository with trust data, the timestamp (and the snapshot the
    /// server holds the key of) that expires within `margin`: the re-signing job's
    /// `run_once`. Returns how many repositories it renewed; stops early when cancelled.
    pub async fn resign_expiring(
        &self,
        margin: chrono::Duration,
        cancel: &crate::jobs::CancellationToken,
    ) -> Result<u64, TrustError> {
        let by = Utc::now() + margin;
        let (mut after, mut renewed) = (String::new(), 0);
        loop {
            let page = self.meta.trust_repos(&after, RESIGN_PAGE).await?;
            for name in &page {
                if cancel.is_cancelled() {
                    return Ok(renewed);
                }
                let Ok(repo) = RepoName::parse(name) else {
                    continue;
                };
                match self.refresh(&repo, by).await {
                    Ok(true) => renewed += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(repository = %repo, error = %e, "could not re-sign trust data")
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == RESIGN_PAGE => after.clone_from(last),
                _ => return Ok(renewed),
            }
        }
    }

    /// The re-signing as an exclusive background job: [`Trust::resign_expiring`] when the
    /// lease is taken and then every `every`.
    pub fn resign_job(self: &Arc<Self>, every: std::time::Duration) -> crate::jobs::Job {
        let trust = self.clone();
        crate::jobs::Job::new(RESIGN_JOB, every, move |cancel| {
            let trust = trust.clone();
            async move {
                match trust.resign_expiring(RESIGN_MARGIN, &cancel).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(repositories = n, "trust timestamps re-signed before expiry")
                    }
                    Err(e) => tracing::warn!(error = %e, "could not re-sign trust data"),
                }
            }
        })
        .exclusive()
    }
}
