//! The listener: accepts TCP connections (TLS through rustls when configured), serves
//! HTTP/1.1 and HTTP/2 with hyper, counts connections for `/nginx_status`, and shuts down
//! gracefully: on the shutdown signal it stops accepting and lets requests in flight end.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

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

/// Serves `app` on `listener` until `shutdown` resolves, then waits up to `grace` for open
/// connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    counters: Arc<Counters>,
    shutdown: impl std::future::Future<Output = ()> + Send,
    grace: Duration,
) -> io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        counters.accepts.fetch_add(1, Ordering::Relaxed);
        counters.active.fetch_add(1, Ordering::Relaxed);
        let guard = ConnGuard(counters.clone());
        let app = app.clone();
        let tls = tls.clone();
        let info = ConnInfo {
            peer,
            tls: tls.is_some(),
        };
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _guard = guard;
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut req = req.map(axum::body::Body::new);
                    req.extensions_mut().insert(info);
                    app.clone().oneshot(req)
                });
            let builder = Builder::new(TokioExecutor::new());
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => {
                        watcher
                            .watch(builder.serve_connection(TokioIo::new(s), svc).into_owned())
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "tls handshake failed");
                        return;
                    }
                },
                None => {
                    watcher
                        .watch(
                            builder
                                .serve_connection(TokioIo::new(stream), svc)
                                .into_owned(),
                        )
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => tracing::warn!("connections still open after the shutdown grace period"),
    }
    Ok(())
}
