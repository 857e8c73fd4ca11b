//! Executing commands on households: load the household's state from its stream, decide,
//! append the events with optimistic concurrency, and answer with the position written at.
//! (The timeline is a read model: see `naast_projections`.)
//!
//! - Commands on one household take turns on its in-memory state (the consistency boundary);
//!   commands on different households run in parallel. Appends still carry the expected
//!   revision, so an event written past this state (by another process on the same log, say)
//!   is never overwritten: the command reads it and is decided again (a few times at most).
//! - A command may carry the revision the caller last saw (`expected_revision`); if the
//!   household moved on, the command is refused as a conflict.
//! - A command may carry a `request_id`; its events then get ids derived from it, so a retry is
//!   recognised in the log and answered with the first outcome instead of acting twice.

use crate::audit::{self, Auditor};
use crate::auth::caller::Calling;
use naast_domain::access::{self, Access, Action};
use naast_domain::event::CommandStamp;
use naast_domain::ids::HouseholdId;
use naast_domain::{Command, DomainError, DomainEvent, Household, decide};
use naast_eventlog::{Direction, EventLog, ExpectedRevision, Metadata, NewEvent, RecordedEvent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use uuid::Uuid;

/// The request field of [`CommandContext::happened_on`], named in refusals.
pub const EFFECTIVE_DATE_FIELD: &str = "options.effective_date";
/// How often a command without an expected revision is decided again after losing a race
/// (races are lost to other nodes on one database: on one node a household's commands take
/// turns).
const MAX_ATTEMPTS: usize = 10;
/// The longest wait before deciding again after a lost race: waits grow from a millisecond,
/// doubling, each a random part of its bound, so nodes racing on one household fall apart.
const MAX_RACE_WAIT: std::time::Duration = std::time::Duration::from_millis(50);
/// Households whose state is kept in memory between commands.
const MAX_CACHED: usize = 10_000;
/// Events read per step when loading a stream.
const READ_CHUNK: usize = 1_000;

/// Who asks, and how the command is to be applied.
#[derive(Clone, Debug)]
pub struct CommandContext {
    /// Who calls: the command is authorised against the household's consent and audited.
    pub calling: Calling,
    /// Makes retries idempotent: the same id, the same command, one effect.
    pub request_id: Option<Uuid>,
    /// The household's revision the caller based the command on.
    pub expected_revision: Option<u64>,
    /// The principal acting, recorded in each event's metadata.
    pub actor: Option<String>,
    /// The day it happened, when recorded later; not in the future.
    pub happened_on: Option<time::Date>,
}

impl CommandContext {
    /// A context for embedded use (benchmarks, tools): no caller, so nothing is authorised or
    /// audited.
    pub fn unguarded() -> Self {
        Self {
            calling: Calling::Unguarded,
            request_id: None,
            expected_revision: None,
            actor: None,
            happened_on: None,
        }
    }
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// The household's revision after the command.
    pub revision: u64,
    /// Global position of the command's last event: pass it as a query's minimum position to
    /// read your own write.
    pub position: u64,
    /// The command had been executed before under the same request id; nothing new happened.
    pub replayed: bool,
}

impl Executed {
    /// The answer to a request for access by someone who may not see the household: nothing
    /// about the household (see [`Households::execute`]).
    fn unseen(replayed: bool) -> Self {
        Self {
            revision: 0,
            position: 0,
            replayed,
        }
    }
}

/// Why a command was not executed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The domain refused it.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The household is not at the revision the caller expected.
    #[error("household is at revision {actual:?}, not the expected {expected}")]
    Conflict {
        /// What the caller expected.
        expected: u64,
        /// Where the household is (`None`: it has no events).
        actual: Option<u64>,
    },
    /// The request id was used before for another command, by another caller or in another
    /// household: a retry is only a retry when it repeats the same command by the same caller.
    /// (The message says nothing of the first use.)
    #[error(
        "options.request_id was already used for another command; a retry must repeat the same command by the same caller, and a new command needs a new request id"
    )]
    RequestIdReused(Uuid),
    /// Other writers kept winning the race.
    #[error("the household changed {MAX_ATTEMPTS} times while deciding; try again")]
    Contended,
    /// A stored event cannot be read as a domain event.
    #[error("stored event at position {position} is not a valid {event_type}: {reason}")]
    BadEvent {
        /// Where.
        position: u64,
        /// Its type.
        event_type: String,
        /// What is wrong.
        reason: String,
    },
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] naast_eventlog::Error),
    /// The caller may not do this.
    #[error("permission denied: {0}")]
    Denied(String),
    /// A household key could not be made, read or destroyed.
    #[error("key store: {0}")]
    Vault(String),
    /// The access could not be recorded in the audit log, so it was not granted.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// A store besides the event log (the read models, the record of disclosed reports) failed
    /// or is behind; try again.
    #[error("{0}")]
    Unavailable(String),
}

/// A household's state as of a revision.
#[derive(Clone, Default)]
struct Snapshot {
    state: Household,
    revision: Option<u64>,
}

