//! The audit log, after NEN 7513 (2018): every call, allowed or refused, is recorded before it is
//! answered, append-only and hash-chained, in an event log of its own (`<data_dir>/audit`).
//!
//! The log is kept per calendar year (UTC), one hash-chained event log each under
//! `<data_dir>/audit/<year>/`; a year's records go as a whole once the year ended more than the
//! configured retention ago (MedMij asks five years, the default), so records are kept at least
//! the retention and less than a year longer, and every year that remains still verifies.
//!
//! Records about a household go to the stream `audit-<household id>`, so the family's "who
//! looked at our data" is one stream read per year; the others (refused sign-ins, searches of the log
//! itself, calls that name no household) go to `audit-service`. A record holds no personal data
//! of the household beyond ids: who called, on what basis, and what they touched.
//!
//! # A command's record lives with its events
//! The record of an allowed command is written once, in the command's own commit: its first
//! event carries it, sealed with the household's key, and every event names it as its cause.
//! The audit log reads those records from the household's events (given to [`Auditor::household`]
//! and [`Auditor::search`]) and lists them with the records it holds itself, in time order, as one log; nothing is
//! copied on the command's path. Its own partitions hold everything else: reads, refusals,
//! replays, calls cut off before they knew their outcome, the platforms' pushes, and the
//! records of a household about to be erased, copied there before its key (which opens the
//! events) is destroyed. A record found in both (copied, or written before records lived with
//! their events) is listed once. Carried records count for retention as the others do: past it
//! they are no longer listed.

use naast_domain::Identity;
use naast_domain::access::Principal;
use naast_domain::ids::HouseholdId;
use naast_domain::vocab::PrincipalRole;
use naast_eventlog::{
    Direction, EventLog, ExpectedRevision, Metadata, NewEvent, Options, RecordedEvent,
};
use serde::{Deserialize, Serialize};
use std::path::Path;
use uuid::Uuid;

/// The event type of an audit record.
pub const EVENT_TYPE: &str = "AccessAudited";
/// Version of the record's JSON shape.
pub const SCHEMA_VERSION: u32 = 1;
/// The stream of records about no household.
pub const SERVICE_STREAM: &str = "audit-service";
/// Retention when the configuration names none: MedMij asks for five years.
pub const DEFAULT_RETENTION_DAYS: u64 = 5 * 365 + 2;

/// The kind of access, as FHIR AuditEvent.action codes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// C: create.
    #[serde(rename = "C")]
    Create,
    /// R: read, search, subscribe.
    #[serde(rename = "R")]
    Read,
    /// U: update.
    #[serde(rename = "U")]
    Update,
    /// D: delete.
    #[serde(rename = "D")]
    Delete,
    /// E: execute (anything else).
    #[serde(rename = "E")]
    Execute,
}

impl Action {
    /// The action an operation amounts to: a gRPC method by its verb (`/naast.v1.X/CreateGoal`
    /// → create), a FHIR interaction by its name (`FHIR search-type Goal` → read).
    pub fn of_operation(operation: &str) -> Self {
        // A push to a PGO platform (`push update`, `push notify`): what is sent there leaves
        // naast, a disclosure like a read; a withdrawal (`push delete`) deletes what was written.
        if let Some(push) = operation.strip_prefix("push ") {
            return match push.split(' ').next().unwrap_or_default() {
                "delete" => Action::Delete,
                _ => Action::Read,
            };
        }
        if let Some(fhir) = operation.strip_prefix("FHIR ") {
            let interaction = fhir.split(' ').next().unwrap_or_default();
            return match interaction {
                "read" | "vread" | "history-instance" | "history-type" | "search-type"
                | "capabilities" | "everything" => Action::Read,
                "create" => Action::Create,
                "update" | "patch" => Action::Update,
                "delete" => Action::Delete,
                _ => Action::Execute,
            };
        }
        // A page of the web timeline names the gRPC method it is answered by (`web GetHousehold`).
        let operation = operation.strip_prefix("web ").unwrap_or(operation);
        let method = operation.rsplit('/').next().unwrap_or_default();
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| method.starts_with(p));
        if starts(&["List", "Get", "Subscribe", "Search", "ServerReflection"]) {
            Action::Read
        } else if starts(&["Create", "Propose", "Request", "Grant", "Append"]) {
            Action::Create
        } else if starts(&["Update", "Amend", "Revise", "Link", "Change"]) {
            Action::Update
        } else if starts(&["Delete", "Revoke"]) {
            Action::Delete
        } else {
            Action::Execute
        }
    }
}

/// Whether the access was allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed.
    Allowed,
    /// Refused.
    Denied,
}

/// A user in a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Issuer and subject.
    pub identity: Identity,
    /// Display name, if known.
    pub name: Option<String>,
    /// Role.
    pub role: PrincipalRole,
    /// Organisation.
    pub organisation: Option<String>,
    /// Made the request themselves.
    pub requestor: bool,
}

/// One audit record (the log adds its id, time, position and hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The gRPC method.
    pub operation: String,
    /// Kind of access.
    pub action: Action,
    /// Allowed or refused.
    pub outcome: Outcome,
    /// Why refused, or a note.
    pub reason: Option<String>,
    /// Who called; `None` when they could not be identified.
    pub user: Option<User>,
    /// On whose behalf: a PGO platform's member.
    pub responsible: Option<User>,
    /// Purpose of use.
    pub purpose: String,
    /// The caller's address.
    pub network_access_point: Option<String>,
    /// The household concerned.
    pub household: Option<HouseholdId>,
    /// Ids touched within it.
    pub objects: Vec<String>,
    /// What allowed it.
    pub basis: Vec<String>,
    /// Emergency access.
    pub emergency: bool,
    /// The OAuth client used.
    pub source_system: Option<String>,
    /// The call's request id.
    pub request_id: Option<String>,
}

impl Record {
    /// A record of `operation` with `outcome`, its action read off the operation's verb, the
    /// default purpose, and nothing else yet: who, where, what and why are filled in by the
    /// caller.
    pub fn new(operation: impl Into<String>, outcome: Outcome) -> Self {
        let operation = operation.into();
        Self {
            action: Action::of_operation(&operation),
            operation,
            outcome,
            reason: None,
            user: None,
            responsible: None,
            purpose: crate::auth::caller::DEFAULT_PURPOSE.to_owned(),
            network_access_point: None,
            household: None,
            objects: Vec::new(),
            basis: Vec::new(),
            emergency: false,
            source_system: None,
            request_id: None,
        }
    }

