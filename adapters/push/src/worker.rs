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
use crate::scope::Scope;
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
const BATCH: usize = 256;
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

/// Where an endpoint's worker starts in the log: its checkpoint, or the start when the
/// checkpoint is past the log's head (the store belongs to other data).
pub(crate) fn starting_checkpoint(context: &Context) -> Result<u64, WorkerError> {
    let checkpoint = context.store.checkpoint(&context.endpoint.name)?;
    if checkpoint > context.households.log().head() {
        tracing::warn!(
            endpoint = %context.endpoint.name,
            "push checkpoint is ahead of the event log; following it from the start"
        );
        return Ok(0);
    }
    Ok(checkpoint)
}

/// Follows the log from the checkpoint until the log closes or `stop` turns true. The checkpoint
/// is written on a task of its own (two syncs of the push store), off the path of the next
/// batch: it lags a little behind what is done, which after a crash costs only comparing again
/// what the ledger says is there.
async fn follow(
    context: &Arc<Context>,
    replays: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<DeadLetter>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let checkpoint = starting_checkpoint(context)?;
    let (passed, watched) = watch::channel(checkpoint);
    let keeper = tokio::spawn(keep_checkpoint(context.clone(), watched));
    let followed = follow_batches(context, replays, stop, checkpoint, &passed).await;
    // The keeper writes the last checkpoint passed, and ends.
    drop(passed);
    let kept = keeper
        .await
        .map_err(|e| WorkerError::Task(e.to_string()))
        .and_then(|kept| kept);
    followed.and(kept)
}

/// Writes each checkpoint `passed` (the newest, when several came meanwhile) until the worker
/// is done, then the last one.
async fn keep_checkpoint(
    context: Arc<Context>,
    mut passed: watch::Receiver<u64>,
) -> Result<(), WorkerError> {
    let name = context.endpoint.name.as_str();
    let mut written = *passed.borrow_and_update();
    loop {
        let open = passed.changed().await.is_ok();
        let position = *passed.borrow_and_update();
        if position != written {
            context.store.set_checkpoint(name, position).await?;
            written = position;
        }
        if !open {
            return Ok(());
        }
    }
}

/// The batches of [`follow`], from `checkpoint`, each passed on to the checkpoint's keeper.
async fn follow_batches(
    context: &Arc<Context>,
    replays: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<DeadLetter>>,
    stop: &mut watch::Receiver<bool>,
    mut checkpoint: u64,
    passed: &watch::Sender<u64>,
) -> Result<(), WorkerError> {
    let log = context.households.log().clone();
    // Whatever the platform holds is checked again first: grants may have run out while naast
    // was stopped, and a crash may have cut a household's synchronisation short.
    let mut day = naast_domain::calendar::dutch_today();
    sync_all(context, day, stop).await?;
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
                    everything(households),
                    naast_domain::calendar::dutch_today(),
                    stop,
                )
                .await?;
                continue;
            }
            Woke::Timer => {
                new_day(context, &mut day, stop).await?;
                continue;
            }
        };
        let mut events = vec![first];
        events.extend(subscription.ready(BATCH - 1));
        // Each household the batch touched, with what its events may have changed.
        let mut touched: Vec<(HouseholdId, Scope)> = Vec::new();
        let mut index: HashMap<HouseholdId, usize> = HashMap::new();
        for event in &events {
            let Some(household) = HouseholdId::of_stream(&event.stream_id) else {
                continue;
            };
            // Opened only when its type does not say enough.
            let scope = Scope::of_type(&event.event_type).unwrap_or_else(|| {
                match context.households.open(household, event) {
                    Ok(Some(stored)) => Scope::of(&stored.event),
                    // Erased, or unreadable: the pass finds out what is left.
                    Ok(None) | Err(_) => Scope::All,
                }
            });
            match index.get(&household) {
                Some(&i) => touched[i].1.merge(scope),
                None => {
                    index.insert(household, touched.len());
                    touched.push((household, scope));
                }
            }
        }
        new_day(context, &mut day, stop).await?;
        sync(context, touched, day, stop).await?;
        let next = events.last().map_or(checkpoint, |e| e.position + 1);
        // No one listening means the keeper failed: the worker ends with its error.
        if passed.send(next).is_err() {
            return Ok(());
        }
        checkpoint = next;
    }
}

