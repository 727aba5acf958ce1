//! The instrumenting wrapper around every store trait, written once.
//!
//! Each store trait is declared through [`store_trait!`], which emits the trait and its
//! implementation for [`Instrumented`]: every method forwards to the wrapped store and
//! records, per trait and method, a latency histogram
//! (`berth_store_call_duration_seconds{store, method}`) and an error counter
//! (`berth_store_errors_total{store, method}`). The labels are the trait's and the
//! method's names, a closed set taken from the code. A new method or trait is instrumented
//! by being declared; nothing is listed twice. `berth` wraps the store it opens; tests and
//! tools may use a store bare.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// A store wrapped to record the latency and the errors of every call. It implements each
/// store trait that its inner store implements.
pub struct Instrumented<S: ?Sized> {
    inner: Arc<S>,
}

impl<S: ?Sized> Instrumented<S> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<S>) -> Self {
        Instrumented { inner }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

/// Runs one call of `store`'s `method` and records its latency and, if it fails, an error.
pub async fn observe<T, E>(
    store: &'static str,
    method: &'static str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let start = Instant::now();
    let out = call.await;
    metrics::histogram!("berth_store_call_duration_seconds", "store" => store, "method" => method)
        .record(start.elapsed().as_secs_f64());
    if out.is_err() {
        metrics::counter!("berth_store_errors_total", "store" => store, "method" => method)
            .increment(1);
    }
    out
}

/// Declares a store trait (`#[async_trait]`, `Send + Sync + 'static`, every method
/// `async fn name(&self, ...) -> Result<...>`) and implements it for [`Instrumented`].
macro_rules! store_trait {
    (
        $(#[$tmeta:meta])*
        pub trait $tr:ident {
            $(
                $(#[$mmeta:meta])*
                async fn $m:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty;
            )*
        }
    ) => {
        $(#[$tmeta])*
        #[async_trait::async_trait]
        pub trait $tr: Send + Sync + 'static {
            $(
                $(#[$mmeta])*
                async fn $m(&self $(, $arg: $ty)*) -> $ret;
            )*
        }

        #[async_trait::async_trait]
        impl<S: $tr + ?Sized> $tr for $crate::instrument::Instrumented<S> {
            $(
                async fn $m(&self $(, $arg: $ty)*) -> $ret {
                    $crate::instrument::observe(
                        stringify!($tr),
                        stringify!($m),
                        self.inner().$m($($arg),*),
                    )
                    .await
                }
            )*
        }
    };
}
