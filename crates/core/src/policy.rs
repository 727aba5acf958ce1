//! Signature policies: which signatures a manifest must carry to be served, decided here
//! for every manifest GET and HEAD (by tag and by digest), never only in `http`.
//!
//! A policy belongs to a namespace or a repository (a repository's replaces its
//! namespace's; with neither, the configured default applies): a mode (`off`, `audit`,
//! `enforce`), the accepted formats, and the required signers (users, teams, registered
//! keys), all of them or any one. A Docker Content Trust signature is a target of the
//! repository's current trust data whose role's signatures verify and whose chain has
//! not expired; made with a key the repository's trust data brought, it counts as signed
//! by the account that brought the key (`trust_signers`). Facts come from the trust
//! updates the server validated, never from the client at pull time.
//!
//! What passes without signatures: callers with push rights on the repository (signers
//! must fetch what they sign, CI must verify what it built), signature artifacts
//! themselves (a manifest with a `subject`, or a cosign `sha256-<hex>.sig` tag), and the
//! children of an index that satisfies the policy. Blobs are not checked: their digests
//! are only reachable through a manifest.
//!
//! Decisions are cached per replica with the store's policy revision, which every policy
//! change and every change of the signed targets moves on: a change on this replica drops
//! the cache at once, one on another replica within [`REVISION_CHECK`].

use crate::access::{Access, Caller};
use crate::error::CoreError;
use berth_auth::rbac::Permission;
use berth_meta::identity::UserKey;
use berth_meta::{IdentityStore, ManifestRecord, MetaError, MetaStore, StoredPolicy};
use berth_oci::{Digest, Reference, RepoName};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a replica reads the store's policy revision (the bound on how long a change
/// made on another replica may go unseen).
pub const REVISION_CHECK: Duration = Duration::from_secs(1);

/// The most cached decisions before the cache starts over.
const CACHE_LIMIT: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Off,
    Audit,
    Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Dct,
    Cosign,
    Notation,
}

/// A required signer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signer {
    User(String),
    Team { org: String, team: String },
    Key(String),
}

/// A policy, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub mode: Mode,
    pub formats: Vec<Format>,
    /// Every signer must have signed (else any one of them).
    pub all_of: bool,
    /// Empty: any valid signature in an accepted format.
    #[serde(serialize_with = "signers_as_text")]
    pub signers: Vec<Signer>,
}

fn signers_as_text<S: serde::Serializer>(signers: &[Signer], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(signers.iter().map(Signer::to_string))
}

/// Where the policy that applies to a repository comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "scope", rename_all = "lowercase")]
pub enum Source {
    Repository(String),
    Namespace(String),
    Default,
}

/// The policy that applies to a repository, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub policy: Policy,
    pub source: Source,
}

