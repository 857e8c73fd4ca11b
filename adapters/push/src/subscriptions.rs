//! FHIR Subscriptions' notifications (R5 Backport IG on R4): kept in the push store, numbered by
//! one dispatcher that follows the event log, sent by a task per subscription.
//!
//! - The dispatcher looks at every household a batch of events touched: each subscription to it
//!   that is `requested` or `active` gets one event numbered next (its owner's access decided
//!   anew on the household as it stands; an owner who may no longer see it turns the
//!   subscription `off`). An event is counted once: the subscription keeps the log position up
//!   to which it counted, so a batch read again after a crash numbers nothing twice.
//! - A subscription's task sends the handshake (then `active`, or `error` when refused), and
//!   then its events in order, a notification of up to [`MAX_EVENTS`] at a time, each retried
//!   until answered (backoff, `Retry-After`); a refusal for good turns it to `error`. It keeps
//!   the number of the last event delivered, so after a restart it goes on from there.
//! - Every attempt is recorded in the audit log (`push notify`), as data leaving naast for the
//!   subscription's owner.
//! - With the store in PostgreSQL, every node makes, reads and ends subscriptions; only the node
//!   holding the push lease runs the dispatcher and the tasks, and it looks every
//!   [`LOOK_AGAIN`] for subscriptions made or ended on the others.

use crate::deliver::{Answer, Client, Request, Stopping};
use crate::endpoint::{Auth, Endpoint, EndpointKind, Platform};
use crate::store::{Store, StoreError};
use bytes::Bytes;
use naast_app::audit::{self, Auditor};
use naast_app::households::Households;
use naast_domain::access::{Action, ReadKind, authorize};
use naast_domain::ids::HouseholdId;
use naast_fhir_http::subscriptions::{
    MAX_EVENTS, NotificationEvent, NotificationType, Status, StoreFailure, Subscription,
    SubscriptionStore, notification,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

/// The dispatcher's checkpoint name in the push store (not a valid endpoint name).
const CHECKPOINT: &str = "~subscriptions";
/// Events taken from the log per batch.
const BATCH: usize = 1024;
/// How often the dispatcher of a store shared by several nodes looks for subscriptions made or
/// ended on the others (a handshake waits at most this long).
const LOOK_AGAIN: Duration = Duration::from_secs(1);
/// How long after a subscription's task stopped (a store failure, an endpoint that cannot be
/// served) it may be started again.
const START_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// The subscriptions kept in the push store, and the wake-ups of their tasks.
#[derive(Clone)]
pub struct Subscriptions {
    store: Store,
    /// Rung when a subscription is made.
    created: Arc<Notify>,
    /// Each running task's wake-up.
    tasks: Arc<Mutex<HashMap<Uuid, Arc<Notify>>>>,
    /// When each task that stopped stopped: one of a subscription still going is started again
    /// only [`START_AGAIN_AFTER`] later (its reason may last).
    ended: Arc<Mutex<HashMap<Uuid, std::time::Instant>>>,
}

fn failure(e: impl std::fmt::Display) -> StoreFailure {
    StoreFailure(e.to_string())
}

impl Subscriptions {
    /// The subscriptions of `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            created: Arc::new(Notify::new()),
            tasks: Arc::default(),
            ended: Arc::default(),
        }
    }

    fn wake(&self, id: Uuid) {
        let task = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        if let Some(task) = task {
            task.notify_one();
        }
    }
}

impl SubscriptionStore for Subscriptions {
    fn create(&self, subscription: &Subscription) -> Result<(), StoreFailure> {
        self.store.put_subscription(subscription).map_err(failure)?;
        self.created.notify_one();
        Ok(())
    }

    fn get(&self, id: Uuid) -> Result<Option<Subscription>, StoreFailure> {
        self.store.subscription(id).map_err(failure)
    }

    fn turn_off(&self, id: Uuid, why: &str) -> Result<(), StoreFailure> {
        self.store
            .update_subscription(id, |s| {
                s.status = Status::Off;
                s.error = Some(why.to_owned());
            })
            .map_err(failure)?;
        self.wake(id);
        Ok(())
    }

    fn events(
        &self,
        id: Uuid,
        since: u64,
        until: u64,
    ) -> Result<Vec<NotificationEvent>, StoreFailure> {
        self.store
            .subscription_events(id, since, until.min(since.saturating_add(MAX_EVENTS - 1)))
            .map_err(failure)
    }
}

