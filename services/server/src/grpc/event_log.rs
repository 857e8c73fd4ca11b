//! `naast.v1.EventLogService`: raw access to the event log for integrators. Each handler
//! validates, converts into event-log types, calls the log, and converts back.

use super::forward::{Next, Step, forward};
use super::households::split;
use super::status::{from_log_error, invalid_argument};
use crate::audit::Auditor;
use crate::auth::layer::Calling;
use naast_domain::vocab::PrincipalRole;
use naast_eventlog::Subscription;
use naast_eventlog::{
    AppendOutcome, Direction, END, EventLog, ExpectedRevision, Metadata, NewEvent, RecordedEvent,
};
use naast_proto::pb;
use std::pin::Pin;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

/// Streams of households; raw appends to them are refused.
const HOUSEHOLD_STREAM_PREFIX: &str = "household-";
/// Streams the service keeps for itself (the measurement instruments); raw appends to them are
/// refused.
const SERVICE_STREAM_PREFIX: &str = "naast-";

/// Most events in one page.
pub const MAX_PAGE_SIZE: usize = 1_000;
/// Events in a page when the request does not say.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The service, over one shared event log.
#[derive(Clone)]
pub struct EventLogApi {
    log: EventLog,
    auditor: Option<Auditor>,
    shutdown: watch::Receiver<bool>,
}

impl EventLogApi {
    /// Serves `log`, recording guarded calls with `auditor`; open subscriptions end when
    /// `shutdown` turns true.
    pub fn new(log: EventLog, auditor: Option<Auditor>, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            log,
            auditor,
            shutdown,
        }
    }

    /// Whether the caller may use the raw log on `stream` (`None`: the whole log), recorded in
    /// the audit log. The raw log is for service administrators and their integrations; a
    /// household's stream is read only through `HouseholdService`, which applies the family's
    /// consent. Returns whether household events must be left out of what is read.
    async fn admit(&self, calling: &Calling, stream: Option<&str>) -> Result<bool, Status> {
        let Calling::Caller(caller) = calling else {
            return Ok(false);
        };
        let refusal = if caller.principal.role != PrincipalRole::Administrator {
            Some(
                "the raw event log is for service administrators; households are read and written through HouseholdService",
            )
        } else if stream.is_some_and(|s| s.starts_with(HOUSEHOLD_STREAM_PREFIX)) {
            Some(
                "a household's stream is read through HouseholdService, which applies the family's consent",
            )
        } else {
            None
        };
        let auditor = self
            .auditor
            .as_ref()
            .ok_or_else(|| Status::unavailable("the audit log is unavailable"))?;
        let objects = stream.map(|s| vec![s.to_owned()]).unwrap_or_default();
        let household = stream
            .and_then(|s| s.strip_prefix(HOUSEHOLD_STREAM_PREFIX))
            .and_then(|id| id.parse().ok());
        caller
            .admin_operation(auditor, household, objects, refusal)
            .await
            .map_err(super::status::from_app_error)?;
        Ok(true)
    }
}