/// A malformed policy (bad mode, format, signer or scope).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, PolicyError> {
        match s {
            "off" => Ok(Mode::Off),
            "audit" => Ok(Mode::Audit),
            "enforce" => Ok(Mode::Enforce),
            other => Err(PolicyError(format!(
                "mode {other:?} is not one of off, audit, enforce"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Audit => "audit",
            Mode::Enforce => "enforce",
        }
    }
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Dct, Format::Cosign, Format::Notation];

    pub fn parse(s: &str) -> Result<Format, PolicyError> {
        match s {
            "dct" => Ok(Format::Dct),
            "cosign" => Ok(Format::Cosign),
            "notation" => Ok(Format::Notation),
            other => Err(PolicyError(format!(
                "format {other:?} is not one of dct, cosign, notation"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Dct => "dct",
            Format::Cosign => "cosign",
            Format::Notation => "notation",
        }
    }
}

impl Signer {
    /// `user:NAME`, `team:ORG/TEAM` or `key:ID`.
    pub fn parse(s: &str) -> Result<Signer, PolicyError> {
        let bad = || {
            PolicyError(format!(
                "signer {s:?} is not user:NAME, team:ORG/TEAM or key:ID"
            ))
        };
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        // The shape of account and team names, at any length (a longer one names nobody).
        let name_ok = |n: &str| {
            n.split(['.', '_', '-']).all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
        };
        match kind {
            "user" if name_ok(rest) => Ok(Signer::User(rest.to_string())),
            "team" => {
                let (org, team) = rest.split_once('/').ok_or_else(bad)?;
                if name_ok(org) && name_ok(team) {
                    Ok(Signer::Team {
                        org: org.to_string(),
                        team: team.to_string(),
                    })
                } else {
                    Err(bad())
                }
            }
            "key"
                if !rest.is_empty()
                    && rest.len() <= 128
                    && rest.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                Ok(Signer::Key(rest.to_ascii_lowercase()))
            }
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signer::User(u) => write!(f, "user:{u}"),
            Signer::Team { org, team } => write!(f, "team:{org}/{team}"),
            Signer::Key(k) => write!(f, "key:{k}"),
        }
    }
}

/// The most signers one policy names.
const MAX_SIGNERS: usize = 50;

impl Policy {
    /// A policy from its parts as a user writes them (formats empty: all of them).
    pub fn parse(
        mode: &str,
        formats: &[String],
        all_of: bool,
        signers: &[String],
    ) -> Result<Policy, PolicyError> {
        if signers.len() > MAX_SIGNERS {
            return Err(PolicyError(format!(
                "a policy names at most {MAX_SIGNERS} signers"
            )));
        }
        let mut formats = formats
            .iter()
            .map(|f| Format::parse(f))
            .collect::<Result<Vec<_>, _>>()?;
        if formats.is_empty() {
            formats = Format::ALL.to_vec();
        }
        formats.sort();
        formats.dedup();
        let mut signers = signers
            .iter()
            .map(|s| Signer::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        signers.sort();
        signers.dedup();
        Ok(Policy {
            mode: Mode::parse(mode)?,
            formats,
            all_of,
            signers,
        })
    }

    /// No policy: nothing is checked.
    pub fn off() -> Policy {
        Policy {
            mode: Mode::Off,
            formats: Format::ALL.to_vec(),
            all_of: false,
            signers: vec![],
        }
    }

    fn from_stored(p: &StoredPolicy) -> Result<Policy, PolicyError> {
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        };
        Policy::parse(&p.mode, &list(&p.formats), p.all_of, &list(&p.signers))
    }

    fn to_stored(&self, scope: &str) -> StoredPolicy {
        let join = |v: Vec<String>| v.join(",");
        StoredPolicy {
            scope: scope.to_string(),
            mode: self.mode.as_str().to_string(),
            formats: join(self.formats.iter().map(|f| f.as_str().into()).collect()),
            all_of: self.all_of,
            signers: join(self.signers.iter().map(Signer::to_string).collect()),
            updated_at: 0,
        }
    }
}

/// What a policy belongs to: a namespace (every repository in it) or one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Namespace(String),
    Repository(RepoName),
}

impl Scope {
    /// `org` (or `org/*`) for a namespace, `org/repo` for a repository.
    pub fn parse(s: &str) -> Result<Scope, PolicyError> {
        let namespace = s.strip_suffix("/*").unwrap_or(s);
        if !namespace.contains('/') {
            return Scope::namespace(namespace);
        }
        RepoName::parse(s)
            .map(Scope::Repository)
            .map_err(|e| PolicyError(format!("scope {s:?}: {e}")))
    }

    /// The namespace `name`, checked.
    pub fn namespace(name: &str) -> Result<Scope, PolicyError> {
        if berth_oci::is_valid_account_name(name) {
            Ok(Scope::Namespace(name.to_string()))
        } else {
            Err(PolicyError(format!("{name:?} is not a namespace name")))
        }
    }

    /// The key the store keeps its policy under: a namespace's is `org/*`, which no
    /// repository name can be.
    fn key(&self) -> String {
        match self {
            Scope::Namespace(n) => format!("{n}/*"),
            Scope::Repository(r) => r.to_string(),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Namespace(n) => f.write_str(n),
            Scope::Repository(r) => f.write_str(r.as_str()),
        }
    }
}

/// The most tags one page of [`Policies::tag_status`] holds.
pub const STATUS_PAGE: u32 = 100;

/// A tag, its signatures and whether it satisfies the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagStatus {
    pub tag: String,
    pub digest: String,
    pub satisfied: bool,
    /// What it lacks, when it does not satisfy the policy.
    pub missing: Option<String>,
    pub signatures: Vec<SignatureStatus>,
}

