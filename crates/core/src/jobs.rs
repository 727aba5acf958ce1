//! Background jobs: one way to run work beside the requests of `berth serve`.
//!
//! A [`Job`] has a name, an interval, optionally a lease, and its work: an async function
//! given a [`CancellationToken`] (work that can stop early checks it; other work is left
//! to finish until the shutdown deadline). [`Jobs`] starts each job's loop, keeps its
//! handle, and at shutdown cancels every job, waits for them and releases their leases.
//! [`Job::run_once`] runs the work once, without a lease, for tests.
//!
//! An exclusive job ([`Job::exclusive`]) runs on one process at a time: its loop holds the
//! lease named after the job (a [`LeaseStore`] row shared by every replica), renews it
//! every third of its time to live, while idle and while working, and runs the work only
//! while it holds it. A holder that dies stops renewing; when the lease expires another
//! process's loop takes it and runs the work at once. A holder that loses its lease (a
//! stall longer than the time to live) cancels the work in progress.
//!
//! One-off work started by a request (an on-demand GC run) goes through [`Jobs::spawn`],
//! so that shutdown cancels and waits for it too.

use berth_meta::LeaseStore;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
pub use tokio_util::sync::CancellationToken;

type Work =
    Arc<dyn Fn(CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A background job: what to run, how often, and whether one process at a time.
#[derive(Clone)]
pub struct Job {
    name: String,
    every: Duration,
    exclusive: bool,
    work: Work,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("every", &self.every)
            .field("exclusive", &self.exclusive)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// A job that runs `work` at start and then `every` after each run ended, on every
    /// process that starts it (see [`exclusive`](Self::exclusive)).
    pub fn new<F, Fut>(name: impl Into<String>, every: Duration, work: F) -> Job
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Job {
            name: name.into(),
            every,
            exclusive: false,
            work: Arc::new(move |token| -> Pin<Box<dyn Future<Output = ()> + Send>> {
                Box::pin(work(token))
            }),
        }
    }

    /// Runs on one process at a time: the one holding the lease named after the job.
    pub fn exclusive(mut self) -> Job {
        self.exclusive = true;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// Runs the work once, now, without a lease and without cancellation (tests).
    pub async fn run_once(&self) {
        (self.work)(CancellationToken::new()).await
    }
}

/// The background jobs of a process, sharing a lease store, a holder name (the replica id)
/// and a cancellation token. Cloning gives another handle on the same set.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    leases: Arc<dyn LeaseStore>,
    holder: String,
    ttl: Duration,
    cancel: CancellationToken,
    /// Every task started, with the lease it may hold.
    tasks: Mutex<Vec<(Option<String>, JoinHandle<()>)>>,
}

impl Jobs {
    /// Jobs whose leases are held as `holder` for `ttl` at a time (renewed every third).
    pub fn new(leases: Arc<dyn LeaseStore>, holder: impl Into<String>, ttl: Duration) -> Jobs {
        Jobs {
            inner: Arc::new(Inner {
                leases,
                holder: holder.into(),
                ttl: ttl.max(Duration::from_millis(30)),
                cancel: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The name leases are held under.
    pub fn holder(&self) -> &str {
        &self.inner.holder
    }

    /// A token cancelled at shutdown, for one-off work.
    pub fn token(&self) -> CancellationToken {
        self.inner.cancel.child_token()
    }

    /// Cancels every job and one-off task (they stop at their next check; see
    /// [`shutdown`](Self::shutdown) to wait for them).
    pub fn cancel(&self) {
        self.inner.cancel.cancel();
    }

    /// Starts `job`'s loop; it runs until [`shutdown`](Self::shutdown).
    pub fn start(&self, job: Job) {
        let lease = job.exclusive.then(|| job.name.clone());
        let handle = tokio::spawn(drive(self.inner.clone(), job));
        self.track(lease, handle);
    }

    /// Runs one-off work (cancelled through [`token`](Self::token)) that shutdown waits for.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(work);
        self.track(None, handle);
    }

    fn track(&self, lease: Option<String>, handle: JoinHandle<()>) {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|(_, h)| !h.is_finished());
        tasks.push((lease, handle));
    }

    /// Cancels every job and one-off task, waits for them until `deadline`, aborts what is
    /// still running then, and releases the leases they may hold. Returns whether all
    /// ended in time. Jobs started afterwards stop at once.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        self.inner.cancel.cancel();
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let until = Instant::now() + deadline;
        let mut in_time = true;
        for (lease, mut handle) in tasks {
            if tokio::time::timeout_at(until, &mut handle).await.is_err() {
                in_time = false;
                tracing::warn!(
                    lease = lease.as_deref(),
                    "a background job did not stop by the deadline; aborted"
                );
                handle.abort();
                let _ = handle.await;
                if let Some(name) = lease {
                    release(&self.inner, &name).await;
                }
            }
        }
        in_time
    }
}

async fn release(inner: &Inner, name: &str) {
    match inner.leases.lease_release(name, &inner.holder).await {
        Ok(true) => tracing::info!(job = name, "job lease released"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(job = name, error = %e, "releasing a job lease (it expires by itself)")
        }
    }
}

/// Whether the job's process holds its lease now: takes it when not held, renews it when
/// held. Store errors count as not held (the lease lapses if they last).
async fn hold(inner: &Inner, name: &str, held: bool) -> bool {
    let ttl = i64::try_from(inner.ttl.as_millis()).unwrap_or(i64::MAX);
    let r = if held {
        inner.leases.lease_renew(name, &inner.holder, ttl).await
    } else {
        inner.leases.lease_acquire(name, &inner.holder, ttl).await
    };
    match r {
        Ok(now) => {
            if now && !held {
                tracing::info!(job = name, holder = %inner.holder, "job lease taken");
            } else if !now && held {
                tracing::warn!(job = name, "job lease lost: another process runs this job");
            }
            now
        }
        Err(e) => {
            tracing::warn!(job = name, error = %e, "could not take or renew a job lease");
            false
        }
    }
}

/// A job's loop: (for an exclusive job, keep the lease) run when due, wait, until cancelled.
async fn drive(inner: Arc<Inner>, job: Job) {
    let mut held = false;
    let mut due = Instant::now();
    while !inner.cancel.is_cancelled() {
        if job.exclusive {
            let was = held;
            held = hold(&inner, &job.name, held).await;
            if held && !was {
                // Taken over (or first taken): run now, the previous holder may be dead.
                due = Instant::now();
            }
        }
        if (held || !job.exclusive) && Instant::now() >= due {
            held = run(&inner, &job, held).await;
            due = Instant::now() + job.every;
        }
        let wake = if job.exclusive {
            due.min(Instant::now() + renew_every(&inner))
        } else {
            due
        };
        tokio::select! {
            _ = inner.cancel.cancelled() => break,
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    if held {
        release(&inner, &job.name).await;
    }
}

/// Runs the work once, renewing an exclusive job's lease meanwhile; cancels the work if the
/// lease is lost. Returns whether the lease is still held.
async fn run(inner: &Inner, job: &Job, mut held: bool) -> bool {
    let token = inner.cancel.child_token();
    let work = (job.work)(token.clone());
    tokio::pin!(work);
    tracing::debug!(job = %job.name, "job runs");
    loop {
        tokio::select! {
            _ = &mut work => return held,
            _ = tokio::time::sleep(renew_every(inner)), if job.exclusive && held => {
                held = hold(inner, &job.name, true).await;
                if !held {
                    token.cancel();
                }
            }
        }
    }
}

fn renew_every(inner: &Inner) -> Duration {
    inner.ttl / 3
}