fn household_event(e: &RecordedEvent) -> bool {
    e.stream_id.starts_with(HOUSEHOLD_STREAM_PREFIX)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::event_log_service_server::EventLogService for EventLogApi {
    async fn append_events(
        &self,
        request: Request<pb::AppendEventsRequest>,
    ) -> Result<Response<pb::AppendEventsResponse>, Status> {
        let (calling, request) = split(request)?;
        if request.stream_id.starts_with(HOUSEHOLD_STREAM_PREFIX) {
            // Recorded like every refusal (the answer names the field either way).
            let _ = self.admit(&calling, Some(&request.stream_id)).await;
            // A household's stream holds only events its commands decided: anything else would
            // stop its state from folding, and its family's commands with it.
            return Err(invalid_argument(
                "stream_id",
                "household streams are written through naast.v1.HouseholdService, which checks every command",
            ));
        }
        if request.stream_id.starts_with(SERVICE_STREAM_PREFIX) {
            let _ = self.admit(&calling, Some(&request.stream_id)).await;
            return Err(invalid_argument(
                "stream_id",
                "streams named naast-… are the service's own (the measurement instruments are defined through naast.v1.EvaluationService)",
            ));
        }
        let expected = expected_revision(request.expected)?;
        self.admit(&calling, Some(&request.stream_id)).await?;
        let events = request
            .events
            .into_iter()
            .enumerate()
            .map(|(i, e)| new_event(i, e))
            .collect::<Result<Vec<_>, _>>()?;
        let event_ids = events.iter().map(|e| e.id.to_string()).collect();
        let outcome = self
            .log
            .append(&request.stream_id, expected, events)
            .await
            .map_err(from_log_error)?;
        Ok(Response::new(append_response(outcome, event_ids)))
    }

    async fn list_stream_events(
        &self,
        request: Request<pb::ListStreamEventsRequest>,
    ) -> Result<Response<pb::ListStreamEventsResponse>, Status> {
        let (calling, request) = split(request)?;
        self.admit(&calling, Some(&request.stream_id)).await?;
        let direction = direction(request.direction)?;
        let page_size = page_size(request.page_size)?;
        let from = match page_token(&request.page_token, direction)? {
            Some(from) => from,
            None => start(request.start_revision, direction),
        };
        let mut events = self
            .log
            .read_stream(&request.stream_id, from, direction, page_size + 1)
            .map_err(from_log_error)?;
        let next_page_token = next_page(&mut events, page_size, direction, |e| e.revision);
        Ok(Response::new(pb::ListStreamEventsResponse {
            events: events.into_iter().map(event).collect(),
            next_page_token,
        }))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let (calling, request) = split(request)?;
        let without_households = self.admit(&calling, None).await?;
        let direction = direction(request.direction)?;
        let page_size = page_size(request.page_size)?;
        let from = match page_token(&request.page_token, direction)? {
            Some(from) => from,
            None => start(request.start_position, direction),
        };
        let mut events = self
            .log
            .read_all(from, direction, page_size + 1)
            .map_err(from_log_error)?;
        let next_page_token = next_page(&mut events, page_size, direction, |e| e.position);
        if without_households {
            events.retain(|e| !household_event(e));
        }
        Ok(Response::new(pb::ListEventsResponse {
            events: events.into_iter().map(event).collect(),
            next_page_token,
        }))
    }

    type SubscribeEventsStream = EventStream;

    async fn subscribe_events(
        &self,
        request: Request<pb::SubscribeEventsRequest>,
    ) -> Result<Response<Self::SubscribeEventsStream>, Status> {
        let (calling, request) = split(request)?;
        let permit = super::forward::permit(&calling)?;
        let stream = Some(request.stream_id.as_str()).filter(|s| !s.is_empty());
        let without_households = self.admit(&calling, stream).await?;
        let subscription = if request.stream_id.is_empty() {
            let from = request.start_position.unwrap_or_else(|| self.log.head());
            self.log.subscribe_all(from)
        } else {
            let from = match request.start_revision {
                Some(revision) => revision,
                None => self
                    .log
                    .stream_revision(&request.stream_id)
                    .map_err(from_log_error)?
                    .map_or(0, |r| r + 1),
            };
            self.log
                .subscribe_stream(&request.stream_id, from)
                .map_err(from_log_error)?
        };
        /// The subscription, and whether household events are left out.
        struct Source {
            subscription: Subscription,
            without_households: bool,
            log: EventLog,
        }
        fn next(source: &mut Source) -> Next<'_, pb::SubscribeEventsResponse> {
            Box::pin(async move {
                let next = source.subscription.next().await;
                if let Ok(e) = &next {
                    let behind = source.log.head().saturating_sub(e.position + 1);
                    metrics::histogram!("naast_subscription_lag_events", "stream" => "events")
                        .record(behind as f64);
                }
                match next {
                    Ok(e) if source.without_households && household_event(&e) => Step::Skip,
                    Ok(e) => Step::Send(Ok(pb::SubscribeEventsResponse {
                        event: Some(event(e)),
                    })),
                    Err(e) => Step::Send(Err(from_log_error(e))),
                }
            })
        }
        let source = Source {
            subscription,
            without_households,
            log: self.log.clone(),
        };
        let stream = forward(
            source,
            next,
            self.shutdown.clone(),
            calling.expiry(),
            permit,
        );
        Ok(Response::new(Box::pin(stream)))
    }
}

fn expected_revision(
    expected: Option<pb::append_events_request::Expected>,
) -> Result<ExpectedRevision, Status> {
    use pb::ExpectedStreamState as State;
    use pb::append_events_request::Expected;
    match expected {
        None => Ok(ExpectedRevision::Any),
        Some(Expected::ExpectedRevision(revision)) => Ok(ExpectedRevision::Exact(revision)),
        Some(Expected::ExpectedState(state)) => match State::try_from(state) {
            Ok(State::Any) => Ok(ExpectedRevision::Any),
            Ok(State::NoStream) => Ok(ExpectedRevision::NoStream),
            Ok(State::Exists) => Ok(ExpectedRevision::StreamExists),
            Ok(State::Unspecified) => Err(invalid_argument(
                "expected_state",
                "must be ANY, NO_STREAM or EXISTS; leave `expected` unset for any",
            )),
            Err(_) => Err(invalid_argument(
                "expected_state",
                format!("{state} is not an ExpectedStreamState"),
            )),
        },
    }
}

