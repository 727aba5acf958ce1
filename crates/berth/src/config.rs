//! Configuration: defaults, then a TOML file, then `BERTH_*` environment variables, then
//! command-line flags, each overriding the one before. Every option, its default and its
//! environment variable are documented in `docs/configuration.md`.

use anyhow::{bail, Context};
use berth_blob::s3::S3Config;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Directory for the embedded stores (SQLite file, blob files).
    pub data_dir: PathBuf,
    /// Identifier of this replica in cluster status; empty: `<hostname>:<port>`.
    pub replica_id: String,
    pub tls: TlsConfig,
    pub http: HttpSection,
    pub metadata: MetadataConfig,
    pub blobs: BlobsConfig,
    pub registry: RegistrySection,
    pub auth: AuthSection,
    /// The company directory (LDAP / Active Directory); none by default.
    pub directory: Option<berth_directory::DirectoryConfig>,
    pub directory_sync: DirectorySyncSection,
    pub gc: GcSection,
    pub jobs: JobsSection,
    pub cluster: ClusterSection,
    pub audit: AuditSection,
    pub keys: KeysSection,
    pub trust: TrustSection,
    pub policy: PolicySection,
    pub log: LogConfig,
}

/// The background jobs of `berth serve` (GC schedule, directory sync, audit retention).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsSection {
    /// How long a job's lease lasts unless its holder renews it (every third of it): how
    /// soon another replica takes over the jobs of one that died. A duration (`30s`).
    pub lease_ttl: String,
}

impl Default for JobsSection {
    fn default() -> Self {
        JobsSection {
            lease_ttl: "30s".into(),
        }
    }
}

impl JobsSection {
    /// The lease time to live (at least 300 ms).
    pub fn lease_ttl(&self) -> anyhow::Result<std::time::Duration> {
        let d = parse_duration(&self.lease_ttl).context("jobs.lease_ttl")?;
        if d < std::time::Duration::from_millis(300) {
            bail!("jobs.lease_ttl must be at least 300ms");
        }
        Ok(d)
    }
}

/// The replicas of one registry (processes on the same PostgreSQL and S3 stores).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// Where the other replicas and operators reach this one (`host:port`); empty: the
    /// listen address.
    pub advertise_address: String,
    /// How often each replica writes its heartbeat to the metadata store (a duration).
    pub heartbeat: String,
    /// How many heartbeats a replica may miss before cluster status says it is down.
    pub missed_heartbeats: u32,
    /// How many healthy replicas the registry should have: fewer is a critical issue.
    pub expected_replicas: u32,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            advertise_address: String::new(),
            heartbeat: "5s".into(),
            missed_heartbeats: 3,
            expected_replicas: 1,
        }
    }
}

impl ClusterSection {
    /// The heartbeat period (at least 100 ms).
    pub fn heartbeat(&self) -> anyhow::Result<std::time::Duration> {
        let d = parse_duration(&self.heartbeat).context("cluster.heartbeat")?;
        if d < std::time::Duration::from_millis(100) {
            bail!("cluster.heartbeat must be at least 100ms");
        }
        if self.missed_heartbeats == 0 {
            bail!("cluster.missed_heartbeats must be at least 1");
        }
        Ok(d)
    }
}

/// The key-encryption key, which seals every private key the registry keeps in its
/// metadata store (the trust service's snapshot and timestamp keys).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysSection {
    /// A file holding 32 random bytes in base64 (`head -c 32 /dev/urandom | base64`).
    /// Empty: on the embedded default, `<data_dir>/kek`, made at the first start; on
    /// PostgreSQL it must be set, the same file on every replica.
    pub kek_file: String,
}

/// Docker Content Trust (the Notary service under `/v2/<gun>/_trust/`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustSection {
    /// Names a GUN's host part may take besides the `Host` a client sends and the listen
    /// address: the registry's public names, with the port clients write
    /// (`registry.example.com`, `registry.example.com:5000`).
    pub hostnames: Vec<String>,
}

/// The registry-wide default signature policy: what applies where no namespace or
/// repository sets one (through `/api/v0` or `berth admin policy`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySection {
    /// `off`, `audit` or `enforce`.
    pub mode: String,
    /// Accepted signature formats (`dct`, `cosign`, `notation`); empty: all.
    pub formats: Vec<String>,
    /// Every signer must have signed (else any one).
    pub all_of: bool,
    /// Required signers: `user:NAME`, `team:ORG/TEAM`, `key:ID`; empty: any valid
    /// signature.
    pub signers: Vec<String>,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            mode: "off".into(),
            formats: vec![],
            all_of: false,
            signers: vec![],
        }
    }
}