/// One signature of a tag's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureStatus {
    pub format: Format,
    /// Docker Content Trust: the role that signs the tag; cosign and Notation: the digest
    /// of the signature manifest.
    pub evidence: String,
    /// The key: a TUF key id, or a registered key's id (empty: no registered key verifies
    /// the signature).
    pub key: String,
    /// The user the key signs for.
    pub signer: Option<String>,
    pub valid: bool,
    /// Why it is not valid.
    pub reason: Option<String>,
    /// When it stops counting (RFC 3339).
    pub expires_at: Option<String>,
}

/// A page of tags with their signed status, and the policy that applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedTags {
    pub policy: Effective,
    pub tags: Vec<TagStatus>,
    /// The `last` of the next page.
    pub next: Option<String>,
}

/// What a policy decides for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Serve,
    /// Serve with a warning (`audit`).
    Warn,
    Deny,
}

/// A decision and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub outcome: Verdict,
    pub reason: String,
    /// The scope of the policy applied (or "the registry default").
    pub policy: String,
    /// What the manifest lacks, when it does not satisfy the policy.
    pub missing: Option<String>,
}

/// What a manifest request may do once the policy has been applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Serve,
    /// Serve, with this warning (`audit` mode, not satisfied).
    Warn(String),
}

#[derive(Default)]
struct Cache {
    revision: i64,
    checked: Option<Instant>,
    /// Moved on whenever the cache is dropped: a decision evaluated before is not kept.
    generation: u64,
    effective: HashMap<String, Arc<Effective>>,
    /// (repository, digest, tag) -> what is missing (`None`: satisfied), per policy.
    decisions: HashMap<(String, String, Option<String>), Option<String>>,
    /// (repository, digest) -> whether an index listing it satisfies the policy.
    parents: HashMap<(String, String), bool>,
}

