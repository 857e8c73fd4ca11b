//! The limit on open connections (`[limits] max_connections`), on each door: gRPC, and the
//! FHIR facade and the web timeline (each its own limit of that many; the gauge counts all).
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
}

impl Drop for Limited {
    fn drop(&mut self) {
        metrics::gauge!("naast_connections_open").decrement(1.0);
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
}

impl Gate {
    fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            max,
            last_said: None,
        }
    }

    /// `stream` with its permit, or `None` (and the stream closed) when none is left.
    fn admit(&mut self, stream: TcpStream) -> Option<Limited> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                metrics::gauge!("naast_connections_open").increment(1.0);
                Some(Limited {
                    stream,
                    _permit: permit,
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
}

impl LimitedListener {
    /// `listener` with at most `max` connections open at once.
    pub fn new(listener: tokio::net::TcpListener, max: usize) -> Self {
        Self {
            listener,
            gate: Gate::new(max),
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Limited;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
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
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::debug!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