/// Runs the dispatcher and the subscriptions' tasks until `stop` turns true.
pub async fn run(
    subscriptions: Subscriptions,
    households: Households,
    auditor: Option<Auditor>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match dispatch(&subscriptions, &households, auditor.as_ref(), &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?backoff, "subscription dispatcher failed; starting again from its checkpoint");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Why the dispatcher failed.
#[derive(Debug, thiserror::Error)]
enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading a household: {0}")]
    App(#[from] naast_app::households::AppError),
    #[error("following the event log: {0}")]
    Log(#[from] naast_eventlog::Error),
}

/// Starts the task of every subscription still going that has none, and wakes the task of any
/// that ended meanwhile (turned off on another node), so it stops.
fn start_tasks(
    subscriptions: &Subscriptions,
    auditor: Option<&Auditor>,
    stop: &watch::Receiver<bool>,
) -> Result<(), StoreError> {
    for subscription in subscriptions.store.all_subscriptions()? {
        let mut tasks = subscriptions
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if matches!(subscription.status, Status::Off | Status::Error) {
            if let Some(task) = tasks.get(&subscription.id) {
                task.notify_one();
            }
            continue;
        }
        if tasks.contains_key(&subscription.id) {
            continue;
        }
        let recently = subscriptions
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&subscription.id)
            .is_some_and(|at| at.elapsed() < START_AGAIN_AFTER);
        if recently {
            continue;
        }
        subscriptions
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&subscription.id);
        let wake = Arc::new(Notify::new());
        tasks.insert(subscription.id, wake.clone());
        let (subscriptions, auditor, stop) =
            (subscriptions.clone(), auditor.cloned(), stop.clone());
        tokio::spawn(async move {
            let id = subscription.id;
            deliver(&subscriptions, id, auditor.as_ref(), &wake, stop).await;
            subscriptions
                .ended
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, std::time::Instant::now());
            subscriptions
                .tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }
    Ok(())
}

async fn dispatch(
    subscriptions: &Subscriptions,
    households: &Households,
    auditor: Option<&Auditor>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), DispatchError> {
    let store = &subscriptions.store;
    let log = households.log().clone();
    let mut checkpoint = store.checkpoint(CHECKPOINT)?.min(log.head());
    start_tasks(subscriptions, auditor, stop)?;
    let mut events = log.subscribe_all(checkpoint);
    let shared = store.is_shared();
    let mut look_again = tokio::time::interval(LOOK_AGAIN);
    look_again.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let woke = tokio::select! {
            event = events.next() => Some(event),
            () = subscriptions.created.notified() => None,
            _ = look_again.tick(), if shared => None,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let first = match woke {
            Some(Ok(event)) => event,
            Some(Err(naast_eventlog::Error::Closed)) => return Ok(()),
            Some(Err(e)) => return Err(e.into()),
            None => {
                start_tasks(subscriptions, auditor, stop)?;
                continue;
            }
        };
        let mut batch = vec![first];
        batch.extend(events.ready(BATCH - 1));
        // Each touched household once, with its last event's position and time.
        let mut touched: Vec<(HouseholdId, u64, u64)> = Vec::new();
        let mut seen = HashSet::new();
        for event in batch.iter().rev() {
            if let Some(household) = HouseholdId::of_stream(&event.stream_id)
                && seen.insert(household)
            {
                touched.push((household, event.position, event.recorded_at_micros));
            }
        }
        touched.reverse();
        let today = naast_domain::calendar::dutch_today();
        let households_touched: Vec<HouseholdId> = touched.iter().map(|(h, _, _)| *h).collect();
        let mut followed = store.subscriptions_following(&households_touched)?;
        for (household, position, at) in touched {
            let Some(following) = followed.remove(&household) else {
                continue;
            };
            let (state, _) = households.state(household).await?;
            for subscription in following {
                if matches!(subscription.status, Status::Off | Status::Error)
                    || position < subscription.from_position
                {
                    continue;
                }
                let allowed = authorize(
                    &state,
                    &subscription.owner.principal(),
                    Action::Read(ReadKind::Timeline),
                    today,
                )
                .is_ok();
                if allowed {
                    store.count_subscription_event(
                        subscription.id,
                        position,
                        NotificationEvent {
                            number: 0,
                            at_micros: at,
                            focus: format!("Group/{household}"),
                        },
                    )?;
                } else {
                    store.update_subscription(subscription.id, |s| {
                        s.status = Status::Off;
                        s.error = Some("its owner may no longer see the household".to_owned());
                    })?;
                }
                subscriptions.wake(subscription.id);
            }
        }
        let next = batch.last().map_or(checkpoint, |e| e.position + 1);
        store.set_checkpoint(CHECKPOINT, next).await?;
        checkpoint = next;
    }
}

/// The task of one subscription: the handshake, then its events in order.
async fn deliver(
    subscriptions: &Subscriptions,
    id: Uuid,
    auditor: Option<&Auditor>,
    wake: &Notify,
    mut stop: watch::Receiver<bool>,
) {
    let store = &subscriptions.store;
    let Ok(Some(first)) = store.subscription(id) else {
        return;
    };
    let endpoint = Endpoint {
        name: format!("subscription-{id}"),
        kind: EndpointKind::Fhir,
        url: first.endpoint.clone(),
        platform: Platform {
            issuer: first.owner.identity.issuer.clone(),
            client_id: first.owner.client_id.clone().unwrap_or_default(),
        },
        auth: Auth::None,
        secret_file: None,
        resource_types: Vec::new(),
        profiles: Default::default(),
        timeout_seconds: 10,
        max_backoff_seconds: 60,
        concurrency: 1,
    };
    let client = match Client::new(&endpoint, Arc::default()) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, %id, "subscription not served");
            return;
        }
    };
    loop {
        let subscription = match store.subscription(id) {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, %id, "reading a subscription");
                return;
            }
        };
        let delivered = match store.subscription_delivered(id) {
            Ok(delivered) => delivered,
            Err(e) => {
                // Not "none delivered": that would send every event again. Asked again shortly.
                tracing::error!(error = %e, %id, "reading how far a subscription was delivered");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        let (kind, events) = match subscription.status {
            Status::Off | Status::Error => return,
            Status::Requested => (NotificationType::Handshake, Vec::new()),
            Status::Active if delivered < subscription.events => {
                let until = subscription.events.min(delivered + MAX_EVENTS);
                match store.subscription_events(id, delivered + 1, until) {
                    Ok(events) => (NotificationType::EventNotification, events),
                    Err(e) => {
                        tracing::error!(error = %e, %id, "reading a subscription's events");
                        return;
                    }
                }
            }
            Status::Active => {
                tokio::select! {
                    () = wake.notified() => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        let bundle = notification(&subscription, kind, &events);
        let Ok(url) = reqwest::Url::parse(&subscription.endpoint) else {
            let _ = store.update_subscription(id, |s| {
                s.status = Status::Error;
                s.error = Some("the endpoint is not a URL".to_owned());
            });
            return;
        };
        let mut request = Request::fhir(
            reqwest::Method::POST,
            url,
            Some(Bytes::from(bundle.to_string())),
        );
        request.headers = subscription
            .headers
            .iter()
            .filter_map(|h| h.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        let sent = crate::worker::send_recorded(
            &client,
            auditor,
            &request,
            record(&subscription, &events),
            false,
            &mut stop,
        )
        .await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(Stopping) => return,
        };
        let updated = match (answer, kind) {
            (Answer::Done { .. }, NotificationType::Handshake) => {
                store.update_subscription(id, |s| {
                    if s.status == Status::Requested {
                        s.status = Status::Active;
                    }
                })
            }
            (Answer::Done { .. }, _) => {
                store.set_subscription_delivered(id, events.last().map_or(delivered, |e| e.number))
            }
            (Answer::Refused { status, body }, _) => store.update_subscription(id, |s| {
                // One its owner ended meanwhile stays ended, with its reason.
                if s.status == Status::Off {
                    return;
                }
                s.status = Status::Error;
                s.error = Some(format!(
                    "the endpoint refused a notification: {status} {}",
                    body.chars().take(200).collect::<String>()
                ));
            }),
        };
        if let Err(e) = updated {
            tracing::error!(error = %e, %id, "keeping a subscription's progress");
            return;
        }
    }
}

/// The audit record of a notification: data leaving naast for the subscription's owner.
fn record(subscription: &Subscription, events: &[NotificationEvent]) -> audit::Record {
    let mut record = audit::Record::new("push notify", audit::Outcome::Allowed);
    let principal = subscription.owner.principal();
    let (user, responsible) = audit::Record::users(&principal);
    record.user = Some(user);
    record.responsible = responsible;
    record.household = Some(subscription.household);
    record.objects = std::iter::once(format!("Subscription/{}", subscription.id))
        .chain(events.iter().map(|e| format!("event:{}", e.number)))
        .collect();
    record.basis = vec![format!("subscription:{}", subscription.id)];
    record.source_system = subscription.owner.client_id.clone();
    record.network_access_point = reqwest::Url::parse(&subscription.endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned));
    record
}
