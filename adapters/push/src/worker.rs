//! One worker per endpoint: it follows the global event log from the endpoint's checkpoint and,
//! for every household a batch of events touched, makes the platform hold exactly what the
//! family's grants to it allow today. What changed is written (conditional update on naast's
//! identifier, so a repeat after a crash updates instead of creating a second copy), what is no
//! longer allowed (a revoked or expired grant, a narrowed one, an erased household) is deleted.
//!
//! Households of one batch are synchronised a few at a time, each in order; the checkpoint moves
//! past the batch only when every household in it is done. Endpoints each have their own
//! worker, so one slow or broken platform never holds up another. Every request is recorded
//! in the audit log before it is sent: data leaving naast, to whom, on which grant.

use crate::deliver::{Answer, Client, Request, Stopping};
use crate::endpoint::Endpoint;
use crate::render::{self, Key};
use crate::store::{DeadLetter, Entry, Store, StoreError};
use bytes::Bytes;
use naast_app::audit::{self, Auditor};
use naast_app::households::{AppError, Households};
use naast_domain::event::Identity;
use naast_domain::ids::HouseholdId;
use naast_domain::vocab::PrincipalRole;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Events taken from the log per batch.
const BATCH: usize = 1024;
/// How often a worker looks whether the day changed (grants expire with the day).
const DAY_CHECK: Duration = Duration::from_secs(600);
/// Rounds of writing a household: references to resources written in a round are known only
/// after it (plans and agreements refer to each other), a later round writes them in.
const ROUNDS: usize = 3;
/// The hash kept for a withdrawal the platform refused: it is not tried again on every change.
const WITHDRAWAL_REFUSED: &str = "withdrawal-refused";

