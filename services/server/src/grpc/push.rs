//! `naast.v1.PushService`: the administrators' view of the push endpoints and their dead
//! letters, and the platforms' change feed. Every call is recorded in the audit log; each change
//! the feed shows is recorded as a read of its household.

use super::convert as c;
use super::forward::{Next, Step, forward};
use super::households::{Answer, list_page_size, split};
use super::status::{from_app_error, invalid_argument};
use crate::audit::{self, Auditor};
use crate::auth::layer::Calling;
use crate::households::Households;
use naast_domain::vocab::PrincipalRole;
use naast_eventlog::Subscription;
use naast_proto::pb;
use naast_push::Pusher;
use naast_push::feed::{Change, ChangeKind, Feed};
use std::collections::VecDeque;
use std::pin::Pin;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Events the feed takes from the log at a time.
const FEED_BATCH: usize = 256;

/// The push service.
#[derive(Clone)]
pub struct PushApi {
    pusher: Option<Pusher>,
    /// Another node pushes (it holds the push lease of the shared database).
    elsewhere: bool,
    households: Households,
    auditor: Option<Auditor>,
    shutdown: watch::Receiver<bool>,
}

impl PushApi {
    /// Serves `pusher`'s endpoints (none configured: `None`) and the change feed of `households`.
    pub fn new(
        pusher: Option<Pusher>,
        households: Households,
        auditor: Option<Auditor>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            pusher,
            elsewhere: false,
            households,
            auditor,
            shutdown,
        }
    }

    /// Says that another node pushes: the endpoints' calls are refused here, naming where to go.
    pub fn pushing_elsewhere(mut self) -> Self {
        self.elsewhere = true;
        self
    }

    /// Lets an administrator in (recording the call), or refuses anyone else.
    async fn admin(&self, calling: &Calling, objects: Vec<String>) -> Result<(), Status> {
        super::status::admin_only(
            calling,
            self.auditor.as_ref(),
            objects,
            "only administrators manage push endpoints",
        )
        .await
    }

    fn pusher(&self) -> Result<&Pusher, Status> {
        if self.elsewhere {
            return Err(pushed_elsewhere());
        }
        self.pusher
            .as_ref()
            .ok_or_else(|| Status::not_found("no push endpoints are configured"))
    }
}

/// The refusal of an endpoint's call on a node that does not push.
fn pushed_elsewhere() -> Status {
    Status::failed_precondition(
        "this node does not push: the node holding the push lease does (its log says \"pushing to\"); ask that node",
    )
}

fn unknown_endpoint(name: &str) -> Status {
    invalid_argument(
        "endpoint",
        format!("{name:?} is not a configured push endpoint"),
    )
}

fn store_error(e: naast_push::store::StoreError) -> Status {
    tracing::error!(error = %e, "push store failure");
    Status::unavailable("the push store cannot be read right now")
}

fn kind_to_proto(kind: ChangeKind) -> pb::ChangeKind {
    match kind {
        ChangeKind::Household => pb::ChangeKind::Household,
        ChangeKind::Plans => pb::ChangeKind::Plans,
        ChangeKind::Goals => pb::ChangeKind::Goals,
        ChangeKind::Agreements => pb::ChangeKind::Agreements,
        ChangeKind::Indications => pb::ChangeKind::Indications,
        ChangeKind::Notes => pb::ChangeKind::Notes,
        ChangeKind::Access => pb::ChangeKind::Access,
        ChangeKind::Withdrawn => pb::ChangeKind::Withdrawn,
    }
}

type ChangeStream =
    Pin<Box<dyn Stream<Item = Result<pb::SubscribeChangesResponse, Status>> + Send>>;

/// One platform's open feed.
struct Source {
    events: Subscription,
    feed: Feed,
    pending: VecDeque<Change>,
    caller: std::sync::Arc<crate::auth::caller::Caller>,
    auditor: Auditor,
}

/// The next change: taken from the log in batches; each batch's changes are recorded in the
/// audit log together (one record per change, all durable before the first is sent).
fn next_change(source: &mut Source) -> Next<'_, pb::SubscribeChangesResponse> {
    Box::pin(async move {
        if let Some(change) = source.pending.pop_front() {
            return Step::Send(Ok(pb::SubscribeChangesResponse {
                cursor: change.cursor,
                household_id: change.household.to_string(),
                revision: change.revision,
                kinds: change
                    .kinds
                    .iter()
                    .map(|k| kind_to_proto(*k) as i32)
                    .collect(),
                recorded_at: Some(c::timestamp(change.recorded_at_micros)),
            }));
        }
        let first = match source.events.next().await {
            Ok(event) => event,
            Err(e) => return Step::Send(Err(super::status::from_log_error(e))),
        };
        let mut events = vec![first];
        events.extend(source.events.ready(FEED_BATCH - 1));
        let changes = match source.feed.changes(&events) {
            Ok(changes) => changes,
            Err(e) => return Step::Send(Err(from_app_error(e))),
        };
        let mut records = tokio::task::JoinSet::new();
        for change in &changes {
            let mut record = source.caller.record(audit::Outcome::Allowed);
            record.household = Some(change.household);
            record.basis.clone_from(&change.basis);
            if change.kinds.contains(&ChangeKind::Withdrawn) {
                record.reason = Some("withdrawn: the platform may no longer see it".to_owned());
            }
            let auditor = source.auditor.clone();
            records.spawn(async move { auditor.record(&record).await });
        }
        while let Some(done) = records.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Step::Send(Err(from_app_error(e.into()))),
                Err(e) => return Step::Send(Err(Status::internal(e.to_string()))),
            }
        }
        source.pending.extend(changes);
        Step::Skip
    })
}

