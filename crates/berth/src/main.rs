//! The `berth` binary: parses the command line, loads configuration, chooses the store
//! implementations and runs a subcommand.
//!
//! - [`config`]: defaults, file, environment, flags.
//! - [`stores`]: the only place that names concrete store implementations.
//! - [`fsck`]: `berth fsck`, the consistency check between the two stores.
//! - [`gc`]: `berth gc`, garbage collection on demand, and its status.
//! - [`admin`]: `berth admin`, accounts before the API is reachable; the first administrator.
//! - [`datadir`]: `berth serve` refuses a data directory it could not write.

mod admin;
mod config;
mod datadir;
mod fsck;
mod gc;
mod stores;

use anyhow::Context;
use berth_core::jobs::{Job, Jobs};
use berth_http::{router, server, AppState, ReplicaInfo};
use clap::{Parser, Subcommand};
use config::{Config, ServeFlags, StoreFlags};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Berth: a trusted container image registry"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the registry.
    Serve {
        #[command(flatten)]
        stores: StoreFlags,
        #[command(flatten)]
        serve: ServeFlags,
        /// File holding the first administrator's password (else BERTH_ADMIN_PASSWORD, else
        /// a random one printed once on first start).
        #[arg(long)]
        admin_password_file: Option<std::path::PathBuf>,
    },
    /// Accounts, organisations, teams, repositories and tokens, through the same rules as
    /// the /api/v0 API. Refuses a data directory that holds no registry unless --init.
    Admin {
        #[command(flatten)]
        stores: StoreFlags,
        /// Create the registry's database if the data directory holds none (without it, a
        /// mistyped --data-dir or a run from another directory is refused).
        #[arg(long)]
        init: bool,
        #[command(subcommand)]
        cmd: AdminCli,
    },
    /// Garbage collection: delete what nothing references (works while the registry
    /// serves; one run at a time across replicas). Exit code 2: another run holds the lease.
    Gc {
        #[command(flatten)]
        stores: StoreFlags,
        #[command(flatten)]
        flags: gc::GcFlags,
    },
    /// Check that metadata and blob storage agree: blobs whose bytes do not match their
    /// digest, metadata pointing at missing blobs, orphaned files. Exits 1 on any finding.
    Fsck {
        #[command(flatten)]
        stores: StoreFlags,
        /// Print findings as JSON lines.
        #[arg(long)]
        json: bool,
    },
}

/// `berth admin`: the account commands, and the directory's (which need the configuration).
#[derive(Subcommand)]
enum AdminCli {
    #[command(flatten)]
    Accounts(admin::AdminCmd),
    /// The company directory: sync now, list sync runs.
    #[command(subcommand)]
    Directory(admin::DirectoryCmd),
    /// Docker Content Trust data of repositories.
    #[command(subcommand)]
    Trust(admin::TrustCmd),
    /// Signature policies of namespaces and repositories.
    #[command(subcommand)]
    Policy(admin::PolicyCmd),
    /// Keys and certificates users sign with (cosign, Notation).
    #[command(subcommand)]
    Key(admin::KeyCmd),
}

/// Logs to standard error, in colour only when it is a terminal (and `NO_COLOR` is
/// unset): a file or a pipe gets plain text. `log.level` was checked by `Config::load`.
fn init_logging(cfg: &Config) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if cfg.log.format == config::LogFormat::Json {
        b.json().init();
    } else {
        b.fmt_fields(escaped_fields()).init();
    }
}

