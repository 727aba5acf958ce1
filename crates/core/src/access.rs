//! Who is calling and what they may do: authentication (local passwords, directory binds,
//! access tokens, registry bearer tokens, refresh tokens), the token service of the Docker
//! token protocol, the access decision on a repository, the login rate limit and the audit
//! trail. Knows no HTTP type: the HTTP layer turns headers into [`Credentials`] and
//! [`AccessError`]s into responses.
//!
//! Rules kept here:
//! - A bearer token is trusted for exactly what its `access` claim lists (checked with no
//!   store round trip; verified tokens are cached until they expire). Anything else is
//!   decided again from the store, so a token never widens what the roles give.
//! - Every other credential is checked against the store on each request (a verified
//!   password is remembered for [`AccessConfig::credential_cache`], keyed by a salted
//!   hash, so argon2 does not run per request); deactivated users, revoked and expired
//!   tokens stop working at once.
//! - Nothing derived from a credential outlives it. A refresh token records its parent
//!   (the access token it was issued against, or the password's credential epoch) and is
//!   refused once the parent no longer holds; a remembered password counts only while the
//!   account's epoch is unchanged, so a password changed on another replica ends it. A
//!   bearer token is not recalled: its short [`AccessConfig::token_ttl`] bounds it.
//! - Failed logins are counted per account and per source address; past the limit every
//!   attempt is refused with [`AccessError::RateLimited`] before any password is checked.
//! - Secrets (passwords, tokens) are never logged nor put in audit details.

use crate::error::CoreError;
use crate::kek::Kek;
use crate::time::now_ms;
use base64::Engine as _;
use berth_auth::password::{hash_password, verify_dummy, verify_password, PasswordParams};
use berth_auth::rbac::{self, Decision, Permission, Restriction, Subject, TokenAccess};
use berth_auth::scope::{Action, ResourceName, ResourceType, Scope};
use berth_auth::secret;
use berth_auth::token::{self, AccessEntry, Claims, SigningKey, VerifyingKey};
use berth_directory::DirectoryClient;
use berth_meta::identity::{
    AccountId, NewAuditEvent, NewToken, Origin, RepoSettings, SigningKeyRecord, TokenKind,
    TokenParent, TokenRecord, UserKey, UserPatch, UserRecord, VisibleScope,
};
use berth_meta::{IdentityStore, MetaError};
use berth_oci::RepoName;
use rand::RngCore;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Settings of authentication and the token service.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// The `service` of the token protocol (the JWT audience).
    pub service: String,
    /// The JWT issuer.
    pub issuer: String,
    /// Lifetime of issued bearer tokens.
    pub token_ttl: Duration,
    /// Lifetime of refresh (offline) tokens; `None`: until revoked.
    pub refresh_ttl: Option<Duration>,
    /// Anonymous callers may pull, push and delete in every repository (an open registry,
    /// as on a laptop). Off by default.
    pub anonymous_push: bool,
    /// Failed logins allowed per account within [`AccessConfig::login_window`].
    pub login_failures_per_account: u32,
    /// Failed logins allowed per source address within [`AccessConfig::login_window`].
    pub login_failures_per_source: u32,
    pub login_window: Duration,
    /// How long a verified password is remembered (0: verify every request).
    pub credential_cache: Duration,
    /// argon2id cost of stored password hashes.
    pub password_params: PasswordParams,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            service: "berth".into(),
            issuer: "berth".into(),
            token_ttl: Duration::from_secs(300),
            refresh_ttl: Some(Duration::from_secs(90 * 24 * 3600)),
            anonymous_push: false,
            login_failures_per_account: 10,
            login_failures_per_source: 50,
            login_window: Duration::from_secs(300),
            credential_cache: Duration::from_secs(60),
            password_params: PasswordParams::default(),
        }
    }
}

/// What a client presented.
#[derive(Clone)]
pub enum Credentials {
    /// A user name and a password (or an access token used as a password).
    Basic { username: String, password: String },
    /// A registry token issued by the token service.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => {
                write!(f, "Basic({username:?}, <redacted>)")
            }
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Anonymous,
    /// A local password.
    Password,
    /// A bind to the directory (or its cached password while the directory is down).
    Directory,
    /// An access token used as a password.
    AccessToken,
    /// A refresh token (token endpoint only).
    RefreshToken,
    /// A registry bearer token.
    Bearer,
    /// The local administrator: `berth admin`, run by whoever may open the stores
    /// ([`Caller::local_admin`]).
    Local,
}

/// The name and audit source of [`Caller::local_admin`].
pub const LOCAL_ADMIN: &str = "berth admin";

/// An authenticated (or anonymous) caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User and token restriction, for the access decision. For a bearer caller the user
    /// is loaded only when the token's claims do not settle a question.
    pub subject: Subject,
    /// The account, if any.
    pub account: Option<AccountId>,
    /// The account name (a bearer token's `sub`), if any.
    pub name: Option<String>,
    pub method: AuthMethod,
    /// The claims of a bearer token.
    pub claims: Option<Arc<Claims>>,
    /// The caller's address, for rate limits and the audit log.
    pub source: Option<IpAddr>,
    /// The stored credential the caller proved just now (a password under its epoch, or
    /// an access token): what a refresh token issued to them derives from and must not
    /// outlive. `None` for anonymous, bearer and refresh-token callers, who get no
    /// refresh token.
    pub credential: Option<TokenParent>,
}

impl Caller {
    /// An anonymous caller from `source`.
    pub fn anonymous(source: Option<IpAddr>) -> Caller {
        Caller {
            subject: Subject::anonymous(),
            account: None,
            name: None,
            method: AuthMethod::Anonymous,
            claims: None,
            source,
            credential: None,
        }
    }

    /// This caller, as having proved their password under credential epoch `epoch`.
    fn with_password_epoch(self, epoch: i64) -> Caller {
        Caller {
            credential: Some(TokenParent::Password { epoch }),
            ..self
        }
    }

    /// The local administrator: `berth admin` on the machine that holds the stores. It
    /// has no account (its name, [`LOCAL_ADMIN`], is not a valid account name, so it
    /// never matches one), holds every right like a system administrator, may also
    /// create an access token for any user, and is audited with no actor and the source
    /// [`LOCAL_ADMIN`].
    pub fn local_admin() -> Caller {
        Caller {
            subject: Subject::user(rbac::User {
                id: String::new(),
                name: LOCAL_ADMIN.into(),
                is_system_admin: true,
                active: true,
                orgs: Vec::new(),
                teams: Vec::new(),
            }),
            account: None,
            name: Some(LOCAL_ADMIN.into()),
            method: AuthMethod::Local,
            claims: None,
            source: None,
            credential: None,
        }
    }

    /// Whether this is [`Caller::local_admin`].
    pub fn is_local_admin(&self) -> bool {
        self.method == AuthMethod::Local
    }

    pub fn is_anonymous(&self) -> bool {
        self.name.is_none()
    }

    /// A system administrator with the account's full rights (not through a restricted
    /// access token nor a registry bearer token).
    pub fn is_system_admin(&self) -> bool {
        self.subject.is_system_admin()
    }
}

/// Why a caller was not let in, or a question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Wrong or unusable credentials (unknown user, bad password, inactive account,
    /// revoked or expired token, a bearer token that does not verify).
    #[error("{0}")]
    Unauthorized(String),
    /// Too many failed logins; try again after this many seconds.
    #[error("too many failed logins; try again in {retry_after} seconds")]
    RateLimited { retry_after: u64 },
    /// A malformed request to the token service.
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] MetaError),
}