/// A household's snapshot, locked while a command on it is decided and appended: commands on
/// one household take turns (it is the consistency boundary), others run in parallel.
type Slot = Arc<tokio::sync::Mutex<Snapshot>>;

/// A moment in a household's history, as a read looks back to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// The end of a Dutch day: the events dated on or before it as the timeline dates them (the
    /// day an event names, else the day it was recorded or its `effective_date`).
    Day(time::Date),
    /// Right after this revision of the household's stream.
    Revision(u64),
}

impl Moment {
    /// Whether an event dated `date` at revision `revision` had happened by this moment.
    /// A later moment of the same kind counts every event an earlier one does, and so does a
    /// revision at or after the last event.
    pub fn counts(self, date: time::Date, revision: u64) -> bool {
        match self {
            Moment::Day(day) => date <= day,
            Moment::Revision(until) => revision <= until,
        }
    }
}

/// A household at two moments and the steps between them: see [`Households::between`].
#[derive(Debug, Default)]
pub struct Between {
    /// The household at the first moment.
    pub before: Household,
    /// The last revision the first moment counts (`None`: nothing had happened yet).
    pub before_revision: Option<u64>,
    /// The household at the second moment.
    pub after: Household,
    /// The last revision the second moment counts.
    pub after_revision: Option<u64>,
    /// The events between them, in the order recorded.
    pub events: Vec<Step>,
}

/// One event between two moments.
#[derive(Debug)]
pub struct Step {
    /// As stored: revision, position, when and by whom it was recorded.
    pub recorded: RecordedEvent,
    /// The event.
    pub event: DomainEvent,
    /// The day the timeline dates it on.
    pub date: time::Date,
    /// Its line for people, as on the timeline.
    pub summary: String,
}

/// Commands and reads over all households.
#[derive(Clone)]
pub struct Households {
    log: EventLog,
    auditor: Option<Auditor>,
    vault: Option<naast_vault::Vault>,
    cache: Arc<Mutex<HashMap<HouseholdId, Slot>>>,
}

impl Households {
    /// Serves households from `log`, recording every guarded access with `auditor`.
    pub fn new(log: EventLog, auditor: Option<Auditor>) -> Self {
        Self {
            log,
            auditor,
            vault: None,
            cache: Arc::default(),
        }
    }

    /// Seals every household payload with its household's key from `vault` (encryption at
    /// rest), so erasing a household forgets it.
    pub fn with_vault(mut self, vault: naast_vault::Vault) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Decides whether the caller may do `action` in `household` (on its current state) and
    /// records the decision in the audit log before anything is shown; `objects` are the ids
    /// touched, for the record. `f` is given the state and the access to pick what the caller
    /// may see (under the household's lock: keep it short). Unguarded calls may do everything
    /// and are not recorded.
    pub async fn guard_read<R>(
        &self,
        calling: &Calling,
        household: HouseholdId,
        action: Action,
        objects: Vec<String>,
        f: impl FnOnce(&Household, Option<u64>, &Access) -> R,
    ) -> Result<(Access, R), AppError> {
        self.guard_read_checked(
            calling,
            household,
            action,
            objects,
            |state, revision, access| Ok(f(state, revision, access)),
        )
        .await
    }

    /// [`Households::guard_read`] where `f` may still refuse, for the one thing asked for
    /// (a goal outside what a grant shows, say): the refusal is what is recorded then.
    pub async fn guard_read_checked<R>(
        &self,
        calling: &Calling,
        household: HouseholdId,
        action: Action,
        objects: Vec<String>,
        f: impl FnOnce(&Household, Option<u64>, &Access) -> Result<R, access::Denied>,
    ) -> Result<(Access, R), AppError> {
        let decision = self
            .inspect(household, |state, revision| {
                let access = calling.access(state, action)?;
                let seen = f(state, revision, &access)?;
                Ok((access, seen))
            })
            .await?;
        self.record(
            calling,
            household,
            decision.as_ref().map(|(access, _)| access),
            objects,
        )
        .await?;
        decision.map_err(|denied: access::Denied| AppError::Denied(denied.reason))
    }

    /// For each of `candidates` the caller may do `action` in, what `f` makes of it (in the
    /// order given), each read recorded in the audit log before it is returned. Households the
    /// caller may not (or no longer) see are left out without a record: they were not asked
    /// for by the caller, only found as candidates (a supporter's caseload).
    pub async fn read_each<R>(
        &self,
        calling: &Calling,
        candidates: Vec<HouseholdId>,
        action: Action,
        f: impl Fn(&Household, &Access) -> R,
    ) -> Result<Vec<(HouseholdId, R)>, AppError> {
        let mut out = Vec::with_capacity(candidates.len());
        for household in candidates {
            let decision = self
                .inspect(household, |state, _| {
                    let access = calling.access(state, action)?;
                    let seen = f(state, &access);
                    Ok::<_, access::Denied>((access, seen))
                })
                .await?;
            let Ok((access, seen)) = decision else {
                continue;
            };
            self.record(calling, household, Ok(&access), Vec::new())
                .await?;
            out.push((household, seen));
        }
        Ok(out)
    }