/// Text-log fields with every control character escaped, whatever the field holds and
/// however it was recorded (`%` or `?`): a user name, a header or a path sent by a client
/// cannot start a forged line. (The JSON format escapes on its own.) An optional value
/// recorded with `?` prints as its value (`source=127.0.0.1`, not `Some(127.0.0.1)`), or
/// not at all when absent.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = if field.name() == "message" {
            text.as_str()
        } else if text == "None" {
            return Ok(());
        } else {
            text.strip_prefix("Some(")
                .and_then(|t| t.strip_suffix(')'))
                .unwrap_or(&text)
        };
        let text: std::borrow::Cow<str> = if text.chars().any(char::is_control) {
            text.chars()
                .flat_map(char::escape_default)
                .collect::<String>()
                .into()
        } else {
            text.into()
        };
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.cmd {
        Cmd::Serve {
            stores,
            serve,
            admin_password_file,
        } => {
            let cfg = Config::load(&stores, Some(&serve))?;
            init_logging(&cfg);
            rt.block_on(run_serve(cfg, admin_password_file))
        }
        Cmd::Admin { stores, init, cmd } => {
            let cfg = Config::load(&stores, None)?;
            init_logging(&cfg);
            rt.block_on(async {
                let (meta, identity) = stores::open_meta(&cfg, init).await?;
                if let AdminCli::Directory(cmd) = cmd {
                    return admin::run_directory(identity.as_ref(), cfg.directory.as_ref(), cmd)
                        .await;
                }
                // Every other command acts through the access service as the local
                // administrator.
                let kek = stores::kek(&cfg)?;
                let access = stores::access(&cfg, identity.clone(), None, &kek).await?;
                match cmd {
                    AdminCli::Accounts(cmd) => admin::run(&access, cmd).await,
                    AdminCli::Directory(_) => unreachable!("handled above"),
                    AdminCli::Trust(cmd) => {
                        let trust = berth_core::trust::Trust::new(meta, kek, vec![]);
                        admin::run_trust(&access, &trust, cmd).await
                    }
                    AdminCli::Policy(cmd) => {
                        let policies = berth_core::policy::Policies::new(meta, identity)
                            .with_default(cfg.policy.policy()?);
                        admin::run_policy(&access, &policies, cmd).await
                    }
                    AdminCli::Key(cmd) => {
                        let blobs = stores::open_blobs(&cfg)?;
                        let registry = berth_core::Registry::new(meta, blobs, Default::default());
                        admin::run_key(&access, &registry, cmd).await
                    }
                }
            })
        }
        Cmd::Gc { stores, flags } => {
            let cfg = Config::load(&stores, None)?;
            init_logging(&cfg);
            let code = rt.block_on(async {
                let (meta, _, blobs) = stores::open(&cfg, false).await?;
                gc::run(&cfg, meta, blobs, flags).await
            })?;
            std::process::exit(code);
        }
        Cmd::Fsck { stores, json } => {
            let cfg = Config::load(&stores, None)?;
            init_logging(&cfg);
            let clean = rt.block_on(async {
                let (meta, _, blobs) = stores::open(&cfg, false).await?;
                fsck::run(meta, blobs, json).await
            })?;
            std::process::exit(if clean { 0 } else { 1 });
        }
    }
}

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = futures::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// File descriptors kept for everything but client connections: the stores' pools and
/// files, logs, the runtime.
const FD_RESERVE: u64 = 256;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (a default soft limit of 1024 would
/// stop `accept` long before `http.max_connections`), and says when even the hard limit
/// leaves too few descriptors for the configured connections.
fn raise_fd_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let old = getrlimit(Resource::Nofile);
    // An unlimited hard limit cannot be the soft one for file descriptors: the kernel's
    // ceiling is fs.nr_open.
    let target = old.maximum.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20)
    });
    let mut soft = old.current.unwrap_or(u64::MAX);
    if soft < target {
        match setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: old.maximum,
            },
        ) {
            Ok(()) => soft = target,
            Err(e) => {
                tracing::warn!(error = %e, soft, target, "could not raise the file descriptor limit")
            }
        }
    }
    let want = (max_connections as u64).saturating_add(FD_RESERVE);
    if soft < want {
        tracing::warn!(
            limit = soft,
            max_connections,
            "the file descriptor limit is below http.max_connections + {FD_RESERVE}: under load, accept \
             waits for descriptors (connections queue in the backlog)"
        );
    } else {
        tracing::debug!(limit = soft, "file descriptor limit");
    }
}