    /// The users of a record about `principal`'s call: the caller, and for a platform the member
    /// it acts for.
    pub fn users(principal: &Principal) -> (User, Option<User>) {
        let user = User {
            identity: principal.identity.clone(),
            name: principal.name.clone(),
            role: principal.role,
            // Only where the access policy counts it (a professional's or supporter's).
            organisation: principal.organisation_claim().map(str::to_owned),
            requestor: true,
        };
        let responsible = principal.acting_for.as_ref().map(|member| User {
            identity: member.clone(),
            name: None,
            role: PrincipalRole::Citizen,
            organisation: None,
            requestor: false,
        });
        (user, responsible)
    }
}

/// A stored record with what the log says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its event id.
    pub id: Uuid,
    /// Its global position in the audit log.
    pub position: u64,
    /// Its revision in its stream.
    pub revision: u64,
    /// When (µs since 1970).
    pub recorded_at_micros: u64,
    /// The record.
    pub record: Record,
}

/// Why the audit log failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The underlying log failed.
    #[error("audit log: {0}")]
    Log(#[from] naast_eventlog::Error),
    /// There is no audit log to record in.
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    /// A stored record cannot be read.
    #[error("audit record at position {position} is unreadable: {reason}")]
    Unreadable {
        /// Where.
        position: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Which records a search returns; every filter given must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// About this household.
    pub household: Option<HouseholdId>,
    /// By this subject.
    pub subject: Option<String>,
    /// By this organisation.
    pub organisation: Option<String>,
    /// With this outcome.
    pub outcome: Option<Outcome>,
    /// At or after (µs since 1970).
    pub from_micros: Option<u64>,
    /// Before (µs since 1970).
    pub until_micros: Option<u64>,
}

impl Filter {
    fn admits(&self, stored: &Stored) -> bool {
        let r = &stored.record;
        self.household.is_none_or(|h| r.household == Some(h))
            && self.subject.as_ref().is_none_or(|s| {
                r.user.as_ref().is_some_and(|u| &u.identity.subject == s)
                    || r.responsible
                        .as_ref()
                        .is_some_and(|u| &u.identity.subject == s)
            })
            && self
                .organisation
                .as_ref()
                .is_none_or(|o| r.user.as_ref().and_then(|u| u.organisation.as_ref()) == Some(o))
            && self.outcome.is_none_or(|o| r.outcome == o)
            && self
                .from_micros
                .is_none_or(|from| stored.recorded_at_micros >= from)
            && self
                .until_micros
                .is_none_or(|until| stored.recorded_at_micros < until)
    }
}

/// Records scanned per step of a search.
const SCAN_CHUNK: usize = 1_000;
/// The file noting up to where household events are known to have their audit records.
const RECONCILED_FILE: &str = "reconciled";
/// The start of a year's partition's table name in PostgreSQL (then the year).
const PARTITION_TABLE: &str = "naast_audit_";

/// How long a listing of the audit log's years in PostgreSQL serves.
const YEARS_LISTED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a year retired in PostgreSQL is kept before its table is dropped: well past the
/// other nodes' next listing of the years and any scan they began before it.
const RETIRED_KEPT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The table of `year`'s partition in PostgreSQL.
pub fn partition_table(year: i32) -> String {
    format!("{PARTITION_TABLE}{year}")
}
/// sled's page cache of each yearly partition.
const PARTITION_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Where a listing continues: a year's partition and a cursor within it (a stream revision or a
/// global position), and where in the event log the records commands' events carry continue
/// (a revision of the household's stream, or a global position).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The year.
    pub year: i32,
    /// Within that year's partition.
    pub at: u64,
    /// Within the event log.
    pub events: u64,
}

impl Cursor {
    /// As a page token: `a<year>.<at>.<events>`.
    pub fn token(self) -> String {
        format!("a{}.{}.{}", self.year, self.at, self.events)
    }

    /// From a page token; `None` when it is not one.
    pub fn parse(token: &str) -> Option<Self> {
        let mut parts = token.strip_prefix('a')?.split('.');
        let cursor = Self {
            year: parts.next()?.parse().ok()?,
            at: parts.next()?.parse().ok()?,
            events: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(cursor)
    }
}

/// The audit log: one hash-chained event log per calendar year (UTC) under its directory, so
/// that records past their retention go a whole year at a time, while every remaining year
/// still verifies. Cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    inner: std::sync::Arc<Partitions>,
}

struct Partitions {
    /// The folder of the partitions (one log per year), and of the reconciliation mark.
    dir: std::path::PathBuf,
    /// With the event log in PostgreSQL: the database, where each year's partition is a table
    /// (`naast_audit_<year>`) every node writes and reads, so a family's access log is one
    /// whichever node served the access.
    postgres: Option<String>,
    /// In PostgreSQL: when the years in the database were last listed (other nodes make and
    /// remove years too).
    years_listed: std::sync::Mutex<Option<std::time::Instant>>,
    retention: std::time::Duration,
    /// A write failed since the process started: some events may name a record that is not
    /// there, so the reconciled position must not move past them.
    failed: std::sync::atomic::AtomicBool,
    /// The options of each year's log.
    options: Options,
    open: std::sync::Mutex<std::collections::BTreeMap<i32, EventLog>>,
    /// The latest moment a record was written at (µs since 1970), as far as this process knows:
    /// a clock that is behind it (no real-time clock, time not yet synchronised) must not send
    /// records to an older year.
    latest_micros: std::sync::atomic::AtomicU64,
    /// Records of commands not yet settled ([`Auditor::pending`]).
    in_flight: std::sync::atomic::AtomicUsize,
    settled: tokio::sync::Notify,
}

impl Auditor {
    /// Opens (or creates) the audit log in `dir`, keeping records at least `retention` (and
    /// less than a year longer).
    pub fn open(dir: &Path, retention: std::time::Duration) -> Result<Self, AuditError> {
        Self::open_with(
            dir,
            retention,
            Options {
                cache_capacity_bytes: PARTITION_CACHE_BYTES,
                metrics_name: "audit",
                ..Options::default()
            },
        )
    }

    /// As [`Auditor::open`], with the options of each year's log (its page cache, its write
    /// queue, …).
    pub fn open_with(
        dir: &Path,
        retention: std::time::Duration,
        options: Options,
    ) -> Result<Self, AuditError> {
        Self::open_in(dir, None, retention, options)
    }