    /// Whether the caller may still do `action` (an open subscription asks before each item).
    /// Only a refusal is recorded: the access itself was recorded when the stream opened.
    pub async fn recheck(
        &self,
        calling: &Calling,
        household: HouseholdId,
        action: Action,
    ) -> Result<Access, AppError> {
        if let Calling::Unguarded = calling {
            // Nothing to check: no need to look at the household at all.
            return Ok(Access::everything(Vec::new()));
        }
        let decision = self
            .inspect(household, |state, _| calling.access(state, action))
            .await?;
        match decision {
            Ok(access) => Ok(access),
            Err(denied) => {
                let ended = access::Denied {
                    reason: format!("stream ended: {}", denied.reason),
                    detail: denied.detail,
                };
                self.record(calling, household, Err(&ended), Vec::new())
                    .await?;
                Err(AppError::Denied(ended.reason))
            }
        }
    }

    async fn record(
        &self,
        calling: &Calling,
        household: HouseholdId,
        decision: Result<&Access, &access::Denied>,
        objects: Vec<String>,
    ) -> Result<(), AppError> {
        if let Some((auditor, record)) = self.audit_record(calling, household, decision, objects)? {
            auditor.record(&record).await?;
        }
        Ok(())
    }

    /// The audit record of `decision` and the audit log it goes to; `None` for an unguarded
    /// call.
    fn audit_record(
        &self,
        calling: &Calling,
        household: HouseholdId,
        decision: Result<&Access, &access::Denied>,
        objects: Vec<String>,
    ) -> Result<Option<(Auditor, audit::Record)>, AppError> {
        let Calling::Caller(caller) = calling else {
            return Ok(None);
        };
        let mut record = caller.record(match decision {
            Ok(_) => audit::Outcome::Allowed,
            Err(_) => audit::Outcome::Denied,
        });
        record.household = Some(household);
        record.objects = objects;
        match decision {
            Ok(access) => record.basis.clone_from(&access.basis),
            Err(denied) => record.reason = Some(denied.for_audit()),
        }
        Ok(Some((self.audit_log()?.clone(), record)))
    }

    /// Calls `f` with the household's current state and revision (`None`: no events).
    pub async fn inspect<R>(
        &self,
        household: HouseholdId,
        f: impl FnOnce(&Household, Option<u64>) -> R,
    ) -> Result<R, AppError> {
        // On a log other nodes write too: what they committed is read first, so no read (nor
        // the access decided for it) rests on a view older than the call.
        self.log.read_the_others().await?;
        let Some(slot) = self.known_slot(household) else {
            let mut snapshot = Snapshot::default();
            self.catch_up(household, &mut snapshot)?;
            if snapshot.state.registered {
                // Keep it: the next read or command need not load it again.
                let slot = self.slot(household);
                let mut cached = slot.lock().await;
                if cached.revision.is_none() {
                    *cached = snapshot;
                }
                self.catch_up(household, &mut cached)?;
                return Ok(f(&cached.state, cached.revision));
            }
            return Ok(f(&snapshot.state, snapshot.revision));
        };
        let mut snapshot = slot.lock().await;
        self.catch_up(household, &mut snapshot)?;
        Ok(f(&snapshot.state, snapshot.revision))
    }

    /// The event log underneath.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// The access log of `household` (NEN 7513): up to `limit` records about it from `from` on
    /// that `filter` admits, oldest first, and where to continue (`None` at the end), with the
    /// records its commands' events carry. Whoever asks must be allowed first.
    pub fn access_log(
        &self,
        household: HouseholdId,
        from: audit::Cursor,
        limit: usize,
        filter: &audit::Filter,
    ) -> Result<(Vec<audit::Stored>, Option<audit::Cursor>), AppError> {
        let auditor = self.audit_log()?;
        Ok(auditor.household(
            &self.log,
            self.vault.as_ref(),
            household,
            from,
            limit,
            filter,
        )?)
    }

    /// The whole audit log: up to `limit` records from `from` on that `filter` admits, oldest
    /// first, and where to continue (`None` at the end), with the records the commands' events
    /// carry. Whoever asks must be allowed first.
    pub fn search_audit_log(
        &self,
        from: audit::Cursor,
        limit: usize,
        filter: &audit::Filter,
    ) -> Result<(Vec<audit::Stored>, Option<audit::Cursor>), AppError> {
        let auditor = self.audit_log()?;
        Ok(auditor.search(&self.log, self.vault.as_ref(), from, limit, filter)?)
    }

    /// The audit log of guarded calls.
    fn audit_log(&self) -> Result<&Auditor, AppError> {
        self.auditor.as_ref().ok_or_else(|| {
            AppError::Audit(audit::AuditError::Unavailable(
                "no audit log is configured for guarded calls".into(),
            ))
        })
    }

