//! The limit on open connections (`[limits] max_connections`), on each door: gRPC, the FHIR
//! facade, the web timeline and the metrics listener (each its own limit of that many; the
//! gauge counts all but the metrics listener's). The HTTP doors also close a connection that
//! takes longer than `[limits] header_read_seconds` over a request's headers or idles that long
//! between requests ([`serve_http`]), so connections that say nothing cannot hold the limit.
//!
//! HTTP/2 multiplexes a client's calls on one connection, so honest clients hold few; what holds
//! thousands is a client that reconnects without closing, or one that opens connections and
//! leaves them idle. Past the limit a new connection is accepted and closed at once (the client
//! sees `UNAVAILABLE` and retries later), counted in `naast_limit_refusals_total{limit=
//! "connections"}` and said in the log at most once a minute; the open ones are the gauge
//! `naast_connections_open`. Each connection holds a permit of a semaphore until it closes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::{Stream, StreamExt as _};

/// An accepted connection holding its permit.
pub struct Limited {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Whether it counts in `naast_connections_open` (the metrics listener's own do not).
    counted: bool,
}

impl Drop for Limited {
    fn drop(&mut self) {
        if self.counted {
            metrics::gauge!("naast_connections_open").decrement(1.0);
        }
    }
}

impl tonic::transport::server::Connected for Limited {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// `incoming` with at most `max` connections open at once (0 counts as 1, and more than a
/// semaphore can count as no limit); those past it are
/// closed as soon as they are accepted.
pub fn limit(
    incoming: impl Stream<Item = std::io::Result<TcpStream>>,
    max: usize,
) -> impl Stream<Item = std::io::Result<Limited>> {
    let mut gate = Gate::new(max);
    incoming.filter_map(move |accepted| match accepted {
        Err(e) => Some(Err(e)),
        Ok(stream) => gate.admit(stream).map(Ok),
    })
}

/// The permits of one door, and when its limiting was last said in the log.
struct Gate {
    permits: Arc<Semaphore>,
    max: usize,
    last_said: Option<Instant>,
    counted: bool,
}

impl Gate {
    fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            max,
            last_said: None,
            counted: true,
        }
    }

    /// `stream` with its permit, or `None` (and the stream closed) when none is left.
    fn admit(&mut self, stream: TcpStream) -> Option<Limited> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                if self.counted {
                    metrics::gauge!("naast_connections_open").increment(1.0);
                }
                Some(Limited {
                    stream,
                    _permit: permit,
                    counted: self.counted,
                })
            }
            Err(_) => {
                metrics::counter!("naast_limit_refusals_total", "limit" => "connections")
                    .increment(1);
                if self
                    .last_said
                    .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
                {
                    tracing::warn!(
                        max_connections = self.max,
                        peer = ?stream.peer_addr().ok(),
                        "too many open connections: new ones are closed at once"
                    );
                    self.last_said = Some(Instant::now());
                }
                // Dropped: the connection closes.
                None
            }
        }
    }
}

/// A listener of an HTTP door (the FHIR facade, the web timeline) with at most `max`
/// connections open at once, as [`limit`] does for gRPC.
pub struct LimitedListener {
    listener: tokio::net::TcpListener,
    gate: Gate,
    accept_failure_said: Option<Instant>,
}

impl LimitedListener {
    /// `listener` with at most `max` connections open at once.
    pub fn new(listener: tokio::net::TcpListener, max: usize) -> Self {
        Self {
            listener,
            gate: Gate::new(max),
            accept_failure_said: None,
        }
    }

    /// As [`LimitedListener::new`], its connections not counted in `naast_connections_open`
    /// (the metrics listener: a scrape would otherwise count itself).
    pub fn uncounted(listener: tokio::net::TcpListener, max: usize) -> Self {
        let mut limited = Self::new(listener, max);
        limited.gate.counted = false;
        limited
    }
}

impl LimitedListener {
    /// The next connection within the limit, and its peer. A failing accept (out of file
    /// descriptors, say) is said in the log at most once a minute and waited out a moment
    /// rather than spun on.
    async fn accept(&mut self) -> (Limited, std::net::SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    // Small request-response exchanges: no Nagle delay.
                    let _ = stream.set_nodelay(true);
                    if let Some(limited) = self.gate.admit(stream) {
                        return (limited, peer);
                    }
                }
                Err(e) => {
                    metrics::counter!("naast_accept_failures_total").increment(1);
                    if self
                        .accept_failure_said
                        .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
                    {
                        tracing::warn!(error = %e, "accepting a connection failed (said once a minute)");
                        self.accept_failure_said = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Serves `router` (HTTP/1.1) on `listener` until `stop` turns true. A client has
/// `header_read` for a request's headers, counted from when its connection is ready for the
/// next request: a connection that sends nothing, trickles its headers, or idles between
/// requests is closed after it, so idle connections cannot hold the door's connection limit.
/// At the stop it lets the requests in
/// flight finish (at most [`super::DRAIN_DEADLINE`]) and then closes every connection left
/// (idle ones, and those whose request is cut off). `Ok(true)` when no request was cut off: one
/// that was may have left a command's audit record to the check at the next start.
pub async fn serve_http(
    mut listener: LimitedListener,
    router: axum::Router,
    header_read: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<bool> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut connections = tokio::task::JoinSet::new();
    // Requests being answered now (until their handler has answered): what a stop waits for.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut stopping = stop.clone();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stopping) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (router, counter) = (router.clone(), in_flight.clone());
        let service = tower::service_fn(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                // The peer, as axum's `ConnectInfo` extractor reads it.
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let answer = tower::ServiceExt::oneshot(router.clone(), request);
                let answering = InFlight::enter(&counter);
                async move {
                    let answered = answer.await;
                    drop(answering);
                    answered
                }
            },
        );
        let mut stop = stop.clone();
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read)
                .serve_connection(
                    TokioIo::new(io),
                    hyper_util::service::TowerToHyperService::new(service),
                )
                .with_upgrades();
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stopped(&mut stop) => {
                    // The request in flight is answered; then the connection closes.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %peer, "an HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    // The requests in flight finish (at most the drain deadline); connections waiting for a
    // request that never came are not waited for.
    let deadline = tokio::time::Instant::now() + super::DRAIN_DEADLINE;
    while in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            joined = connections.join_next() => if joined.is_none() { break },
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    let drained = in_flight.load(Ordering::SeqCst) == 0;
    // A moment for the last answers to be written out, then what is left is closed.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(drained)
}

/// A request being answered, counted while it lives.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