/// The policies of the registry, with their decisions cached.
pub struct Policies {
    meta: Arc<dyn MetaStore>,
    identity: Arc<dyn IdentityStore>,
    default: Policy,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl Policies {
    /// Over the stores, with no default policy (`off`).
    pub fn new(meta: Arc<dyn MetaStore>, identity: Arc<dyn IdentityStore>) -> Policies {
        let (default, cache) = (Policy::off(), Mutex::default());
        Policies {
            meta,
            identity,
            default,
            cache,
        }
    }

    /// With `default` where no namespace or repository sets a policy.
    pub fn with_default(self, default: Policy) -> Policies {
        Policies { default, ..self }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops every cached decision now (a change made through this replica).
    pub fn invalidate(&self) {
        let mut c = self.cache();
        c.checked = None;
        c.clear();
    }

    /// Reads the store's revision when the last read is older than [`REVISION_CHECK`],
    /// dropping the cache when it moved.
    async fn refresh(&self) -> Result<(), MetaError> {
        if self
            .cache()
            .checked
            .is_some_and(|t| t.elapsed() < REVISION_CHECK)
        {
            return Ok(());
        }
        let revision = self.meta.policy_revision().await?;
        let mut c = self.cache();
        if c.revision != revision || c.checked.is_none() {
            c.clear();
            c.revision = revision;
        }
        c.checked = Some(Instant::now());
        Ok(())
    }

    /// The policy set on `scope` itself, if any.
    pub async fn get(&self, scope: &Scope) -> Result<Option<Policy>, CoreError> {
        let stored = self.meta.policy_get(&scope.key()).await?;
        stored
            .map(|p| Policy::from_stored(&p))
            .transpose()
            .map_err(|e| CoreError::Meta(MetaError::Backend(format!("stored policy: {e}"))))
    }

    /// Sets the policy of `scope`.
    pub async fn set(&self, scope: &Scope, policy: &Policy) -> Result<(), CoreError> {
        self.meta
            .policy_put(&policy.to_stored(&scope.key()))
            .await?;
        self.invalidate();
        Ok(())
    }

    /// Removes the policy of `scope`; whether there was one.
    pub async fn delete(&self, scope: &Scope) -> Result<bool, CoreError> {
        let found = self.meta.policy_delete(&scope.key()).await?;
        self.invalidate();
        Ok(found)
    }

    /// The policy that applies to `repo` and where it comes from.
    pub async fn effective(&self, repo: &RepoName) -> Result<Arc<Effective>, CoreError> {
        self.refresh().await?;
        let generation = {
            let c = self.cache();
            if let Some(e) = c.effective.get(repo.as_str()) {
                return Ok(e.clone());
            }
            c.generation
        };
        let namespace = repo.as_str().split('/').next().unwrap_or_default();
        let namespace_scope = Scope::Namespace(namespace.to_string());
        let effective = if let Some(p) = self.get(&Scope::Repository(repo.clone())).await? {
            Effective {
                policy: p,
                source: Source::Repository(repo.to_string()),
            }
        } else if let Some(p) = self.get(&namespace_scope).await? {
            Effective {
                policy: p,
                source: Source::Namespace(namespace.to_string()),
            }
        } else {
            Effective {
                policy: self.default.clone(),
                source: Source::Default,
            }
        };
        let effective = Arc::new(effective);
        let mut c = self.cache();
        if c.generation == generation {
            remember(&mut c.effective, repo.to_string(), effective.clone());
        }
        Ok(effective)
    }

    /// Applies the policy of `repo` to the manifest `rec` that `caller` asked for by
    /// `reference`: serve, serve with a warning (and an audit event), or
    /// [`CoreError::PolicyDenied`].
    pub async fn check(
        &self,
        access: &Access,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
        rec: &ManifestRecord,
    ) -> Result<Outcome, CoreError> {
        let decision = self.decide(access, caller, repo, reference, rec).await?;
        match decision.outcome {
            Verdict::Serve => Ok(Outcome::Serve),
            Verdict::Deny => Err(CoreError::PolicyDenied(decision.reason)),
            Verdict::Warn => {
                let detail = serde_json::json!({
                    "policy": decision.policy,
                    "digest": rec.digest.to_string(),
                    "reference": reference.to_string(),
                    "missing": decision.missing,
                });
                access
                    .audit(caller, "policy.audit", repo.as_str(), detail)
                    .await;
                Ok(Outcome::Warn(decision.reason))
            }
        }
    }

    /// What the policy of `repo` decides for `caller` asking for `rec` by `reference`,
    /// with no side effect (the dry run of the API, and [`check`](Self::check)).
    pub async fn decide(
        &self,
        access: &Access,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
        rec: &ManifestRecord,
    ) -> Result<Decision, CoreError> {
        let effective = self.effective(repo).await?;
        let policy = &effective.policy;
        let scope = match &effective.source {
            Source::Repository(s) | Source::Namespace(s) => s.clone(),
            Source::Default => "the registry default".to_string(),
        };
        let pass = |reason: &str| Decision {
            outcome: Verdict::Serve,
            reason: reason.to_string(),
            policy: scope.clone(),
            missing: None,
        };
        if policy.mode == Mode::Off {
            return Ok(pass("the policy is off"));
        }
        if is_signature_artifact(reference, rec) {
            return Ok(pass("signature artifacts pass"));
        }
        let tag = match reference {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        let Some(missing) = self.missing(repo, &rec.digest, tag, policy).await? else {
            return Ok(pass("signed as the policy requires"));
        };
        if self.parent_satisfies(repo, &rec.digest, policy).await? {
            return Ok(pass("an index listing it is signed as the policy requires"));
        }
        // Pushers pass: signers fetch what they sign.
        match access.account_may(caller, repo, Permission::Push).await {
            Ok(true) => return Ok(pass("callers with push rights pass")),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "push right not decided; the policy applies"),
        }
        let formats: Vec<&str> = policy.formats.iter().map(|f| f.as_str()).collect();
        let reason = format!(
            "signature policy of {scope} not satisfied: {repo}@{} has {missing} (accepted: {})",
            rec.digest,
            formats.join(", ")
        );
        Ok(Decision {
            outcome: match policy.mode {
                Mode::Audit => Verdict::Warn,
                _ => Verdict::Deny,
            },
            reason,
            policy: scope,
            missing: Some(missing),
        })
    }

    /// The tags of `repo` after `last` (at most `n`, itself at most [`STATUS_PAGE`]), each
    /// with its signatures in every format, valid or why not, and whether it satisfies the
    /// policy that applies (for a caller without push rights).
    pub async fn tag_status(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: u32,
    ) -> Result<SignedTags, CoreError> {
        let effective = self.effective(repo).await?;
        let n = n.clamp(1, STATUS_PAGE);
        let mut names = self
            .meta
            .tags_list(repo, last, n + 1)
            .await?
            .ok_or(CoreError::NameUnknown)?;
        let more = names.len() > n as usize;
        names.truncate(n as usize);
        let signers = self.meta.trust_signers(repo.as_str()).await?;
        let mut owners: HashMap<i64, Option<String>> = HashMap::new();
        let mut tags = Vec::with_capacity(names.len());
        for name in &names {
            let Ok(tag) = berth_oci::Tag::parse(name) else {
                continue;
            };
            let Some(rec) = self.meta.manifest_by_tag(repo, &tag).await? else {
                continue;
            };
            let mut signatures = Vec::new();
            let now = crate::time::now_ms();
            for t in self
                .meta
                .trust_signed(repo.as_str(), Some(rec.digest.as_str()))
                .await?
                .into_iter()
                .filter(|t| t.tag == *name)
            {
                for key in &t.key_ids {
                    let account = signers.iter().find(|s| &s.key_id == key).map(|s| s.account);
                    signatures.push(SignatureStatus {
                        format: Format::Dct,
                        evidence: t.role.clone(),
                        key: key.clone(),
                        signer: self.owner(&mut owners, account).await?,
                        valid: t.expires_at > now,
                        reason: (t.expires_at <= now).then(|| "the role has expired".to_string()),
                        expires_at: Some(crate::time::rfc3339_ms(t.expires_at)),
                    });
                }
            }
            for (f, owner) in self
                .meta
                .facts_of(repo.as_str(), rec.digest.as_str())
                .await?
            {
                let expired = f.expires_at != 0 && f.expires_at <= now;
                let reason = if !f.valid {
                    Some(f.reason)
                } else if owner.is_none() {
                    Some("the key is no longer registered".to_string())
                } else if expired {
                    Some("expired".to_string())
                } else {
                    None
                };
                signatures.push(SignatureStatus {
                    format: Format::parse(&f.format).unwrap_or(Format::Cosign),
                    evidence: f.signature,
                    key: f.key_id,
                    signer: self.owner(&mut owners, owner).await?,
                    valid: reason.is_none(),
                    reason,
                    expires_at: (f.expires_at != 0).then(|| crate::time::rfc3339_ms(f.expires_at)),
                });
            }
            let missing = self
                .missing(repo, &rec.digest, Some(name), &effective.policy)
                .await?;
            tags.push(TagStatus {
                tag: name.clone(),
                digest: rec.digest.to_string(),
                satisfied: missing.is_none(),
                missing,
                signatures,
            });
        }
        Ok(SignedTags {
            policy: effective.as_ref().clone(),
            tags,
            next: more.then(|| names.last().cloned()).flatten(),
        })
    }

    /// The name of `account` (looked up once per listing).
    async fn owner(
        &self,
        owners: &mut HashMap<i64, Option<String>>,
        account: Option<i64>,
    ) -> Result<Option<String>, CoreError> {
        let Some(account) = account.filter(|a| *a != 0) else {
            return Ok(None);
        };
        if let Some(name) = owners.get(&account) {
            return Ok(name.clone());
        }
        let name = self
            .identity
            .user_get(UserKey::Id(account))
            .await?
            .map(|u| u.name);
        owners.insert(account, name.clone());
        Ok(name)
    }

    /// Whether an index of `repo` that lists `digest` satisfies `policy` (clients fetch the
    /// index by tag, then its children by digest), cached like the decisions.
    async fn parent_satisfies(
        &self,
        repo: &RepoName,
        digest: &Digest,
        policy: &Policy,
    ) -> Result<bool, CoreError> {
        let key = (repo.to_string(), digest.to_string());
        let generation = {
            let c = self.cache();
            if let Some(&found) = c.parents.get(&key) {
                return Ok(found);
            }
            c.generation
        };
        let mut found = false;
        for parent in self
            .meta
            .manifest_parents(repo.as_str(), digest.as_str())
            .await?
        {
            if let Ok(parent) = Digest::parse(&parent) {
                if self.missing(repo, &parent, None, policy).await?.is_none() {
                    found = true;
                    break;
                }
            }
        }
        let mut c = self.cache();
        if c.generation == generation {
            remember(&mut c.parents, key, found);
        }
        Ok(found)
    }

    /// What `digest` of `repo` (asked for by `tag`, if any) lacks under `policy`, cached;
    /// `None` when it satisfies it.
    async fn missing(
        &self,
        repo: &RepoName,
        digest: &Digest,
        tag: Option<&str>,
        policy: &Policy,
    ) -> Result<Option<String>, CoreError> {
        let key = (
            repo.to_string(),
            digest.to_string(),
            tag.map(str::to_string),
        );
        let generation = {
            let c = self.cache();
            if let Some(d) = c.decisions.get(&key) {
                return Ok(d.clone());
            }
            c.generation
        };
        let facts = self.signatures(repo, digest, tag, policy).await?;
        let decision = if facts.keys.is_empty() {
            Some("no valid signature".to_string())
        } else if policy.signers.is_empty() {
            None
        } else {
            self.unmatched(&facts, policy).await
        };
        let mut c = self.cache();
        if c.generation == generation {
            remember(&mut c.decisions, key, decision.clone());
        }
        Ok(decision)
    }

    /// What of `policy`'s signers `facts` lack (`None`: satisfied).
    async fn unmatched(&self, facts: &Signatures, policy: &Policy) -> Option<String> {
        let mut unmatched = Vec::new();
        for signer in &policy.signers {
            let matched = match signer {
                Signer::Key(k) => facts.keys.contains(k),
                Signer::User(name) => facts.users.contains(name),
                Signer::Team { org, team } => {
                    let members = self.identity.team_members(org, team).await;
                    members
                        .unwrap_or_default()
                        .iter()
                        .any(|m| facts.accounts.contains(&m.user_id))
                }
            };
            if !matched {
                unmatched.push(signer.to_string());
            }
        }
        let satisfied = if policy.all_of {
            unmatched.is_empty()
        } else {
            unmatched.len() < policy.signers.len()
        };
        (!satisfied).then(|| {
            let how = match policy.all_of || unmatched.len() == 1 {
                true => "from",
                false => "from any of",
            };
            format!("no valid signature {how} {}", unmatched.join(", "))
        })
    }

    /// The valid signatures of `digest` in the accepted formats: their keys, and the
    /// accounts (and names) those keys sign for.
    async fn signatures(
        &self,
        repo: &RepoName,
        digest: &Digest,
        tag: Option<&str>,
        policy: &Policy,
    ) -> Result<Signatures, CoreError> {
        let mut found = Signatures::default();
        let now = crate::time::now_ms();
        if policy.formats.contains(&Format::Dct) {
            let targets = self
                .meta
                .trust_signed(repo.as_str(), Some(digest.as_str()))
                .await?;
            let mut keys = BTreeSet::new();
            for t in targets {
                // By tag, only a signature of that tag (a tag moved to another digest
                // does not inherit it); by digest, any.
                if t.expires_at > now && tag.is_none_or(|tag| t.tag == tag) {
                    keys.extend(t.key_ids);
                }
            }
            if !keys.is_empty() {
                for s in self.meta.trust_signers(repo.as_str()).await? {
                    if s.account != 0 && keys.contains(&s.key_id) {
                        found.accounts.insert(s.account);
                    }
                }
                found.keys.extend(keys);
            }
        }
        if policy.formats.iter().any(|f| *f != Format::Dct) {
            // cosign and Notation signatures sign a digest, whatever tag names it.
            let counted = self
                .meta
                .signatures_counted(repo.as_str(), digest.as_str())
                .await?;
            for s in counted {
                let accepted = Format::parse(&s.format).is_ok_and(|f| policy.formats.contains(&f));
                if accepted && (s.expires_at == 0 || s.expires_at > now) {
                    found.keys.insert(s.key_id);
                    found.accounts.insert(s.account);
                }
            }
        }
        for &account in &found.accounts {
            if let Some(u) = self.identity.user_get(UserKey::Id(account)).await? {
                found.users.insert(u.name);
            }
        }
        Ok(found)
    }
}

impl Cache {
    fn clear(&mut self) {
        self.effective.clear();
        self.decisions.clear();
        self.parents.clear();
        self.generation += 1;
    }
}

/// Keeps `value` under `key`; a full map starts over.
fn remember<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    if map.len() >= CACHE_LIMIT {
        map.clear();
    }
    map.insert(key, value);
}

#[derive(Default)]
struct Signatures {
    keys: BTreeSet<String>,
    accounts: BTreeSet<i64>,
    users: BTreeSet<String>,
}

/// A manifest that is itself a signature or attestation: it has a `subject`, or it is
/// under cosign's tag scheme (`sha256-<hex>.sig`, `.att`, `.sbom`).
fn is_signature_artifact(reference: &Reference, rec: &ManifestRecord) -> bool {
    if let Reference::Tag(t) = reference {
        if berth_trust::artifacts::cosign_tag(t.as_str()).is_some() {
            return true;
        }
    }
    // Cheap before parsing: most manifests do not name a subject.
    if !rec.bytes.windows(9).any(|w| w == b"\"subject\"") {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(&rec.bytes)
        .map(|v| v.get("subject").is_some_and(|s| s.is_object()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_refuse_what_they_do_not_know() {
        let p = Policy::parse(
            "enforce",
            &[],
            true,
            &[
                "team:acme/qa".into(),
                "user:alice".into(),
                "user:alice".into(),
            ],
        )
        .unwrap();
        assert_eq!(p.formats, Format::ALL);
        assert_eq!(
            p.signers,
            [
                Signer::User("alice".into()),
                Signer::Team {
                    org: "acme".into(),
                    team: "qa".into()
                }
            ]
        );
        let stored = p.to_stored("acme");
        assert_eq!(Policy::from_stored(&stored).unwrap(), p);
        for bad in [
            "group:x",
            "user:",
            "team:acme",
            "key:a b",
            "user:Alice!",
            "team:a/ö",
            "user:a..b",
        ] {
            assert!(Signer::parse(bad).is_err(), "{bad}");
        }
        assert!(Policy::parse("sometimes", &[], false, &[]).is_err());
        assert!(Policy::parse("off", &["pgp".into()], false, &[]).is_err());
        let repo = Scope::Repository(RepoName::parse("acme/app").unwrap());
        assert_eq!(Scope::parse("acme/app").unwrap(), repo);
        assert_eq!(repo.key(), "acme/app");
        assert_eq!(Scope::parse("acme/*").unwrap().key(), "acme/*");
        assert_eq!(Scope::parse("acme").unwrap().key(), "acme/*");
        assert!(Scope::parse("Acme").is_err());
    }

    #[test]
    fn signature_artifacts_are_recognised() {
        let rec = |bytes: &str| ManifestRecord {
            digest: Digest::sha256_of(bytes.as_bytes()),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            bytes: bytes.as_bytes().to_vec().into(),
        };
        let tag = |t: &str| Reference::Tag(berth_oci::Tag::parse(t).unwrap());
        let plain = rec(r#"{"schemaVersion":2,"layers":[]}"#);
        assert!(!is_signature_artifact(&tag("v1"), &plain));
        let sig = format!("sha256-{}.sig", "a".repeat(64));
        assert!(is_signature_artifact(&tag(&sig), &plain));
        let referrer = rec(r#"{"schemaVersion":2,"subject":{"digest":"sha256:00"}}"#);
        assert!(is_signature_artifact(&tag("v1"), &referrer));
    }
}