impl From<AccessError> for CoreError {
    fn from(e: AccessError) -> CoreError {
        match e {
            AccessError::Store(m) => CoreError::Meta(m),
            other => CoreError::Unsupported(other.to_string()),
        }
    }
}

/// The outcome of [`Access::authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allowed,
    /// 403 `DENIED`.
    Denied,
    /// 404 `NAME_UNKNOWN`.
    Invisible,
    /// 401 with a challenge: log in, or (bearer) fetch a token for this scope.
    Challenge,
}

/// What the token service hands out.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The signed JWT.
    pub token: String,
    pub expires_in: u64,
    /// RFC 3339.
    pub issued_at: String,
    /// A new refresh token, when an offline token was asked for.
    pub refresh_token: Option<String>,
    /// What was granted.
    pub access: Vec<AccessEntry>,
}

/// An access token as created: the secret is in `token`, shown once.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub token: String,
    pub record: TokenRecord,
}

struct Keys {
    signing: SigningKey,
    verifying: Vec<VerifyingKey>,
    loaded: Instant,
}

/// How long a source that logged in to an account stays trusted to try it while the
/// account is under attack.
const KNOWN_SOURCE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Failed-login counters (per source, per account and source, per account) and the
/// sources each account logged in from. In memory, per replica, bounded.
#[derive(Default)]
struct Failures {
    map: HashMap<String, (u32, Instant)>,
    known: HashMap<(String, IpAddr), Instant>,
}

impl Failures {
    fn known_good(&self, username: &str, source: IpAddr) -> bool {
        self.known
            .get(&(username.to_string(), source))
            .is_some_and(|t| t.elapsed() < KNOWN_SOURCE_TTL)
    }
    fn succeed(&mut self, username: &str, source: IpAddr) {
        if self.known.len() > 100_000 {
            self.known.retain(|_, t| t.elapsed() < KNOWN_SOURCE_TTL);
            if self.known.len() > 100_000 {
                self.known.clear();
            }
        }
        self.known
            .insert((username.to_string(), source), Instant::now());
    }
    /// Seconds to wait if `key` is over `limit`.
    fn blocked(&self, key: &str, limit: u32, window: Duration) -> Option<u64> {
        let (n, start) = self.map.get(key)?;
        let elapsed = start.elapsed();
        if *n >= limit && elapsed < window {
            Some((window - elapsed).as_secs().max(1))
        } else {
            None
        }
    }
    /// Counts one failure under `key`; returns the count in the current window.
    fn fail(&mut self, key: String, window: Duration) -> u32 {
        if self.map.len() > 100_000 {
            self.map.retain(|_, (_, s)| s.elapsed() < window);
        }
        let e = self.map.entry(key).or_insert((0, Instant::now()));
        if e.1.elapsed() >= window {
            *e = (0, Instant::now());
        }
        e.0 = e.0.saturating_add(1);
        e.0
    }
    fn clear(&mut self, key: &str) {
        self.map.remove(key);
    }
    /// Takes in what the shared store counted under `key` since `started`, when it is more
    /// than this process counted (failures seen through other replicas).
    fn merge(&mut self, key: String, count: u32, started: Instant) {
        let e = self.map.entry(key).or_insert((0, started));
        if count > e.0 {
            *e = (count, started);
        }
    }
}

/// The keys a refused login counts under: the source always; the account from that
/// source, and overall, for a password.
fn failure_keys(username: &str, source: Option<IpAddr>, password: bool) -> Vec<String> {
    let mut keys = Vec::with_capacity(3);
    if password {
        keys.push(format!("u:{username}"));
        if let Some(s) = source {
            keys.push(format!("a:{username}|{s}"));
        }
    }
    if let Some(s) = source {
        keys.push(format!("s:{s}"));
    }
    keys
}

const CACHE_LIMIT: usize = 10_000;

/// Rows a listing page reads at most before it answers with what it has and where to
/// continue (only reached when the access decision drops most of what the store found).
const MAX_SCANNED: usize = 10_000;

/// The access service. One per process; cheap to share.
pub struct Access {
    identity: Arc<dyn IdentityStore>,
    directory: Option<DirectoryClient>,
    cfg: AccessConfig,
    kek: Kek,
    keys: RwLock<Arc<Keys>>,
    /// Verified bearer tokens: token -> claims, until `exp`.
    bearer_cache: Mutex<HashMap<String, Arc<Claims>>>,
    /// Verified passwords: salted hash of (user, password) -> (account, credential epoch,
    /// until). A hit counts only while the account's epoch is still the one the password
    /// was verified under, so a password change on another replica ends it at once.
    password_cache: Mutex<HashMap<[u8; 32], (AccountId, i64, Instant)>>,
    cache_salt: [u8; 32],
    failures: Mutex<Failures>,
    /// Password hashing (argon2, memory-hard by design) at most this many at once: a burst
    /// of logins (or every connection re-checking one password when its cache entry
    /// expires) queues instead of multiplying the memory each hash takes.
    hashing: Arc<tokio::sync::Semaphore>,
    /// What bearer tokens were found still allowed, since the identity revision last moved.
    fresh: Mutex<Fresh>,
}

/// How often a replica reads the identity revision: the bound on how long a change made
/// through another replica (a deactivation, a grant removed, a repository made private, a
/// token revoked) goes unseen by what a bearer token was granted when it was issued.
pub const IDENTITY_CHECK: Duration = Duration::from_secs(1);

/// The bearer decisions checked against the store, valid for one identity revision.
#[derive(Default)]
struct Fresh {
    revision: i64,
    checked: Option<Instant>,
    /// Moved on whenever the decisions are dropped: a decision made before is not kept.
    generation: u64,
    /// (token id, repository, permission) -> whether the account may still.
    decisions: HashMap<(String, String, Permission), bool>,
}

impl Fresh {
    fn drop_all(&mut self) {
        self.decisions.clear();
        self.generation += 1;
    }
}

fn now_secs() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap_or(0)
}

/// RFC 3339 UTC of unix seconds.
pub fn rfc3339(secs: u64) -> String {
    crate::time::rfc3339_ms(i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000))
}

fn permission_action(p: Permission) -> &'static str {
    match p {
        Permission::Pull => "pull",
        Permission::Push => "push",
        Permission::Delete => "delete",
        Permission::Admin => "*",
    }
}