fn uuid_field(field: impl FnOnce() -> String, value: &str) -> Result<Option<Uuid>, Status> {
    if value.is_empty() {
        return Ok(None);
    }
    match Uuid::parse_str(value) {
        Ok(id) if id.is_nil() => Err(invalid_argument(
            field(),
            "is the nil UUID, which names nothing; use a real id",
        )),
        Ok(id) => Ok(Some(id)),
        Err(_) => Err(invalid_argument(
            field(),
            format!("{} is not a UUID", naast_domain::validate::quote(value)),
        )),
    }
}

fn new_event(i: usize, event: pb::NewEvent) -> Result<NewEvent, Status> {
    let id = uuid_field(|| format!("events[{i}].id"), &event.id)?.unwrap_or_else(Uuid::now_v7);
    let metadata = event.metadata.unwrap_or_default();
    Ok(NewEvent {
        id,
        event_type: event.event_type,
        schema_version: event.schema_version.max(1),
        metadata: Metadata {
            correlation_id: uuid_field(
                || format!("events[{i}].metadata.correlation_id"),
                &metadata.correlation_id,
            )?,
            causation_id: uuid_field(
                || format!("events[{i}].metadata.causation_id"),
                &metadata.causation_id,
            )?,
            actor: Some(metadata.actor).filter(|a| !a.is_empty()),
        },
        payload: event.payload.into(),
    })
}

fn append_response(outcome: AppendOutcome, event_ids: Vec<String>) -> pb::AppendEventsResponse {
    pb::AppendEventsResponse {
        first_revision: outcome.first_revision,
        last_revision: outcome.last_revision,
        first_position: outcome.first_position,
        last_position: outcome.last_position,
        replayed: outcome.replayed,
        event_ids,
    }
}

fn direction(value: i32) -> Result<Direction, Status> {
    match pb::ReadDirection::try_from(value) {
        Ok(pb::ReadDirection::Unspecified | pb::ReadDirection::Forwards) => Ok(Direction::Forwards),
        Ok(pb::ReadDirection::Backwards) => Ok(Direction::Backwards),
        Err(_) => Err(invalid_argument(
            "direction",
            format!("{value} is not a ReadDirection"),
        )),
    }
}

fn page_size(value: i32) -> Result<usize, Status> {
    match usize::try_from(value) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(size) if size <= MAX_PAGE_SIZE => Ok(size),
        _ => Err(invalid_argument(
            "page_size",
            format!("{value} is not between 0 and {MAX_PAGE_SIZE}"),
        )),
    }
}

fn start(start: Option<u64>, direction: Direction) -> u64 {
    match (start, direction) {
        (Some(from), _) => from,
        (None, Direction::Forwards) => 0,
        (None, Direction::Backwards) => END,
    }
}

/// Page tokens say where the next page starts and which way it reads: `f<n>` or `b<n>`.
/// Clients must treat them as opaque.
fn page_token(token: &str, direction: Direction) -> Result<Option<u64>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let (mark, rest) = token.split_at(token.chars().next().map_or(0, char::len_utf8));
    let want = match direction {
        Direction::Forwards => "f",
        Direction::Backwards => "b",
    };
    match rest.parse() {
        Ok(from) if mark == want => Ok(Some(from)),
        _ => Err(invalid_argument(
            "page_token",
            "is not a token of a previous page read in this direction",
        )),
    }
}

/// Trims the extra event read to see whether there is more, and makes the token for the rest.
fn next_page(
    events: &mut Vec<RecordedEvent>,
    page_size: usize,
    direction: Direction,
    key: impl Fn(&RecordedEvent) -> u64,
) -> String {
    if events.len() <= page_size {
        return String::new();
    }
    let next = events.get(page_size).map(&key).unwrap_or_default();
    events.truncate(page_size);
    match direction {
        Direction::Forwards => format!("f{next}"),
        Direction::Backwards => format!("b{next}"),
    }
}

fn event(e: RecordedEvent) -> pb::Event {
    pb::Event {
        id: e.id.to_string(),
        stream_id: e.stream_id,
        revision: e.revision,
        position: e.position,
        event_type: e.event_type,
        schema_version: e.schema_version,
        recorded_at: Some(super::convert::timestamp(e.recorded_at_micros)),
        metadata: Some(pb::EventMetadata {
            correlation_id: e
                .metadata
                .correlation_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            causation_id: e
                .metadata
                .causation_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            actor: e.metadata.actor.unwrap_or_default(),
        }),
        payload: e.payload.to_vec(),
        hash: e.hash.to_vec(),
    }
}
