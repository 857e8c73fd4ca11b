//! Limits that protect the service from one caller: calls per second (a burst, then a steady
//! rate, per signed-in principal, through `governor`), streams open per principal and in all,
//! and how long a stream may wait on a client that does not read. Every transport's calls pass
//! [`Limits::admit_call`] in `Guard::admit`; every server stream holds a [`StreamPermit`].
//! A call past a limit is refused at once (`RESOURCE_EXHAUSTED`, HTTP 429) with what the limit
//! is, and counted in `naast_limit_refusals_total{limit}`.

use serde::Deserialize;
use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The limits, as configured (`[limits]` in the config file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Calls a principal may make per second, after its burst.
    pub calls_per_second: u32,
    /// Calls a principal may make at once.
    pub call_burst: u32,
    /// Streams (subscriptions) a principal may have open.
    pub streams_per_caller: usize,
    /// Streams open in all.
    pub max_streams: usize,
    /// Connections open at once on each door; those past it are closed as soon as they are
    /// accepted.
    pub max_connections: usize,
    /// Seconds a client of an HTTP door (FHIR, web, metrics) has to send a request's headers,
    /// counted from when its connection is ready for the next request: a connection that
    /// sends nothing, trickles its headers or idles between requests is closed after it.
    pub header_read_seconds: u64,
    /// Seconds a stream waits on a client that has stopped reading, with its buffer full,
    /// before it ends it (`RESOURCE_EXHAUSTED`: resubscribe from the last position read).
    pub slow_stream_seconds: u64,
    /// MiB the data directory's disk keeps free: below it, commands are refused
    /// (`RESOURCE_EXHAUSTED`, HTTP 507) while reads and their audit records go on, until space
    /// is made (see `naast_eventlog::space`). 0 keeps no reserve.
    pub min_free_disk_mb: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            calls_per_second: 500,
            call_burst: 1_000,
            streams_per_caller: 16,
            max_streams: 10_000,
            max_connections: 10_000,
            header_read_seconds: 20,
            slow_stream_seconds: 30,
            min_free_disk_mb: 256,
        }
    }
}

impl LimitSettings {
    /// Limits no benchmark reaches: for measuring the rest.
    pub fn generous() -> Self {
        Self {
            calls_per_second: 1_000_000,
            call_burst: 1_000_000,
            streams_per_caller: 100_000,
            max_streams: 100_000,
            max_connections: 100_000,
            header_read_seconds: 3_600,
            slow_stream_seconds: 3_600,
            min_free_disk_mb: 0,
        }
    }
}

/// A rate per key (`governor`: a burst, then a steady rate), whose refusals are recorded once
/// per key per [`LIMIT_RECORD_WINDOW`] rather than one by one: the failed sign-ins of a network
/// address and the calls of a principal are both limited this way.
#[derive(Clone)]
pub struct KeyedRate<K: Hash + Eq + Clone> {
    limiter: Arc<governor::DefaultKeyedRateLimiter<K>>,
    /// When the limiting of each key was last recorded.
    recorded: Arc<Mutex<HashMap<K, Instant>>>,
    /// Calls counted, so that forgetting quiet keys (a walk over all of them) runs once per
    /// [`FORGET_EVERY`] calls rather than on every call while many keys are known.
    calls: Arc<std::sync::atomic::AtomicU64>,
}

/// Keys remembered before quiet ones are forgotten.
const REMEMBERED_KEYS: usize = 10_000;
/// Calls between two walks that forget quiet keys, once more than [`REMEMBERED_KEYS`] are known.
const FORGET_EVERY: u64 = 1_024;

impl<K: Hash + Eq + Clone> KeyedRate<K> {
    /// `per_second` after a burst of `burst` for each key (zeros count as one).
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: Arc::new(governor::RateLimiter::keyed(
                governor::Quota::per_second(rate).allow_burst(burst),
            )),
            recorded: Arc::default(),
            calls: Arc::default(),
        }
    }

    /// Counts one for `key`: `Err` with how long until it may go again when it is past its
    /// rate.
    pub fn admits(&self, key: &K) -> Result<(), Duration> {
        // Forget keys quiet long enough to be full again (bounded memory: at most
        // FORGET_EVERY more than REMEMBERED_KEYS between two walks).
        let call = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if call.is_multiple_of(FORGET_EVERY) && self.limiter.len() > REMEMBERED_KEYS {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
        })
    }

    /// Whether the limiting of `key` is to be recorded now (once per window).
    pub fn first_refusal_in_window(&self, key: &K) -> bool {
        let now = Instant::now();
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        if recorded.len() > REMEMBERED_KEYS {
            recorded.retain(|_, at| now.duration_since(*at) < LIMIT_RECORD_WINDOW);
        }
        match recorded.get(key) {
            Some(at) if now.duration_since(*at) < LIMIT_RECORD_WINDOW => false,
            _ => {
                recorded.insert(key.clone(), now);
                true
            }
        }
    }
}

/// Who a limit counts a call against: a digest of its principal's issuer and subject (made
/// without allocating, on every call).
pub type CallerKey = u64;

/// The limits in force, shared by every transport. Cheap to clone.
#[derive(Clone)]
pub struct Limits {
    settings: LimitSettings,
    calls: KeyedRate<CallerKey>,
    streams: Arc<Mutex<Streams>>,
}

