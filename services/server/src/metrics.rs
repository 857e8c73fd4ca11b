//! Prometheus metrics on a listener of their own (`--metrics-listen`, path `/metrics`), off
//! unless configured. The crates record through the `metrics` facade (a no-op until a recorder
//! is installed); this module installs the Prometheus recorder, describes every metric, fills
//! in the gauges read at scrape time (the log's head, the projector's lag), and serves the text
//! exposition. `ops/README.md` lists each metric and what an alert on it means.

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use naast_eventlog::EventLog;
use naast_projections::Projections;
use std::time::Duration;

/// Latency buckets (seconds): from half a millisecond (a cached read) to ten seconds (a stuck
/// disk).
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Events per group commit: 1 up to the writer's largest group.
const EVENTS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];
/// Events a subscriber is behind the log's head when an event is handed to it: 0 when it is
/// live, up to a catch-up from far back.
const LAG: &[f64] = &[
    0.0,
    1.0,
    10.0,
    100.0,
    1_000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
];
/// How often histograms are compacted.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the process's Prometheus recorder (once: a second call fails) and describes the
/// metrics.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Full("naast_log_commit_events".into()), EVENTS)?
        .set_buckets_for_metric(Matcher::Full("naast_subscription_lag_events".into()), LAG)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "naast_rpc_requests_total",
        "gRPC calls answered, by method and status code"
    );
    describe_histogram!(
        "naast_rpc_duration_seconds",
        Unit::Seconds,
        "gRPC call latency until the answer (a stream: until it opened), by method"
    );
    describe_counter!(
        "naast_auth_failures_total",
        "calls refused for their token (outcome=refused, each recorded in the audit log) or for too many failures from one address (outcome=limited)"
    );
    describe_histogram!(
        "naast_log_append_seconds",
        Unit::Seconds,
        "an append from call to acknowledgement (durable when durable=yes), by log (events, audit) and result"
    );
    describe_histogram!(
        "naast_log_sync_seconds",
        Unit::Seconds,
        "one sync of a log's storage (one group commit), by log"
    );
    describe_histogram!(
        "naast_log_commit_events",
        "events made durable by one group commit, by log"
    );
    describe_counter!(
        "naast_log_committed_events_total",
        "events committed, by log: rate() gives events/s"
    );
    describe_counter!(
        "naast_log_failures_total",
        "failed writes or syncs, by log: the log refuses appends until naast restarts"
    );
    describe_gauge!(
        "naast_log_head_position",
        "the event log's next position (events committed so far)"
    );
    describe_gauge!(
        "naast_projection_lag_events",
        "events committed but not yet in the read models (timelines, caseloads, report rows)"
    );
    describe_histogram!(
        "naast_subscription_lag_events",
        "how many events behind the log's head a subscriber was when an event was handed to it, by stream (timeline, events)"
    );
    describe_gauge!(
        "naast_streams_open",
        "open server streams (timeline, signal, change and log subscriptions)"
    );
}

/// Serves `/metrics` on `listener` until `stop` turns true, compacting histograms meanwhile.
pub async fn serve(
    listener: crate::grpc::connections::LimitedListener,
    handle: PrometheusHandle,
    log: EventLog,
    projections: Projections,
    header_read: std::time::Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<bool> {
    let upkeep = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP);
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        })
    };
    let scrape = move || {
        let head = log.head();
        metrics::gauge!("naast_log_head_position").set(head as f64);
        metrics::gauge!("naast_projection_lag_events")
            .set(head.saturating_sub(projections.checkpoint()) as f64);
        let body = handle.render();
        async move {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                body,
            )
        }
    };
    let router = axum::Router::new().route("/metrics", axum::routing::get(scrape));
    let served = crate::grpc::connections::serve_http(listener, router, header_read, stop).await;
    upkeep.abort();
    served
}
