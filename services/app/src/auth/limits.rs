//! Limits that protect the service from one caller: calls per second (a burst, then a steady
//! rate, per signed-in principal, through `governor`), streams open per principal and in all,
//! and how long a stream may wait on a client that does not read. Every transport's calls pass
//! [`Limits::admit_call`] in `Guard::admit`; every server stream holds a [`StreamPermit`].
//! A call past a limit is refused at once (`RESOURCE_EXHAUSTED`, HTTP 429) with what the limit
//! is, and counted in `naast_limit_refusals_total{limit}`.

use serde::Deserialize;
use std::collections::HashMap;
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
    /// Seconds a stream waits on a client that has stopped reading, with its buffer full,
    /// before it ends it (`RESOURCE_EXHAUSTED`: resubscribe from the last position read).
    pub slow_stream_seconds: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            calls_per_second: 500,
            call_burst: 1_000,
            streams_per_caller: 16,
            max_streams: 10_000,
            slow_stream_seconds: 30,
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
            slow_stream_seconds: 3_600,
        }
    }
}

/// The limits in force, shared by every transport. Cheap to clone.
#[derive(Clone)]
pub struct Limits {
    settings: LimitSettings,
    calls: Arc<governor::DefaultKeyedRateLimiter<String>>,
    streams: Arc<Mutex<Streams>>,
    /// When the limiting of each principal was last recorded in the audit log.
    recorded: Arc<Mutex<HashMap<String, Instant>>>,
}

#[derive(Default)]
struct Streams {
    by_caller: HashMap<String, usize>,
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

/// How long one audit record of a principal's limiting stands for.
pub const LIMIT_RECORD_WINDOW: Duration = Duration::from_secs(60);

impl Limits {
    /// The limits of `settings` (zeros count as one).
    pub fn new(settings: LimitSettings) -> Self {
        let rate = NonZeroU32::new(settings.calls_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.call_burst).unwrap_or(NonZeroU32::MIN);
        Self {
            settings,
            calls: Arc::new(governor::RateLimiter::keyed(
                governor::Quota::per_second(rate).allow_burst(burst),
            )),
            streams: Arc::default(),
            recorded: Arc::default(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> LimitSettings {
        self.settings
    }

    /// Counts a call of `principal`: `Err` with the refusal's message when it is past its rate.
    pub fn admit_call(&self, principal: &str) -> Result<(), String> {
        // Forget principals quiet long enough to be full again (bounded memory).
        if self.calls.len() > 10_000 {
            self.calls.retain_recent();
        }
        match self.calls.check_key(&principal.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                metrics::counter!("naast_limit_refusals_total", "limit" => "calls").increment(1);
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                Err(format!(
                    "too many calls: at most {} per second (and {} at once) per caller; retry in {} ms",
                    self.settings.calls_per_second,
                    self.settings.call_burst,
                    wait.as_millis().max(1)
                ))
            }
        }
    }

    /// Whether the limiting of `principal` is to be recorded now (once per window).
    pub fn first_refusal_in_window(&self, principal: &str) -> bool {
        let now = Instant::now();
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        if recorded.len() > 10_000 {
            recorded.retain(|_, at| now.duration_since(*at) < LIMIT_RECORD_WINDOW);
        }
        match recorded.get(principal) {
            Some(at) if now.duration_since(*at) < LIMIT_RECORD_WINDOW => false,
            _ => {
                recorded.insert(principal.to_owned(), now);
                true
            }
        }
    }

    /// A permit for one more stream of `principal`, or the refusal's message.
    pub fn open_stream(&self, principal: &str) -> Result<StreamPermit, String> {
        // Counts only change under this lock, and a panic cannot leave them half changed.
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = streams.by_caller.get(principal).copied().unwrap_or(0);
        let refusal = if mine >= self.settings.streams_per_caller {
            Some(format!(
                "too many open streams: at most {} per caller; close one first",
                self.settings.streams_per_caller
            ))
        } else if streams.total >= self.settings.max_streams {
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
        streams.by_caller.insert(principal.to_owned(), mine + 1);
        streams.total += 1;
        Ok(StreamPermit {
            held: Some((self.clone(), principal.to_owned())),
            slow_after: Duration::from_secs(self.settings.slow_stream_seconds.max(1)),
        })
    }
}

/// One open stream, counted against its principal's limit until dropped.
#[derive(Debug)]
pub struct StreamPermit {
    held: Option<(Limits, String)>,
    slow_after: Duration,
}

impl StreamPermit {
    /// A stream outside the limits (embedded use, without authentication).
    pub fn unlimited() -> Self {
        Self {
            held: None,
            slow_after: Duration::from_secs(LimitSettings::default().slow_stream_seconds),
        }
    }

    /// How long the stream may wait on a client that does not read.
    pub fn slow_after(&self) -> Duration {
        self.slow_after
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let Some((limits, principal)) = self.held.take() {
            let mut streams = limits
                .streams
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            streams.total = streams.total.saturating_sub(1);
            if let Some(mine) = streams.by_caller.get_mut(&principal) {
                *mine = mine.saturating_sub(1);
                if *mine == 0 {
                    streams.by_caller.remove(&principal);
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
            slow_stream_seconds: 1,
        })
    }

    #[test]
    fn a_caller_past_its_burst_is_refused_and_another_is_not() {
        let limits = limits(1, 3, 1, 1);
        for _ in 0..3 {
            assert!(limits.admit_call("a").is_ok());
        }
        let refused = limits.admit_call("a").unwrap_err();
        assert!(refused.contains("at most 1 per second"), "{refused}");
        assert!(limits.admit_call("b").is_ok());
    }

    #[test]
    fn streams_are_counted_per_caller_and_in_all_until_closed() {
        let limits = limits(1, 1, 2, 3);
        let (a1, _a2) = (
            limits.open_stream("a").unwrap(),
            limits.open_stream("a").unwrap(),
        );
        assert!(limits.open_stream("a").unwrap_err().contains("per caller"));
        let _b = limits.open_stream("b").unwrap();
        assert!(limits.open_stream("c").unwrap_err().contains("limit"));
        drop(a1);
        assert!(limits.open_stream("c").is_ok());
    }

    #[test]
    fn a_limiting_is_recorded_once_per_window() {
        let limits = Limits::default();
        assert!(limits.first_refusal_in_window("a"));
        assert!(!limits.first_refusal_in_window("a"));
        assert!(limits.first_refusal_in_window("b"));
    }
}
