//! Server streaming: one task per open stream takes the next item from a source and hands it
//! to the client through a bounded channel, until the client goes, the source ends or fails,
//! or the server shuts down — whichever comes first, even while waiting on a slow client.

use naast_app::auth::limits::StreamPermit;
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

/// A permit for a stream of this call (see `naast_app::auth::limits`), or `RESOURCE_EXHAUSTED`
/// saying which limit it is past.
pub fn permit(calling: &crate::auth::layer::Calling) -> Result<StreamPermit, Status> {
    calling.open_stream().map_err(Status::resource_exhausted)
}

/// Streams what `next` takes from `source` to the client, until `expiry` (the caller's token
/// expires: the stream then ends with `UNAUTHENTICATED`, and the client reconnects with a fresh
/// token). The stream counts against its caller's limit while it is open (`permit`); a client
/// that stops reading while its buffer is full is cut off after the permit's wait, with
/// `RESOURCE_EXHAUSTED`, so it cannot hold the server's resources for ever.
pub fn forward<S, T>(
    mut source: S,
    next: for<'a> fn(&'a mut S) -> Next<'a, T>,
    mut shutdown: watch::Receiver<bool>,
    expiry: Option<tokio::time::Instant>,
    permit: StreamPermit,
) -> ReceiverStream<Result<T, Status>>
where
    S: Send + 'static,
    T: Send + 'static,
{
    // One place more than items are let in: there is always room for the error that ends a
    // stream whose client stopped reading.
    let (tx, rx) = mpsc::channel(BUFFER + 1);
    tokio::spawn(async move {
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
            // A client that stops reading must not keep the server from shutting down, nor
            // hold its stream open for ever.
            let sent = tokio::select! {
                // Room first: the timer only matters when there is none.
                biased;
                room = tx.reserve_many(2) => match room {
                    Ok(mut room) => {
                        if let Some(slot) = room.next() {
                            slot.send(item);
                        }
                        true
                    }
                    Err(_) => false,
                },
                _ = shutdown.wait_for(|stop| *stop) => false,
                () = tokio::time::sleep(permit.slow_after()) => {
                    metrics::counter!("naast_limit_refusals_total", "limit" => "slow_stream")
                        .increment(1);
                    let _ = tx.try_send(Err(Status::resource_exhausted(format!(
                        "the client has not read for {} s with {BUFFER} items waiting: the stream ends; subscribe again from the last position read",
                        permit.slow_after().as_secs()
                    ))));
                    false
                }
            };
            if !sent || failed {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}