impl PolicySection {
    /// The default policy, checked.
    pub fn policy(&self) -> anyhow::Result<berth_core::policy::Policy> {
        berth_core::policy::Policy::parse(&self.mode, &self.formats, self.all_of, &self.signers)
            .context("policy")
    }
}

/// The audit log.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSection {
    /// Days an audit event is kept; older ones are deleted by a job of `berth serve`
    /// (hourly). 0: kept forever.
    pub retention_days: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection { retention_days: 90 }
    }
}

/// Garbage collection: `berth gc`, the schedule of `berth serve`, the API's on-demand runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcSection {
    /// Cron expression of scheduled runs (five fields, or six with seconds); empty: none.
    /// A schedule set through the API overrides it.
    pub schedule: String,
    /// `online` (no pause) or `read-only` (writes refused with 503 during the run).
    #[serde(deserialize_with = "from_str")]
    pub mode: berth_core::gc::GcMode,
    /// Unreferenced blobs and untagged manifests younger than this are kept (a push in
    /// progress). A duration: `90s`, `30m`, `1h`, `2d`.
    pub grace: String,
    /// Stop a run cleanly after this long (the next run continues); empty: no limit.
    pub max_duration: String,
    /// Delete manifests no tag, index or tagged referrer needs.
    pub delete_untagged: bool,
    /// Delete a referrer once its subject is gone.
    pub referrers_follow_subject: bool,
    /// Upload sessions not advanced for this long are purged with their data.
    pub upload_max_age: String,
    /// Online runs: the share of wall time the sweep works, resting in proportion after
    /// each batch so pushes keep their throughput (0 < pace <= 1; 1: no rest).
    pub pace: f64,
}

impl Default for GcSection {
    fn default() -> Self {
        GcSection {
            schedule: String::new(),
            mode: berth_core::gc::GcMode::Online,
            grace: "1h".into(),
            max_duration: String::new(),
            delete_untagged: true,
            referrers_follow_subject: true,
            upload_max_age: "24h".into(),
            pace: berth_core::gc::GcOptions::default().pace,
        }
    }
}

/// A GC pace: a share of wall time in (0, 1].
pub fn check_pace(p: f64) -> anyhow::Result<f64> {
    berth_core::gc::check_pace(p).map_err(anyhow::Error::msg)
}

/// A duration written `500ms`, `90s`, `30m`, `1h`, `2d`, `1h 30m`, or bare seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    berth_core::time::parse_duration(text).map_err(anyhow::Error::msg)
}

/// Deserialises a value through its `FromStr` (the same words the command line takes).
fn from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

impl GcSection {
    /// The run options these settings give (holder and trigger set by the caller).
    pub fn options(&self) -> anyhow::Result<berth_core::gc::GcOptions> {
        Ok(berth_core::gc::GcOptions {
            grace: parse_duration(&self.grace).context("gc.grace")?,
            mode: self.mode,
            max_duration: if self.max_duration.trim().is_empty() {
                None
            } else {
                Some(parse_duration(&self.max_duration).context("gc.max_duration")?)
            },
            delete_untagged: self.delete_untagged,
            referrers_follow_subject: self.referrers_follow_subject,
            upload_max_age: parse_duration(&self.upload_max_age).context("gc.upload_max_age")?,
            pace: check_pace(self.pace).context("gc.pace")?,
            ..berth_core::gc::GcOptions::default()
        })
    }
}

/// When `berth serve` syncs accounts and teams from the directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectorySyncSection {
    /// Seconds between scheduled syncs (the first runs at start-up); 0: only on demand
    /// (`berth admin directory sync`, the management API).
    pub interval_secs: u64,
}

impl Default for DirectorySyncSection {
    fn default() -> Self {
        DirectorySyncSection {
            interval_secs: 3600,
        }
    }
}