/// On a new day, everything the platform holds is checked again: grants may have run out and
/// agreements' funding moved with the date.
async fn new_day(
    context: &Arc<Context>,
    day: &mut time::Date,
    stop: &watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let today = naast_domain::calendar::dutch_today();
    if today != *day {
        *day = today;
        sync_all(context, today, stop).await?;
    }
    Ok(())
}

/// Synchronises, whole, every household the platform holds anything of.
async fn sync_all(
    context: &Arc<Context>,
    today: time::Date,
    stop: &watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let households = context.store.households(&context.endpoint.name)?;
    sync(context, everything(households), today, stop).await
}

/// Each of `households`, to be synchronised whole.
fn everything(households: Vec<HouseholdId>) -> Vec<(HouseholdId, Scope)> {
    households.into_iter().map(|h| (h, Scope::All)).collect()
}

/// What woke a worker.
enum Woke {
    Event(Result<naast_eventlog::RecordedEvent, naast_eventlog::Error>),
    Replay(Vec<DeadLetter>),
    Timer,
}

/// Synchronises `households` (each as far as its scope says it may have changed): each pass
/// prepared first (nothing leaves naast yet), then the
/// audit records of all of them written at once (sharing the audit log's commits), then the
/// passes carried out, up to the endpoint's concurrency at once; fails if any failed.
async fn sync(
    context: &Arc<Context>,
    households: Vec<(HouseholdId, Scope)>,
    today: time::Date,
    stop: &watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    // Prepared a few at a time (the rendering is the work), kept in the batch's order.
    let limit = Arc::new(tokio::sync::Semaphore::new(context.endpoint.concurrency));
    let mut preparing = tokio::task::JoinSet::new();
    for (i, (household, scope)) in households.into_iter().enumerate() {
        let (context, limit) = (context.clone(), limit.clone());
        preparing.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (i, prepare(&context, household, &scope, today).await)
        });
    }
    let mut prepared = Vec::new();
    while let Some(done) = preparing.join_next().await {
        let (i, pass) = done.map_err(|e| WorkerError::Task(e.to_string()))?;
        prepared.push((i, pass?));
    }
    prepared.sort_by_key(|(i, _)| *i);
    let passes: Vec<Pass> = prepared
        .into_iter()
        .map(|(_, pass)| pass)
        .filter(|pass| !pass.writes.is_empty() || !pass.withdrawn.is_empty())
        .collect();
    let mut announced = vec![(false, false); passes.len()];
    if let Some(auditor) = &context.auditor {
        let mut records = tokio::task::JoinSet::new();
        for (i, pass) in passes.iter().enumerate() {
            for (deleting, record) in [
                (false, pass.update_record(context)),
                (true, pass.delete_record(context)),
            ] {
                if let Some(record) = record {
                    let auditor = auditor.clone();
                    records
                        .spawn(async move { (i, deleting, auditor.record(&record).await.is_ok()) });
                }
            }
        }
        while let Some(done) = records.join_next().await {
            // A record that could not be written leaves its requests to record themselves.
            if let Ok((i, deleting, ok)) = done {
                if deleting {
                    announced[i].1 = ok;
                } else {
                    announced[i].0 = ok;
                }
            }
        }
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(context.endpoint.concurrency));
    let mut running = tokio::task::JoinSet::new();
    let mut failure = None;
    for (pass, announced) in passes.into_iter().zip(announced) {
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
            let result = execute(&context, pass, announced, &mut stop).await;
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
/// One household's pass, prepared: what the platform should hold, what it holds, each body
/// rendered, what will be written and what withdrawn.
struct Pass {
    household: HouseholdId,
    wanted: Vec<render::Wanted>,
    ledger: HashMap<Key, Entry>,
    remotes: HashMap<Key, String>,
    /// The first round's bodies and their hashes, and the resources they will write.
    rendered: Rendered,
    writes: Vec<Key>,
    withdrawn: Vec<(Key, Entry)>,
    why: &'static str,
}

impl Pass {
    /// The audit record of what this pass writes, if anything.
    fn update_record(&self, context: &Context) -> Option<audit::Record> {
        (!self.writes.is_empty()).then(|| {
            let basis = self
                .wanted
                .first()
                .map(|w| w.basis.clone())
                .unwrap_or_default();
            let objects = self
                .writes
                .iter()
                .map(|(t, id)| format!("{t}/{id}"))
                .collect();
            context.record("update", self.household, objects, &basis, None)
        })
    }

    /// The audit record of what this pass withdraws, if anything.
    fn delete_record(&self, context: &Context) -> Option<audit::Record> {
        (!self.withdrawn.is_empty()).then(|| {
            let objects = self
                .withdrawn
                .iter()
                .map(|((t, id), _)| format!("{t}/{id}"))
                .collect();
            context.record("delete", self.household, objects, &[], Some(self.why))
        })
    }
}

/// Bodies as written, each with its hash.
type Rendered = Vec<(Bytes, String)>;

/// Renders every wanted resource with the servers' ids in `remotes`: the bodies and their
/// hashes, and which differ from what the ledger says was written.
fn render_round(
    context: &Context,
    wanted: &[render::Wanted],
    ledger: &HashMap<Key, Entry>,
    remotes: &HashMap<Key, String>,
) -> Result<(Rendered, Vec<Key>), WorkerError> {
    let mut rendered = Vec::with_capacity(wanted.len());
    let mut writes = Vec::new();
    for w in wanted {
        let key = (w.resource_type.to_owned(), w.id);
        let bytes = Bytes::from(
            serde_json::to_vec(&render::body(&context.endpoint, w, remotes)).map_err(|e| {
                naast_fhir::MapError::Build {
                    resource: w.resource_type,
                    reason: e.to_string(),
                }
            })?,
        );
        let hash = render::hash(&bytes);
        if ledger.get(&key).is_none_or(|e| e.hash != hash) {
            writes.push(key);
        }
        rendered.push((bytes, hash));
    }
    Ok((rendered, writes))
}

/// Prepares `household`'s pass over what `scope` says may have changed: nothing leaves naast
/// yet.
async fn prepare(
    context: &Context,
    household: HouseholdId,
    scope: &Scope,
    today: time::Date,
) -> Result<Pass, WorkerError> {
    let name = context.endpoint.name.as_str();
    // Decided on the household as it stands, under its lock (nothing cloned): what may have
    // changed (`None`: everything, the whole household compared with what the platform holds),
    // and of that what the platform should hold.
    let endpoint = &context.endpoint;
    let (only, wanted, why) = context
        .households
        .inspect(household, |state, _| {
            let only = scope.keys(state);
            let wanted = render::wanted(endpoint, household, state, today, only.as_ref());
            let why = if state.erased {
                "the household was erased"
            } else if only.is_none() && wanted.as_ref().is_ok_and(Vec::is_empty) {
                "no grant to the platform holds"
            } else {
                "no longer covered by the platform's grants"
            };
            (only, wanted, why)
        })
        .await?;
    let wanted = wanted?;
    let within = |key: &Key| only.as_ref().is_none_or(|keys| keys.contains(key));
    // What the platform holds of it: all of it, or (when only part may have changed) that part
    // and what its resources refer to.
    let ledger: HashMap<Key, Entry> = match &only {
        None => context
            .store
            .ledger(name, household)?
            .into_iter()
            .map(|(t, id, entry)| ((t, id), entry))
            .collect(),
        Some(keys) => {
            let mut needed = keys.clone();
            for w in &wanted {
                render::referenced(&w.json, &mut needed);
            }
            let mut ledger = HashMap::new();
            for key in needed {
                if let Some(entry) = context.store.entry(name, household, &key.0, key.1)? {
                    ledger.insert(key, entry);
                }
            }
            ledger
        }
    };
    let wanted_keys: HashSet<Key> = wanted
        .iter()
        .map(|w| (w.resource_type.to_owned(), w.id))
        .collect();
    // What the platform holds and keeps: what is wanted, and (when only part is rendered)
    // what lies outside that part and is not being withdrawn.
    let keeps = |key: &Key, entry: &Entry| {
        wanted_keys.contains(key) || (!within(key) && entry.hash != WITHDRAWAL_REFUSED)
    };
    let remotes: HashMap<Key, String> = ledger
        .iter()
        .filter(|(key, entry)| keeps(key, entry))
        .filter_map(|(key, entry)| entry.remote.clone().map(|r| (key.clone(), r)))
        .collect();
    let (rendered, writes) = render_round(context, &wanted, &ledger, &remotes)?;
    let mut withdrawn: Vec<(Key, Entry)> = ledger
        .iter()
        .filter(|(key, entry)| {
            within(key) && !wanted_keys.contains(*key) && entry.hash != WITHDRAWAL_REFUSED
        })
        .map(|(key, entry)| (key.clone(), entry.clone()))
        .collect();
    // What refers to others goes first (the reverse of the order of writing).
    withdrawn.sort_by_key(|((t, id), _)| {
        let order = crate::endpoint::PUSHED_TYPES
            .iter()
            .position(|p| p == t)
            .unwrap_or(0);
        (std::cmp::Reverse(order), *id)
    });
    Ok(Pass {
        household,
        wanted,
        ledger,
        remotes,
        rendered,
        writes,
        withdrawn,
        why,
    })
}

/// Carries out a prepared pass: the writes (in rounds, while references to what was just
/// written change bodies), then the withdrawals. `announced`: whether the pass's update and
/// delete records are in the audit log already (else each request records itself).
async fn execute(
    context: &Context,
    pass: Pass,
    announced: (bool, bool),
    stop: &mut watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let name = context.endpoint.name.as_str();
    let Pass {
        household,
        wanted,
        mut ledger,
        mut remotes,
        rendered,
        writes,
        withdrawn,
        why,
    } = pass;
    let mut first = Some((rendered, writes, announced.0));
    for _ in 0..ROUNDS {
        let (rendered, writes, recorded) = match first.take() {
            Some(round) => round,
            None => {
                // A later round: recorded as it comes, in one record.
                let (rendered, writes) = render_round(context, &wanted, &ledger, &remotes)?;
                if writes.is_empty() {
                    break;
                }
                let mut recorded = false;
                if let Some(auditor) = &context.auditor {
                    let basis = wanted.first().map(|w| w.basis.clone()).unwrap_or_default();
                    let objects = writes.iter().map(|(t, id)| format!("{t}/{id}")).collect();
                    let record = context.record("update", household, objects, &basis, None);
                    recorded = auditor.record(&record).await.is_ok();
                }
                (rendered, writes, recorded)
            }
        };
        let announced: HashSet<Key> = if recorded {
            writes.into_iter().collect()
        } else {
            HashSet::new()
        };
        let mut wrote = false;
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
                        (w.resource_type, w.id),
                        "PUT",
                        (status, body),
                        old_dead,
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
        match send(context, &request, record, announced.1, stop).await? {
            Answer::Done { .. } => {
                if let Some(dead) = entry.dead {
                    context.store.remove_dead_letter(name, dead)?;
                }
                context.store.remove(name, household, &resource_type, id)?;
            }
            Answer::Refused { status, body } => {
                let dead = context.dead_letter(
                    household,
                    (&resource_type, id),
                    "DELETE",
                    (status, body),
                    entry.dead,
                )?;
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
    send_recorded(
        &context.client,
        context.auditor.as_ref(),
        request,
        record,
        announced,
        stop,
    )
    .await
}

/// [`send`] with `client`, recording in `auditor`.
pub(crate) async fn send_recorded(
    client: &Client,
    auditor: Option<&Auditor>,
    request: &Request,
    record: audit::Record,
    announced: bool,
    stop: &mut watch::Receiver<bool>,
) -> Result<Answer, Stopping> {
    client
        .send(request, stop, |attempt| {
            let (auditor, mut record) = (auditor.cloned(), record.clone());
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

    /// Files the platform's refusal (`status`, `body`) of `method` on a resource as a dead
    /// letter, replacing the one filed for it before, if any (`replacing`): a resource has one
    /// dead letter at most, its newest refusal.
    fn dead_letter(
        &self,
        household: HouseholdId,
        (resource_type, id): (&str, Uuid),
        method: &str,
        (status, body): (u16, String),
        replacing: Option<u64>,
    ) -> Result<u64, StoreError> {
        if let Some(earlier) = replacing {
            self.store
                .remove_dead_letter(&self.endpoint.name, earlier)?;
        }
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