async fn run_serve(
    cfg: Config,
    admin_password_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let limits = cfg.http.limits()?;
    raise_fd_limit(limits.max_connections);
    let tls = match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(c), Some(k)) => Some(server::tls_acceptor(c, k)?),
        _ => None,
    };
    // Bound before anything is created: a start that cannot listen (the port is taken, a
    // bad address) leaves no data directory and no administrator whose one-time password
    // would be printed to nobody.
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    datadir::check_writable(&cfg)?;
    // Before the stores are touched: without the key that seals the trust and token signing
    // keys, PostgreSQL replicas must not start (and a bad kek_file is said at once).
    let kek = stores::kek(&cfg)?;
    let default_policy = cfg.policy.policy()?;
    let (meta, identity, blobs) = stores::open(&cfg, true).await?;
    admin::ensure_first_admin(identity.as_ref(), admin_password_file.as_ref()).await?;
    let directory = match &cfg.directory {
        Some(d) => Some(
            berth_directory::DirectoryClient::new(d.clone())
                .context("setting up the directory client")?,
        ),
        None => None,
    };
    // Background jobs, started once this replica's id (the lease holder) is known.
    let mut background = Vec::new();
    if let Some(client) = &directory {
        // Checked now and every minute, in the background so that a frozen directory does
        // not hold up the start: the status feeds /health and the cluster status.
        background.push(directory_check_job(client.clone()));
        if cfg.directory_sync.interval_secs > 0 {
            // One replica at a time syncs (the job's lease).
            background.push(berth_core::directory_sync::scheduled_job(
                identity.clone(),
                client.clone(),
                Duration::from_secs(cfg.directory_sync.interval_secs),
            ));
        }
    }
    if cfg.audit.retention_days > 0 {
        background.push(berth_core::audit_retention::job(
            identity.clone(),
            Duration::from_secs(cfg.audit.retention_days.saturating_mul(86_400)),
            Duration::from_secs(3600),
        ));
    }
    let access = stores::access(&cfg, identity.clone(), directory, &kek).await?;
    let addr = listener.local_addr()?;
    let registry = berth_core::Registry::new(
        meta,
        blobs,
        berth_core::RegistryConfig {
            chunk_min_length: cfg.registry.chunk_min_length,
            max_page: cfg.registry.max_page,
            read_only: cfg
                .registry
                .read_only
                .then(|| "the registry is in read-only mode".to_string()),
        },
    );
    let id = if cfg.replica_id.is_empty() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}:{}", addr.port())
    } else {
        cfg.replica_id.clone()
    };
    berth_http::ops::prometheus();
    background.push(berth_http::ops::upkeep_job());
    // The names a GUN's host may take: the configured ones and the listen address.
    let mut hostnames = cfg.trust.hostnames.clone();
    hostnames.push(addr.to_string());
    if addr.ip().is_loopback() {
        hostnames.push(format!("localhost:{}", addr.port()));
    }
    let trust = Arc::new(berth_core::trust::Trust::new(
        registry.meta().clone(),
        kek,
        hostnames,
    ));
    // Timestamps are renewed a week before they expire, by one replica at a time.
    background.push(trust.resign_job(Duration::from_secs(3600)));
    let policies = berth_core::policy::Policies::new(registry.meta().clone(), identity.clone());
    let policies = Arc::new(policies.with_default(default_policy));
    let registry = Arc::new(registry);
    let leases: Arc<dyn berth_meta::LeaseStore> = registry.meta().clone();
    let jobs = Jobs::new(leases, id.clone(), cfg.jobs.lease_ttl()?);
    background.extend(gc_jobs(&cfg, &registry, &id, &jobs)?);
    // Signatures are verified again after a change of keys, by one replica at a time.
    background.push(berth_core::signatures::reverify_job(registry.clone()));
    let membership = Arc::new(berth_core::cluster::Membership {
        id: id.clone(),
        address: match cfg.cluster.advertise_address.as_str() {
            "" => addr.to_string(),
            a => a.to_string(),
        },
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: berth_core::time::now_ms(),
        heartbeat: cfg.cluster.heartbeat()?,
        missed: cfg.cluster.missed_heartbeats,
        expected: cfg.cluster.expected_replicas,
    });
    // In the cluster before the first request; then every heartbeat.
    if let Err(e) = membership.beat(&registry).await {
        tracing::warn!(error = %e, "replica heartbeat not written");
    }
    background.push(membership.clone().heartbeat_job(registry.clone()));
    for job in background {
        jobs.start(job);
    }
    let state = AppState {
        registry,
        access: Arc::new(access),
        realm: (!cfg.auth.realm.is_empty()).then(|| Arc::from(cfg.auth.realm.as_str())),
        replica: Arc::new(ReplicaInfo {
            membership: membership.clone(),
            started: Instant::now(),
        }),
        counters: Arc::new(server::Counters::default()),
        trust,
        policies,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        address = %addr,
        metadata = state.registry.meta().kind(),
        blobs = state.registry.blobs().kind(),
        "berth listening on {scheme}://{addr}"
    );
    let app = router(state.clone());
    let drain = cfg.http.shutdown_timeout()?;
    let signalled = Arc::new(std::sync::OnceLock::new());
    let on_signal = {
        let (jobs, signalled) = (jobs.clone(), signalled.clone());
        async move {
            shutdown_signal().await;
            let _ = signalled.set(Instant::now());
            // The jobs stop while the requests in flight finish.
            jobs.cancel();
        }
    };
    server::serve(
        listener,
        tls,
        app,
        state.counters.clone(),
        limits,
        on_signal,
        drain,
    )
    .await?;
    // What is left of the deadline for the jobs; they were cancelled at the signal.
    let spent = signalled.get().map(Instant::elapsed).unwrap_or_default();
    if !jobs.shutdown(drain.saturating_sub(spent)).await {
        tracing::warn!("background jobs aborted at the shutdown deadline");
    }
    if let Err(e) = membership.leave(&state.registry).await {
        tracing::warn!(error = %e, "replica not removed from the cluster");
    }
    tracing::info!("stopped: requests drained, jobs stopped, leases released");
    Ok(())
}

