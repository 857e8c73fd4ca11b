//! The gRPC front door: the naast services, health and reflection on one listener, and the one
//! shutdown path (stop accepting, end subscriptions, drain, close the log).

mod audit;
pub(crate) mod connections;
mod consent;
pub(crate) mod convert;
mod evaluation;
mod event_log;
mod forward;
mod households;
mod observe;
mod operations;
mod push;
pub mod status;
mod too_large;

pub use audit::AuditApi;
pub use evaluation::EvaluationApi;
pub use event_log::EventLogApi;
pub use households::HouseholdApi;
pub use operations::OperationsApi;
pub use push::PushApi;

use crate::auth::layer::{AuthLayer, Guard};
use naast_eventlog::EventLog;
use naast_projections::Projections;
use naast_proto::pb::audit_service_server::AuditServiceServer;
use naast_proto::pb::consent_service_server::ConsentServiceServer;
use naast_proto::pb::evaluation_service_server::EvaluationServiceServer;
use naast_proto::pb::event_log_service_server::EventLogServiceServer;
use naast_proto::pb::household_service_server::HouseholdServiceServer;
use naast_proto::pb::operations_service_server::OperationsServiceServer;
use naast_proto::pb::push_service_server::PushServiceServer;
use std::future::Future;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Largest request accepted: the event log's 4 MiB of payload per append, plus room for the
/// envelope. Larger requests are refused with `RESOURCE_EXHAUSTED`.
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;

/// Longest the server waits, after a shutdown signal, for clients to finish and disconnect.
pub const DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not be built from the contract.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The audit log could not be reconciled with the event log.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The instruments or the record of disclosed reports could not be opened.
    #[error("evaluation: {0}")]
    Evaluation(#[from] crate::households::AppError),
}

/// What the server keeps: the event log, the read models fed by it, and where the record of
/// disclosed effect reports lives, with the hourly rate the report counts supporters' time at.
pub struct Stores {
    /// The event log.
    pub log: EventLog,
    /// The read models.
    pub projections: Projections,
    /// The directory of the record of disclosed effect reports (`disclosures` in the data
    /// directory).
    pub disclosures: std::path::PathBuf,
    /// With the event log in PostgreSQL: the record of disclosed reports in its database,
    /// shared by every node (`naast_app::evaluation::open_shared_disclosures`), kept instead of
    /// the directory.
    pub shared_disclosures: Option<EventLog>,
    /// What an hour of a supporter costs, in euro cents.
    pub hourly_rate_cents: u32,
}

impl Stores {
    /// `log` and `projections`, with the record of disclosed reports in `data_dir` and the
    /// default hourly rate.
    pub fn in_dir(log: EventLog, projections: Projections, data_dir: &std::path::Path) -> Self {
        Self {
            log,
            projections,
            disclosures: data_dir.join("disclosures"),
            shared_disclosures: None,
            hourly_rate_cents: crate::config::DEFAULT_SUPPORTER_HOURLY_RATE_CENTS,
        }
    }
}

/// The doors besides gRPC, each off unless given: the FHIR facade's listener, the metrics
/// listener with its exporter's handle, and the web timeline.
#[derive(Default)]
pub struct Doors {
    /// The FHIR facade's listener.
    pub fhir: Option<TcpListener>,
    /// The Prometheus metrics listener.
    pub metrics: Option<(TcpListener, metrics_exporter_prometheus::PrometheusHandle)>,
    /// The web timeline.
    pub web: Option<crate::web::Setup>,
}

/// Waits for the task serving `door` to end after the stop (it drains its requests within
/// [`DRAIN_DEADLINE`] itself), and says how it ended when not cleanly: `true` when every
/// request it had in flight finished.
async fn finish_door(door: &str, task: tokio::task::JoinHandle<std::io::Result<bool>>) -> bool {
    // A door drains itself within the deadline; one stuck past it (a handler blocked on a
    // store) is let go rather than holding up the stop.
    let abort = task.abort_handle();
    match tokio::time::timeout(DRAIN_DEADLINE + std::time::Duration::from_secs(5), task).await {
        Ok(Ok(Ok(true))) => true,
        Ok(Ok(Ok(false))) => {
            tracing::warn!(door, deadline = ?DRAIN_DEADLINE, "requests still open after the drain deadline were cut off");
            false
        }
        Ok(Ok(Err(e))) => {
            tracing::error!(error = %e, door, "a door failed");
            false
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, door, "a door's task failed");
            false
        }
        Err(_) => {
            tracing::error!(door, "a door did not stop in time; stopping without it");
            abort.abort();
            false
        }
    }
}

