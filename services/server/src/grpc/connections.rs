//! The limit on open gRPC connections (`[limits] max_connections`).
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
    let permits = Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS)));
    let mut last_said: Option<Instant> = None;
    incoming.filter_map(move |accepted| match accepted {
        Err(e) => Some(Err(e)),
        Ok(stream) => match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                metrics::gauge!("naast_connections_open").increment(1.0);
                Some(Ok(Limited {
                    stream,
                    _permit: permit,
                }))
            }
            Err(_) => {
                metrics::counter!("naast_limit_refusals_total", "limit" => "connections")
                    .increment(1);
                if last_said.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(
                        max_connections = max,
                        peer = ?stream.peer_addr().ok(),
                        "too many open connections: new ones are closed at once"
                    );
                    last_said = Some(Instant::now());
                }
                // Dropped: the connection closes.
                None
            }
        },
    })
}