/// Binds as the directory's service account at start and every minute (a job of every
/// replica); logs a warning saying what it means when that fails, and once when it works
/// again.
fn directory_check_job(client: berth_directory::DirectoryClient) -> Job {
    // None before the first check, Some(None) while it works, Some(Some(error)) while not.
    let last = Arc::new(std::sync::Mutex::new(None::<Option<String>>));
    Job::new("directory-check", Duration::from_secs(60), move |_| {
        let (client, last) = (client.clone(), last.clone());
        async move {
            let now = check_directory(&client).await;
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            match &now {
                None if *last != Some(None) => {
                    tracing::info!(url = %client.config().url,
                        "directory check passed: the service account binds");
                }
                Some(error) if last.as_ref().and_then(|l| l.as_deref()) != Some(error.as_str()) => {
                    tracing::warn!(url = %client.config().url, error = %error,
                        "DIRECTORY CHECK FAILED: directory users log in only with the password \
                         cached at their last login, first logins are refused and syncs fail \
                         until this is fixed");
                }
                _ => {}
            }
            *last = Some(now);
        }
    })
}

/// One directory check: `None` if the service account binds, else the error.
async fn check_directory(client: &berth_directory::DirectoryClient) -> Option<String> {
    client.check().await.err().map(|e| e.to_string())
}

/// Garbage collection inside `berth serve`: the read-only flag every replica follows, link
/// claims on HEAD, the options of on-demand API runs, and the schedule (one replica).
fn gc_jobs(
    cfg: &Config,
    registry: &Arc<berth_core::Registry>,
    id: &str,
    jobs: &Jobs,
) -> anyhow::Result<Vec<Job>> {
    let mut opts = cfg.gc.options()?;
    opts.holder = id.to_string();
    // A link found by HEAD stays claimed for at least half the grace period.
    registry.set_link_claim_refresh(opts.grace / 2);
    let schedule = (!cfg.gc.schedule.trim().is_empty()).then(|| cfg.gc.schedule.clone());
    berth_http::gc_api::configure(opts.clone(), schedule.clone(), jobs.clone());
    opts.started_by = "schedule".into();
    Ok(vec![
        berth_core::gc::read_only_job(registry.clone(), Duration::from_secs(1)),
        berth_core::gc::scheduled_job(
            registry.clone(),
            schedule,
            opts,
            Duration::from_secs(5),
            |outcome| berth_http::ops::record_gc(&outcome.run),
        ),
    ])
}
