//! Subscriptions: catch up from storage, then follow the writer's live broadcast.
//!
//! A subscription starts listening to the broadcast *before* its storage read, so every batch
//! committed after that read is also in the broadcast; events seen twice are dropped by their
//! position (or revision). A subscriber too slow for the bounded broadcast loses its place there
//! (`Lagged`) and simply goes back to reading from storage: memory stays bounded, no event is lost.

use crate::log::{Direction, Shared};
use crate::record::RecordedEvent;
use crate::{Error, Result};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError};

/// Events read from storage per catch-up step.
const CATCH_UP_CHUNK: usize = 1024;

pub(crate) enum Target {
    All,
    Stream(String),
}

/// An ordered, gap-free, duplicate-free feed of committed events; see
/// [`crate::EventLog::subscribe_all`] and [`crate::EventLog::subscribe_stream`].
pub struct Subscription {
    shared: Arc<Shared>,
    target: Target,
    /// Position (all) or revision (stream) of the next event to put in `buffer`.
    next: u64,
    buffer: VecDeque<RecordedEvent>,
    live: Option<broadcast::Receiver<Arc<[RecordedEvent]>>>,
    caught_up: bool,
}

impl Subscription {
    pub(crate) fn new(shared: Arc<Shared>, target: Target, from: u64) -> Self {
        Self {
            shared,
            target,
            next: from,
            buffer: VecDeque::new(),
            live: None,
            caught_up: false,
        }
    }

    /// Whether the subscription has read everything stored and now follows live events.
    pub fn is_live(&self) -> bool {
        self.caught_up && self.buffer.is_empty()
    }

    /// Events already read and not yet delivered, at most `max`, without waiting or reading
    /// storage: lets a consumer take a batch after [`Subscription::next`] returned its first.
    pub fn ready(&mut self, max: usize) -> Vec<RecordedEvent> {
        let n = max.min(self.buffer.len());
        self.buffer.drain(..n).collect()
    }

    /// The next event; waits for one to be committed when all are delivered. Fails with
    /// [`Error::Closed`] once the log is closed and everything committed was delivered, or with a
    /// storage error while catching up (the subscription can be polled again).
    pub async fn next(&mut self) -> Result<RecordedEvent> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(event);
            }
            if !self.caught_up {
                self.catch_up()?;
                continue;
            }
            let Some(live) = self.live.as_mut() else {
                // Caught up with no broadcast to follow: the log was closed.
                return Err(Error::Closed);
            };
            match live.recv().await {
                Ok(batch) => self.take_live(&batch),
                Err(RecvError::Lagged(_)) => {
                    self.live = None;
                    self.caught_up = false;
                }
                Err(RecvError::Closed) => {
                    // The writer is gone; what it committed last is in storage.
                    self.live = None;
                    self.caught_up = false;
                }
            }
        }
    }

    /// Reads the next chunk from storage; marks the subscription caught up when there is none.
    fn catch_up(&mut self) -> Result<()> {
        if self.live.is_none() {
            self.live = self.shared.subscribe_live();
        }
        let chunk = match &self.target {
            Target::All => self
                .shared
                .read_all(self.next, Direction::Forwards, CATCH_UP_CHUNK)?,
            Target::Stream(stream_id) => self.shared.read_stream(
                stream_id,
                self.next,
                Direction::Forwards,
                CATCH_UP_CHUNK,
            )?,
        };
        // Positions (and a stream's revisions) follow each other without a gap: a hole is a
        // damaged log, never something to skip over.
        for (expected, event) in (self.next..).zip(&chunk) {
            if self.key(event) != expected {
                return Err(crate::Error::Corrupt {
                    position: event.position,
                    reason: format!(
                        "catching up expected {} {expected} and found {}",
                        match self.target {
                            Target::All => "position",
                            Target::Stream(_) => "revision",
                        },
                        self.key(event)
                    ),
                });
            }
        }
        match chunk.last() {
            None => self.caught_up = true,
            Some(last) => {
                self.next = self.key(last) + 1;
                self.buffer.extend(chunk);
            }
        }
        Ok(())
    }

    fn take_live(&mut self, batch: &[RecordedEvent]) {
        for event in batch {
            if let Target::Stream(stream_id) = &self.target
                && event.stream_id != *stream_id
            {
                continue;
            }
            let key = self.key(event);
            if key < self.next {
                continue; // already read from storage
            }
            if key > self.next {
                // Cannot happen while the receiver keeps up; storage fills the gap if it does.
                self.caught_up = false;
                return;
            }
            self.buffer.push_back(event.clone());
            self.next += 1;
        }
    }

    fn key(&self, event: &RecordedEvent) -> u64 {
        match self.target {
            Target::All => event.position,
            Target::Stream(_) => event.revision,
        }
    }
}