/// Serves the event log of `stores` on `listener` (gRPC) and the other `doors` (the FHIR facade, when given) until `shutdown` completes, pushing to
/// the PGO platforms of `push` and keeping its read models up to date with
/// it; then ends open subscriptions, lets in-flight calls finish, and closes the log (committing
/// and syncing what is queued). With a `guard`, every call but health needs a valid token, is
/// authorised against the family's consent, and is recorded in the audit log; without one,
/// everything is open (benchmarks and embedded use only: `naast serve` always guards).
pub async fn run(
    listener: TcpListener,
    doors: Doors,
    push: Option<naast_push::Setup>,
    stores: Stores,
    guard: Option<Guard>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let Stores {
        log,
        projections,
        disclosures,
        shared_disclosures,
        hourly_rate_cents,
    } = stores;
    let Doors { fhir, metrics, web } = doors;
    let (stop, stopped) = watch::channel(false);
    let stopped_for_drain = stopped.clone();
    let stopped_for_web = stopped.clone();
    let projector = {
        let (projections, log) = (projections.clone(), log.clone());
        tokio::spawn(async move { projections.run(log).await })
    };
    let auditor = guard.as_ref().map(|g| g.auditor.clone());
    warn_if_the_clock_is_behind(&log);
    if let Some(vault) = guard.as_ref().and_then(|g| g.vault.as_ref()) {
        finish_erasures(&log, vault);
    }
    if let Some(auditor) = &auditor {
        // Every household event since the last clean stop names a record that is listed (the
        // one its command's first event carries, or one in the partitions); where none is (events
        // written before commands carried their records), one is rebuilt from the event.
        let vault = guard.as_ref().and_then(|g| g.vault.as_ref());
        let written = auditor.reconcile(&log, auditor.reconciled(), vault).await?;
        if written > 0 {
            tracing::warn!(
                written,
                "audit records rebuilt now for household events that named none that is listed"
            );
        }
        auditor.set_reconciled(log.head())?;
    }
    if let Some(auditor) = auditor.clone() {
        let stop = stopped.clone();
        tokio::spawn(async move { auditor.keep_retention(stop).await });
    }
    let api = EventLogApi::new(log.clone(), auditor.clone(), stopped.clone());
    let mut households = crate::households::Households::new(log.clone(), auditor.clone());
    if let Some(vault) = guard.as_ref().and_then(|g| g.vault.clone()) {
        households = households.with_vault(vault);
    }
    let audit = AuditApi::new(auditor.clone(), households.clone());
    // FHIR Subscriptions: kept in the push store, their notifications numbered and sent by a
    // dispatcher of their own (on the node that delivers).
    let subscriptions = push
        .as_ref()
        .map(|push| naast_push::subscriptions::Subscriptions::new(push.store.clone()));
    let delivers = push.as_ref().is_some_and(|push| push.delivers);
    let dispatcher = subscriptions
        .clone()
        .filter(|_| delivers)
        .map(|subscriptions| {
            tokio::spawn(naast_push::subscriptions::run(
                subscriptions,
                households.clone(),
                auditor.clone(),
                stopped.clone(),
            ))
        });
    // Each door holds at most this many connections open at once.
    let max_connections = guard
        .as_ref()
        .map_or(usize::MAX, |g| g.limits.settings().max_connections);
    // A client of an HTTP door has this long for a request's headers.
    let header_read = std::time::Duration::from_secs(
        guard
            .as_ref()
            .map_or(
                naast_app::auth::limits::LimitSettings::default().header_read_seconds,
                |g| g.limits.settings().header_read_seconds,
            )
            .max(1),
    );
    // The FHIR facade: the same households, read models and guard, on its own listener.
    let fhir = fhir.map(|listener| {
        let mut facade =
            naast_fhir_http::Facade::new(households.clone(), projections.clone(), guard.clone());
        if let Some(subscriptions) = &subscriptions {
            facade = facade.with_subscriptions(std::sync::Arc::new(subscriptions.clone()));
        }
        let listener = connections::LimitedListener::new(listener, max_connections);
        tokio::spawn(connections::serve_http(
            listener,
            facade.router(),
            header_read,
            stopped.clone(),
        ))
    });
    // Prometheus metrics on their own listener.
    let metrics = metrics.map(|(listener, handle)| {
        let listener = connections::LimitedListener::uncounted(listener, max_connections);
        tokio::spawn(crate::metrics::serve(
            listener,
            handle,
            log.clone(),
            projections.clone(),
            header_read,
            stopped.clone(),
        ))
    });
    let push_store = push.as_ref().map(|push| push.store.clone());
    // Push to PGO platforms: a worker per endpoint, on the same households and audit log.
    let (pusher, pushers) = match push {
        Some(push) if push.delivers => {
            let (pusher, tasks) =
                naast_push::Pusher::start(push, &households, auditor.as_ref(), &stopped);
            (Some(pusher), tasks)
        }
        _ => (None, Vec::new()),
    };
    let mut push_api = PushApi::new(pusher, households.clone(), auditor.clone(), stopped.clone());
    if push_store.is_some() && !delivers {
        push_api = push_api.pushing_elsewhere();
    }
    let evaluation = naast_app::evaluation::Evaluation::open_in(
        log.clone(),
        projections.clone(),
        auditor.clone(),
        match shared_disclosures {
            Some(log) => naast_app::evaluation::DisclosureStore::Shared(log),
            None => naast_app::evaluation::DisclosureStore::Folder(&disclosures),
        },
        hourly_rate_cents,
    )
    .await?;
    let operations = OperationsApi::new(crate::backup::Sources {
        log: log.clone(),
        auditor: auditor.clone(),
        vault: guard.as_ref().and_then(|g| g.vault.clone()),
        push: push_store,
        evaluation: Some(evaluation.clone()),
    });
    let households = HouseholdApi::new(households, projections, evaluation.clone(), stopped);
    // The web timeline: the same service implementations and guard, on its own listener.
    let web = match (web, guard.clone()) {
        (Some(setup), Some(guard)) => Some(tokio::spawn(crate::web::serve(
            setup,
            max_connections,
            header_read,
            households.clone(),
            audit.clone(),
            guard,
            stopped_for_web,
        ))),
        (Some(_), None) => {
            tracing::error!("the web timeline needs authentication on; it is not served");
            None
        }
        (None, _) => None,
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<EventLogServiceServer<EventLogApi>>()
        .await;
    health
        .set_serving::<HouseholdServiceServer<HouseholdApi>>()
        .await;
    health
        .set_serving::<ConsentServiceServer<HouseholdApi>>()
        .await;
    health.set_serving::<AuditServiceServer<AuditApi>>().await;
    health.set_serving::<PushServiceServer<PushApi>>().await;
    health
        .set_serving::<EvaluationServiceServer<EvaluationApi>>()
        .await;
    health
        .set_serving::<OperationsServiceServer<OperationsApi>>()
        .await;
    // Both reflection versions: grpcurl and grpcio speak v1alpha, newer tools v1.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(naast_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(naast_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    // Small request-response calls: without TCP_NODELAY, Nagle's algorithm meets delayed ACKs
    // and answers wait ~40 ms (measured).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let incoming = connections::limit(incoming, max_connections);
    let served = tonic::transport::Server::builder()
        .layer(observe::ObserveLayer)
        .layer(too_large::TooLargeLayer)
        .layer(AuthLayer::new(guard))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ConsentServiceServer::new(households.clone()))
        .add_service(AuditServiceServer::new(audit))
        .add_service(PushServiceServer::new(push_api))
        .add_service(EvaluationServiceServer::new(EvaluationApi::new(evaluation)))
        .add_service(OperationsServiceServer::new(operations))
        .add_service(
            HouseholdServiceServer::new(households)
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            EventLogServiceServer::new(api)
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_REQUEST_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            tracing::info!("shutting down: ending subscriptions, draining calls");
            health
                .set_not_serving::<EventLogServiceServer<EventLogApi>>()
                .await;
            health
                .set_not_serving::<HouseholdServiceServer<HouseholdApi>>()
                .await;
            let _ = stop.send(true);
        });
    // Draining waits for every connection to close; a client that never lets go must not keep
    // the log from being closed. After the deadline the remaining connections are dropped.
    let mut draining = stopped_for_drain;
    let deadline = async move {
        let _ = draining.wait_for(|stop| *stop).await;
        tokio::time::sleep(DRAIN_DEADLINE).await;
    };
    let (served, mut drained) = tokio::select! {
        served = served => (served, true),
        () = deadline => {
            tracing::warn!(deadline = ?DRAIN_DEADLINE, "connections still open after the drain deadline; closing them");
            (Ok(()), false)
        }
    };
    for (door, task) in [
        ("the FHIR facade", fhir),
        ("the web timeline", web),
        ("the metrics listener", metrics),
    ] {
        if let Some(task) = task {
            // A request cut off on another door may have left a command's audit record to
            // the check at the next start, as a cut-off gRPC call may.
            drained &= finish_door(door, task).await;
        }
    }
    for pusher in pushers.into_iter().chain(dispatcher) {
        // A worker stops between requests; one stuck on a store that fails is left behind.
        let abort = pusher.abort_handle();
        if tokio::time::timeout(DRAIN_DEADLINE, pusher).await.is_err() {
            tracing::error!("a push worker did not stop in time; stopping without it");
            abort.abort();
        }
    }
    log.close().await;
    if let Some(auditor) = &auditor {
        // Audit records of cancelled calls are written on tasks of their own: wait for them,
        // so that a failure among them keeps the reconciliation mark back.
        let settled = tokio::time::timeout(DRAIN_DEADLINE, auditor.settled())
            .await
            .is_ok();
        // Every call finished, and the records written to the partitions are durable: nothing
        // to check at the next start. (Calls cut off at the deadline may not have.)
        let synced = auditor.sync().await.is_ok();
        if drained
            && settled
            && synced
            && !auditor.had_failures()
            && let Err(e) = auditor.set_reconciled(log.head())
        {
            tracing::error!(error = %e, "cannot note the reconciled position");
        }
        auditor.close().await;
    }
    // The projector ends once it has projected everything the log committed, or once it fails
    // with the log closed; a projector stuck on a failing store does not hold up the stop (the
    // read models are rebuilt from the log at the next start where they fell behind).
    let abort = projector.abort_handle();
    match tokio::time::timeout(DRAIN_DEADLINE, projector).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "the projector stopped with an error"),
        Ok(Err(e)) => tracing::error!(error = %e, "the projector task failed"),
        Err(_) => {
            tracing::error!("the projector did not finish in time; stopping without it");
            abort.abort();
        }
    }
    tracing::info!("event log closed");
    Ok(served?)
}

