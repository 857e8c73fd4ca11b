//! Server streaming: one task per open stream takes the next item from a source and hands it
//! to the client through a bounded channel, until the client goes, the source ends or fails,
//! or the server shuts down — whichever comes first, even while waiting on a slow client.

use std::future::Future;
use std::pin::Pin;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Items a stream may have in flight to a slow client before it waits for the client.
const BUFFER: usize = 256;

/// What the source gives next.
pub enum Step<T> {
    /// An item, or an error that ends the stream after it is sent.
    Send(Result<T, Status>),
    /// Nothing for the client this time; ask again.
    Skip,
}

/// The future of one step, borrowing the source.
pub type Next<'a, T> = Pin<Box<dyn Future<Output = Step<T>> + Send + 'a>>;

/// Streams what `next` takes from `source` to the client, until `expiry` (the caller's token
/// expires: the stream then ends with `UNAUTHENTICATED`, and the client reconnects with a fresh
/// token).
pub fn forward<S, T>(
    mut source: S,
    next: for<'a> fn(&'a mut S) -> Next<'a, T>,
    mut shutdown: watch::Receiver<bool>,
    expiry: Option<tokio::time::Instant>,
) -> ReceiverStream<Result<T, Status>>
where
    S: Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        let _open = OpenStream::new();
        let expired = async {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        loop {
            let step = tokio::select! {
                step = next(&mut source) => step,
                _ = shutdown.wait_for(|stop| *stop) => break,
                () = tx.closed() => break, // the client went away
                () = &mut expired => Step::Send(Err(Status::unauthenticated(
                    "the token has expired: the stream ends here; reconnect with a fresh token",
                ))),
            };
            let Step::Send(item) = step else { continue };
            let failed = item.is_err();
            // A client that stops reading must not keep the server from shutting down.
            let sent = tokio::select! {
                sent = tx.send(item) => sent.is_ok(),
                _ = shutdown.wait_for(|stop| *stop) => false,
            };
            if !sent || failed {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Counts a stream in `naast_streams_open` while it lives.
struct OpenStream;

impl OpenStream {
    fn new() -> Self {
        metrics::gauge!("naast_streams_open").increment(1.0);
        Self
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("naast_streams_open").decrement(1.0);
    }
}
