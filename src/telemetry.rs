//! Logging to standard error (standard output is kept for command results, such as a
//! new API token). `RUST_LOG` filters, `info` by default. Logs carry ids, never people.
//!
//! Each HTTP request runs in a `request` span (`web::middleware::log_request`) naming
//! its id and route pattern; work handed to the blocking pool through
//! [`spawn_blocking`] stays in that span, so every line it logs is tied to its request.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are ignored (tests call it often).
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// `work`, to be run on another thread inside the caller's span and subscriber.
pub fn in_current_span<T>(work: impl FnOnce() -> T) -> impl FnOnce() -> T {
    let span = tracing::Span::current();
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    move || tracing::dispatcher::with_default(&dispatch, || span.in_scope(work))
}

/// `tokio::task::spawn_blocking`, keeping the caller's span (and so its request id).
pub fn spawn_blocking<T, F>(work: F) -> tokio::task::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(in_current_span(work))
}
