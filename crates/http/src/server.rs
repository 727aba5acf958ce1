//! The listener: accepts TCP connections (TLS through rustls when configured), serves
//! HTTP/1.1 and HTTP/2 with hyper, counts connections for `/nginx_status`, and shuts down
//! gracefully: on the shutdown signal it stops accepting and lets requests in flight end.
//!
//! Strangers reach it, so nothing a client does (or fails to do) holds a connection for
//! ever ([`Limits`]): a TLS handshake has a deadline; a request's head must be complete
//! within a deadline counted from the connection's start, or from the first byte after an
//! idle spell; a connection with no request in progress is closed after an idle timeout;
//! a request body the server waits on must deliver bytes at least every so often (a slow
//! upload that keeps moving is never cut), and a client must keep taking the bytes of its
//! response (the same timeout); and at most `max_connections` connections are
//! open at once: beyond that the listener stops accepting, so new connections wait in the
//! kernel's backlog while the open ones are served. A failing `accept` (out of file
//! descriptors) backs off instead of spinning.

use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// What the listener allows a connection (`[http]` in the configuration).
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request's head must be complete this long after the connection starts (after the
    /// TLS handshake), or after the first byte that follows an idle spell.
    pub header_read_timeout: Duration,
    /// A TLS handshake must finish this long after the connection is accepted.
    pub tls_handshake_timeout: Duration,
    /// A connection with no request in progress (keep-alive) is closed after this long.
    pub idle_timeout: Duration,
    /// A request fails when its body, while the server waits for it, delivers no byte for
    /// this long. Counted from the last byte, so a slow upload that keeps moving goes on.
    /// The same for responses: a connection whose client takes no byte for this long
    /// (the socket stays full) is closed.
    pub body_idle_timeout: Duration,
    /// Connections open at once; beyond it new ones wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Limits {
    /// How often a connection's watchdog looks at least: the shortest timeout a phase of the
    /// connection has (1 ms at the least).
    fn watch_interval(&self) -> Duration {
        self.header_read_timeout
            .min(self.idle_timeout)
            .min(self.body_idle_timeout)
            .max(Duration::from_millis(1))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

/// Connection and request counters (NGINX stub_status's).
#[derive(Debug, Default)]
pub struct Counters {
    pub accepts: AtomicU64,
    pub active: AtomicU64,
    pub requests: AtomicU64,
    pub in_flight: AtomicU64,
}

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {0}: {1}")]
    Read(String, io::Error),
    #[error("{0} holds no certificate")]
    NoCert(String),
    #[error("{0} holds no private key")]
    NoKey(String),
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds a rustls acceptor from PEM files (certificate chain, then private key).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| TlsError::Read(p.display().to_string(), e));
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read(cert.display().to_string(), e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(cert.display().to_string()));
    }
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError::Read(key.display().to_string(), e))?
        .ok_or_else(|| TlsError::NoKey(key.display().to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

struct ConnGuard(Arc<Counters>);
impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Facts about the connection a request came on, as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address (rate limits, audit log).
    pub peer: std::net::SocketAddr,
    /// Whether the connection is TLS (the token realm's scheme).
    pub tls: bool,
}

/// Where a connection is, for its deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's head (deadline: `header_read_timeout`).
    Head,
    /// At least one request is being served (no deadline here: bodies have their own).
    Busy,
    /// No request in progress and nothing received since (deadline: `idle_timeout`).
    Idle,
}

#[derive(Debug)]
struct ActivityState {
    in_flight: u32,
    phase: Phase,
    since: Instant,
    /// Since when the socket has refused to take more bytes (the client reads nothing).
    write_blocked: Option<Instant>,
}