/// Destroys the key of every household whose stream ends in its tombstone: an erasure whose key
/// file could not be destroyed at the time (a crash, a key folder that could not be synced) is
/// finished here.
fn finish_erasures(log: &EventLog, vault: &naast_vault::Vault) {
    let households = match vault.households() {
        Ok(households) => households,
        Err(e) => {
            tracing::error!(error = %e, "cannot list the household keys to finish erasures");
            return;
        }
    };
    for household in households {
        let stream = format!("household-{household}");
        let erased = log
            .read_stream(
                &stream,
                naast_eventlog::END,
                naast_eventlog::Direction::Backwards,
                1,
            )
            .ok()
            .and_then(|last| last.into_iter().next())
            .is_some_and(|last| last.event_type == "HouseholdErased");
        if erased {
            match vault.erase(household) {
                Ok(()) => {
                    tracing::warn!(%household, "the key of an erased household destroyed now")
                }
                Err(e) => {
                    tracing::error!(%household, error = %e, "cannot destroy the key of an erased household")
                }
            }
        }
    }
}

/// Logs loudly when the clock is behind the last event the log recorded (a machine without a
/// real-time clock whose time is not yet synchronised): days and audit years would be wrong.
fn warn_if_the_clock_is_behind(log: &EventLog) {
    let Some(last) = log
        .read_all(naast_eventlog::END, naast_eventlog::Direction::Backwards, 1)
        .ok()
        .and_then(|events| events.into_iter().next())
    else {
        return;
    };
    let now =
        u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000).unwrap_or(0);
    let behind = last.recorded_at_micros.saturating_sub(now);
    if behind > 60_000_000 {
        tracing::warn!(
            behind_seconds = behind / 1_000_000,
            "the clock is behind the last recorded event: synchronise it (NTP); audit records go to the newest year meanwhile"
        );
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