    /// Decides `command` on `household` and appends its events.
    pub async fn execute(
        &self,
        household: HouseholdId,
        command: Command,
        context: &CommandContext,
    ) -> Result<Executed, AppError> {
        if let Some(day) = context.happened_on {
            naast_domain::validate::date(EFFECTIVE_DATE_FIELD, day)?;
            let today = naast_domain::calendar::dutch_today();
            if day > today {
                return Err(DomainError::invalid(
                    EFFECTIVE_DATE_FIELD,
                    format!("{day} is in the future; record what happened, not what is planned"),
                )
                .into());
            }
        }
        if let Command::AddMember { details, .. } | Command::UpdateMember { details, .. } = &command
            && details
                .birth_date
                .is_some_and(|born| born > naast_domain::calendar::dutch_today())
        {
            return Err(DomainError::invalid("details.birth_date", "is in the future").into());
        }
        naast_domain::command::check_without_household(&command)?;
        let slot = self.slot(household);
        let mut snapshot = slot.lock().await;
        // Only commands write household streams, and on one node they take turns on this slot,
        // so a cached snapshot is current; should anything else have written, the append's
        // expected revision refuses it and the loop reads what is new and decides again.
        if snapshot.revision.is_none() {
            self.catch_up(household, &mut snapshot)?;
        }
        // On a log other nodes write too, the cached snapshot may be behind what they
        // committed. An allowance decided on it cannot act on that (its append is refused, as
        // above), but a refusal must not rest on it either: a command the cached view would
        // refuse is decided on everything the other nodes had committed when it came in, and so
        // is one with a request id (its first use may have been on another node, and must be
        // found). The usual command, allowed, costs no read of the database before its append.
        if self.log.is_shared()
            && (context.request_id.is_some() || !would_pass(&snapshot, &command, context))
        {
            self.log.read_the_others().await?;
            self.catch_up(household, &mut snapshot)?;
        }
        if registers_over_unreadable(&snapshot, &command) {
            return Err(DomainError::exists("household_id", "household", household).into());
        }
        let decision = context.calling.command_access(&snapshot.state, &command);
        // Anyone signed in may ask a family for access, so the answer must not tell whether the
        // household exists: a request to one that does not (or is erased) is recorded in the
        // audit log and answered as if filed, and the answer to someone who may not see the
        // household never carries its revision or position.
        let blind = matches!(command, Command::RequestAccess { .. })
            && context
                .calling
                .access(&snapshot.state, Action::Read(access::ReadKind::Household))
                .is_err();
        let scoped;
        let context = if blind {
            if context.expected_revision.is_some() {
                return Err(DomainError::invalid(
                    "options.expected_revision",
                    "a request for access names no revision: the household's is not the caller's to know",
                )
                .into());
            }
            // Its request id counts in this household alone: reusing it elsewhere must not
            // tell whether this request was filed.
            scoped = CommandContext {
                request_id: context
                    .request_id
                    .map(|id| Uuid::new_v5(&id, household.0.as_bytes())),
                ..context.clone()
            };
            &scoped
        } else {
            context
        };
        // The ids touched, for the audit record: only a guarded call has one.
        let objects = match &context.calling {
            Calling::Unguarded => Vec::new(),
            Calling::Caller(_) => access::objects_of(&command),
        };
        if let Err(denied) = &decision {
            let unseen = blind && denied.is_no_access();
            if let Some((auditor, mut record)) =
                self.audit_record(&context.calling, household, Err(denied), objects)?
            {
                stamp_request_id(&mut record, context);
                if unseen {
                    record.reason = Some(format!("{denied}: the request was not filed"));
                }
                auditor.record(&record).await?;
            }
            if unseen {
                return Ok(Executed::unseen(false));
            }
            return Err(AppError::Denied(denied.reason.clone()));
        }
        // The audit record of an allowed command is durable before the command is acknowledged,
        // in one commit with its events: the first event carries it (sealed, in its stamp), and
        // the audit log lists it from there; nothing else is written. Without events to carry
        // it (refused, replayed, cut off) the record is written to the audit log's partitions,
        // durably, before the answer. An erasure leaves only a tombstone, which does not carry
        // the record and after which the household's key (that opens the stamps) is destroyed:
        // first every record the household's events carry is copied to the partitions and made
        // durable (`Auditor::reconcile_household`), and its own record is written durably.
        let erasing = matches!(command, Command::EraseHousehold);
        if erasing && let Some(auditor) = &self.auditor {
            auditor
                .reconcile_household(&self.log, household, self.vault.as_ref())
                .await?;
        }
        let mut stamp = CommandStamp {
            fingerprint: context
                .request_id
                .map(|_| fingerprint(&context.calling, household, &command, context.happened_on)),
            audit: None,
        };
        let audit = self
            .audit_record(&context.calling, household, decision.as_ref(), objects)?
            .map(|(auditor, mut record)| {
                stamp_request_id(&mut record, context);
                let id = Uuid::now_v7();
                // Kept with the command's events (sealed), the record's durable original.
                stamp.audit = serde_json::to_value(&record).ok();
                // Settled below once it is known whether this call's events carry the record;
                // a call its client cancels (a deadline, a dropped connection) must not cancel
                // the record of what it may already have done, nor leave it silently unwritten:
                // dropped unsettled, it is written durably after the events.
                (id, auditor.pending(record, id, self.log.clone()))
            });
        let causation = audit.as_ref().map(|(id, ..)| *id);
        let result = self
            .decide_and_append(
                household,
                &command,
                context,
                &stamp,
                &mut snapshot,
                causation,
            )
            .await;
        if let Some((_, mut pending)) = audit {
            // Only events this call appended with the record in their stamp carry it (not a
            // tombstone, nor a replay's events).
            let carries =
                !erasing && stamp.audit.is_some() && matches!(&result, Ok(done) if !done.replayed);
            if carries {
                pending.carried();
            } else {
                // Refused after all: another writer's events, read after a lost race, took
                // the caller's access away. The record says so, and why.
                if matches!(result, Err(AppError::Denied(_)))
                    && let Err(denied) = context.calling.command_access(&snapshot.state, &command)
                {
                    pending.refused(denied.for_audit());
                }
                // Refused, replayed or failed: the access is recorded all the same, and a
                // failure to record it comes first.
                pending.write().await?;
            }
        }
        if blind {
            // Whatever the household made of it (filed, a retry, an access request id or a
            // request id it has, a race) would tell about the household: one answer for all.
            // Failures of the service itself stay failures.
            return match result {
                Ok(_)
                | Err(
                    AppError::Domain(_)
                    | AppError::Conflict { .. }
                    | AppError::RequestIdReused(_)
                    | AppError::Contended
                    | AppError::Denied(_),
                ) => Ok(Executed::unseen(false)),
                Err(e) => Err(e),
            };
        }
        result
    }

