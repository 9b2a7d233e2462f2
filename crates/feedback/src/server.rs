//! The HTTP/1.1 server loop of the API: hyper's own connection builder, because `axum::serve`
//! exposes neither a header read timeout nor a header size limit.
//!
//! **Promises**: a client that does not send its request line and headers within
//! `header_read_timeout` is disconnected; headers over [`MAX_HEADER_BYTES`] get a 431 and the
//! connection is closed, so one connection holds at most hyper's read buffer (~400 KiB) plus one
//! body of at most `max_body_bytes`. On shutdown the listener closes at once, requests in flight
//! finish (their 202 or 503 is still sent), and whatever is still open at `deadline` is dropped.
//!
//! At most `max_connections` are open at once: past it the loop stops accepting until one
//! closes, and new connections wait in the kernel's accept backlog (as tokio's mini-redis
//! limits its connections), so the memory that open connections hold is bounded whatever
//! clients do. Idle keep-alive connections are cut by the header read timeout, and a client that
//! stops reading its answers by the write timeout.
//!
//! **Limits**: HTTP/1.1 only, no TLS (put a TLS-terminating load balancer in front).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Largest request line + headers accepted; more is a 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How the server loop treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Request line and headers must arrive within this.
    pub header_read_timeout: Duration,
    /// A write to the client that makes no progress for this long closes the connection.
    pub write_timeout: Duration,
    /// Connections open at once (at least 1).
    pub max_connections: usize,
    /// After `stop`, requests in flight may finish for this long.
    pub deadline: Duration,
}

/// Serve `router` on `listener` until `stop` resolves, then let requests in flight finish for up
/// to `limits.deadline`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    stop: impl std::future::Future<Output = ()>,
) {
    let ServeLimits { header_read_timeout, write_timeout, max_connections, deadline } = limits;
    let open = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout).max_header_size(MAX_HEADER_BYTES);
    // Each connection task watches `stopping` and finishes its request in flight, then closes.
    let (stopping_tx, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        // A slot first: at the cap, stop accepting until a connection closes.
        let slot = tokio::select! {
            slot = open.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        // A write that makes no progress for `write_timeout` fails, and the connection with it:
        // a client that never reads its answers cannot hold a connection slot for ever.
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(write_timeout));
        let io = TokioIo::new(Box::pin(stream));
        let conn = builder.serve_connection(io, TowerToHyperService::new(router.clone()));
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stopping.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
        // Reap finished connections so the set holds only open ones.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    let drained = tokio::time::timeout(deadline, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(?deadline, open = connections.len(), "connections still open at the shutdown deadline; dropped");
        connections.abort_all();
    }
}
