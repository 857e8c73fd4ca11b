//! The audit log, after NEN 7513 (2018): every call, allowed or refused, is recorded before it is
//! answered, append-only and hash-chained, in an event log of its own (`<data_dir>/audit`).
//!
//! Records about a household go to the stream `audit-<household id>`, so the family's "who
//! looked at our data" is one stream read; the others (refused sign-ins, searches of the log
//! itself, calls that name no household) go to `audit-service`. A record holds no personal data
//! of the household beyond ids: who called, on what basis, and what they touched.

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
pub const DEFAULT_RETENTION_DAYS: u32 = 5 * 365 + 1;

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
    /// The action a gRPC method amounts to, by its verb (`/naast.v1.X/CreateGoal` → create).
    pub fn of_operation(operation: &str) -> Self {
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
    /// The users of a record about `principal`'s call: the caller, and for a platform the member
    /// it acts for.
    pub fn users(principal: &Principal) -> (User, Option<User>) {
        let user = User {
            identity: principal.identity.clone(),
            name: principal.name.clone(),
            role: principal.role,
            organisation: principal.organisation.clone(),
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

/// The audit log. Cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    log: EventLog,
}

impl Auditor {
    /// Opens (or creates) the audit log in `dir`.
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        Ok(Self {
            log: EventLog::open(dir, Options::default())?,
        })
    }

    /// An audit log on `log`.
    pub fn on(log: EventLog) -> Self {
        Self { log }
    }

    /// The event log underneath.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Appends `record`; returns once it is durable.
    pub async fn record(&self, record: &Record) -> Result<(), AuditError> {
        let stream = record
            .household
            .map_or_else(|| SERVICE_STREAM.to_owned(), |h| format!("audit-{}", h.0));
        // Serialising this plain data cannot fail: no maps with non-string keys, no custom
        // serialisers that error.
        let payload = serde_json::to_vec(record).unwrap_or_default();
        self.log
            .append(
                &stream,
                ExpectedRevision::Any,
                vec![NewEvent {
                    id: Uuid::now_v7(),
                    event_type: EVENT_TYPE.to_owned(),
                    schema_version: SCHEMA_VERSION,
                    metadata: Metadata {
                        correlation_id: None,
                        causation_id: None,
                        actor: record.user.as_ref().map(|u| u.identity.subject.clone()),
                    },
                    payload: payload.into(),
                }],
            )
            .await?;
        Ok(())
    }

    /// Up to `limit` records about `household` from stream revision `from` on that `filter`
    /// admits, and the revision to continue from (`None` at the end).
    pub fn household(
        &self,
        household: HouseholdId,
        from: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<(Vec<Stored>, Option<u64>), AuditError> {
        let stream = format!("audit-{}", household.0);
        self.scan(
            limit,
            filter,
            from,
            |next| {
                self.log
                    .read_stream(&stream, next, Direction::Forwards, SCAN_CHUNK)
            },
            |r| r.revision,
        )
    }

    /// Up to `limit` records of the whole audit log from global position `from` on that
    /// `filter` admits, and the position to continue from (`None` at the end).
    pub fn search(
        &self,
        from: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<(Vec<Stored>, Option<u64>), AuditError> {
        self.scan(
            limit,
            filter,
            from,
            |next| self.log.read_all(next, Direction::Forwards, SCAN_CHUNK),
            |r| r.position,
        )
    }

    fn scan(
        &self,
        limit: usize,
        filter: &Filter,
        from: u64,
        read: impl Fn(u64) -> Result<Vec<RecordedEvent>, naast_eventlog::Error>,
        cursor: impl Fn(&RecordedEvent) -> u64,
    ) -> Result<(Vec<Stored>, Option<u64>), AuditError> {
        let mut found = Vec::new();
        let mut next = from;
        loop {
            let chunk = read(next)?;
            if chunk.is_empty() {
                return Ok((found, None));
            }
            for event in chunk {
                next = cursor(&event) + 1;
                let stored = decode(event)?;
                if filter.admits(&stored) {
                    found.push(stored);
                    if found.len() == limit {
                        return Ok((found, Some(next)));
                    }
                }
            }
        }
    }
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