/// One connection's activity: requests in progress (from the head to the end of the
/// response body) and bytes arriving while idle. Its watchdog ([`Activity::expired`]) is
/// never woken by a change: a request costs it nothing.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
    /// `phase == Idle`, readable without the lock on every read.
    idle: AtomicBool,
    /// `write_blocked.is_some()`, readable without the lock on every write.
    blocked: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                phase: Phase::Head,
                since: Instant::now(),
                write_blocked: None,
            }),
            idle: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // The state stays consistent even if a holder panicked: every update is one store.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, st: &mut ActivityState, phase: Phase) {
        st.phase = phase;
        st.since = Instant::now();
        self.idle.store(phase == Phase::Idle, Ordering::Relaxed);
    }

    fn request_started(&self) {
        let mut st = self.lock();
        st.in_flight += 1;
        self.set(&mut st, Phase::Busy);
    }

    fn request_finished(&self) {
        let mut st = self.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        if st.in_flight == 0 {
            self.set(&mut st, Phase::Idle);
        }
    }

    /// Bytes arrived: after an idle spell they start the next request's head.
    fn bytes_read(&self) {
        if !self.idle.load(Ordering::Relaxed) {
            return;
        }
        let mut st = self.lock();
        if st.phase == Phase::Idle {
            self.set(&mut st, Phase::Head);
        }
    }

    /// A write found the socket full.
    fn write_pending(&self) {
        if self.blocked.load(Ordering::Relaxed) {
            return;
        }
        let mut st = self.lock();
        if st.write_blocked.is_none() {
            st.write_blocked = Some(Instant::now());
            self.blocked.store(true, Ordering::Relaxed);
        }
    }

    /// A write took bytes.
    fn write_progress(&self) {
        if !self.blocked.load(Ordering::Relaxed) {
            return;
        }
        let mut st = self.lock();
        st.write_blocked = None;
        self.blocked.store(false, Ordering::Relaxed);
    }

    fn busy(&self) -> bool {
        self.lock().phase == Phase::Busy
    }

    /// Whether the client has taken no byte for `body_idle_timeout`.
    fn stalled(&self, limits: &Limits) -> bool {
        self.lock()
            .write_blocked
            .is_some_and(|t| t.elapsed() >= limits.body_idle_timeout)
    }

    fn deadline(&self, limits: &Limits) -> Option<(Instant, Phase)> {
        let st = self.lock();
        match st.phase {
            Phase::Head => Some((st.since + limits.header_read_timeout, Phase::Head)),
            Phase::Idle => Some((st.since + limits.idle_timeout, Phase::Idle)),
            // A request in progress has no deadline of its own (its body has), unless the
            // client stopped reading what it asked for.
            Phase::Busy => st
                .write_blocked
                .map(|t| (t + limits.body_idle_timeout, Phase::Busy)),
        }
    }

    /// Resolves when the current phase outlives its deadline, with that phase. It looks
    /// at least every [`Limits::watch_interval`] (the shortest of the deadlines' timeouts)
    /// and at the current deadline. Every deadline a change of phase sets lies at least
    /// that interval after the change, so after the watchdog's next look: no deadline is
    /// missed or late, and nothing has to wake the watchdog when the phase changes.
    async fn expired(&self, limits: &Limits) -> Phase {
        let every = limits.watch_interval();
        let sleep = tokio::time::sleep(every);
        tokio::pin!(sleep);
        loop {
            let now = Instant::now();
            let next = match self.deadline(limits) {
                Some((at, phase)) if at <= now => return phase,
                Some((at, _)) => at.min(now + every),
                None => now + every,
            };
            sleep.as_mut().reset(next);
            sleep.as_mut().await;
        }
    }
}

/// Held by a request from its head to the end (or drop) of its response body.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(a: Arc<Activity>) -> InFlight {
        a.request_started();
        InFlight(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The connection's stream, telling its [`Activity`] when bytes arrive.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_read();
        }
        r
    }
}