#[tonic::async_trait]
impl pb::push_service_server::PushService for PushApi {
    async fn list_push_endpoints(
        &self,
        request: Request<pb::ListPushEndpointsRequest>,
    ) -> Answer<pb::ListPushEndpointsResponse> {
        let (calling, _) = split(request)?;
        self.admin(&calling, Vec::new()).await?;
        if self.elsewhere {
            return Err(pushed_elsewhere());
        }
        let Some(pusher) = &self.pusher else {
            return Ok(Response::new(pb::ListPushEndpointsResponse::default()));
        };
        let head = self.households.log().head();
        let endpoints = pusher
            .endpoints()
            .map_err(store_error)?
            .into_iter()
            .map(|state| pb::PushEndpoint {
                name: state.endpoint.name.clone(),
                kind: state.endpoint.kind.name().to_owned(),
                url: state.endpoint.url.clone(),
                platform_issuer: state.endpoint.platform.issuer.clone(),
                platform_client_id: state.endpoint.platform.client_id.clone(),
                checkpoint: state.checkpoint,
                head,
                households: state.households,
                resources: state.resources,
                dead_letters: state.dead_letters,
                delivered: state.status.delivered,
                retried: state.status.retried,
                last_error: state.status.last_error.clone().unwrap_or_default(),
                last_delivered_at: state.status.last_delivered_micros.map(c::timestamp),
            })
            .collect();
        Ok(Response::new(pb::ListPushEndpointsResponse { endpoints }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Answer<pb::ListDeadLettersResponse> {
        let (calling, r) = split(request)?;
        let size = list_page_size(r.page_size, 100)?;
        let after = match r.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<u64>().map_err(|_| {
                invalid_argument("page_token", "is not a token of a previous page")
            })?),
        };
        self.admin(&calling, vec![r.endpoint.clone()]).await?;
        // One more than asked, to know whether another page follows.
        let mut letters = self
            .pusher()?
            .dead_letters(&r.endpoint, after, size + 1)
            .map_err(store_error)?
            .ok_or_else(|| unknown_endpoint(&r.endpoint))?;
        let next_page_token = if letters.len() > size {
            letters.truncate(size);
            letters.last().map(|l| l.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListDeadLettersResponse {
            dead_letters: letters
                .into_iter()
                .map(|l| pb::DeadLetter {
                    id: l.id,
                    household_id: l.household.to_string(),
                    resource_type: l.resource_type,
                    resource_id: l.resource_id.to_string(),
                    method: l.method,
                    status: u32::from(l.status),
                    body: l.body,
                    refused_at: Some(c::timestamp(l.at_micros)),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn replay_dead_letters(
        &self,
        request: Request<pb::ReplayDeadLettersRequest>,
    ) -> Answer<pb::ReplayDeadLettersResponse> {
        let (calling, r) = split(request)?;
        let mut objects = vec![r.endpoint.clone()];
        objects.extend(r.dead_letter_id.map(|id| id.to_string()));
        self.admin(&calling, objects).await?;
        let replayed = self
            .pusher()?
            .replay(&r.endpoint, r.dead_letter_id)
            .map_err(store_error)?
            .ok_or_else(|| unknown_endpoint(&r.endpoint))?;
        if let (Some(id), 0) = (r.dead_letter_id, replayed) {
            return Err(Status::not_found(format!(
                "dead letter {id} of {} not found (replayed already?)",
                r.endpoint
            )));
        }
        Ok(Response::new(pb::ReplayDeadLettersResponse { replayed }))
    }

    type SubscribeChangesStream = ChangeStream;

    async fn subscribe_changes(
        &self,
        request: Request<pb::SubscribeChangesRequest>,
    ) -> Answer<Self::SubscribeChangesStream> {
        let (calling, r) = split(request)?;
        let permit = super::forward::permit(&calling)?;
        let Calling::Caller(caller) = &calling else {
            return Err(Status::failed_precondition(
                "the change feed follows a PGO platform's grants: authentication is switched off",
            ));
        };
        let auditor = self.auditor.clone().ok_or_else(|| {
            Status::failed_precondition("there is no audit log: authentication is switched off")
        })?;
        let principal = &caller.principal;
        let platform = match (&principal.role, &principal.client_id) {
            (PrincipalRole::Platform, Some(client_id)) => Some(client_id.clone()),
            _ => None,
        };
        let mut record = caller.record(if platform.is_some() {
            audit::Outcome::Allowed
        } else {
            audit::Outcome::Denied
        });
        match &platform {
            Some(client_id) => record.basis = vec![format!("platform:{client_id}")],
            None => record.reason = Some("only a PGO platform follows the change feed".to_owned()),
        }
        auditor
            .record(&record)
            .await
            .map_err(|e| from_app_error(e.into()))?;
        let Some(client_id) = platform else {
            return Err(Status::permission_denied(
                "only a PGO platform follows the change feed",
            ));
        };
        let from = match r.after_cursor {
            Some(cursor) => cursor
                .checked_add(1)
                .ok_or_else(|| invalid_argument("after_cursor", "is past the end of the log"))?,
            None => 0,
        };
        let source = Source {
            events: self.households.log().subscribe_all(from),
            feed: Feed::new(
                self.households.clone(),
                principal.identity.issuer.clone(),
                client_id,
            ),
            pending: VecDeque::new(),
            caller: caller.clone(),
            auditor,
        };
        let stream = forward(
            source,
            next_change,
            self.shutdown.clone(),
            calling.expiry(),
            permit,
        );
        Ok(Response::new(Box::pin(stream)))
    }
}