/// Why a worker failed (it starts again from its checkpoint).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The push store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A household could not be read.
    #[error("reading a household: {0}")]
    App(#[from] AppError),
    /// A resource could not be mapped.
    #[error(transparent)]
    Map(#[from] naast_fhir::MapError),
    /// The log failed.
    #[error("following the event log: {0}")]
    Log(#[from] naast_eventlog::Error),
    /// A synchronisation task ended abnormally.
    #[error("a push task failed: {0}")]
    Task(String),
    /// naast is stopping.
    #[error(transparent)]
    Stopping(#[from] Stopping),
}

/// What one worker works with.
pub(crate) struct Context {
    pub(crate) endpoint: Endpoint,
    pub(crate) households: Households,
    pub(crate) store: Store,
    pub(crate) auditor: Option<Auditor>,
    pub(crate) client: Client,
}

/// What a worker is given besides its endpoint.
pub struct Wiring {
    /// The households it reads.
    pub households: Households,
    /// Its checkpoint, ledger and dead letters.
    pub store: Store,
    /// Where every request is recorded before it is sent (none: unguarded, not recorded).
    pub auditor: Option<Auditor>,
    /// How its deliveries go, for the administrators.
    pub status: Arc<std::sync::Mutex<crate::deliver::Status>>,
    /// Dead letters taken up again, to deliver now.
    pub replays: tokio::sync::mpsc::UnboundedReceiver<Vec<DeadLetter>>,
    /// Turns true when naast stops.
    pub stop: watch::Receiver<bool>,
}

/// Runs the worker of `endpoint` until `stop` turns true.
pub async fn run(endpoint: Endpoint, wiring: Wiring) {
    let Wiring {
        households,
        store,
        auditor,
        status,
        mut replays,
        mut stop,
    } = wiring;
    let client = match Client::new(&endpoint, status) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "push endpoint not started");
            return;
        }
    };
    let context = Arc::new(Context {
        endpoint,
        households,
        store,
        auditor,
        client,
    });
    let mut backoff = Duration::from_millis(200);
    loop {
        let followed = match context.endpoint.kind {
            crate::endpoint::EndpointKind::Fhir => follow(&context, &mut replays, &mut stop).await,
            crate::endpoint::EndpointKind::Webhook => {
                crate::webhook::follow(&context, &mut replays, &mut stop).await
            }
        };
        match followed {
            Ok(()) | Err(WorkerError::Stopping(_)) => return,
            Err(e) => {
                tracing::error!(endpoint = %context.endpoint.name, error = %e, retry_in = ?backoff,
                    "push worker failed; starting again from its checkpoint");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Follows the log from the checkpoint until the log closes or `stop` turns true.
async fn follow(
    context: &Arc<Context>,
    replays: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<DeadLetter>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let name = context.endpoint.name.as_str();
    let log = context.households.log().clone();
    let mut checkpoint = context.store.checkpoint(name)?;
    if checkpoint > log.head() {
        tracing::warn!(
            endpoint = name,
            "push checkpoint is ahead of the event log; following it from the start"
        );
        checkpoint = 0;
    }
    // Whatever the platform holds is checked again first: grants may have run out while naast
    // was stopped, and a crash may have cut a household's synchronisation short.
    let mut day = naast_domain::calendar::dutch_today();
    sync(context, context.store.households(name)?, day, stop).await?;
    let mut subscription = log.subscribe_all(checkpoint);
    loop {
        let woke = tokio::select! {
            event = subscription.next() => Woke::Event(event),
            Some(letters) = replays.recv() => Woke::Replay(letters),
            () = tokio::time::sleep(DAY_CHECK) => Woke::Timer,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let first = match woke {
            Woke::Event(Ok(event)) => event,
            Woke::Event(Err(naast_eventlog::Error::Closed)) => return Ok(()),
            Woke::Event(Err(e)) => return Err(e.into()),
            Woke::Replay(letters) => {
                let mut households: Vec<HouseholdId> =
                    letters.iter().map(|l| l.household).collect();
                households.sort();
                households.dedup();
                sync(
                    context,
                    households,
                    naast_domain::calendar::dutch_today(),
                    stop,
                )
                .await?;
                continue;
            }
            Woke::Timer => {
                let today = naast_domain::calendar::dutch_today();
                if today != day {
                    day = today;
                    sync(context, context.store.households(name)?, day, stop).await?;
                }
                continue;
            }
        };
        let mut events = vec![first];
        events.extend(subscription.ready(BATCH - 1));
        let mut touched = Vec::new();
        let mut seen = HashSet::new();
        for event in &events {
            if let Some(household) = household_of(&event.stream_id)
                && seen.insert(household)
            {
                touched.push(household);
            }
        }
        day = naast_domain::calendar::dutch_today();
        sync(context, touched, day, stop).await?;
        let next = events.last().map_or(checkpoint, |e| e.position + 1);
        context.store.set_checkpoint(name, next).await?;
        checkpoint = next;
    }
}

/// What woke a worker.
enum Woke {
    Event(Result<naast_eventlog::RecordedEvent, naast_eventlog::Error>),
    Replay(Vec<DeadLetter>),
    Timer,
}

/// The household whose stream this is.
pub(crate) fn household_of(stream_id: &str) -> Option<HouseholdId> {
    let id = stream_id.strip_prefix("household-")?;
    Uuid::parse_str(id).ok().map(HouseholdId)
}

/// Synchronises `households`, up to the endpoint's concurrency at once; fails if any failed.
async fn sync(
    context: &Arc<Context>,
    households: Vec<HouseholdId>,
    today: time::Date,
    stop: &watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let limit = Arc::new(tokio::sync::Semaphore::new(context.endpoint.concurrency));
    let mut running = tokio::task::JoinSet::new();
    let mut failure = None;
    for household in households {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => permit,
            Some(done) = running.join_next() => {
                note_failure(&mut failure, done);
                limit.clone().acquire_owned().await
            }
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
        let (context, mut stop) = (context.clone(), stop.clone());
        running.spawn(async move {
            let result = sync_household(&context, household, today, &mut stop).await;
            drop(permit);
            result
        });
    }
    while let Some(done) = running.join_next().await {
        note_failure(&mut failure, done);
    }
    failure.map_or(Ok(()), Err)
}

fn note_failure(
    failure: &mut Option<WorkerError>,
    done: Result<Result<(), WorkerError>, tokio::task::JoinError>,
) {
    let error = match done {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(e) => WorkerError::Task(e.to_string()),
    };
    if failure.is_none() || matches!(failure, Some(WorkerError::Stopping(_))) {
        *failure = Some(error);
    }
}

/// Makes the platform hold exactly what it should of `household`.
async fn sync_household(
    context: &Context,
    household: HouseholdId,
    today: time::Date,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let name = context.endpoint.name.as_str();
    let (state, _) = context.households.state(household).await?;
    let wanted = render::wanted(&context.endpoint, household, &state, today)?;
    let mut ledger: HashMap<Key, Entry> = context
        .store
        .ledger(name, household)?
        .into_iter()
        .map(|(t, id, entry)| ((t, id), entry))
        .collect();
    let wanted_keys: HashSet<Key> = wanted
        .iter()
        .map(|w| (w.resource_type.to_owned(), w.id))
        .collect();
    let mut remotes: HashMap<Key, String> = ledger
        .iter()
        .filter(|(key, _)| wanted_keys.contains(*key))
        .filter_map(|(key, entry)| entry.remote.clone().map(|r| (key.clone(), r)))
        .collect();
    for _ in 0..ROUNDS {
        let mut wrote = false;
        // What this round will write, as far as known now, in one audit record before any of
        // it leaves (what becomes different during the round is recorded on its own).
        let mut announced: HashSet<Key> = HashSet::new();
        let mut objects = Vec::new();
        // Each body as rendered with the servers' ids known at the start of the round; one
        // is rendered again only if an id became known since.
        let mut rendered: Vec<(Bytes, String)> = Vec::with_capacity(wanted.len());
        for w in &wanted {
            let key = (w.resource_type.to_owned(), w.id);
            let bytes = Bytes::from(
                serde_json::to_vec(&render::body(&context.endpoint, w, &remotes)).map_err(|e| {
                    naast_fhir::MapError::Build {
                        resource: w.resource_type,
                        reason: e.to_string(),
                    }
                })?,
            );
            let hash = render::hash(&bytes);
            if ledger.get(&key).is_none_or(|e| e.hash != hash) {
                objects.push(format!("{}/{}", w.resource_type, w.id));
                announced.insert(key);
            }
            rendered.push((bytes, hash));
        }
        if !objects.is_empty()
            && let Some(auditor) = &context.auditor
        {
            let basis = wanted.first().map(|w| w.basis.clone()).unwrap_or_default();
            let record = context.record("update", household, objects, &basis, None);
            if auditor.record(&record).await.is_err() {
                // Each request then tries to record itself before it is sent.
                announced.clear();
            }
        }
        let mut remote_changes = 0usize;
        for (w, (bytes, hash)) in wanted.iter().zip(rendered) {
            let key = (w.resource_type.to_owned(), w.id);
            let (bytes, hash) = if remote_changes == 0 {
                (bytes, hash)
            } else {
                let bytes = Bytes::from(
                    serde_json::to_vec(&render::body(&context.endpoint, w, &remotes)).map_err(
                        |e| naast_fhir::MapError::Build {
                            resource: w.resource_type,
                            reason: e.to_string(),
                        },
                    )?,
                );
                let hash = render::hash(&bytes);
                (bytes, hash)
            };
            let before = ledger.get(&key);
            if before.is_some_and(|e| e.hash == hash) {
                continue;
            }
            wrote = true;
            let Some(url) = context.client.by_identifier(w.resource_type, w.id) else {
                continue;
            };
            let request = Request::fhir(reqwest::Method::PUT, url, Some(bytes));
            let record = context.record(
                "update",
                household,
                vec![format!("{}/{}", w.resource_type, w.id)],
                &w.basis,
                None,
            );
            let answer = send(context, &request, record, announced.contains(&key), stop).await?;
            let old_remote = before.and_then(|e| e.remote.clone());
            let old_dead = before.and_then(|e| e.dead);
            let entry = match answer {
                Answer::Done { remote, .. } => {
                    if let Some(dead) = old_dead {
                        context.store.remove_dead_letter(name, dead)?;
                    }
                    let remote = remote.or(old_remote);
                    if let Some(remote) = &remote
                        && remotes.insert(key.clone(), remote.clone()).as_ref() != Some(remote)
                    {
                        remote_changes += 1;
                    }
                    Entry {
                        remote,
                        hash,
                        dead: None,
                    }
                }
                Answer::Refused { status, body } => {
                    let dead = context.dead_letter(
                        household,
                        w.resource_type,
                        w.id,
                        "PUT",
                        status,
                        body,
                    )?;
                    Entry {
                        remote: old_remote,
                        hash,
                        dead: Some(dead),
                    }
                }
            };
            context
                .store
                .put(name, household, w.resource_type, w.id, &entry)?;
            ledger.insert(key, entry);
        }
        if !wrote {
            break;
        }
    }
    let why = if state.erased {
        "the household was erased"
    } else if wanted.is_empty() {
        "no grant to the platform holds"
    } else {
        "no longer covered by the platform's grants"
    };
    let mut withdrawn: Vec<(Key, Entry)> = ledger
        .into_iter()
        .filter(|(key, entry)| !wanted_keys.contains(key) && entry.hash != WITHDRAWAL_REFUSED)
        .collect();
    // What refers to others goes first (the reverse of the order of writing).
    withdrawn.sort_by_key(|((t, id), _)| {
        let order = crate::endpoint::PUSHED_TYPES
            .iter()
            .position(|p| p == t)
            .unwrap_or(0);
        (std::cmp::Reverse(order), *id)
    });
    let mut announced = false;
    if !withdrawn.is_empty()
        && let Some(auditor) = &context.auditor
    {
        let objects = withdrawn
            .iter()
            .map(|((t, id), _)| format!("{t}/{id}"))
            .collect();
        let record = context.record("delete", household, objects, &[], Some(why));
        announced = auditor.record(&record).await.is_ok();
    }
    for ((resource_type, id), entry) in withdrawn {
        let url = match &entry.remote {
            Some(remote) => context.client.by_remote_id(&resource_type, remote),
            None => context.client.by_identifier(&resource_type, id),
        };
        let Some(url) = url else { continue };
        let request = Request::fhir(reqwest::Method::DELETE, url, None);
        let record = context.record(
            "delete",
            household,
            vec![format!("{resource_type}/{id}")],
            &[],
            Some(why),
        );
        match send(context, &request, record, announced, stop).await? {
            Answer::Done { .. } => {
                if let Some(dead) = entry.dead {
                    context.store.remove_dead_letter(name, dead)?;
                }
                context.store.remove(name, household, &resource_type, id)?;
            }
            Answer::Refused { status, body } => {
                let dead =
                    context.dead_letter(household, &resource_type, id, "DELETE", status, body)?;
                let entry = Entry {
                    remote: entry.remote,
                    hash: WITHDRAWAL_REFUSED.to_owned(),
                    dead: Some(dead),
                };
                context
                    .store
                    .put(name, household, &resource_type, id, &entry)?;
            }
        }
    }
    Ok(())
}

/// Sends `request`, recording `record` in the audit log (if there is one) before each attempt
/// (but the first when it was `announced`: recorded already with its household's pass).
pub(crate) async fn send(
    context: &Context,
    request: &Request,
    record: audit::Record,
    announced: bool,
    stop: &mut watch::Receiver<bool>,
) -> Result<Answer, Stopping> {
    let auditor = context.auditor.clone();
    context
        .client
        .send(request, stop, |attempt| {
            let (auditor, mut record) = (auditor.clone(), record.clone());
            async move {
                let Some(auditor) = auditor else {
                    return Ok(());
                };
                if announced && attempt == 1 {
                    // Recorded with the rest of its household's pass.
                    return Ok(());
                }
                record.reason = Some(match record.reason.take() {
                    Some(why) => format!("{why}; attempt {attempt}"),
                    None => format!("attempt {attempt}"),
                });
                auditor.record(&record).await.map_err(|e| e.to_string())
            }
        })
        .await
}

impl Context {
    /// The audit record of a request about one resource: the platform is the user, the
    /// endpoint the system the data goes to, the grants the basis.
    pub(crate) fn record(
        &self,
        interaction: &str,
        household: HouseholdId,
        objects: Vec<String>,
        basis: &[String],
        why: Option<&str>,
    ) -> audit::Record {
        let endpoint = &self.endpoint;
        let mut record = audit::Record::new(format!("push {interaction}"), audit::Outcome::Allowed);
        record.user = Some(audit::User {
            identity: Identity {
                issuer: endpoint.platform.issuer.clone(),
                subject: endpoint.platform.client_id.clone(),
            },
            name: Some(endpoint.name.clone()),
            role: PrincipalRole::Platform,
            organisation: None,
            requestor: false,
        });
        record.household = Some(household);
        record.objects = objects;
        record.basis = basis.to_vec();
        record.source_system = Some(endpoint.name.clone());
        record.network_access_point = reqwest::Url::parse(&endpoint.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        record.reason = why.map(str::to_owned);
        record
    }

    fn dead_letter(
        &self,
        household: HouseholdId,
        resource_type: &str,
        id: Uuid,
        method: &str,
        status: u16,
        body: String,
    ) -> Result<u64, StoreError> {
        tracing::warn!(endpoint = %self.endpoint.name, %household, resource_type, %id, status,
            "push refused by the platform; filed as a dead letter");
        let at_micros = crate::deliver::now_micros();
        self.store.add_dead_letter(
            &self.endpoint.name,
            DeadLetter {
                id: 0,
                household,
                resource_type: resource_type.to_owned(),
                resource_id: id,
                method: method.to_owned(),
                status,
                body,
                at_micros,
                notice: None,
            },
        )
    }
}