impl<S> Watched<S> {
    fn watch_write(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Pending => self.activity.write_pending(),
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.write_progress(),
            Poll::Ready(_) => {}
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch_write(&r);
        r
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch_write(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request body that fails when the client sends nothing for `timeout` while the
/// server waits for it. Time the server spends elsewhere (writing to a store) between
/// reads does not count.
struct IdleBody {
    inner: Incoming,
    timeout: Duration,
    /// Made on the first wait (most requests have no body, or one already received).
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    failed: bool,
}

impl IdleBody {
    fn new(inner: Incoming, timeout: Duration) -> IdleBody {
        IdleBody {
            inner,
            timeout,
            timer: None,
            armed: false,
            failed: false,
        }
    }
}

/// A request body delivered nothing for `http.body_idle_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for {0:?}")]
pub struct BodyIdle(Duration);

impl Body for IdleBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                let at = Instant::now() + this.timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                if !this.armed {
                    this.armed = true;
                    timer.as_mut().reset(at);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    this.failed = true;
                    return Poll::Ready(Some(Err(BodyIdle(this.timeout).into())));
                }
                Poll::Pending
            }
            Poll::Ready(r) => {
                this.armed = false;
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `accept` failed for this one connection (the peer gave up), not for the
/// listener (out of file descriptors, out of memory).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits up to `grace` for open
/// connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    counters: Arc<Counters>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send,
    grace: Duration,
) -> io::Result<()> {
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max));
    let limits = Arc::new(limits);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut last_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    'accept: loop {
        // A free slot first: at the limit, connections wait in the backlog, unaccepted.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => break x,
                    Err(e) if is_connection_error(&e) => continue,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning,
                        // and say so at most every ten seconds.
                        if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                            tracing::warn!(error = %e, "accept failed; retrying");
                            last_warning = Some(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = &mut shutdown => break 'accept,
            }
        };
        let _ = stream.set_nodelay(true);
        counters.accepts.fetch_add(1, Ordering::Relaxed);
        counters.active.fetch_add(1, Ordering::Relaxed);
        let guard = ConnGuard(counters.clone());
        let app = app.clone();
        let tls = tls.clone();
        let limits = limits.clone();
        let stop = stop_rx.clone();
        let info = ConnInfo {
            peer,
            tls: tls.is_some(),
        };
        tokio::spawn(async move {
            let _slot = slot;
            let _guard = guard;
            match tls {
                // Boxed: the handshake and the TLS connection make a future twice a plain
                // one's size, which every connection's task would otherwise carry.
                Some(acceptor) => {
                    Box::pin(async move {
                        match tokio::time::timeout(
                            limits.tls_handshake_timeout,
                            acceptor.accept(stream),
                        )
                        .await
                        {
                            Ok(Ok(s)) => serve_connection(s, app, info, &limits, stop).await,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, %peer, "tls handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                        }
                    })
                    .await
                }
                None => serve_connection(stream, app, info, &limits, stop).await,
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(());
    // Every connection holds a slot until it ends: all of them back means all ended.
    tokio::select! {
        _ = slots.acquire_many(max as u32) => {}
        _ = tokio::time::sleep(grace) => tracing::warn!("connections still open after the shutdown grace period"),
    }
    Ok(())
}

/// How long a connection asked to close for a deadline may take to do so (an HTTP/2 GOAWAY
/// exchange) unless a request is in progress.
const LINGER: Duration = Duration::from_secs(1);

/// Serves one connection (after its TLS handshake) until the client or a deadline ends it,
/// or the server shuts down.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    info: ConnInfo,
    limits: &Limits,
    mut stop: tokio::sync::watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = Watched {
        inner: stream,
        activity: activity.clone(),
    };
    let body_idle = limits.body_idle_timeout;
    let tracker = activity.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = InFlight::new(tracker.clone());
        let mut req = req.map(|b| axum::body::Body::new(IdleBody::new(b, body_idle)));
        req.extensions_mut().insert(info);
        let resp = app.clone().oneshot(req);
        async move {
            let resp = resp.await?;
            // The response body holds its request's `InFlight` until it is sent (or
            // dropped): the closure of an error mapping that changes nothing owns it, and
            // `MapErr` passes on the frames, the end and the size hint as they are.
            Ok::<_, std::convert::Infallible>(resp.map(|body| {
                body.map_err(move |e| {
                    let _held = &in_flight;
                    e
                })
            }))
        }
    });
    let builder = Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let peer = info.peer;
    // Once asked to close gracefully: when to give up on the connection if it is not busy.
    let mut closing: Option<Instant> = None;
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            phase = activity.expired(limits), if closing.is_none() => match phase {
                Phase::Busy => {
                    tracing::debug!(%peer, "the client reads nothing of its response; closing");
                    return;
                }
                Phase::Head | Phase::Idle => {
                    tracing::debug!(%peer, ?phase, "connection deadline passed; closing");
                    // HTTP/2 says GOAWAY, an idle HTTP/1 connection closes at once; a
                    // half-sent HTTP/1 head does neither, and is dropped after LINGER.
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + LINGER);
                }
            },
            _ = tokio::time::sleep_until(closing.unwrap_or_else(Instant::now)), if closing.is_some() => {
                if !activity.busy() || activity.stalled(limits) {
                    return;
                }
                closing = Some(Instant::now() + LINGER);
            }
        }
    }
}