impl Access {
    /// Loads the token service's signing keys, opened with `kek`, creating the first one
    /// if the store has none (another replica creating it at the same time is fine: the
    /// loser reloads).
    pub async fn new(
        identity: Arc<dyn IdentityStore>,
        directory: Option<DirectoryClient>,
        cfg: AccessConfig,
        kek: Kek,
    ) -> Result<Access, MetaError> {
        let keys = load_keys(identity.as_ref(), &kek).await?;
        let mut cache_salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut cache_salt);
        Ok(Access {
            identity,
            directory,
            cfg,
            kek,
            keys: RwLock::new(Arc::new(keys)),
            bearer_cache: Mutex::new(HashMap::new()),
            password_cache: Mutex::new(HashMap::new()),
            cache_salt,
            failures: Mutex::new(Failures::default()),
            hashing: Arc::new(tokio::sync::Semaphore::new(hashing_permits())),
            fresh: Mutex::default(),
        })
    }

    pub fn config(&self) -> &AccessConfig {
        &self.cfg
    }

    pub fn identity(&self) -> &Arc<dyn IdentityStore> {
        &self.identity
    }

    pub fn directory(&self) -> Option<&DirectoryClient> {
        self.directory.as_ref()
    }

    /// The public keys that verify this service's tokens (JWKS-style, for other
    /// services and for tests).
    pub fn verifying_keys(&self) -> Vec<VerifyingKey> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .verifying
            .clone()
    }

    fn current_keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Rereads keys (another replica may have added one), at most every 10 seconds.
    async fn reload_keys(&self) -> Result<(), MetaError> {
        if self.current_keys().loaded.elapsed() < Duration::from_secs(10) {
            return Ok(());
        }
        let keys = load_keys(self.identity.as_ref(), &self.kek).await?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(())
    }

    // --- authentication ------------------------------------------------------------

    /// Who is calling. `None`: anonymous.
    pub async fn authenticate(
        &self,
        creds: Option<&Credentials>,
        source: Option<IpAddr>,
    ) -> Result<Caller, AccessError> {
        match creds {
            None => Ok(Caller::anonymous(source)),
            Some(Credentials::Basic { username, password }) => {
                self.login(username, password, source).await
            }
            Some(Credentials::Bearer(t)) => self.bearer(t, source).await,
        }
    }

    async fn bearer(&self, t: &str, source: Option<IpAddr>) -> Result<Caller, AccessError> {
        let now = now_secs();
        let cached = self
            .bearer_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(t)
            .cloned();
        let claims = match cached {
            Some(c) if c.exp > now => c,
            _ => {
                let mut result = self.verify_jwt(t, now);
                if matches!(result, Err(token::TokenError::UnknownKey(_))) {
                    self.reload_keys().await?;
                    result = self.verify_jwt(t, now);
                }
                let claims = Arc::new(result.map_err(|e| {
                    AccessError::Unauthorized(format!("bearer token refused: {e}"))
                })?);
                let mut cache = self.bearer_cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= CACHE_LIMIT {
                    cache.retain(|_, c| c.exp > now);
                    if cache.len() >= CACHE_LIMIT {
                        cache.clear();
                    }
                }
                cache.insert(t.to_string(), claims.clone());
                claims
            }
        };
        let name = (!claims.sub.is_empty()).then(|| claims.sub.clone());
        Ok(Caller {
            subject: Subject::anonymous(),
            account: None,
            name,
            method: AuthMethod::Bearer,
            claims: Some(claims),
            source,
            credential: None,
        })
    }

    fn verify_jwt(&self, t: &str, now: u64) -> Result<Claims, token::TokenError> {
        let keys = self.current_keys();
        token::verify(t, &keys.verifying, &self.cfg.issuer, &self.cfg.service, now)
    }

    /// Checks the rate limits for a password login by `username` from `source`, before
    /// any password is checked. A source is stopped after too many failures of its own,
    /// whatever the names; an account after too many failures from that source; and
    /// after too many failures from everywhere, an account is tried only from sources it
    /// logged in from before (within [`KNOWN_SOURCE_TTL`]), so that strangers cannot lock
    /// the owner out. Access and refresh tokens are no passwords: only the source's own
    /// limit applies to them ([`Access::check_source`]).
    fn check_rate(&self, username: &str, source: Option<IpAddr>) -> Result<(), AccessError> {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (w, limit) = (self.cfg.login_window, self.cfg.login_failures_per_account);
        let by_source = source
            .and_then(|s| f.blocked(&format!("s:{s}"), self.cfg.login_failures_per_source, w));
        let by_pair = source.and_then(|s| f.blocked(&format!("a:{username}|{s}"), limit, w));
        let by_account = f
            .blocked(&format!("u:{username}"), limit, w)
            .filter(|_| !source.is_some_and(|s| f.known_good(username, s)));
        match by_source.into_iter().chain(by_pair).chain(by_account).max() {
            Some(retry_after) => Err(AccessError::RateLimited { retry_after }),
            None => Ok(()),
        }
    }

    /// The source's own limit, for credentials that cannot be guessed (tokens).
    fn check_source(&self, source: Option<IpAddr>) -> Result<(), AccessError> {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match source.and_then(|s| {
            f.blocked(
                &format!("s:{s}"),
                self.cfg.login_failures_per_source,
                self.cfg.login_window,
            )
        }) {
            Some(retry_after) => Err(AccessError::RateLimited { retry_after }),
            None => Ok(()),
        }
    }

    /// Counts a refused login: against the source always, against the account (from this
    /// source, and overall) only for a password. Returns the failures of this name from
    /// this source in the current window (of the source alone for a token).
    fn record_failure(&self, username: &str, source: Option<IpAddr>, password: bool) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let counts: Vec<(String, u32)> = failure_keys(username, source, password)
            .into_iter()
            .map(|k| {
                let n = f.fail(k.clone(), self.cfg.login_window);
                (k, n)
            })
            .collect();
        // The account's count from this source, else the first key's.
        let pair = counts.iter().find(|(k, _)| k.starts_with("a:"));
        pair.or(counts.first()).map_or(1, |(_, n)| (*n).max(1))
    }

    /// Counts a refused login in the shared store too, so that every replica applies the
    /// limits to it (a store failure is logged: the limits of this process still hold).
    async fn share_failure(&self, username: &str, source: Option<IpAddr>, password: bool) {
        let keys = failure_keys(username, source, password);
        let window = i64::try_from(self.cfg.login_window.as_millis()).unwrap_or(i64::MAX);
        if let Err(e) = self
            .identity
            .login_failures_add(&keys, now_ms(), window)
            .await
        {
            tracing::warn!(error = %e, "login failure not shared with the other replicas");
        }
    }

    /// Takes in the failures the other replicas counted for this login's keys, before a
    /// password or token is checked.
    async fn take_shared_failures(&self, username: &str, source: Option<IpAddr>, password: bool) {
        let keys = failure_keys(username, source, password);
        let window = i64::try_from(self.cfg.login_window.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        match self.identity.login_failures(&keys, now - window).await {
            Ok(rows) => {
                let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
                for (key, count, start) in rows {
                    let age = Duration::from_millis(u64::try_from(now - start).unwrap_or(0));
                    let started = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                    f.merge(key, u32::try_from(count).unwrap_or(u32::MAX), started);
                }
            }
            Err(e) => tracing::warn!(error = %e, "login failures of the other replicas not read"),
        }
    }

    fn cache_key(&self, username: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_salt);
        h.update((username.len() as u64).to_be_bytes());
        h.update(username.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Authenticates a user name and a password, or an access token used as the
    /// password. Counts failures, audits logins that were not served from the cache.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<Caller, AccessError> {
        let username = username.to_ascii_lowercase();
        // No account name holds a control character: such a name is refused before it
        // reaches a log line or the directory.
        if username.is_empty()
            || username.len() > 256
            || username.chars().any(char::is_control)
            || password.len() > 4096
        {
            tracing::info!(user = ?username, source = source.map(tracing::field::display), "login refused: malformed credentials");
            return Err(AccessError::Unauthorized(
                "invalid user name or password".into(),
            ));
        }
        // The limits come first, even before the cache: a remembered password must not
        // tell a stopped guesser that a guess was right.
        let is_token = secret::looks_like_secret(password);
        if is_token {
            self.check_source(source)?;
        } else {
            self.check_rate(&username, source)?;
        }
        let key = self.cache_key(&username, password);
        let hit = {
            let cache = self
                .password_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            cache
                .get(&key)
                .filter(|(_, _, until)| *until > Instant::now())
                .map(|(id, epoch, _)| (*id, *epoch))
        };
        if let Some((id, epoch)) = hit {
            if let Some(c) = self.remembered(id, epoch, source).await? {
                return Ok(c);
            }
            self.password_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
        // Before checking a password, the limits as every replica counted them.
        self.take_shared_failures(&username, source, !is_token)
            .await;
        if is_token {
            self.check_source(source)?;
        } else {
            self.check_rate(&username, source)?;
        }
        // A password is checked by hashing or by a directory bind, which cost far more than
        // an allocation, through futures of several KiB: boxed, so that every request's
        // future (bearer and anonymous ones too) does not carry and copy that size.
        let outcome = if is_token {
            self.login_token(&username, password, source).await
        } else {
            Box::pin(self.login_password(&username, password, source)).await
        };
        match &outcome {
            Ok(c) => {
                if let Some(s) = source {
                    let key = format!("a:{username}|{s}");
                    {
                        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
                        f.clear(&key);
                        f.succeed(&username, s);
                    }
                    if let Err(e) = self.identity.login_failures_clear(&key).await {
                        tracing::warn!(error = %e, "login failures not cleared for the other replicas");
                    }
                }
                if matches!(c.method, AuthMethod::Password | AuthMethod::Directory)
                    && !self.cfg.credential_cache.is_zero()
                {
                    if let (Some(id), Some(TokenParent::Password { epoch })) =
                        (c.account, &c.credential)
                    {
                        let mut cache = self
                            .password_cache
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        if cache.len() >= CACHE_LIMIT {
                            cache.clear();
                        }
                        let until = Instant::now() + self.cfg.credential_cache;
                        cache.insert(key, (id, *epoch, until));
                    }
                }
                self.audit(
                    c,
                    "login.success",
                    &username,
                    serde_json::json!({ "method": format!("{:?}", c.method) }),
                )
                .await;
            }
            Err(AccessError::Unauthorized(why)) => {
                let failures = self.record_failure(&username, source, !is_token);
                self.share_failure(&username, source, !is_token).await;
                tracing::info!(user = ?username, source = source.map(tracing::field::display), reason = %why, failures, "login refused");
                // Repeated failures are aggregated: the first of a window, then the 2nd,
                // 4th, 8th... each with the count, so guessing cannot flood the log.
                if failures.is_power_of_two() {
                    self.audit(
                        &Caller::anonymous(source),
                        "login.failure",
                        &username,
                        serde_json::json!({ "reason": why, "failures": failures }),
                    )
                    .await;
                }
                // The reason is for the log and the audit trail; the caller learns nothing
                // more than "no" (a deactivated account, a service account's password, a
                // wrong password and an unknown name answer alike; so do every unusable
                // token and a token of another account).
                return Err(AccessError::Unauthorized(
                    if is_token {
                        "invalid, expired or revoked token"
                    } else {
                        "invalid user name or password"
                    }
                    .into(),
                ));
            }
            Err(_) => {}
        }
        outcome
    }

    async fn login_password(
        &self,
        username: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<Caller, AccessError> {
        let refused = || AccessError::Unauthorized("invalid user name or password".into());
        let user = self.identity.user_get(UserKey::Name(username)).await?;
        let Some(user) = user else {
            if let Some(user) = self.login_new_directory_user(username, password).await? {
                return self
                    .caller_for(user.id, None, AuthMethod::Directory, source)
                    .await?
                    .map(|c| c.with_password_epoch(user.credential_epoch))
                    .ok_or_else(refused);
            }
            // Same work as a real check, so timing does not tell which names exist.
            let (pw, params) = (password.as_bytes().to_vec(), self.cfg.password_params);
            let _ = self.hash(move || verify_dummy(&pw, &params)).await;
            return Err(refused());
        };
        let (method, epoch) = match &user.origin {
            Origin::Local => {
                if !self.check_stored(&user, password).await {
                    return Err(refused());
                }
                (AuthMethod::Password, user.credential_epoch)
            }
            Origin::Directory { .. } => {
                let epoch = self.login_directory(&user, password).await?;
                (AuthMethod::Directory, epoch)
            }
        };
        if !user.active {
            return Err(AccessError::Unauthorized(
                "the account is deactivated".into(),
            ));
        }
        if user.is_service_account {
            return Err(AccessError::Unauthorized(
                "service accounts log in with access tokens".into(),
            ));
        }
        self.caller_for(user.id, None, method, source)
            .await?
            .map(|c| c.with_password_epoch(epoch))
            .ok_or_else(refused)
    }

    /// Just-in-time account: a directory user with no account yet who binds successfully
    /// gets one (with the password's hash cached and their mapped teams) when the sync
    /// policy would create it; anyone else is refused as an unknown user.
    async fn login_new_directory_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<UserRecord>, AccessError> {
        let Some(dir) = &self.directory else {
            return Ok(None);
        };
        // A directory name outside the name rule (`Jane Doe`) has its account under the
        // mapped name (`jane.doe`): that account, if it exists, is who is logging in.
        let Some(account) = berth_directory::names::account_name_for(username) else {
            return Ok(None);
        };
        if account != username {
            if let Some(user) = self.identity.user_get(UserKey::Name(&account)).await? {
                return self.login_other_name(user, username, password).await;
            }
        }
        let entry = match dir.authenticate(username, password).await {
            Ok(entry) => entry,
            Err(e) => {
                if e.is_directory_failure() {
                    // No cached hash to fall back to: refused, but the log says whose fault.
                    tracing::warn!(error = %e, user = %username,
                        "the directory could not check a first login; refused until it can");
                } else {
                    tracing::info!(error = %e, user = %username, "no account, and no directory login");
                }
                return Ok(None);
            }
        };
        // Logged in by another name of an existing account (`login_attributes`: e-mail,
        // userPrincipalName): that account, checked as any directory login.
        if entry.username != username {
            let other = UserKey::Name(&entry.username);
            if let Some(user) = self.identity.user_get(other).await? {
                return self.login_other_name(user, username, password).await;
            }
        }
        let (pw, params) = (password.as_bytes().to_vec(), self.cfg.password_params);
        let phc = self
            .hash(move || hash_password(&pw, &params))
            .await
            .and_then(|r| r.ok());
        match crate::directory_sync::provision(
            self.identity.as_ref(),
            dir,
            username,
            &entry.username,
            phc,
        )
        .await
        {
            Ok(Some(user)) => {
                tracing::info!(user = %user.name, "created the account of a directory user at first login");
                Ok(Some(user))
            }
            Ok(None) => {
                tracing::info!(user = ?username, "directory user not eligible for an account under the sync policy");
                Ok(None)
            }
            Err(crate::directory_sync::DirectorySyncError::Store(e)) => Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, user = %username, "could not create a directory user's account");
                Ok(None)
            }
        }
    }

    async fn check_stored(&self, user: &UserRecord, password: &str) -> bool {
        let Some(phc) = user.password.clone() else {
            return false;
        };
        let pw = password.as_bytes().to_vec();
        self.hash(move || verify_password(&pw, &phc).unwrap_or(false))
            .await
            .unwrap_or(false)
    }

    /// Runs password hashing `work` on the blocking pool once a hashing permit is free;
    /// `None` if it panicked.
    pub(crate) async fn hash<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        run_limited(&self.hashing, work).await
    }

    /// A directory user logs in by binding to the directory. A successful bind refreshes
    /// the account's cached password hash; while the directory cannot check the password
    /// (unreachable, or failing on its side: a wrong or expired service-account password,
    /// a wrong search base), that cached hash is accepted, so nobody is locked out of what
    /// they already had. Only the directory's own refusal (wrong password, unknown or
    /// disabled user) refuses the login. Returns the account's credential epoch after the
    /// login (a new cached hash moves it: a password changed in the directory ends the old
    /// password's sessions).
    async fn login_directory(&self, user: &UserRecord, password: &str) -> Result<i64, AccessError> {
        self.login_directory_as(user, &user.name, password).await
    }

    /// [`Access::login_directory`] with the name the user typed, which is their directory
    /// name and may differ from the account name it maps to: the directory entry found
    /// must map to this account.
    /// A directory login as `username` into `user`, an existing account of another name
    /// (see [`login_new_directory_user`](Self::login_new_directory_user)): `None` when it
    /// is not an active directory user account.
    async fn login_other_name(
        &self,
        user: UserRecord,
        username: &str,
        password: &str,
    ) -> Result<Option<UserRecord>, AccessError> {
        if !matches!(user.origin, Origin::Directory { .. })
            || !user.active
            || user.is_service_account
        {
            return Ok(None);
        }
        self.login_directory_as(&user, username, password).await?;
        Ok(Some(user))
    }

    async fn login_directory_as(
        &self,
        user: &UserRecord,
        login: &str,
        password: &str,
    ) -> Result<i64, AccessError> {
        let refused = || AccessError::Unauthorized("invalid user name or password".into());
        let Some(dir) = &self.directory else {
            // Directory accounts without a configured directory: only the cached hash.
            return if self.check_stored(user, password).await {
                Ok(user.credential_epoch)
            } else {
                Err(refused())
            };
        };
        match dir.authenticate(login, password).await {
            Ok(entry) if entry.username != user.name => {
                tracing::info!(user = %user.name, entry = %entry.dn,
                    "the directory entry bound belongs to another account name");
                Err(refused())
            }
            Ok(entry) => {
                let Origin::Directory { dn, id: bound } = &user.origin else {
                    return Err(refused());
                };
                match (bound, &entry.id) {
                    (Some(had), Some(has)) if had != has => {
                        // The name was given to another person: they are not the account's.
                        tracing::warn!(user = %user.name, entry = %entry.dn, account_entry = %had,
                            entry_id = %has,
                            "login refused: the directory entry of this name is not the one the account was made for (name reused)");
                        return Err(refused());
                    }
                    (None, Some(has)) => {
                        // An account made before Berth kept entry ids adopts its entry's.
                        let patch = UserPatch {
                            origin: Some(Origin::Directory {
                                dn: dn.clone(),
                                id: Some(has.clone()),
                            }),
                            ..UserPatch::default()
                        };
                        match self.identity.user_update(user.id, &patch).await {
                            Ok(_) => {}
                            Err(berth_meta::MetaError::Conflict(_)) => {
                                tracing::warn!(user = %user.name, entry = %entry.dn, entry_id = %has,
                                    "login refused: the directory entry belongs to another account");
                                return Err(refused());
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    _ => {}
                }
                let cached_ok = self.check_stored(user, password).await;
                if !cached_ok {
                    let pw = password.as_bytes().to_vec();
                    let params = self.cfg.password_params;
                    let phc = self
                        .hash(move || hash_password(&pw, &params))
                        .await
                        .and_then(|r| r.ok());
                    if let Some(phc) = phc {
                        let patch = UserPatch {
                            password: Some(Some(phc)),
                            ..UserPatch::default()
                        };
                        let updated = self.identity.user_update(user.id, &patch).await?;
                        return Ok(updated.credential_epoch);
                    }
                }
                Ok(user.credential_epoch)
            }
            Err(e) if e.is_directory_failure() => {
                tracing::warn!(error = %e, user = %user.name,
                    "the directory cannot check passwords; checking the password cached at the last bind");
                if self.check_stored(user, password).await {
                    Ok(user.credential_epoch)
                } else {
                    Err(refused())
                }
            }
            Err(e) => {
                tracing::info!(error = %e, user = %user.name, "directory refused the login");
                Err(refused())
            }
        }
    }

    async fn usable_token(
        &self,
        presented: &str,
        kind: TokenKind,
    ) -> Result<(TokenRecord, UserRecord), AccessError> {
        let refused = || AccessError::Unauthorized("invalid, expired or revoked token".into());
        let p = secret::parse(presented).map_err(|_| refused())?;
        let rec = self.identity.token_get(&p.id).await?.ok_or_else(refused)?;
        if rec.kind != kind || !rec.hash.verify(&p) || !rec.usable_at(now_ms()) {
            return Err(refused());
        }
        let user = self
            .identity
            .user_get(UserKey::Id(rec.user_id))
            .await?
            .filter(|u| u.active)
            .ok_or_else(refused)?;
        if rec.kind == TokenKind::Refresh && !self.parent_holds(&rec, &user).await? {
            return Err(refused());
        }
        Ok((rec, user))
    }

    /// Whether the credential a refresh token was issued against still holds: its parent
    /// access token is usable (not revoked, not expired), or the password epoch it was
    /// issued under is still the user's. The store revokes a refresh token with its
    /// parent and caps its expiry by the parent's; this check at use also covers a token
    /// issued in a race with the change, and one with no recorded parent.
    async fn parent_holds(
        &self,
        rec: &TokenRecord,
        user: &UserRecord,
    ) -> Result<bool, AccessError> {
        Ok(match &rec.parent {
            None => false,
            Some(TokenParent::Password { epoch }) => *epoch == user.credential_epoch,
            Some(TokenParent::Token(pid)) => self.identity.token_get(pid).await?.is_some_and(|p| {
                p.kind == TokenKind::Access && p.user_id == rec.user_id && p.usable_at(now_ms())
            }),
        })
    }

    /// The caller behind a remembered password, if the account is still active and its
    /// credential epoch is still `epoch` (the password was not changed meanwhile, here or
    /// on another replica).
    async fn remembered(
        &self,
        id: AccountId,
        epoch: i64,
        source: Option<IpAddr>,
    ) -> Result<Option<Caller>, AccessError> {
        let current = self.identity.user_get(UserKey::Id(id)).await?;
        if !current.is_some_and(|u| u.active && u.credential_epoch == epoch) {
            return Ok(None);
        }
        Ok(self
            .caller_for(id, None, AuthMethod::Password, source)
            .await?
            .map(|c| c.with_password_epoch(epoch)))
    }

    async fn login_token(
        &self,
        username: &str,
        presented: &str,
        source: Option<IpAddr>,
    ) -> Result<Caller, AccessError> {
        let (rec, user) = self.usable_token(presented, TokenKind::Access).await?;
        if user.name != username {
            return Err(AccessError::Unauthorized(
                "the token belongs to another account".into(),
            ));
        }
        let _ = self.identity.token_touch(&rec.id, now_ms()).await;
        let parent = TokenParent::Token(rec.id.clone());
        self.caller_for(user.id, rec.restriction, AuthMethod::AccessToken, source)
            .await?
            .map(|c| Caller {
                credential: Some(parent),
                ..c
            })
            .ok_or_else(|| AccessError::Unauthorized("invalid token".into()))
    }

    /// Authenticates with a refresh token (the token endpoint's `refresh_token` grant).
    pub async fn login_refresh(
        &self,
        presented: &str,
        source: Option<IpAddr>,
    ) -> Result<Caller, AccessError> {
        self.check_source(source)?;
        match self.usable_token(presented, TokenKind::Refresh).await {
            Ok((rec, user)) => {
                let _ = self.identity.token_touch(&rec.id, now_ms()).await;
                self.caller_for(user.id, rec.restriction, AuthMethod::RefreshToken, source)
                    .await?
                    .ok_or_else(|| AccessError::Unauthorized("invalid token".into()))
            }
            Err(e) => {
                if matches!(e, AccessError::Unauthorized(_)) {
                    if let Some(s) = source {
                        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
                        f.fail(format!("s:{s}"), self.cfg.login_window);
                    }
                }
                Err(e)
            }
        }
    }

    async fn caller_for(
        &self,
        id: AccountId,
        restriction: Option<Restriction>,
        method: AuthMethod,
        source: Option<IpAddr>,
    ) -> Result<Option<Caller>, AccessError> {
        let Some(mut subject) = self.identity.subject_for(UserKey::Id(id)).await? else {
            return Ok(None);
        };
        if subject.active_user().is_none() {
            return Ok(None);
        }
        subject.restriction = restriction;
        let name = subject.user.as_ref().map(|u| u.name.clone());
        Ok(Some(Caller {
            subject,
            account: Some(id),
            name,
            method,
            claims: None,
            source,
            credential: None,
        }))
    }

    /// The subject behind a bearer token (loaded when its claims do not answer).
    async fn bearer_subject(&self, caller: &Caller) -> Result<Subject, AccessError> {
        match &caller.name {
            None => Ok(Subject::anonymous()),
            Some(n) => Ok(self
                .identity
                .subject_for(UserKey::Name(n))
                .await?
                .unwrap_or_default()),
        }
    }

    /// A caller acting as the account `name` with its own rights and no credential (the
    /// signature policy's dry run: "would this be served to this user"), if it exists.
    pub async fn caller_as(&self, name: &str) -> Result<Option<Caller>, AccessError> {
        let Some(subject) = self.identity.subject_for(UserKey::Name(name)).await? else {
            return Ok(None);
        };
        let account = subject
            .active_user()
            .and_then(|u| u.id.parse::<AccountId>().ok());
        Ok(Some(Caller {
            subject,
            account,
            name: Some(name.to_string()),
            method: AuthMethod::Password,
            claims: None,
            source: None,
            credential: None,
        }))
    }

    /// Fills in the subject of a bearer caller (for listings, mounts and the management
    /// API): the account as it is now, bounded by the restriction of the credential the
    /// token was issued to and by exactly what the token's `access` claim lists. This is
    /// the only way a bearer caller gets a subject, so no path can give a token more.
    pub async fn resolve(&self, caller: &Caller) -> Result<Caller, AccessError> {
        let Some(claims) = caller
            .claims
            .as_ref()
            .filter(|_| caller.method == AuthMethod::Bearer)
        else {
            return Ok(caller.clone());
        };
        let mut subject = self.bearer_subject(caller).await?;
        subject.restriction = claims.restriction.clone();
        let mut token = TokenAccess::default();
        for a in claims
            .access
            .iter()
            .filter(|a| a.resource_type == "repository")
        {
            token.grant(&a.name, a.actions.iter().map(String::as_str));
        }
        subject.token = Some(token);
        let account = subject
            .active_user()
            .and_then(|u| u.id.parse::<AccountId>().ok());
        Ok(Caller {
            subject,
            account,
            ..caller.clone()
        })
    }

    // --- authorisation ---------------------------------------------------------------

    /// Whether the account behind `caller` may use `perm` on `repo`, whatever a bearer
    /// token lists (a client asks for the scope its request needs, a pull asks for pull):
    /// the holder's own rights, within the restriction of the credential the token was
    /// issued to. For the signature policies' exemption of pushers.
    pub async fn account_may(
        &self,
        caller: &Caller,
        repo: &RepoName,
        perm: Permission,
    ) -> Result<bool, AccessError> {
        if let Some(claims) = caller
            .claims
            .as_ref()
            .filter(|_| caller.subject.token.is_none())
        {
            let mut subject = self.bearer_subject(caller).await?;
            subject.restriction = claims.restriction.clone();
            return Ok(self.decide(&subject, repo, perm).await? == Decision::Allowed);
        }
        Ok(self.authorize(caller, repo, perm).await? == Verdict::Allowed)
    }

    /// May `caller` use `perm` on `repo`?
    pub async fn authorize(
        &self,
        caller: &Caller,
        repo: &RepoName,
        perm: Permission,
    ) -> Result<Verdict, AccessError> {
        if caller.is_local_admin() {
            return Ok(Verdict::Allowed);
        }
        // A bearer caller not yet resolved: its claim answers, with no store round trip.
        // A resolved one ([`Access::resolve`]) carries the claim in its subject.
        if let Some(claims) = caller
            .claims
            .as_ref()
            .filter(|_| caller.subject.token.is_none())
        {
            let granted = claims.allows("repository", repo.as_str(), permission_action(perm))
                || (perm != Permission::Admin && claims.allows("repository", repo.as_str(), "*"));
            // What the token granted when it was issued, if the account may still.
            if granted && self.still_allowed(caller, claims, repo, perm).await? {
                return Ok(Verdict::Allowed);
            }
            // Not in the token: tell invisible from denied from "fetch another token".
            let subject = self.bearer_subject(caller).await?;
            let decision = self.decide(&subject, repo, perm).await?;
            return Ok(match decision {
                Decision::Allowed | Decision::NeedsAuthentication => Verdict::Challenge,
                Decision::Denied => Verdict::Denied,
                Decision::Invisible => Verdict::Invisible,
            });
        }
        Ok(match self.decide(&caller.subject, repo, perm).await? {
            Decision::Allowed => Verdict::Allowed,
            Decision::Denied => Verdict::Denied,
            Decision::Invisible => Verdict::Invisible,
            Decision::NeedsAuthentication => Verdict::Challenge,
        })
    }

    async fn decide(
        &self,
        subject: &Subject,
        repo: &RepoName,
        perm: Permission,
    ) -> Result<Decision, AccessError> {
        let user = subject.active_user();
        if user.is_none() && self.cfg.anonymous_push && perm <= Permission::Delete {
            return Ok(Decision::Allowed);
        }
        let key = user.and_then(|u| u.id.parse::<AccountId>().ok());
        let ctx = self.identity.access_for(key.map(UserKey::Id), repo).await?;
        // The store's subject has no token restriction nor bearer claim; keep the caller's.
        let subject = match user {
            Some(_) => Subject {
                user: ctx.subject.user.clone(),
                restriction: subject.restriction.clone(),
                token: subject.token.clone(),
            },
            None => Subject::anonymous(),
        };
        Ok(rbac::decide(&subject, &ctx.repository, &ctx.grants, perm))
    }

    /// Whether `caller` may pull every repository (system administrators, and anyone when
    /// anonymous push is on).
    pub async fn may_read_everything(&self, caller: &Caller) -> Result<bool, AccessError> {
        if self.cfg.anonymous_push {
            return Ok(true);
        }
        Ok(self.resolve(caller).await?.is_system_admin())
    }

    /// Creates `repo` on a first push, recording who created it; an existing one is left
    /// alone. Returns whether it was created.
    pub async fn create_on_push(
        &self,
        caller: &Caller,
        repo: &RepoName,
    ) -> Result<bool, AccessError> {
        if self.identity.repo_settings(repo).await?.is_some() {
            return Ok(false);
        }
        let creator = match caller.account {
            Some(a) => Some(a),
            None => self.resolve(caller).await?.account,
        };
        match self.identity.repo_create(repo, creator, None).await {
            Ok(_) => {
                self.audit(
                    caller,
                    "repo.create",
                    repo.as_str(),
                    serde_json::json!({"on": "push"}),
                )
                .await;
                Ok(true)
            }
            Err(MetaError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A page of `_catalog` as `caller` sees it: repository names after `last` that the
    /// caller may pull, at most `n`, and the name to continue after when more may follow.
    pub async fn catalog(
        &self,
        caller: &Caller,
        last: Option<&str>,
        n: u32,
    ) -> Result<(Vec<String>, Option<String>), AccessError> {
        let mut caller = self.resolve(caller).await?;
        // A bearer token's `registry:catalog:*` lets it list what its credential may pull
        // (still within that credential's restriction); without it, the listing shows
        // only what the token itself names.
        if caller
            .claims
            .as_ref()
            .is_some_and(|c| c.allows("registry", "catalog", "*"))
        {
            caller.subject.token = None;
        }
        let (items, next) = self.visible_repos(&caller, None, last, n).await?;
        Ok((
            items
                .into_iter()
                .map(|r| r.name.as_str().to_string())
                .collect(),
            next,
        ))
    }

    /// Repositories after `last` (optionally of one namespace) that the resolved `caller`
    /// may pull, at most `n`, and the name to continue after when more may follow: what
    /// `_catalog` and the management API's listing show. A page costs work in proportion
    /// to `n`, not to the registry: the store reads only where the caller's rights can
    /// be (public repositories, the namespaces they own or hold a namespace grant on, the
    /// repositories granted to their teams), then the access decision keeps exactly what
    /// it allows. When that decision drops much (a restricted token), the page stops after
    /// [`MAX_SCANNED`] rows and says where to continue, possibly with fewer than `n` items.
    pub async fn visible_repos(
        &self,
        caller: &Caller,
        namespace: Option<&str>,
        last: Option<&str>,
        n: u32,
    ) -> Result<(Vec<RepoSettings>, Option<String>), AccessError> {
        if n == 0 {
            return Ok((vec![], None));
        }
        let everything =
            caller.is_system_admin() || (self.cfg.anonymous_push && caller.is_anonymous());
        let user = caller.subject.active_user();
        let grants = match caller.account {
            Some(id) if !everything && user.is_some() => self.identity.grants_of_user(id).await?,
            _ => vec![],
        };
        let scope = match user {
            _ if everything => None,
            None => Some(VisibleScope {
                public: true,
                ..VisibleScope::default()
            }),
            Some(u) => {
                let mut namespaces = vec![u.name.clone()];
                let mut repos = Vec::new();
                namespaces.extend(u.orgs.iter().filter(|m| m.is_owner).map(|m| m.org.clone()));
                for g in grants.iter().filter(|g| u.teams.contains(&g.team)) {
                    match &g.target {
                        rbac::GrantTarget::Namespace => namespaces.push(g.team.org.clone()),
                        rbac::GrantTarget::Repository(r) => repos.push(r.clone()),
                    }
                }
                namespaces.sort();
                namespaces.dedup();
                repos.sort();
                repos.dedup();
                Some(VisibleScope {
                    public: true,
                    namespaces,
                    repos,
                })
            }
        };
        let mut out: Vec<RepoSettings> = Vec::new();
        let mut cursor = last.map(str::to_string);
        let mut scanned = 0usize;
        // One row more than the page, to know whether another page follows.
        let want = n.saturating_add(1);
        loop {
            let rows = match &scope {
                None => {
                    self.identity
                        .repos_list(namespace, cursor.as_deref(), want)
                        .await?
                }
                Some(sc) => {
                    self.identity
                        .repos_visible(sc, namespace, cursor.as_deref(), want)
                        .await?
                }
            };
            let exhausted = rows.len() < want as usize;
            for r in rows {
                scanned += 1;
                cursor = Some(r.name.as_str().to_string());
                if !everything && !self.may_list(&caller.subject, &grants, &r) {
                    continue;
                }
                if out.len() == n as usize {
                    let next = out.last().map(|r| r.name.as_str().to_string());
                    return Ok((out, next));
                }
                out.push(r);
            }
            if exhausted {
                return Ok((out, None));
            }
            if scanned >= MAX_SCANNED {
                return Ok((out, cursor));
            }
        }
    }

    /// Whether `subject` may pull `r` (the listing's filter).
    fn may_list(&self, subject: &Subject, grants: &[rbac::Grant], r: &RepoSettings) -> bool {
        let repo = rbac::Repository {
            name: r.name.clone(),
            visibility: Some(r.visibility),
            // The owning account's kind, by id (never the caller's name).
            namespace: r.namespace,
        };
        !rbac::catalog_filter(subject, grants, [&repo]).is_empty()
    }

    // --- the token service -----------------------------------------------------------

    /// Issues a registry token to `caller` for `scopes`: each scope gets exactly the
    /// actions the caller's roles grant (possibly none). `service` must be this service's.
    pub async fn issue(
        &self,
        caller: &Caller,
        service: Option<&str>,
        scopes: &[Scope],
        offline: bool,
    ) -> Result<IssuedToken, AccessError> {
        if let Some(s) = service {
            if s != self.cfg.service {
                return Err(AccessError::BadRequest(format!(
                    "this token service issues tokens for service {:?}, not {s:?}",
                    self.cfg.service
                )));
            }
        }
        let mut access = Vec::new();
        for scope in scopes {
            let granted: Vec<Action> = match (&scope.resource_type, &scope.name) {
                (ResourceType::Repository, ResourceName::Repository(repo)) => {
                    let mut g = Vec::new();
                    for a in &scope.actions {
                        let Some(perm) = Permission::for_action(a) else {
                            continue;
                        };
                        if self.authorize(caller, repo, perm).await? == Verdict::Allowed {
                            g.push(a.clone());
                        }
                    }
                    g
                }
                (ResourceType::Registry, ResourceName::Other(n)) if n == "catalog" => {
                    // Everyone may list; the listing shows only what they may pull.
                    scope
                        .actions
                        .iter()
                        .filter(|a| **a == Action::All)
                        .cloned()
                        .collect()
                }
                _ => vec![],
            };
            if !granted.is_empty() {
                access.push(AccessEntry {
                    resource_type: scope.resource_type.as_str().to_string(),
                    name: scope.name.as_str().to_string(),
                    actions: granted.iter().map(|a| a.as_str().to_string()).collect(),
                });
            }
        }
        let now = now_secs();
        let ttl = self.cfg.token_ttl.as_secs().max(1);
        let sub = caller.name.clone().unwrap_or_default();
        let mut claims = Claims::new(&self.cfg.issuer, &sub, &self.cfg.service, access, now, ttl);
        claims.restriction = caller.subject.restriction.clone();
        let keys = self.current_keys();
        let jwt = token::issue(&claims, &keys.signing);
        // A refresh token derives from the credential just proved, and ends with it.
        let refresh_token = match (offline, caller.account, &caller.credential) {
            (true, Some(uid), Some(parent)) if caller.method != AuthMethod::Bearer => {
                let s = secret::generate();
                let expires_at = self
                    .cfg
                    .refresh_ttl
                    .map(|d| now_ms() + d.as_millis() as i64);
                self.identity
                    .token_create(&NewToken {
                        id: s.id.clone(),
                        kind: TokenKind::Refresh,
                        user_id: uid,
                        description: "docker login".into(),
                        hash: s.hash,
                        expires_at,
                        restriction: caller.subject.restriction.clone(),
                        parent: Some(parent.clone()),
                    })
                    .await?;
                Some(s.token)
            }
            _ => None,
        };
        // An anonymous request granted nothing is no event (clients ask before they log
        // in); the HTTP layer counts those in a metric instead.
        if !(caller.is_anonymous() && claims.access.is_empty()) {
            self.audit(
                caller,
                "token.issue",
                &sub,
                serde_json::json!({ "access": claims.access, "offline": refresh_token.is_some() }),
            )
            .await;
        }
        Ok(IssuedToken {
            token: jwt,
            expires_in: ttl,
            issued_at: rfc3339(now),
            refresh_token,
            access: claims.access,
        })
    }

    // --- access tokens ---------------------------------------------------------------

    /// Creates an access token for `user`: returns the secret once; only its hash is
    /// stored.
    pub async fn create_access_token(
        &self,
        actor: &Caller,
        user: AccountId,
        description: &str,
        expires_at: Option<i64>,
        restriction: Option<Restriction>,
    ) -> Result<CreatedToken, AccessError> {
        let s = secret::generate();
        let record = self
            .identity
            .token_create(&NewToken {
                id: s.id.clone(),
                kind: TokenKind::Access,
                user_id: user,
                description: description.to_string(),
                hash: s.hash,
                expires_at,
                restriction,
                parent: None,
            })
            .await?;
        self.audit(
            actor,
            "token.create",
            s.id.as_str(),
            serde_json::json!({ "user": user, "description": description }),
        )
        .await;
        Ok(CreatedToken {
            token: s.token,
            record,
        })
    }

    /// Forgets remembered passwords and bearer decisions (after a password change or
    /// deactivation), so the next request checks the store again.
    pub fn forget_credentials(&self) {
        self.password_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        fresh.checked = None;
        fresh.drop_all();
    }

    /// Whether the account behind bearer `claims` may still `perm` on `repo` as it is now
    /// (active, its memberships and grants, the repository's visibility, within the
    /// token's restriction): decided once per token, repository and permission, again
    /// whenever the identity revision moved (read at most every [`IDENTITY_CHECK`]).
    async fn still_allowed(
        &self,
        caller: &Caller,
        claims: &Claims,
        repo: &RepoName,
        perm: Permission,
    ) -> Result<bool, AccessError> {
        self.refresh_identity().await;
        let key = (claims.jti.clone(), repo.to_string(), perm);
        let generation = {
            let fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(&allowed) = fresh.decisions.get(&key) {
                return Ok(allowed);
            }
            fresh.generation
        };
        let mut subject = self.bearer_subject(caller).await?;
        subject.restriction = claims.restriction.clone();
        let allowed = self.decide(&subject, repo, perm).await? == Decision::Allowed;
        let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        if fresh.generation == generation {
            if fresh.decisions.len() >= CACHE_LIMIT {
                fresh.drop_all();
            }
            fresh.decisions.insert(key, allowed);
        }
        Ok(allowed)
    }

    /// Reads the identity revision when the last read is older than [`IDENTITY_CHECK`],
    /// dropping the bearer decisions when it moved (or cannot be read: they are then made
    /// again from the store, which fails alike).
    async fn refresh_identity(&self) {
        let due = {
            let fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
            fresh.checked.is_none_or(|t| t.elapsed() >= IDENTITY_CHECK)
        };
        if !due {
            return;
        }
        let revision = self.identity.identity_revision().await;
        let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        match revision {
            Ok(r) if r == fresh.revision && fresh.checked.is_some() => {}
            Ok(r) => {
                fresh.revision = r;
                fresh.drop_all();
            }
            Err(e) => {
                tracing::warn!(error = %e, "identity revision not read; deciding again");
                fresh.drop_all();
            }
        }
        fresh.checked = Some(Instant::now());
    }

    // --- audit -----------------------------------------------------------------------

    /// Appends an audit event. A store failure is logged, never fatal to the request.
    pub async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) {
        let actor = match caller.account {
            Some(a) => Some(a),
            None if caller.name.is_some() && !caller.is_local_admin() => self
                .identity
                .user_get(UserKey::Name(caller.name.as_deref().unwrap_or_default()))
                .await
                .ok()
                .flatten()
                .map(|u| u.id),
            None => None,
        };
        let mut detail = detail;
        if let (Some(n), serde_json::Value::Object(m)) = (&caller.name, &mut detail) {
            m.entry("actor_name").or_insert_with(|| n.clone().into());
        }
        let ev = NewAuditEvent {
            at: now_ms(),
            actor,
            source: match caller.is_local_admin() {
                true => Some(LOCAL_ADMIN.to_string()),
                false => caller.source.map(|s| s.to_string()),
            },
            action: action.to_string(),
            target: target.to_string(),
            detail,
        };
        if let Err(e) = self.identity.audit_append(&ev).await {
            tracing::error!(error = %e, action, "could not append to the audit log");
        }
    }
}

/// How a signing key is stored: `sealed:` and the base64 of the key sealed under the
/// key-encryption key, bound to its kid.
const SEALED: &str = "sealed:";

fn sealing_place(kid: &str) -> [&str; 2] {
    ["token signing key", kid]
}

fn seal_key(kek: &Kek, key: &SigningKey) -> String {
    let sealed = kek.seal(&sealing_place(key.kid()), key.to_pkcs8_pem().as_bytes());
    format!(
        "{SEALED}{}",
        base64::engine::general_purpose::STANDARD.encode(sealed)
    )
}

/// The key a stored record holds, opened with `kek` (or as it is, in a row written before
/// keys were sealed).
pub fn signing_key(kek: &Kek, r: &SigningKeyRecord) -> Result<SigningKey, MetaError> {
    let unreadable = |e: String| MetaError::Backend(format!("the token signing key {} {e}", r.kid));
    let pem = match r.pem.strip_prefix(SEALED) {
        None => r.pem.clone(),
        Some(sealed) => {
            let sealed = base64::engine::general_purpose::STANDARD
                .decode(sealed)
                .map_err(|e| unreadable(e.to_string()))?;
            let pem = kek
                .open(&sealing_place(&r.kid), &sealed)
                .map_err(|e| unreadable(e.to_string()))?;
            String::from_utf8(pem).map_err(|e| unreadable(e.to_string()))?
        }
    };
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| unreadable(e.to_string()))
}

/// The key a record holds; one stored in clear is sealed in place. One that does not open
/// is an error: every replica must have the same key-encryption key, and a replica that
/// made keys of its own would split the cluster.
async fn open_key(
    identity: &dyn IdentityStore,
    kek: &Kek,
    r: &SigningKeyRecord,
) -> Result<SigningKey, MetaError> {
    let key = signing_key(kek, r)?;
    if !r.pem.starts_with(SEALED)
        && identity
            .signing_key_reseal(&r.kid, &r.pem, &seal_key(kek, &key))
            .await?
    {
        tracing::info!(kid = %r.kid, "sealed the token signing key under the key-encryption key");
    }
    Ok(key)
}

/// How many password hashes may run at once: one per core.
fn hashing_permits() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `work` on the blocking pool, holding a permit of `limit` while it runs.
async fn run_limited<T: Send + 'static>(
    limit: &Arc<tokio::sync::Semaphore>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let permit = limit.clone().acquire_owned().await.ok()?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .ok()
}

async fn load_keys(identity: &dyn IdentityStore, kek: &Kek) -> Result<Keys, MetaError> {
    for _ in 0..3 {
        let records = identity.signing_keys().await?;
        let mut verifying = Vec::new();
        let mut signing = None;
        for r in &records {
            let k = open_key(identity, kek, r).await?;
            verifying.push(k.verifying_key().clone());
            if !r.retired && signing.is_none() {
                signing = Some(k);
            }
        }
        if let Some(signing) = signing {
            return Ok(Keys {
                signing,
                verifying,
                loaded: Instant::now(),
            });
        }
        let k = SigningKey::generate();
        match identity.signing_key_add(k.kid(), &seal_key(kek, &k)).await {
            Ok(_) => {
                tracing::info!(kid = %k.kid(), "created the token signing key");
            }
            Err(MetaError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Err(MetaError::Backend(
        "could not load or create a token signing key".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn password_hashing_runs_at_most_as_many_at_once_as_permits() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let limit = Arc::new(tokio::sync::Semaphore::new(2));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (limit, now, most) = (limit.clone(), now.clone(), most.clone());
                tokio::spawn(async move {
                    run_limited(&limit, move || {
                        let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(running, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Some(()));
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn failures_block_after_limit_and_expire() {
        let mut f = Failures::default();
        let w = Duration::from_millis(50);
        for _ in 0..3 {
            assert!(f.blocked("u:a", 3, w).is_none());
            f.fail("u:a".into(), w);
        }
        assert!(f.blocked("u:a", 3, w).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(f.blocked("u:a", 3, w).is_none());
    }
}