    /// As [`Auditor::open`], with each year's partition a table in the PostgreSQL database at
    /// `url` (shared by every node on it); `dir` keeps only this node's reconciliation mark.
    pub fn open_postgres(
        url: &str,
        dir: &Path,
        retention: std::time::Duration,
    ) -> Result<Self, AuditError> {
        Self::open_in(
            dir,
            Some(url.to_owned()),
            retention,
            Options {
                metrics_name: "audit",
                ..Options::default()
            },
        )
    }

    fn open_in(
        dir: &Path,
        postgres: Option<String>,
        retention: std::time::Duration,
        options: Options,
    ) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("open", e))?;
        // The folder must survive a power cut with the records acknowledged in it.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error("open", e))?;
        }
        let auditor = Self {
            inner: std::sync::Arc::new(Partitions {
                dir: dir.to_owned(),
                postgres,
                retention,
                failed: std::sync::atomic::AtomicBool::new(false),
                options,
                open: std::sync::Mutex::default(),
                latest_micros: std::sync::atomic::AtomicU64::new(0),
                years_listed: std::sync::Mutex::new(None),
                in_flight: std::sync::atomic::AtomicUsize::new(0),
                settled: tokio::sync::Notify::new(),
            }),
        };
        let this_year = time::OffsetDateTime::now_utc().year();
        for year in auditor.years_on_disk()? {
            if year > this_year.saturating_add(1) {
                // Records go to the newest year (a clock that is behind must not send them to
                // one retention may remove), so a clock that was once far ahead keeps them
                // there, past their retention, until the clock gets there.
                tracing::warn!(
                    year,
                    this_year,
                    "an audit year lies in the future: was the clock ahead? records go to it (and retention cannot remove them) until the clock reaches it; move them by hand if it was wrong"
                );
            }
            let log = auditor.partition(year)?;
            if let Some(newest) = newest_record_micros(&log)? {
                auditor
                    .inner
                    .latest_micros
                    .fetch_max(newest, std::sync::atomic::Ordering::SeqCst);
            }
        }
        // What a removal cut short.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.path().extension().is_some_and(|e| e == "removing") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(auditor)
    }

    /// The years with a partition on disk (or in the database), oldest first.
    fn years_on_disk(&self) -> Result<Vec<i32>, AuditError> {
        if let Some(url) = &self.inner.postgres {
            let tables = naast_eventlog::postgres::tables_starting(url, PARTITION_TABLE)
                .map_err(naast_eventlog::Error::from)?;
            let mut years: Vec<i32> = tables
                .iter()
                .filter_map(|table| table.strip_prefix(PARTITION_TABLE)?.parse().ok())
                .collect();
            years.sort_unstable();
            return Ok(years);
        }
        years_in_folder(&self.inner.dir)
    }

    /// The partition of `year`, opened (or created) when needed.
    pub fn partition(&self, year: i32) -> Result<EventLog, AuditError> {
        let mut open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(log) = open.get(&year) {
            return Ok(log.clone());
        }
        let log = match &self.inner.postgres {
            Some(url) => EventLog::open_postgres_table(
                url,
                &format!("{PARTITION_TABLE}{year}"),
                self.inner.options.clone(),
            )?,
            None => EventLog::open(
                self.inner.dir.join(year.to_string()),
                self.inner.options.clone(),
            )?,
        };
        open.insert(year, log.clone());
        Ok(log)
    }

    /// The open partitions, oldest first.
    pub fn partitions(&self) -> Vec<(i32, EventLog)> {
        self.list_years_again();
        self.inner
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(year, log)| (*year, log.clone()))
            .collect()
    }

    /// In PostgreSQL, at most once a minute: opens the years another node made (its first
    /// record of a new year) and lets go of those another node removed (past their retention).
    fn list_years_again(&self) {
        if self.inner.postgres.is_none() {
            return;
        }
        {
            let mut listed = self
                .inner
                .years_listed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if listed.is_some_and(|at| at.elapsed() < YEARS_LISTED_FOR) {
                return;
            }
            *listed = Some(std::time::Instant::now());
        }
        let years = match self.years_on_disk() {
            Ok(years) => years.into_iter().collect::<std::collections::BTreeSet<_>>(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the audit log's years; the years known serve");
                return;
            }
        };
        self.inner
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|year, _| years.contains(year));
        for year in years {
            if let Err(e) = self.partition(year) {
                tracing::warn!(year, error = %e, "cannot open a year of the audit log");
            }
        }
    }

    /// Closes every partition (committing and syncing what is queued).
    pub async fn close(&self) {
        for (_, log) in self.partitions() {
            log.close().await;
        }
    }

    /// The audit record of a command about to be decided and appended, with event id `id` (the
    /// events name it as their cause). The command's first event carries it (sealed), so in the
    /// usual case nothing more is written: [`PendingRecord::carried`]. Without events to carry it
    /// (refused, replayed, failed) [`PendingRecord::write`] writes it durably. A call its client
    /// cancels (a deadline, a dropped connection) drops the pending record unsettled; it is then
    /// written on a task of its own after a sync of `events`, so that what the call may already
    /// have done is recorded, and not durably before the events themselves.
    /// [`Auditor::settled`] waits for every pending record.
    pub fn pending(&self, record: Record, id: Uuid, events: EventLog) -> PendingRecord {
        self.inner
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        PendingRecord {
            auditor: self.clone(),
            record: Some(record),
            id,
            events,
        }
    }

    /// One pending record less ([`Auditor::pending`]).
    fn settle_one(&self) {
        if self
            .inner
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.inner.settled.notify_waiters();
        }
    }

    /// Returns once no record of [`Auditor::pending`] is still on its way.
    pub async fn settled(&self) {
        use std::sync::atomic::Ordering;
        loop {
            let notified = self.inner.settled.notified();
            if self.inner.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Appends `record` to this year's partition; returns once it is durable.
    pub async fn record(&self, record: &Record) -> Result<(), AuditError> {
        self.record_as(record, Uuid::now_v7()).await
    }

    /// Appends `record` with event id `id` (which the events it allowed name as their cause);
    /// returns once it is durable.
    pub async fn record_as(&self, record: &Record, id: Uuid) -> Result<(), AuditError> {
        self.write(record, id, true).await
    }

    /// Appends `record` with event id `id`, returning once it is written (readable), not once
    /// durable: for records restored from the events (which still hold them after a crash), made
    /// durable together by one [`Auditor::sync`] once all are written.
    async fn record_deferred(&self, record: &Record, id: Uuid) -> Result<(), AuditError> {
        self.write(record, id, false).await
    }

    /// Makes every record written so far durable, deferred ones included: one sync of each open
    /// partition, shared with the records being committed.
    pub async fn sync(&self) -> Result<(), AuditError> {
        for (_, log) in self.partitions() {
            if let Err(e) = log.sync().await {
                self.inner
                    .failed
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(e.into());
            }
        }
        Ok(())
    }

    async fn write(&self, record: &Record, id: Uuid, durable: bool) -> Result<(), AuditError> {
        let stream = record
            .household
            .map_or_else(|| SERVICE_STREAM.to_owned(), |h| format!("audit-{}", h.0));
        let written = match self.partition(self.year_to_write()) {
            Ok(log) => append(&log, &stream, record, id, durable).await,
            Err(e) => Err(e),
        };
        if written.is_ok() {
            self.inner
                .latest_micros
                .fetch_max(now_micros(), std::sync::atomic::Ordering::SeqCst);
        }
        if written.is_err() {
            self.inner
                .failed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        written
    }

    /// Whether a write failed since the log was opened (then only the next start's
    /// reconciliation may say every event has its record).
    pub fn had_failures(&self) -> bool {
        self.inner.failed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Up to `limit` records about `household` from `from` on that `filter` admits, oldest
    /// first, and where to continue (`None` at the end): the partitions' and those its
    /// commands' events in `events` carry (opened with its key in `vault`).
    pub fn household(
        &self,
        events: &EventLog,
        vault: Option<&naast_vault::Vault>,
        household: HouseholdId,
        from: Cursor,
        limit: usize,
        filter: &Filter,
    ) -> Result<(Vec<Stored>, Option<Cursor>), AuditError> {
        let stream = format!("audit-{}", household.0);
        let kept = self.scan(
            from,
            limit,
            filter,
            |log, next| log.read_stream(&stream, next, Direction::Forwards, SCAN_CHUNK),
            |r| r.revision,
        )?;
        let stream = household.stream_id();
        let carried = self.carried(
            vault,
            from.events,
            limit,
            filter,
            |next| events.read_stream(&stream, next, Direction::Forwards, SCAN_CHUNK),
            |r| r.revision,
        )?;
        Ok(merge(from, limit, kept, carried))
    }

    /// Up to `limit` records of the whole audit log from `from` on that `filter` admits, oldest
    /// first, and where to continue (`None` at the end): the partitions' and those the
    /// commands' events in `events` carry (opened with their household's key in `vault`).
    pub fn search(
        &self,
        events: &EventLog,
        vault: Option<&naast_vault::Vault>,
        from: Cursor,
        limit: usize,
        filter: &Filter,
    ) -> Result<(Vec<Stored>, Option<Cursor>), AuditError> {
        let kept = self.scan(
            from,
            limit,
            filter,
            |log, next| log.read_all(next, Direction::Forwards, SCAN_CHUNK),
            |r| r.position,
        )?;
        let carried = self.carried(
            vault,
            from.events,
            limit,
            filter,
            |next| events.read_all(next, Direction::Forwards, SCAN_CHUNK),
            |r| r.position,
        )?;
        Ok(merge(from, limit, kept, carried))
    }

    /// Up to `limit` records of the partitions from `from` on that `filter` admits, each with
    /// where the scan continues after it, and whether the scan reached the end.
    fn scan(
        &self,
        from: Cursor,
        limit: usize,
        filter: &Filter,
        read: impl Fn(&EventLog, u64) -> Result<Vec<RecordedEvent>, naast_eventlog::Error>,
        cursor: impl Fn(&RecordedEvent) -> u64,
    ) -> Result<Scanned<(i32, u64)>, AuditError> {
        let mut found = Vec::new();
        for (year, log) in self.partitions() {
            if year < from.year {
                continue;
            }
            let mut next = if year == from.year { from.at } else { 0 };
            loop {
                let chunk = read(&log, next)?;
                if chunk.is_empty() {
                    break;
                }
                for event in chunk {
                    next = cursor(&event) + 1;
                    let stored = decode(event)?;
                    if filter.admits(&stored) {
                        found.push((stored, (year, next)));
                        if found.len() == limit {
                            return Ok(Scanned { found, done: false });
                        }
                    }
                }
            }
        }
        Ok(Scanned { found, done: true })
    }

    /// Up to `limit` records carried by the household events `read` returns from `from` on
    /// (opened with their household's key in `vault`) that `filter` admits and the partitions do
    /// not hold, each with where the scan continues after it (`cursor` says where after an
    /// event), and whether it reached the end.
    fn carried(
        &self,
        vault: Option<&naast_vault::Vault>,
        from: u64,
        limit: usize,
        filter: &Filter,
        read: impl Fn(u64) -> Result<Vec<RecordedEvent>, naast_eventlog::Error>,
        cursor: impl Fn(&RecordedEvent) -> u64,
    ) -> Result<Scanned<u64>, AuditError> {
        let cutoff = self.retention_cutoff();
        let mut found = Vec::new();
        let mut next = from;
        let mut last_cause = None;
        loop {
            let chunk = read(next)?;
            if chunk.is_empty() {
                return Ok(Scanned { found, done: true });
            }
            for event in chunk {
                next = cursor(&event) + 1;
                if event.recorded_at_micros < cutoff
                    || !first_of_its_command(&event, &mut last_cause)
                {
                    continue;
                }
                let Some(stored) = self.carried_by(&event, vault)? else {
                    continue;
                };
                if filter.admits(&stored) && !self.contains(stored.id)? {
                    found.push((stored, next));
                    if found.len() == limit {
                        return Ok(Scanned { found, done: false });
                    }
                }
            }
        }
    }

    /// The record that household event `event` carries (its command's, in its first event),
    /// opened with the household's key in `vault`; `None` when it carries none, or its household
    /// was erased (whose records were copied to the partitions first).
    fn carried_by(
        &self,
        event: &RecordedEvent,
        vault: Option<&naast_vault::Vault>,
    ) -> Result<Option<Stored>, AuditError> {
        let (Some(cause), Some(household)) = (
            event.metadata.causation_id,
            HouseholdId::of_stream(&event.stream_id),
        ) else {
            return Ok(None);
        };
        let payload =
            match naast_vault::Vault::open_with(vault, household.0, event.id, &event.payload) {
                Ok(payload) => payload,
                Err(naast_vault::VaultError::Io { .. } | naast_vault::VaultError::Poisoned(_)) => {
                    return Err(AuditError::Unavailable(format!(
                        "the key of household {household} cannot be read"
                    )));
                }
                Err(_) => return Ok(None),
            };
        let record = naast_domain::DomainEvent::from_payload(&payload)
            .ok()
            .and_then(|stored| stored.command?.audit)
            .and_then(|record| serde_json::from_value::<Record>(record).ok());
        Ok(record.map(|record| Stored {
            id: cause,
            position: event.position,
            revision: event.revision,
            recorded_at_micros: event.recorded_at_micros,
            record,
        }))
    }

    /// Records written before this moment (µs since 1970) are past their retention.
    fn retention_cutoff(&self) -> u64 {
        now_micros()
            .saturating_sub(u64::try_from(self.inner.retention.as_micros()).unwrap_or(u64::MAX))
    }

    /// Whether a record with event id `id` is in any year's partition.
    pub fn contains(&self, id: Uuid) -> Result<bool, AuditError> {
        for (_, log) in self.partitions() {
            if log.read_event(id)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Makes sure every household event of `log` from position `from` on has the audit record
    /// of the command that caused it, which it names: the record its command's first event
    /// carries (sealed with the household's key in `vault`) and the log lists from there, or one
    /// in the partitions. Only when neither is there (events written before commands carried
    /// their records, an erased household whose copies went missing) is one rebuilt from the
    /// event's metadata and written. Returns how many records were written.
    pub async fn reconcile(
        &self,
        log: &EventLog,
        from: u64,
        vault: Option<&naast_vault::Vault>,
    ) -> Result<usize, AuditError> {
        self.restore_all(
            from,
            |next| log.read_all(next, Direction::Forwards, SCAN_CHUNK),
            |event| event.position,
            vault,
            "recorded at the next start: the process stopped after",
            false,
        )
        .await
    }

    /// Before `household` is erased (its key, which opens the records its events carry, is
    /// destroyed after the tombstone): copies every record its events carry that the partitions
    /// do not hold yet into them, as it is, then makes them all durable. Returns how many were
    /// written.
    pub async fn reconcile_household(
        &self,
        log: &EventLog,
        household: HouseholdId,
        vault: Option<&naast_vault::Vault>,
    ) -> Result<usize, AuditError> {
        let stream = household.stream_id();
        self.restore_all(
            0,
            |next| log.read_stream(&stream, next, Direction::Forwards, SCAN_CHUNK),
            |event| event.revision,
            vault,
            "recorded before the household's erasure: after",
            true,
        )
        .await
    }

    /// [`Auditor::restore`] for every event `read` returns from `from` on (`cursor` says where
    /// it continues after one), each command once (its later events name the same cause and
    /// carry nothing); then one sync for all the records written. How many were written.
    async fn restore_all(
        &self,
        from: u64,
        read: impl Fn(u64) -> Result<Vec<RecordedEvent>, naast_eventlog::Error>,
        cursor: impl Fn(&RecordedEvent) -> u64,
        vault: Option<&naast_vault::Vault>,
        when: &str,
        copy: bool,
    ) -> Result<usize, AuditError> {
        let mut next = from;
        let mut written = 0;
        let mut last_cause = None;
        loop {
            let chunk = read(next)?;
            if chunk.is_empty() {
                self.sync().await?;
                return Ok(written);
            }
            for event in &chunk {
                next = cursor(event) + 1;
                if !first_of_its_command(event, &mut last_cause) {
                    continue;
                }
                written += usize::from(self.restore(event, vault, when, copy).await?);
            }
        }
    }

    /// Writes the record of the command that caused the household event `event` if the
    /// partitions lack it (and retention has not purged it): with `copy`, the record the event
    /// carries, opened with the household's key in `vault`, as it is; without, nothing when the
    /// event carries it (the log lists it from there). When nothing can be read (events written
    /// before commands carried their records, an erased household), one rebuilt from the
    /// event's metadata, its reason opened by `when`. Whether a record was written.
    async fn restore(
        &self,
        event: &RecordedEvent,
        vault: Option<&naast_vault::Vault>,
        when: &str,
        copy: bool,
    ) -> Result<bool, AuditError> {
        let (Some(cause), Some(household)) = (
            event.metadata.causation_id,
            HouseholdId::of_stream(&event.stream_id),
        ) else {
            return Ok(false);
        };
        if self.contains(cause)? {
            return Ok(false);
        }
        // An event older than the retention had its record in a year since removed: writing it
        // again would bring back what retention purged.
        if event.recorded_at_micros < self.retention_cutoff() {
            return Ok(false);
        }
        let kept = self.carried_by(event, vault).ok().flatten();
        let record = match (kept, copy) {
            // Listed from the event: nothing is missing.
            (Some(_), false) => return Ok(false),
            // Copied, as it is, before the key that opens it goes.
            (Some(kept), true) => kept.record,
            (None, _) => Record {
                reason: Some(format!(
                    "{when} the command's events were written and before their audit record was; written by {}",
                    event
                        .metadata
                        .actor
                        .as_deref()
                        .unwrap_or("an unknown caller")
                )),
                household: Some(household),
                objects: vec![event.id.to_string()],
                ..Record::new("recovered", Outcome::Allowed)
            },
        };
        self.record_deferred(&record, cause).await?;
        Ok(true)
    }

    /// The log position up to which every household event is known to have its audit record.
    pub fn reconciled(&self) -> u64 {
        std::fs::read_to_string(self.inner.dir.join(RECONCILED_FILE))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Notes that every household event before `position` has its audit record.
    pub fn set_reconciled(&self, position: u64) -> Result<(), AuditError> {
        let io = |e| io_error("write", e);
        let path = self.inner.dir.join(RECONCILED_FILE);
        let temporary = path.with_extension("new");
        let mut file = std::fs::File::create(&temporary).map_err(io)?;
        std::io::Write::write_all(&mut file, position.to_string().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, &path).map_err(io)?;
        std::fs::File::open(&self.inner.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }

    /// The year whose partition a record goes to: the clock's, but never one older than the
    /// newest partition or than the latest record written (a clock that is behind must not send
    /// fresh records to a year that retention may remove).
    fn year_to_write(&self) -> i32 {
        let latest = self
            .inner
            .latest_micros
            .load(std::sync::atomic::Ordering::SeqCst);
        let latest_year =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(latest) * 1_000)
                .map_or(i32::MIN, |t| t.year());
        time::OffsetDateTime::now_utc()
            .year()
            .max(latest_year)
            .max(self.newest_year().unwrap_or(i32::MIN))
    }

    /// The year of the newest open partition (without cloning the partitions: this is asked on
    /// every record written).
    fn newest_year(&self) -> Option<i32> {
        self.inner
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .next_back()
            .copied()
    }

    /// Removes the partitions of years that ended more than the retention before `now` (never
    /// the partition of `now`'s year, never the newest, and never one holding a record written
    /// less than the retention before `now`, as records written while the clock was behind
    /// would be), and returns those years.
    ///
    /// In PostgreSQL, where other nodes may be reading a year, it is retired rather than
    /// dropped: no node lists it from then on, and each lets go of it at its next listing
    /// (within [`YEARS_LISTED_FOR`]). Its table is dropped by a later enforcement (the next
    /// day's round, or a node's start), once it has been retired for [`RETIRED_KEPT`] by the
    /// database's clock.
    pub async fn enforce_retention(
        &self,
        now: time::OffsetDateTime,
    ) -> Result<Vec<i32>, AuditError> {
        if let Some(url) = self.inner.postgres.clone() {
            let dropped = tokio::task::spawn_blocking(move || {
                naast_eventlog::postgres::drop_retired_tables(&url, PARTITION_TABLE, RETIRED_KEPT)
                    .map_err(std::io::Error::other)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| io_error("remove", e))?;
            for table in dropped {
                tracing::info!(%table, "a retired audit year's table dropped");
            }
        }
        let mut removed = Vec::new();
        for (year, log) in self.partitions() {
            let Ok(next_year) =
                time::Date::from_calendar_date(year.saturating_add(1), time::Month::January, 1)
            else {
                continue;
            };
            let ended = next_year.midnight().assume_utc();
            if year >= now.year() || now - ended < self.inner.retention {
                continue;
            }
            let newest = self.newest_year();
            let recent = newest_record_micros(&log)?.is_some_and(|written| {
                let cutoff = now - self.inner.retention;
                i128::from(written) * 1_000 > cutoff.unix_timestamp_nanos()
            });
            if newest == Some(year) || recent {
                tracing::warn!(
                    year,
                    "audit records of this year are kept past its retention: it holds records written less than the retention ago (was the clock behind?)"
                );
                continue;
            }
            self.inner
                .open
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&year);
            log.close().await;
            drop(log);
            let (dir, parent) = (
                self.inner.dir.join(year.to_string()),
                self.inner.dir.clone(),
            );
            let postgres = self.inner.postgres.clone();
            let removal = tokio::task::spawn_blocking(move || match postgres {
                Some(url) => naast_eventlog::postgres::retire_table(&url, &partition_table(year))
                    .map_err(std::io::Error::other),
                None => remove_partition(&dir, &parent),
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            removal.map_err(|e| io_error("remove", e))?;
            tracing::info!(year, "audit records past their retention removed");
            removed.push(year);
        }
        Ok(removed)
    }

    /// Enforces the retention now and then once a day, until `stop` turns true; each removal
    /// is itself recorded.
    pub async fn keep_retention(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self
                .enforce_retention(time::OffsetDateTime::now_utc())
                .await
            {
                Ok(years) if !years.is_empty() => {
                    let record = Record {
                        action: Action::Delete,
                        reason: Some(format!(
                            "audit records of {years:?} removed after the retention of {} days",
                            self.inner.retention.as_secs() / 86_400
                        )),
                        purpose: "retention".to_owned(),
                        basis: vec!["retention".to_owned()],
                        ..Record::new("retention", Outcome::Allowed)
                    };
                    if let Err(e) = self.record(&record).await {
                        tracing::error!(error = %e, "cannot record the retention");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "audit retention failed; trying again tomorrow")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(86_400)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Appends `record` to `stream` of `log`; returns once it is durable.
/// When the newest record of `log` was written (µs since 1970), if it has one.
fn newest_record_micros(log: &EventLog) -> Result<Option<u64>, AuditError> {
    Ok(log
        .read_all(naast_eventlog::END, Direction::Backwards, 1)?
        .first()
        .map(|r| r.recorded_at_micros))
}

/// The clock, in µs since 1970.
fn now_micros() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000).unwrap_or(0)
}

async fn append(
    log: &EventLog,
    stream: &str,
    record: &Record,
    id: Uuid,
    durable: bool,
) -> Result<(), AuditError> {
    // Serialising this plain data cannot fail: no maps with non-string keys, no custom
    // serialisers that error.
    let payload = serde_json::to_vec(record).unwrap_or_default();
    let events = vec![NewEvent {
        id,
        event_type: EVENT_TYPE.to_owned(),
        schema_version: SCHEMA_VERSION,
        metadata: Metadata {
            correlation_id: None,
            causation_id: None,
            actor: record.user.as_ref().map(|u| u.identity.subject.clone()),
        },
        payload: payload.into(),
    }];
    if durable {
        log.append(stream, ExpectedRevision::Any, events).await?;
    } else {
        log.append_deferred(stream, ExpectedRevision::Any, events)
            .await?;
    }
    Ok(())
}

/// The years with a partition in the audit folder `dir` (a directory named by its year),
/// oldest first.
pub fn years_in_folder(dir: &Path) -> Result<Vec<i32>, AuditError> {
    let io = |e| io_error("open", e);
    let mut years = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Some(year) = entry.file_name().to_str().and_then(|n| n.parse().ok())
            && entry.path().is_dir()
        {
            years.push(year);
        }
    }
    years.sort_unstable();
    Ok(years)
}

/// Removes a partition's directory `dir` in the audit folder `parent` (its log closed), waiting
/// out sled's threads letting go of its files.
pub fn remove_partition(dir: &Path, parent: &Path) -> std::io::Result<()> {
    // First out of the way under a name that is no year, atomically, so a crash halfway
    // through the removal leaves nothing that is opened as a partition.
    let doomed = dir.with_extension("removing");
    std::fs::rename(dir, &doomed)?;
    std::fs::File::open(parent).and_then(|d| d.sync_all())?;
    let dir = doomed.as_path();
    let started = std::time::Instant::now();
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) if started.elapsed() > std::time::Duration::from_secs(10) => return Err(e),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    std::fs::File::open(parent).and_then(|d| d.sync_all())
}

/// A file-system failure of the audit log while doing `operation`.
fn io_error(operation: &'static str, e: std::io::Error) -> AuditError {
    AuditError::Log(naast_eventlog::Error::Storage(
        naast_eventlog::StorageError::new(operation, e),
    ))
}

/// What a scan found: records with where it continues after each, and whether it reached the end.
struct Scanned<C> {
    found: Vec<(Stored, C)>,
    done: bool,
}

/// The first `limit` records of the partitions' (`kept`) and the events' (`carried`) in time
/// order, and where to continue from `from` (`None` when both scans reached their end and every
/// record found is returned). Each scan found at most `limit`, all later than those it returned
/// not, so the first `limit` of the two are the log's next `limit`.
fn merge(
    from: Cursor,
    limit: usize,
    kept: Scanned<(i32, u64)>,
    carried: Scanned<u64>,
) -> (Vec<Stored>, Option<Cursor>) {
    let (mut kept_found, mut carried_found) = (
        kept.found.into_iter().peekable(),
        carried.found.into_iter().peekable(),
    );
    let mut cursor = from;
    let mut out = Vec::new();
    while out.len() < limit {
        let take_kept = match (kept_found.peek(), carried_found.peek()) {
            (Some((k, _)), Some((c, _))) => k.recorded_at_micros <= c.recorded_at_micros,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_kept {
            if let Some((stored, (year, at))) = kept_found.next() {
                (cursor.year, cursor.at) = (year, at);
                out.push(stored);
            }
        } else if let Some((stored, events)) = carried_found.next() {
            cursor.events = events;
            out.push(stored);
        }
    }
    let more = kept_found.peek().is_some()
        || carried_found.peek().is_some()
        || !kept.done
        || !carried.done;
    (out, more.then_some(cursor))
}

/// Whether `event` is the first of the command that caused it, the one that carries its record
/// (a command's events are appended together and all name it as their cause); `last_cause` is
/// the cause of the event read before it, and becomes this one's.
fn first_of_its_command(event: &RecordedEvent, last_cause: &mut Option<Uuid>) -> bool {
    let cause = event.metadata.causation_id;
    cause.is_some() && std::mem::replace(last_cause, cause) != cause
}

fn decode(event: RecordedEvent) -> Result<Stored, AuditError> {
    let record = serde_json::from_slice(&event.payload).map_err(|e| AuditError::Unreadable {
        position: event.position,
        reason: e.to_string(),
    })?;
    Ok(Stored {
        id: event.id,
        position: event.position,
        revision: event.revision,
        recorded_at_micros: event.recorded_at_micros,
        record,
    })
}

/// A command's audit record between its decision and its answer ([`Auditor::pending`]).
pub struct PendingRecord {
    auditor: Auditor,
    /// `None` once settled.
    record: Option<Record>,
    id: Uuid,
    events: EventLog,
}

impl PendingRecord {
    /// Durable events this call appended carry the record: the audit log lists it from them,
    /// and nothing is written.
    pub fn carried(mut self) {
        if self.record.take().is_some() {
            self.auditor.settle_one();
        }
    }

    /// The call was refused after all (what another writer appended, read after a lost race,
    /// took the caller's access away): the record says refused, and `reason`.
    pub fn refused(&mut self, reason: String) {
        if let Some(record) = &mut self.record {
            record.outcome = Outcome::Denied;
            record.basis.clear();
            record.reason = Some(reason);
        }
    }

    /// Nothing carries the record: it is written durably before this returns. The write runs
    /// on a task of its own, so a caller cut off while it waits does not cut the write off.
    pub async fn write(mut self) -> Result<(), AuditError> {
        let Some(record) = self.record.take() else {
            return Ok(());
        };
        match self.settle_by_writing(record, None) {
            Some(task) => task.await.unwrap_or_else(|e| {
                Err(AuditError::Unavailable(format!(
                    "the audit write stopped: {e}"
                )))
            }),
            None => Err(AuditError::Unavailable(
                "no runtime to write the audit record on".into(),
            )),
        }
    }

    /// Writes `record` durably on a task of its own, after a sync of `after` when given, and
    /// then counts it settled; `None` (and settled unwritten) when there is no runtime left to
    /// write it on (the process is ending).
    fn settle_by_writing(
        &self,
        record: Record,
        after: Option<EventLog>,
    ) -> Option<tokio::task::JoinHandle<Result<(), AuditError>>> {
        let (auditor, id) = (self.auditor.clone(), self.id);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            auditor.settle_one();
            return None;
        };
        Some(runtime.spawn(async move {
            if let Some(events) = after {
                // Whatever the call sent to the log is behind this sync in its queue. (A failed
                // sync leaves the events' fate unknown: the access is recorded all the same.)
                let _ = events.sync().await;
            }
            // A failed write marks the audit log, so the next start reconciles.
            let written = auditor.record_as(&record, id).await;
            if let Err(e) = &written {
                tracing::error!(error = %e, %id, "an audit record could not be written");
            }
            auditor.settle_one();
            written
        }))
    }
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        let Some(record) = self.record.take() else {
            return;
        };
        // The call was cut off before it was settled: its events may be on their way to the
        // log, so the record follows them.
        if self
            .settle_by_writing(record, Some(self.events.clone()))
            .is_none()
        {
            // The start-up check rebuilds the record from the events that carry it, if any
            // were written.
            tracing::error!(id = %self.id, "the record of a call cut off at shutdown was not written");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is a failed check
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_door_names_its_kind_of_access() {
        let cases = [
            ("/naast.v1.HouseholdService/CreateGoal", Action::Create),
            ("/naast.v1.HouseholdService/ListGoals", Action::Read),
            ("/naast.v1.ConsentService/RevokeAccess", Action::Delete),
            ("FHIR search-type Goal", Action::Read),
            ("FHIR update CarePlan", Action::Update),
            ("push update", Action::Read),
            ("push notify", Action::Read),
            ("push delete", Action::Delete),
        ];
        for (operation, action) in cases {
            assert_eq!(Action::of_operation(operation), action, "{operation}");
        }
    }

    /// An event log without events: no command carries a record.
    fn no_events() -> EventLog {
        EventLog::with_storage(
            std::sync::Arc::new(naast_eventlog::MemoryStorage::new()),
            Options::default(),
        )
        .unwrap()
    }

    /// Every record about `household`, as its access log lists them.
    fn about(
        auditor: &Auditor,
        events: &EventLog,
        household: HouseholdId,
    ) -> (Vec<Stored>, Option<Cursor>) {
        auditor
            .household(
                events,
                None,
                household,
                Cursor::default(),
                10,
                &Filter::default(),
            )
            .unwrap()
    }

    fn record(household: HouseholdId, operation: &str) -> Record {
        Record {
            household: Some(household),
            ..Record::new(operation, Outcome::Allowed)
        }
    }

    /// A crash after a command's events and before its audit record: the next start writes
    /// the record, once.
    #[tokio::test]
    async fn events_without_their_audit_record_get_one_at_the_next_start() {
        use naast_eventlog::{MemoryStorage, Storage};
        let dir = tempfile::tempdir().unwrap();
        let auditor = Auditor::open(dir.path(), Duration::from_secs(86_400)).unwrap();
        let storage: std::sync::Arc<dyn Storage> = std::sync::Arc::new(MemoryStorage::new());
        let log = EventLog::with_storage(storage, Options::default()).unwrap();
        let household = HouseholdId::new();
        let (audited, lost) = (Uuid::now_v7(), Uuid::now_v7());
        auditor
            .record_as(
                &record(household, "/naast.v1.HouseholdService/CreateNote"),
                audited,
            )
            .await
            .unwrap();
        let event = |cause: Option<Uuid>| NewEvent {
            id: Uuid::now_v7(),
            event_type: "NoteAdded".to_owned(),
            schema_version: 1,
            metadata: Metadata {
                correlation_id: None,
                causation_id: cause,
                actor: Some("ouder".to_owned()),
            },
            payload: b"{}".to_vec().into(),
        };
        log.append(
            &household.stream_id(),
            ExpectedRevision::Any,
            vec![
                event(Some(audited)),
                event(Some(lost)),
                event(Some(lost)),
                event(None),
            ],
        )
        .await
        .unwrap();
        assert_eq!(auditor.reconciled(), 0);
        assert_eq!(auditor.reconcile(&log, 0, None).await.unwrap(), 1);
        assert!(auditor.contains(lost).unwrap());
        let (found, _) = auditor
            .household(
                &log,
                None,
                household,
                Cursor::default(),
                10,
                &Filter::default(),
            )
            .unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].record.operation, "recovered");
        assert!(found[1].record.reason.as_ref().unwrap().contains("ouder"));
        // Once is enough.
        assert_eq!(auditor.reconcile(&log, 0, None).await.unwrap(), 0);
        auditor.set_reconciled(log.head()).unwrap();
        assert_eq!(auditor.reconciled(), 4);
        auditor.close().await;

        // Events past the retention had their records in years since removed: reconciling
        // from before them brings nothing back.
        let purged = Auditor::open(&dir.path().join("purged"), Duration::from_micros(1)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(purged.reconcile(&log, 0, None).await.unwrap(), 0);
        assert!(!purged.contains(lost).unwrap());
        purged.close().await;
    }

    #[tokio::test]
    async fn records_are_kept_per_year_and_a_year_goes_once_past_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let year = Duration::from_secs(365 * 86_400);
        let auditor = Auditor::open(dir.path(), year).unwrap();
        let events = no_events();
        let household = HouseholdId::new();
        // A record written back in 2019, then two this year.
        let old = auditor.partition(2019).unwrap();
        append(
            &old,
            &format!("audit-{}", household.0),
            &record(household, "old"),
            Uuid::now_v7(),
            true,
        )
        .await
        .unwrap();
        auditor.record(&record(household, "first")).await.unwrap();
        auditor.record(&record(household, "second")).await.unwrap();
        let operations = |found: &[Stored]| -> Vec<String> {
            found.iter().map(|s| s.record.operation.clone()).collect()
        };
        let (all, end) = about(&auditor, &events, household);
        assert_eq!(operations(&all), ["old", "first", "second"]);
        assert_eq!(end, None);
        // Pages continue across years.
        let (page, next) = auditor
            .search(&events, None, Cursor::default(), 2, &Filter::default())
            .unwrap();
        assert_eq!(operations(&page), ["old", "first"]);
        let next = Cursor::parse(&next.unwrap().token()).unwrap();
        let (rest, end) = auditor
            .search(&events, None, next, 2, &Filter::default())
            .unwrap();
        assert_eq!((operations(&rest), end), (vec!["second".to_owned()], None));

        // 2019 ended long ago, but its record was written today, as by a clock that was
        // behind: it stays until that record is past the retention.
        let now = time::OffsetDateTime::now_utc();
        assert!(auditor.enforce_retention(now).await.unwrap().is_empty());
        assert!(dir.path().join("2019").exists());
        // Three years on, both years' records are past a retention of one year; the newest
        // year, then the next one, is never removed.
        let later = now + Duration::from_secs(3 * 365 * 86_400);
        auditor.partition(later.year()).unwrap();
        let removed = auditor.enforce_retention(later).await.unwrap();
        assert_eq!(removed, [2019, now.year()]);
        assert!(!dir.path().join("2019").exists());
        let (left, _) = about(&auditor, &events, household);
        assert!(left.is_empty());
        assert!(auditor.enforce_retention(later).await.unwrap().is_empty());
        auditor.close().await;
    }

    #[tokio::test]
    async fn a_clock_that_is_behind_never_sends_records_to_an_older_year() {
        let dir = tempfile::tempdir().unwrap();
        let auditor = Auditor::open(dir.path(), Duration::from_secs(365 * 86_400)).unwrap();
        let events = no_events();
        let household = HouseholdId::new();
        // A year later than the clock's exists (the clock is behind): records go there, not
        // to an older year that retention could take.
        let ahead = time::OffsetDateTime::now_utc().year() + 3;
        auditor.partition(ahead).unwrap();
        auditor.record(&record(household, "written")).await.unwrap();
        assert!(
            !dir.path()
                .join(time::OffsetDateTime::now_utc().year().to_string())
                .exists()
        );
        let (found, _) = about(&auditor, &events, household);
        assert_eq!(found.len(), 1);
        auditor.close().await;
        drop(auditor);
        // Reopened, the latest record written sets the floor too.
        let auditor = Auditor::open(dir.path(), Duration::from_secs(365 * 86_400)).unwrap();
        assert_eq!(auditor.year_to_write(), ahead);
        auditor.close().await;
    }
}