#[derive(Default)]
struct Streams {
    by_caller: HashMap<CallerKey, usize>,
    total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(LimitSettings::default())
    }
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// How long one audit record of a key's limiting stands for.
pub const LIMIT_RECORD_WINDOW: Duration = Duration::from_secs(60);

impl Limits {
    /// The limits of `settings` (zeros count as one).
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            settings,
            calls: KeyedRate::new(settings.calls_per_second, settings.call_burst),
            streams: Arc::default(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> LimitSettings {
        self.settings
    }

    /// Counts a call of `caller`: `Err` with the refusal's message when it is past its rate.
    pub fn admit_call(&self, caller: CallerKey) -> Result<(), String> {
        self.calls.admits(&caller).map_err(|wait| {
            metrics::counter!("naast_limit_refusals_total", "limit" => "calls").increment(1);
            format!(
                "too many calls: at most {} per second (and {} at once) per caller; retry in {} ms",
                self.settings.calls_per_second,
                self.settings.call_burst,
                wait.as_millis().max(1)
            )
        })
    }

    /// Whether the limiting of `caller` is to be recorded now (once per window).
    pub fn first_refusal_in_window(&self, caller: CallerKey) -> bool {
        self.calls.first_refusal_in_window(&caller)
    }

    /// A permit for one more stream of `caller`, or the refusal's message.
    pub fn open_stream(&self, caller: CallerKey) -> Result<StreamPermit, String> {
        // Counts only change under this lock, and a panic cannot leave them half changed.
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = streams.by_caller.get(&caller).copied().unwrap_or(0);
        let refusal = if mine >= self.settings.streams_per_caller.max(1) {
            Some(format!(
                "too many open streams: at most {} per caller; close one first",
                self.settings.streams_per_caller
            ))
        } else if streams.total >= self.settings.max_streams.max(1) {
            Some(format!(
                "the service has {} streams open, its limit; try again later",
                self.settings.max_streams
            ))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            metrics::counter!("naast_limit_refusals_total", "limit" => "streams").increment(1);
            return Err(refusal);
        }
        streams.by_caller.insert(caller, mine + 1);
        streams.total += 1;
        Ok(StreamPermit::counted(
            Some((self.clone(), caller)),
            Duration::from_secs(self.settings.slow_stream_seconds.max(1)),
        ))
    }
}

/// One open stream, counted in `naast_streams_open` and against its principal's limit until
/// dropped.
#[derive(Debug)]
pub struct StreamPermit {
    held: Option<(Limits, CallerKey)>,
    slow_after: Duration,
}

impl StreamPermit {
    fn counted(held: Option<(Limits, CallerKey)>, slow_after: Duration) -> Self {
        metrics::gauge!("naast_streams_open").increment(1.0);
        Self { held, slow_after }
    }

    /// A stream outside the limits (embedded use, without authentication).
    pub fn unlimited() -> Self {
        Self::counted(
            None,
            Duration::from_secs(LimitSettings::default().slow_stream_seconds),
        )
    }

    /// How long the stream may wait on a client that does not read.
    pub fn slow_after(&self) -> Duration {
        self.slow_after
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        metrics::gauge!("naast_streams_open").decrement(1.0);
        if let Some((limits, caller)) = self.held.take() {
            let mut streams = limits
                .streams
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            streams.total = streams.total.saturating_sub(1);
            if let Some(mine) = streams.by_caller.get_mut(&caller) {
                *mine = mine.saturating_sub(1);
                if *mine == 0 {
                    streams.by_caller.remove(&caller);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is a failed check
    use super::*;

    fn limits(calls: u32, burst: u32, mine: usize, total: usize) -> Limits {
        Limits::new(LimitSettings {
            calls_per_second: calls,
            call_burst: burst,
            streams_per_caller: mine,
            max_streams: total,
            max_connections: total,
            header_read_seconds: 1,
            slow_stream_seconds: 1,
            min_free_disk_mb: 0,
        })
    }

    #[test]
    fn a_caller_past_its_burst_is_refused_and_another_is_not() {
        let limits = limits(1, 3, 1, 1);
        for _ in 0..3 {
            assert!(limits.admit_call(1).is_ok());
        }
        let refused = limits.admit_call(1).unwrap_err();
        assert!(refused.contains("at most 1 per second"), "{refused}");
        assert!(limits.admit_call(2).is_ok());
    }

    #[test]
    fn streams_are_counted_per_caller_and_in_all_until_closed() {
        let limits = limits(1, 1, 2, 3);
        let (a1, _a2) = (
            limits.open_stream(1).unwrap(),
            limits.open_stream(1).unwrap(),
        );
        assert!(limits.open_stream(1).unwrap_err().contains("per caller"));
        let _b = limits.open_stream(2).unwrap();
        assert!(limits.open_stream(3).unwrap_err().contains("limit"));
        drop(a1);
        assert!(limits.open_stream(3).is_ok());
    }

    #[test]
    fn a_limiting_is_recorded_once_per_window() {
        let limits = Limits::default();
        assert!(limits.first_refusal_in_window(1));
        assert!(!limits.first_refusal_in_window(1));
        assert!(limits.first_refusal_in_window(2));
    }
}