/// Authentication and the token service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// The token protocol's `service` (JWT audience).
    pub service: String,
    /// The JWT issuer.
    pub issuer: String,
    /// Public URL of the token endpoint; empty: `<scheme>://<Host header>/auth/token`.
    pub realm: String,
    /// Lifetime of bearer tokens, seconds.
    pub token_ttl_secs: u64,
    /// Lifetime of refresh (offline) tokens, days; 0: until revoked.
    pub refresh_token_ttl_days: u64,
    /// Anonymous callers may push and pull every repository (a laptop registry).
    pub anonymous_push: bool,
    /// Failed logins per account within the window before 429.
    pub login_failures_per_account: u32,
    /// Failed logins per source address within the window before 429.
    pub login_failures_per_source: u32,
    /// The failed-login window, seconds.
    pub login_window_secs: u64,
    /// How long a verified password is remembered, seconds (0: argon2 on every request).
    pub credential_cache_secs: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        let d = berth_core::AccessConfig::default();
        AuthSection {
            service: d.service,
            issuer: d.issuer,
            realm: String::new(),
            token_ttl_secs: d.token_ttl.as_secs(),
            refresh_token_ttl_days: 90,
            anonymous_push: false,
            login_failures_per_account: d.login_failures_per_account,
            login_failures_per_source: d.login_failures_per_source,
            login_window_secs: d.login_window.as_secs(),
            credential_cache_secs: d.credential_cache.as_secs(),
        }
    }
}

impl AuthSection {
    /// The core service's settings.
    pub fn access_config(&self) -> berth_core::AccessConfig {
        use std::time::Duration;
        berth_core::AccessConfig {
            service: self.service.clone(),
            issuer: self.issuer.clone(),
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            refresh_ttl: (self.refresh_token_ttl_days > 0)
                .then(|| Duration::from_secs(self.refresh_token_ttl_days * 86_400)),
            anonymous_push: self.anonymous_push,
            login_failures_per_account: self.login_failures_per_account,
            login_failures_per_source: self.login_failures_per_source,
            login_window: Duration::from_secs(self.login_window_secs),
            credential_cache: Duration::from_secs(self.credential_cache_secs),
            password_params: berth_auth::password::PasswordParams::default(),
        }
    }
}

/// The listener's limits: what a connection may take before it is closed, and how many
/// may be open at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// A request head must be complete this long after the connection starts, or after
    /// the first byte following an idle spell. A duration (`10s`).
    pub header_read_timeout: String,
    /// A TLS handshake must finish this long after the connection is accepted.
    pub tls_handshake_timeout: String,
    /// A connection with no request in progress is closed after this long.
    pub idle_timeout: String,
    /// A request fails when its body delivers no byte for this long while the server
    /// waits for it (a slow upload that keeps moving is not cut); a connection whose
    /// client takes no byte of its response for this long is closed.
    pub body_idle_timeout: String,
    /// Connections open at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// On SIGTERM or SIGINT, how long requests in flight (and background jobs) may take
    /// to finish after the listener closed; then the process exits anyway.
    pub shutdown_timeout: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            header_read_timeout: "10s".into(),
            tls_handshake_timeout: "10s".into(),
            idle_timeout: "60s".into(),
            body_idle_timeout: "60s".into(),
            max_connections: berth_http::server::Limits::default().max_connections,
            shutdown_timeout: "30s".into(),
        }
    }
}

/// The most connections `http.max_connections` may allow.
pub const MAX_CONNECTIONS: usize = 1_000_000;

impl HttpSection {
    /// The drain deadline of a shutdown.
    pub fn shutdown_timeout(&self) -> anyhow::Result<std::time::Duration> {
        parse_duration(&self.shutdown_timeout).context("http.shutdown_timeout")
    }