    /// Decides `command` on the snapshot and appends its events, deciding again when another
    /// writer got there first; its events name `causation`, the command's audit record.
    async fn decide_and_append(
        &self,
        household: HouseholdId,
        command: &Command,
        context: &CommandContext,
        stamp: &CommandStamp,
        snapshot: &mut Snapshot,
        causation: Option<Uuid>,
    ) -> Result<Executed, AppError> {
        // Under the household's lock, so two copies of one request cannot both act.
        if let Some(request_id) = context.request_id
            && let Some(done) = self.already_executed(household, request_id, stamp)?
        {
            return Ok(done);
        }
        let mut refreshed = false;
        for attempt in 0..MAX_ATTEMPTS {
            if let Some(expected) = context.expected_revision
                && snapshot.revision != Some(expected)
            {
                return Err(AppError::Conflict {
                    expected,
                    actual: snapshot.revision,
                });
            }
            let events = decide(&snapshot.state, command.clone())?;
            let new_events = match self.new_events(household, &events, context, stamp, causation) {
                Ok(new_events) => new_events,
                // On a log other nodes write too, the view decided on may be one they moved
                // past (a household they erased has no key to seal with any more): what they
                // committed is read, and the command decided again on it, once.
                Err(_) if self.log.is_shared() && !refreshed => {
                    refreshed = true;
                    self.log.read_the_others().await?;
                    self.catch_up(household, snapshot)?;
                    if let Err(denied) = context.calling.command_access(&snapshot.state, command) {
                        return Err(AppError::Denied(denied.reason));
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let expected = snapshot
                .revision
                .map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
            let stream = household.stream_id();
            match self.log.append(&stream, expected, new_events).await {
                Ok(outcome) => {
                    // The state follows the log first, whatever the audit write did.
                    if !outcome.replayed {
                        for event in &events {
                            snapshot.state.apply(event);
                        }
                        snapshot.revision = Some(outcome.last_revision);
                    }
                    if snapshot.state.erased
                        && let Some(vault) = &self.vault
                        && let Err(e) = vault.erase(household.0)
                    {
                        // The tombstone is durable, so the household is erased: refused to
                        // everyone, its history unreadable to naast. The key file goes when the
                        // projector passes the tombstone (it keeps trying until it can).
                        tracing::error!(error = %e, %household, "erased, but the key could not be destroyed yet");
                    }
                    return Ok(Executed {
                        revision: outcome.last_revision,
                        position: outcome.last_position,
                        replayed: outcome.replayed,
                    });
                }
                Err(naast_eventlog::Error::WrongExpectedRevision { actual, .. }) => {
                    if let Some(expected) = context.expected_revision {
                        return Err(AppError::Conflict { expected, actual });
                    }
                    // Something else wrote meanwhile (another node): read it, check the caller
                    // may still act on what is there now, and decide again.
                    if attempt > 0 {
                        let bound = std::time::Duration::from_millis(1 << attempt.min(6))
                            .min(MAX_RACE_WAIT);
                        let wait = bound.mul_f64(rand::random::<f64>());
                        tokio::time::sleep(wait).await;
                    }
                    self.catch_up(household, snapshot)?;
                    if let Err(denied) = context.calling.command_access(&snapshot.state, command) {
                        return Err(AppError::Denied(denied.reason));
                    }
                    // What the other writer appended may carry an audit record the household's
                    // key alone opens: copied before the erasure destroys that key.
                    if matches!(command, Command::EraseHousehold)
                        && let Some(auditor) = &self.auditor
                    {
                        auditor
                            .reconcile_household(&self.log, household, self.vault.as_ref())
                            .await?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Contended)
    }

    /// The household's current state and revision (`None` when it has no events).
    pub async fn state(
        &self,
        household: HouseholdId,
    ) -> Result<(Household, Option<u64>), AppError> {
        self.inspect(household, |state, revision| (state.clone(), revision))
            .await
    }

    /// The household as it stood at the end of Dutch day `day`: folded, in the order recorded,
    /// from its events dated on or before that day as its timeline dates them (the day an event
    /// names, such as an agreement's end or a transition; else the day it was recorded, or the
    /// `effective_date` it was recorded late about). Its revision is that of the last such event
    /// (`None`: nothing of it had happened yet).
    /// Only events up to revision `until` count (those a read was decided on).
    pub fn state_on(
        &self,
        household: HouseholdId,
        day: time::Date,
        until: u64,
    ) -> Result<(Household, Option<u64>), AppError> {
        let mut then = Household::default();
        let mut revision = None;
        self.each_dated(household, until, |recorded, stored, entry| {
            if entry.date <= day {
                then.apply(&stored.event);
                revision = Some(recorded.revision);
            }
        })?;
        Ok((then, revision))
    }

    /// The household as it stood at revision `until` (after that event).
    pub fn state_at(&self, household: HouseholdId, until: u64) -> Result<Household, AppError> {
        let mut state = Household::default();
        self.each_event(household, 0, |recorded, stored| {
            if recorded.revision <= until {
                state.apply(&stored.event);
            }
        })?;
        Ok(state)
    }

    /// The household at two moments, `from` and `to` (`from` within `to`: see [`Moment`]), with
    /// the events that lead from one to the other: those `to` counts and `from` does not, in the
    /// order recorded, each with its timeline entry (the day it is dated and its line for
    /// people). Only events up to revision `until` count (those a read was decided on).
    pub fn between(
        &self,
        household: HouseholdId,
        from: Moment,
        to: Moment,
        until: u64,
    ) -> Result<Between, AppError> {
        let mut out = Between::default();
        self.each_dated(household, until, |recorded, stored, entry| {
            let (in_from, in_to) = (
                from.counts(entry.date, recorded.revision),
                to.counts(entry.date, recorded.revision),
            );
            if in_from {
                out.before.apply(&stored.event);
                out.before_revision = Some(recorded.revision);
            }
            if in_to {
                out.after.apply(&stored.event);
                out.after_revision = Some(recorded.revision);
                if !in_from {
                    out.events.push(Step {
                        recorded,
                        event: stored.event,
                        date: entry.date,
                        summary: entry.summary,
                    });
                }
            }
        })?;
        Ok(out)
    }

    /// Calls `f` with each event of the household up to revision `until`, in order, and its
    /// timeline entry (the day the timeline dates it on, its line for people): the dating the
    /// past-day reads share.
    fn each_dated(
        &self,
        household: HouseholdId,
        until: u64,
        mut f: impl FnMut(
            RecordedEvent,
            naast_domain::event::Stored,
            naast_domain::timeline::TimelineEntry,
        ),
    ) -> Result<(), AppError> {
        // The whole history, for what the timeline needs to date an event.
        let mut all = Household::default();
        self.each_event(household, 0, |recorded, stored| {
            if recorded.revision > until {
                return;
            }
            let happened = stored
                .happened_on
                .unwrap_or_else(|| naast_projections::recorded_on(&recorded));
            let entry = naast_domain::timeline::entry(&all, &stored.event, happened);
            all.apply(&stored.event);
            f(recorded, stored, entry);
        })
    }

    /// The household event `recorded` opened and decoded; `None` when its household was erased
    /// (its key is gone) and it is not the tombstone.
    pub fn open(
        &self,
        household: HouseholdId,
        recorded: &RecordedEvent,
    ) -> Result<Option<naast_domain::event::Stored>, AppError> {
        self.decode(household, recorded)
    }

    /// Calls `f` with each event of the household up to and including revision `until`, in
    /// order (as stored, and as decoded), and the household's state just after it: its history,
    /// each version a real past state.
    pub fn replay(
        &self,
        household: HouseholdId,
        until: u64,
        mut f: impl FnMut(&RecordedEvent, &naast_domain::event::Stored, &Household),
    ) -> Result<(), AppError> {
        let mut state = Household::default();
        self.each_event(household, 0, |recorded, stored| {
            if recorded.revision <= until {
                state.apply(&stored.event);
                f(&recorded, &stored, &state);
            }
        })
    }

    /// Calls `f` with each event of the household of one of the types `types`, from revision
    /// `from` up to and including `until`, in order (as stored, and as decoded); events of other
    /// types are not even opened.
    pub fn events_of(
        &self,
        household: HouseholdId,
        from: u64,
        until: u64,
        types: &[&str],
        mut f: impl FnMut(&RecordedEvent, &naast_domain::event::Stored),
    ) -> Result<(), AppError> {
        let stream = household.stream_id();
        let mut next = from;
        while next <= until {
            let limit = usize::try_from(until - next + 1)
                .unwrap_or(usize::MAX)
                .min(READ_CHUNK);
            let chunk = self
                .log
                .read_stream(&stream, next, Direction::Forwards, limit)?;
            let Some(last) = chunk.last() else {
                return Ok(());
            };
            next = last.revision + 1;
            for recorded in chunk {
                if !types.contains(&recorded.event_type.as_str()) {
                    continue;
                }
                if let Some(event) = self.decode(household, &recorded)? {
                    f(&recorded, &event);
                }
            }
        }
        Ok(())
    }

    fn new_events(
        &self,
        household: HouseholdId,
        events: &[DomainEvent],
        context: &CommandContext,
        stamp: &CommandStamp,
        causation: Option<Uuid>,
    ) -> Result<Vec<NewEvent>, AppError> {
        let correlation_id = context.request_id.or_else(|| Some(Uuid::now_v7()));
        // The first event of the command carries its stamp; a tombstone, which stays readable,
        // only the fingerprint (the audit record names people).
        let stamped = (stamp.fingerprint.is_some() || stamp.audit.is_some()).then_some(stamp);
        let tombstone_stamp = stamped.map(|s| CommandStamp {
            fingerprint: s.fingerprint.clone(),
            audit: None,
        });
        events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let id = match context.request_id {
                    Some(request) => event_id(request, i),
                    None => Uuid::now_v7(),
                };
                let tombstone = matches!(event, DomainEvent::HouseholdErased { .. });
                let stamped = match (i, tombstone) {
                    (0, false) => stamped,
                    (0, true) => tombstone_stamp.as_ref(),
                    _ => None,
                };
                let plain = event.to_payload_of_command(context.happened_on, stamped);
                let payload = match &self.vault {
                    // The tombstone stays readable: it is what is left after the key is gone.
                    Some(vault) if !tombstone => {
                        vault.seal(household.0, id, &plain).map_err(vault_error)?
                    }
                    _ => plain,
                };
                Ok(NewEvent {
                    id,
                    event_type: event.event_type().to_owned(),
                    schema_version: naast_domain::SCHEMA_VERSION,
                    metadata: Metadata {
                        correlation_id,
                        // The audit record of the command that caused it.
                        causation_id: causation,
                        actor: context.actor.clone(),
                    },
                    payload: payload.into(),
                })
            })
            .collect()
    }

    /// If the command with this request id was executed, what it did; refused when the request
    /// id was used for another command (another household, another caller, another command:
    /// the stamp's fingerprint differs).
    fn already_executed(
        &self,
        household: HouseholdId,
        request_id: Uuid,
        stamp: &CommandStamp,
    ) -> Result<Option<Executed>, AppError> {
        let Some(first) = self.log.read_event(event_id(request_id, 0))? else {
            return Ok(None);
        };
        if first.stream_id != household.stream_id() {
            return Err(AppError::RequestIdReused(request_id));
        }
        let Some(first_event) = self.decode(household, &first)? else {
            // Nothing can be compared with an erased household's events: never a retry.
            return Err(AppError::RequestIdReused(request_id));
        };
        let first_stamp = first_event.command;
        // Events written before commands were stamped cannot be compared: taken as a retry, as
        // they were then.
        if let Some(first_fingerprint) = first_stamp.and_then(|s| s.fingerprint)
            && stamp.fingerprint.as_ref() != Some(&first_fingerprint)
        {
            return Err(AppError::RequestIdReused(request_id));
        }
        // The command's events follow the first one in its stream, with ids 1, 2, … of the
        // request.
        let mut last = first;
        for index in 1.. {
            let next =
                self.log
                    .read_stream(&last.stream_id, last.revision + 1, Direction::Forwards, 1)?;
            match next.into_iter().next() {
                Some(e) if e.id == event_id(request_id, index) => last = e,
                _ => break,
            }
        }
        Ok(Some(Executed {
            revision: last.revision,
            position: last.position,
            replayed: true,
        }))
    }

    fn slot(&self, household: HouseholdId) -> Slot {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED && !cache.contains_key(&household) {
            // Forget idle households only: a slot in use must stay the one slot of its
            // household, or two commands could run on it at once.
            cache.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        cache.entry(household).or_default().clone()
    }

    /// The slot of a household already known, for reads that must not fill the cache.
    fn known_slot(&self, household: HouseholdId) -> Option<Slot> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&household)
            .cloned()
    }

    /// Applies the household's events after the snapshot's revision.
    fn catch_up(&self, household: HouseholdId, snapshot: &mut Snapshot) -> Result<(), AppError> {
        let from = snapshot.revision.map_or(0, |r| r + 1);
        // State and revision move together, event by event: a read failing halfway leaves a
        // consistent snapshot to continue from.
        self.each_event(household, from, |recorded, stored| {
            snapshot.state.apply(&stored.event);
            snapshot.revision = Some(recorded.revision);
        })
    }

    /// Calls `f` with every event of the household from revision `from` on, decoded.
    fn each_event(
        &self,
        household: HouseholdId,
        from: u64,
        mut f: impl FnMut(RecordedEvent, naast_domain::event::Stored),
    ) -> Result<(), AppError> {
        let stream = household.stream_id();
        let mut next = from;
        loop {
            let chunk = self
                .log
                .read_stream(&stream, next, Direction::Forwards, READ_CHUNK)?;
            let Some(last) = chunk.last() else {
                return Ok(());
            };
            next = last.revision + 1;
            for recorded in chunk {
                // An erased household's history: only its tombstone is left.
                if let Some(event) = self.decode(household, &recorded)? {
                    f(recorded, event);
                }
            }
        }
    }

    /// The household event `recorded`, opened with the household's key when sealed; `None` when
    /// that key is gone (the household was erased).
    fn decode(
        &self,
        household: HouseholdId,
        recorded: &RecordedEvent,
    ) -> Result<Option<naast_domain::event::Stored>, AppError> {
        let bad = |reason: String| AppError::BadEvent {
            position: recorded.position,
            event_type: recorded.event_type.clone(),
            reason,
        };
        let payload = match naast_vault::Vault::open_with(
            self.vault.as_ref(),
            household.0,
            recorded.id,
            &recorded.payload,
        ) {
            Ok(payload) => payload,
            Err(naast_vault::VaultError::Erased(_)) => return Ok(None),
            Err(e) => return Err(bad(e.to_string())),
        };
        DomainEvent::from_payload(&payload)
            .map(Some)
            .map_err(|e| bad(e.to_string()))
    }
}

/// Whether `command` registers a household whose events are there but none could be read
/// (their key is missing): never let anyone start it afresh on top of them.
fn registers_over_unreadable(snapshot: &Snapshot, command: &Command) -> bool {
    matches!(command, Command::RegisterHousehold { .. })
        && snapshot.revision.is_some()
        && !snapshot.state.registered
}

/// Whether `command` would pass on `snapshot` as far as can be told before its append: the
/// caller's access, the revision the caller expects, and the domain's decision. A request for
/// access from someone who may not see the household counts as not passing: its answer is
/// the same whatever the household holds, but what is recorded about it is not.
fn would_pass(snapshot: &Snapshot, command: &Command, context: &CommandContext) -> bool {
    if context
        .expected_revision
        .is_some_and(|expected| snapshot.revision != Some(expected))
    {
        return false;
    }
    if registers_over_unreadable(snapshot, command) {
        return false;
    }
    if context
        .calling
        .command_access(&snapshot.state, command)
        .is_err()
    {
        return false;
    }
    if matches!(command, Command::RequestAccess { .. })
        && context
            .calling
            .access(&snapshot.state, Action::Read(access::ReadKind::Household))
            .is_err()
    {
        return false;
    }
    decide(&snapshot.state, command.clone()).is_ok()
}

/// The request id of a command's audit record: its `options.request_id`, else the call's
/// `x-request-id` header.
fn stamp_request_id(record: &mut audit::Record, context: &CommandContext) {
    if let Some(id) = context.request_id {
        record.request_id = Some(id.to_string());
    }
}

/// A digest of who asks what of which household, on which day (hex SHA-256): the same for a
/// retry of a command, different for anything else sent under the same request id.
fn fingerprint(
    calling: &Calling,
    household: HouseholdId,
    command: &Command,
    happened_on: Option<time::Date>,
) -> String {
    use sha2::Digest;
    let caller = match calling {
        Calling::Unguarded => serde_json::Value::Null,
        Calling::Caller(caller) => {
            let p = &caller.principal;
            serde_json::json!({
                "identity": p.identity,
                "role": p.role.wire_name(),
                "organisation": p.organisation,
                "client_id": p.client_id,
                "acting_for": p.acting_for,
            })
        }
    };
    let described = serde_json::json!({
        "caller": caller,
        "household": household,
        "command": command,
        "happened_on": happened_on.map(|d| d.to_string()),
    });
    // Serialising plain data into a Vec cannot fail.
    let bytes = serde_json::to_vec(&described).unwrap_or_default();
    let mut hex = String::with_capacity(64);
    for byte in sha2::Sha256::digest(&bytes) {
        // Writing to a String cannot fail.
        let _ = std::fmt::Write::write_fmt(&mut hex, format_args!("{byte:02x}"));
    }
    hex
}

fn vault_error(e: naast_vault::VaultError) -> AppError {
    AppError::Vault(e.to_string())
}

/// The id of the `index`th event of the command with this request id: a UUID v5 in the
/// request's own namespace, so the same request always yields the same ids.
fn event_id(request_id: Uuid, index: usize) -> Uuid {
    Uuid::new_v5(&request_id, index.to_string().as_bytes())
}