    /// The listener's limits these settings give.
    pub fn limits(&self) -> anyhow::Result<berth_http::server::Limits> {
        let positive = |text: &str, key: &str| -> anyhow::Result<std::time::Duration> {
            let d = parse_duration(text).with_context(|| format!("http.{key}"))?;
            if d.is_zero() {
                bail!("http.{key} must be longer than zero");
            }
            Ok(d)
        };
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            bail!("http.max_connections must be between 1 and {MAX_CONNECTIONS}");
        }
        Ok(berth_http::server::Limits {
            header_read_timeout: positive(&self.header_read_timeout, "header_read_timeout")?,
            tls_handshake_timeout: positive(&self.tls_handshake_timeout, "tls_handshake_timeout")?,
            idle_timeout: positive(&self.idle_timeout, "idle_timeout")?,
            body_idle_timeout: positive(&self.body_idle_timeout, "body_idle_timeout")?,
            max_connections: self.max_connections,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; with `key`, the listener speaks HTTPS.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    /// `sqlite:PATH` or `postgres://...`; empty: `sqlite:<data_dir>/berth.db`.
    pub url: String,
    /// PostgreSQL: connections in the pool of each process.
    pub max_connections: u32,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            url: String::new(),
            max_connections: berth_meta::postgres::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The most connections `metadata.max_connections` may ask for.
pub const MAX_PG_CONNECTIONS: u32 = 1000;

/// Where blobs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BlobsKind {
    /// Files under `blobs.path`.
    Filesystem,
    /// An S3-compatible bucket (`blobs.s3`).
    S3,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlobsConfig {
    /// `filesystem` or `s3`.
    pub kind: BlobsKind,
    /// Filesystem root; empty: `<data_dir>/blobs`.
    pub path: Option<PathBuf>,
    /// S3-compatible storage, when `kind = "s3"` (the blob crate's own settings).
    pub s3: S3Config,
}

impl Default for BlobsConfig {
    fn default() -> Self {
        BlobsConfig {
            kind: BlobsKind::Filesystem,
            path: None,
            s3: S3Config::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySection {
    /// Advertised `OCI-Chunk-Min-Length` (0: not sent).
    pub chunk_min_length: u64,
    /// Largest page of `_catalog` and tag lists.
    pub max_page: u32,
    /// Refuse every write (maintenance).
    pub read_only: bool,
}

impl Default for RegistrySection {
    fn default() -> Self {
        RegistrySection {
            chunk_min_length: 0,
            max_page: 10_000,
            read_only: false,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event (coloured on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `berth_http=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// The levels a filter directive may name.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a tracing filter: comma-separated directives, each a level or `target=level`.
/// A bare word that is not a level would be read by tracing as a target enabled at every
/// level, so `infoo` would silence every line: it is refused instead.
pub fn check_log_filter(filter: &str) -> anyhow::Result<()> {
    let bad = |d: &str| {
        anyhow::anyhow!(
            "log.level: {d:?} is neither a level ({}) nor TARGET=LEVEL, in {filter:?}",
            LEVELS.join(", ")
        )
    };
    if filter.trim().is_empty() {
        bail!("log.level must not be empty (e.g. \"info\" or \"berth_http=debug,info\")");
    }
    for d in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = d.rsplit_once('=').map_or(d, |(_, l)| l);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(bad(d));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("log.level {filter:?}: {e}"))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".into(),
            data_dir: PathBuf::from("./berth-data"),
            replica_id: String::new(),
            tls: TlsConfig::default(),
            http: HttpSection::default(),
            metadata: MetadataConfig::default(),
            blobs: BlobsConfig::default(),
            registry: RegistrySection::default(),
            auth: AuthSection::default(),
            directory: None,
            directory_sync: DirectorySyncSection::default(),
            gc: GcSection::default(),
            jobs: JobsSection::default(),
            cluster: ClusterSection::default(),
            audit: AuditSection::default(),
            keys: KeysSection::default(),
            trust: TrustSection::default(),
            policy: PolicySection::default(),
            log: LogConfig::default(),
        }
    }
}

/// Flags shared by every subcommand that opens the stores.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreFlags {
    /// TOML configuration file (env BERTH_CONFIG).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Data directory for the embedded stores (env BERTH_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Metadata store: `sqlite:PATH` or `postgres://...` (env BERTH_METADATA_URL).
    #[arg(long)]
    pub metadata: Option<String>,
    /// Blob store kind (env BERTH_BLOBS_KIND).
    #[arg(long, value_enum)]
    pub blobs: Option<BlobsKind>,
}

/// Flags of `berth serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeFlags {
    /// Listen address HOST:PORT (env BERTH_LISTEN).
    #[arg(long)]
    pub listen: Option<String>,
    /// PEM certificate chain for HTTPS (env BERTH_TLS_CERT).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (env BERTH_TLS_KEY).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// How the text of an environment variable becomes a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    /// As written (strings, paths, durations, words such as `s3`).
    Text,
    /// `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`.
    Bool,
    /// A whole number.
    Integer,
    /// A decimal number.
    Number,
    /// A list of words separated by commas (`a.example,b.example:5000`).
    List,
}

/// Every `BERTH_*` override: the variable, the key it sets, how its text is read.
/// docs/configuration.md lists the same pairs (a test checks both ways).
pub const ENV_OVERRIDES: &[(&str, &str, EnvKind)] = {
    use EnvKind::*;
    &[
        ("BERTH_LISTEN", "listen", Text),
        ("BERTH_DATA_DIR", "data_dir", Text),
        ("BERTH_REPLICA_ID", "replica_id", Text),
        ("BERTH_TLS_CERT", "tls.cert", Text),
        ("BERTH_TLS_KEY", "tls.key", Text),
        (
            "BERTH_HTTP_HEADER_READ_TIMEOUT",
            "http.header_read_timeout",
            Text,
        ),
        (
            "BERTH_HTTP_TLS_HANDSHAKE_TIMEOUT",
            "http.tls_handshake_timeout",
            Text,
        ),
        ("BERTH_HTTP_IDLE_TIMEOUT", "http.idle_timeout", Text),
        (
            "BERTH_HTTP_BODY_IDLE_TIMEOUT",
            "http.body_idle_timeout",
            Text,
        ),
        (
            "BERTH_HTTP_MAX_CONNECTIONS",
            "http.max_connections",
            Integer,
        ),
        ("BERTH_HTTP_SHUTDOWN_TIMEOUT", "http.shutdown_timeout", Text),
        ("BERTH_JOBS_LEASE_TTL", "jobs.lease_ttl", Text),
        (
            "BERTH_CLUSTER_ADVERTISE_ADDRESS",
            "cluster.advertise_address",
            Text,
        ),
        ("BERTH_CLUSTER_HEARTBEAT", "cluster.heartbeat", Text),
        (
            "BERTH_CLUSTER_MISSED_HEARTBEATS",
            "cluster.missed_heartbeats",
            Integer,
        ),
        (
            "BERTH_CLUSTER_EXPECTED_REPLICAS",
            "cluster.expected_replicas",
            Integer,
        ),
        ("BERTH_METADATA_URL", "metadata.url", Text),
        (
            "BERTH_METADATA_MAX_CONNECTIONS",
            "metadata.max_connections",
            Integer,
        ),
        ("BERTH_BLOBS_KIND", "blobs.kind", Text),
        ("BERTH_BLOBS_PATH", "blobs.path", Text),
        ("BERTH_S3_ENDPOINT", "blobs.s3.endpoint", Text),
        ("BERTH_S3_BUCKET", "blobs.s3.bucket", Text),
        ("BERTH_S3_REGION", "blobs.s3.region", Text),
        ("BERTH_S3_ACCESS_KEY_ID", "blobs.s3.access_key_id", Text),
        (
            "BERTH_S3_SECRET_ACCESS_KEY",
            "blobs.s3.secret_access_key",
            Text,
        ),
        ("BERTH_S3_PATH_STYLE", "blobs.s3.path_style", Bool),
        ("BERTH_S3_ALLOW_HTTP", "blobs.s3.allow_http", Bool),
        ("BERTH_S3_PREFIX", "blobs.s3.prefix", Text),
        ("BERTH_READ_ONLY", "registry.read_only", Bool),
        ("BERTH_ANONYMOUS_PUSH", "auth.anonymous_push", Bool),
        ("BERTH_AUTH_REALM", "auth.realm", Text),
        ("BERTH_AUTH_SERVICE", "auth.service", Text),
        (
            "BERTH_AUDIT_RETENTION_DAYS",
            "audit.retention_days",
            Integer,
        ),
        (
            "BERTH_DIRECTORY_SYNC_INTERVAL_SECS",
            "directory_sync.interval_secs",
            Integer,
        ),
        ("BERTH_KEK_FILE", "keys.kek_file", Text),
        ("BERTH_TRUST_HOSTNAMES", "trust.hostnames", List),
        ("BERTH_POLICY_MODE", "policy.mode", Text),
        ("BERTH_POLICY_FORMATS", "policy.formats", List),
        ("BERTH_POLICY_ALL_OF", "policy.all_of", Bool),
        ("BERTH_POLICY_SIGNERS", "policy.signers", List),
        ("BERTH_GC_SCHEDULE", "gc.schedule", Text),
        ("BERTH_GC_MODE", "gc.mode", Text),
        ("BERTH_GC_GRACE", "gc.grace", Text),
        ("BERTH_GC_MAX_DURATION", "gc.max_duration", Text),
        ("BERTH_GC_PACE", "gc.pace", Number),
        ("BERTH_GC_UPLOAD_MAX_AGE", "gc.upload_max_age", Text),
        ("BERTH_LOG", "log.level", Text),
        ("BERTH_LOG_FORMAT", "log.format", Text),
    ]
};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// The value `text` of the variable `name` gives.
fn env_value(name: &str, text: &str, kind: EnvKind) -> anyhow::Result<toml::Value> {
    Ok(match kind {
        EnvKind::Text => toml::Value::String(text.to_string()),
        EnvKind::Bool => toml::Value::Boolean(match text {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => bail!("{name}={text:?} is not a boolean"),
        }),
        EnvKind::Integer => toml::Value::Integer(
            text.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{name}={text:?} is not a whole number"))?,
        ),
        EnvKind::List => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(|w| toml::Value::String(w.to_string()))
                .collect(),
        ),
        EnvKind::Number => toml::Value::Float(
            text.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{name}={text:?} is not a number"))?,
        ),
    })
}

/// Sets, in the configuration file's table, every key whose variable is set (a variable
/// set to the empty string counts as unset).
fn apply_env(table: &mut toml::Table, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let file_has_s3 = table.get("blobs").and_then(|b| b.get("s3")).is_some();
    for &(name, key, kind) in ENV_OVERRIDES {
        let Some(text) = get(name) else { continue };
        let value = env_value(name, &text, kind)?;
        let (sections, last) = match key.rsplit_once('.') {
            Some((sections, last)) => (Some(sections), last),
            None => (None, key),
        };
        let mut t = &mut *table;
        for part in sections.into_iter().flat_map(|s| s.split('.')) {
            t = t
                .entry(part)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .with_context(|| format!("{name}: `{part}` in the configuration is not a table"))?;
        }
        t.insert(last.to_string(), value);
    }
    // `blobs.s3` requires its bucket in a file; a section the environment made has its
    // fields one by one, and a missing bucket is for `validate` to name (when the blob
    // store is S3 at all).
    if let Some(s3) = table
        .get_mut("blobs")
        .filter(|_| !file_has_s3)
        .and_then(|b| b.get_mut("s3"))
        .and_then(|s| s.as_table_mut())
    {
        s3.entry("bucket")
            .or_insert_with(|| toml::Value::String(String::new()));
    }
    Ok(())
}

impl Config {
    /// Loads the configuration for a subcommand.
    pub fn load(stores: &StoreFlags, serve: Option<&ServeFlags>) -> anyhow::Result<Config> {
        let file = stores
            .config
            .clone()
            .or_else(|| env("BERTH_CONFIG").map(PathBuf::from));
        let mut table = match &file {
            Some(p) => Self::file_table(p)?,
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let mut cfg: Config =
            toml::Value::Table(table)
                .try_into()
                .with_context(|| match &file {
                    Some(p) => format!(
                        "the configuration in {} with BERTH_* variables",
                        p.display()
                    ),
                    None => "the configuration in BERTH_* variables".to_string(),
                })?;
        if let Some(d) = &stores.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(m) = &stores.metadata {
            cfg.metadata.url = m.clone();
        }
        if let Some(b) = stores.blobs {
            cfg.blobs.kind = b;
        }
        if let Some(s) = serve {
            if let Some(l) = &s.listen {
                cfg.listen = l.clone();
            }
            if let (Some(c), Some(k)) = (&s.tls_cert, &s.tls_key) {
                cfg.tls.cert = Some(c.clone());
                cfg.tls.key = Some(k.clone());
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn file_table(p: &Path) -> anyhow::Result<toml::Table> {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading config file {}", p.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", p.display()))
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            bail!("tls.cert and tls.key go together");
        }
        if self.blobs.kind == BlobsKind::S3 && self.blobs.s3.bucket.is_empty() {
            bail!("blobs.kind = \"s3\" needs blobs.s3.bucket (env BERTH_S3_BUCKET)");
        }
        if !(1..=MAX_PG_CONNECTIONS).contains(&self.metadata.max_connections) {
            bail!("metadata.max_connections must be between 1 and {MAX_PG_CONNECTIONS}");
        }
        let url = &self.metadata.url;
        if !(url.is_empty()
            || url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            bail!("metadata.url must be sqlite:PATH or postgres://..., not {url:?}");
        }
        if self.auth.service.is_empty() || self.auth.issuer.is_empty() {
            bail!("auth.service and auth.issuer must not be empty");
        }
        if !(30..=86_400).contains(&self.auth.token_ttl_secs) {
            bail!("auth.token_ttl_secs must be between 30 and 86400");
        }
        self.http.limits()?;
        self.http.shutdown_timeout()?;
        self.jobs.lease_ttl()?;
        self.cluster.heartbeat()?;
        if let Some(d) = &self.directory {
            d.validate()
                .map_err(|e| anyhow::anyhow!("directory settings: {e}"))?;
        }
        self.gc.options()?;
        if !self.gc.schedule.trim().is_empty() {
            berth_core::gc::parse_schedule(&self.gc.schedule)
                .map_err(|e| anyhow::anyhow!("gc.schedule: {e}"))?;
        }
        check_log_filter(&self.log.level)?;
        Ok(())
    }

    /// The SQLite path or PostgreSQL URL to open.
    pub fn metadata_url(&self) -> String {
        if self.metadata.url.is_empty() {
            format!("sqlite:{}", self.data_dir.join("berth.db").display())
        } else {
            self.metadata.url.clone()
        }
    }

    /// The filesystem blob root.
    pub fn blob_path(&self) -> PathBuf {
        self.blobs
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_file() {
        let c = Config::default();
        assert_eq!(c.listen, "127.0.0.1:5000");
        assert_eq!(c.metadata_url(), "sqlite:./berth-data/berth.db");
        let c: Config = toml::from_str(
            "listen = \"0.0.0.0:8080\"\n[blobs]\nkind = \"s3\"\n[blobs.s3]\nbucket = \"b\"\nsecret_access_key = \"hunter2\"\n",
        )
        .unwrap();
        assert_eq!(c.blobs.s3.bucket, "b");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(toml::from_str::<Config>("nonsense = 1").is_err());
    }

    #[test]
    fn http_limits() {
        use std::time::Duration;
        let l = Config::default().http.limits().unwrap();
        assert_eq!(l.header_read_timeout, Duration::from_secs(10));
        assert_eq!(l.tls_handshake_timeout, Duration::from_secs(10));
        assert_eq!(l.idle_timeout, Duration::from_secs(60));
        assert_eq!(l.body_idle_timeout, Duration::from_secs(60));
        assert_eq!(l.max_connections, 4096);
        let c: Config = toml::from_str(
            "[http]\nheader_read_timeout = \"2s\"\nidle_timeout = \"5m\"\nmax_connections = 10\n",
        )
        .unwrap();
        c.validate().unwrap();
        let l = c.http.limits().unwrap();
        assert_eq!(l.header_read_timeout, Duration::from_secs(2));
        assert_eq!(l.idle_timeout, Duration::from_secs(300));
        assert_eq!(l.max_connections, 10);
        for bad in [
            "[http]\nheader_read_timeout = \"0s\"\n",
            "[http]\nbody_idle_timeout = \"soon\"\n",
            "[http]\nmax_connections = 0\n",
        ] {
            let c: Config = toml::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
        assert!(toml::from_str::<Config>("[http]\nread_timeout = \"1s\"\n").is_err());
    }

    #[test]
    fn gc_settings() {
        use std::time::Duration;
        let c = Config::default();
        let o = c.gc.options().unwrap();
        assert_eq!(o.grace, Duration::from_secs(3600));
        assert_eq!(o.upload_max_age, Duration::from_secs(86_400));
        assert_eq!(o.max_duration, None);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        let c: Config = toml::from_str(
            "[gc]\nschedule = \"0 3 * * *\"\nmode = \"read-only\"\ngrace = \"30m\"\nmax_duration = \"1h\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.gc.options().unwrap().max_duration,
            Some(Duration::from_secs(3600))
        );
        let bad: Config = toml::from_str("[gc]\nschedule = \"every day\"\n").unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn directory_and_its_sync() {
        let c = Config::default();
        assert!(c.directory.is_none());
        assert_eq!(c.directory_sync.interval_secs, 3600);
        let c: Config = toml::from_str(
            "[directory]\nurl = \"ldap://ldap.example.org\"\nuser_base = \"ou=people,dc=example,dc=org\"\n\
             group_base = \"ou=groups,dc=example,dc=org\"\n\
             [[directory.sync.teams]]\ngroup = \"developers\"\nteam = \"acme/devs\"\n\
             [directory_sync]\ninterval_secs = 0\n",
        )
        .unwrap();
        let d = c.directory.as_ref().unwrap();
        assert_eq!(d.sync.teams[0].team.to_string(), "acme/devs");
        assert_eq!(c.directory_sync.interval_secs, 0);
        c.validate().unwrap();
        assert!(toml::from_str::<Config>("[directory_sync]\nevery = 1\n").is_err());
    }

    /// Every `BERTH_*` variable in docs/configuration.md is an override of the key its
    /// row names, and every override is documented (issue 11: one mechanism, same names).
    #[test]
    fn documented_variables_are_the_overrides() {
        use std::collections::BTreeMap;
        let doc = include_str!("../../../docs/configuration.md");
        let mut documented = BTreeMap::new();
        // The main table's rows: | `key` | default | `BERTH_...` | flag | meaning |
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (key, var) = (cells[1].trim_matches('`'), cells[3].trim_matches('`'));
            if var.starts_with("BERTH_") {
                assert!(documented.insert(var, key).is_none(), "{var} twice");
            }
        }
        let table: BTreeMap<&str, &str> = ENV_OVERRIDES.iter().map(|(n, k, _)| (*n, *k)).collect();
        assert_eq!(documented, table);
    }

    /// Each override sets the key it names (a wrong key would be refused: every section
    /// denies unknown fields) and reads its text by its kind.
    #[test]
    fn every_override_sets_its_key() {
        for &(name, key, kind) in ENV_OVERRIDES {
            let text = match (key, kind) {
                ("blobs.kind", _) => "s3",
                ("gc.mode", _) => "read-only",
                ("log.format", _) => "json",
                (_, EnvKind::Bool) => "yes",
                (_, EnvKind::Integer) => "7",
                (_, EnvKind::Number) => "0.5",
                (_, EnvKind::Text) => "text-value",
                (_, EnvKind::List) => "a.example, b.example:5000",
            };
            let mut table = toml::Table::new();
            apply_env(&mut table, |n| (n == name).then(|| text.to_string())).unwrap();
            let c: Result<Config, _> = toml::Value::Table(table.clone()).try_into();
            c.unwrap_or_else(|e| panic!("{name} -> {key}: {e}\n{table}"));
            let mut v = &toml::Value::Table(table);
            for part in key.split('.') {
                v = &v[part];
            }
            let want = env_value(name, text, kind).unwrap();
            assert_eq!(v, &want, "{name}");
        }
        let mut table: toml::Table = toml::from_str("[gc]\ngrace = \"2h\"\n").unwrap();
        apply_env(&mut table, |n| {
            (n == "BERTH_GC_MODE").then(|| "online".into())
        })
        .unwrap();
        let c: Config = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(c.gc.grace, "2h", "the file's other keys stay");
        for (name, text) in [
            ("BERTH_READ_ONLY", "maybe"),
            ("BERTH_HTTP_MAX_CONNECTIONS", "many"),
            ("BERTH_GC_PACE", "fast"),
        ] {
            let mut table = toml::Table::new();
            let e = apply_env(&mut table, |n| (n == name).then(|| text.to_string())).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    /// `log.level = "infoo"` would silence every line (tracing reads a bare word as a
    /// target): a filter whose directives are not levels or TARGET=LEVEL is refused.
    #[test]
    fn log_filters_are_checked() {
        for good in [
            "info",
            "warn",
            "berth_http=debug,info",
            "OFF",
            "berth_core=trace",
        ] {
            check_log_filter(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["infoo", "", "info,berth", "berth_http=loud", "debug;info"] {
            assert!(check_log_filter(bad).is_err(), "{bad:?} accepted");
        }
        let c: Config = toml::from_str("[log]\nlevel = \"infoo\"\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("infoo"), "{e}");
        assert!(toml::from_str::<Config>("[log]\nformat = \"xml\"\n").is_err());
    }

    #[test]
    fn metadata_pool_size() {
        let c = Config::default();
        assert_eq!(c.metadata.max_connections, 16);
        let c: Config = toml::from_str("[metadata]\nmax_connections = 40\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.metadata.max_connections, 40);
        let c: Config = toml::from_str("[metadata]\nmax_connections = 0\n").unwrap();
        assert!(c.validate().is_err());
    }

    /// The directory examples of docs/configuration.md are valid configurations.
    #[test]
    fn documented_directory_examples_parse() {
        let doc = include_str!("../../../docs/configuration.md");
        let section = &doc[doc
            .find("## The company directory")
            .expect("directory section")..];
        let examples: Vec<&str> = section
            .split("```toml\n")
            .skip(1)
            .map(|b| &b[..b.find("```").expect("closed block")])
            .collect();
        assert_eq!(examples.len(), 2);
        for text in examples {
            let c: Config = toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            c.validate().unwrap();
            assert!(!c.directory.expect("[directory]").sync.teams.is_empty());
        }
    }
}
