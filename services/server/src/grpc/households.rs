//! `naast.v1.HouseholdService`: commands on households and their unified timeline. Each
//! handler converts the request into a domain command (naming any bad field), executes it, and
//! converts the outcome back.

use super::convert::{self as c, Vocabulary};
use super::forward::{Next, Step, forward};
use super::status::{from_app_error, invalid_argument};
use crate::auth::layer::Calling;
use crate::households::{AppError, CommandContext, Executed, Households};
use naast_domain::Command;
use naast_domain::access::{Action, ReadKind, View};
use naast_domain::ids::{AgreementId, GoalId, PlanId};
use naast_domain::ids::{HouseholdId, MemberId};
use naast_domain::state::PlanStatus;
use naast_domain::state::{Agreement, AgreementPhase, AgreementStatus, Goal, GoalStatus, Plan};
use naast_domain::timeline::TimelineEntry;
use naast_domain::vocab::{
    ContactMode, FundingDomain, IndicationKind, LifeDomain, PlanKind, SupportPhase, SupporterTask,
};
use naast_eventlog::Subscription;
use naast_projections::{Projections, StoredEntry, TimelinePosition};
use naast_proto::pb;
use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Most items in a page of goals or agreements.
pub const MAX_LIST_PAGE: usize = 1_000;
/// Entries in a timeline page when the request does not say.
pub const DEFAULT_TIMELINE_PAGE: usize = 50;
/// Most entries in a timeline page.
pub const MAX_TIMELINE_PAGE: usize = 1_000;
/// Longest a read waits for its `min_position`.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// The service over all households.
#[derive(Clone)]
pub struct HouseholdApi {
    pub(super) households: Households,
    projections: Projections,
    evaluation: naast_app::evaluation::Evaluation,
    shutdown: watch::Receiver<bool>,
}

impl HouseholdApi {
    /// Serves `households`, with their timelines from `projections` and the measurement
    /// instruments of `evaluation`; open timeline subscriptions end when `shutdown` turns true.
    pub fn new(
        households: Households,
        projections: Projections,
        evaluation: naast_app::evaluation::Evaluation,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            households,
            projections,
            evaluation,
            shutdown,
        }
    }

    /// The households underneath (for another door's decisions on what to ask for).
    pub(crate) fn households(&self) -> &Households {
        &self.households
    }

    pub(super) async fn execute(
        &self,
        calling: &Calling,
        household: HouseholdId,
        options: Option<pb::CommandOptions>,
        command: Command,
    ) -> Result<pb::CommandResult, Status> {
        let options = options.unwrap_or_default();
        let context = CommandContext {
            calling: calling.clone(),
            actor: match calling {
                Calling::Unguarded => None,
                Calling::Caller(caller) => Some(caller.principal.identity.subject.clone()),
            },
            request_id: c::optional_id("options.request_id", &options.request_id)?,
            expected_revision: options.expected_revision,
            happened_on: c::optional_date(
                crate::households::EFFECTIVE_DATE_FIELD,
                &options.effective_date,
            )?,
        };
        let Executed {
            revision,
            position,
            replayed,
        } = self
            .households
            .execute(household, command, &context)
            .await
            .map_err(from_app_error)?;
        Ok(pb::CommandResult {
            revision,
            position,
            replayed,
        })
    }

    /// Decides the read of `kind` in household `id` (refused unless allowed, recorded in the
    /// audit log either way) and reads with `read`, in one step on one state of the household:
    /// what is shown is exactly what the decision saw, so a grant revoked or a goal moved out of
    /// the reader's life domains a moment later changes neither. `read` gets the state, its
    /// revision, the caller's view (`None`: they may see everything) and today. Waits first for
    /// the log to reach `min_position`, so a client reads its own acknowledged writes.
    async fn read_decided<R>(
        &self,
        calling: &Calling,
        id: HouseholdId,
        kind: ReadKind,
        objects: Vec<String>,
        min_position: u64,
        read: impl FnOnce(&naast_domain::Household, Option<u64>, Option<&View>, time::Date) -> R,
    ) -> Result<R, Status> {
        self.reach(min_position).await?;
        let today = naast_domain::calendar::dutch_today();
        let (_, out) = self
            .households
            .guard_read(
                calling,
                id,
                Action::Read(kind),
                objects,
                |state, revision, access| {
                    let view = (!access.view.is_everything()).then_some(&access.view);
                    read(state, revision, view, today)
                },
            )
            .await
            .map_err(from_app_error)?;
        Ok(out)
    }

    /// Waits until the timeline read model holds the household's events up to revision
    /// `revision` (those a read was decided on).
    async fn timeline_reaches(&self, id: HouseholdId, revision: u64) -> Result<(), Status> {
        let position = self
            .households
            .log()
            .read_stream(
                &id.stream_id(),
                revision,
                naast_eventlog::Direction::Forwards,
                1,
            )
            .map_err(super::status::from_log_error)?
            .first()
            .map(|e| e.position);
        if let Some(position) = position {
            self.projections
                .wait_for(position, MAX_WAIT)
                .await
                .map_err(|e| Status::deadline_exceeded(e.to_string()))?;
        }
        Ok(())
    }

    /// For each household of the caller's caseload they may read the timeline of, what `f`
    /// makes of it (each read recorded in the audit log); the caller must be signed in.
    async fn read_caseload<R>(
        &self,
        calling: &Calling,
        f: impl Fn(&naast_domain::Household, &naast_domain::access::Access) -> R,
    ) -> Result<Vec<(HouseholdId, R)>, Status> {
        let crate::auth::layer::Calling::Caller(caller) = calling else {
            return Err(Status::failed_precondition(
                "a caseload is someone's: it needs authentication to be on",
            ));
        };
        let principal = &caller.principal;
        let candidates = self
            .projections
            .households_involving(&principal.identity, principal.organisation_claim())
            .map_err(|e| Status::unavailable(e.to_string()))?;
        self.households
            .read_each(calling, candidates, Action::Read(ReadKind::Timeline), f)
            .await
            .map_err(from_app_error)
    }

    /// Waits until the log holds position `min_position` (if non-zero).
    async fn reach(&self, min_position: u64) -> Result<(), Status> {
        let log = self.households.log();
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        while min_position > 0 && log.head() <= min_position {
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "position {min_position} was not reached within {MAX_WAIT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }
}

/// Who calls (put there by the authentication layer) and the request's message. A request that
/// did not pass the layer is refused: access is never given by omission.
pub(crate) fn split<T>(request: Request<T>) -> Result<(Calling, T), Status> {
    let calling = request
        .extensions()
        .get::<Calling>()
        .cloned()
        .ok_or_else(|| Status::internal("the call did not pass authentication"))?;
    Ok((calling, request.into_inner()))
}

/// What `calling` may see of the household's goals, agreements and plans: what the timeline
/// shows them (`None`: nothing).
fn timeline_view(calling: &Calling, state: &naast_domain::Household) -> Option<View> {
    calling
        .access(state, Action::Read(ReadKind::Timeline))
        .ok()
        .map(|access| access.view)
}

fn change_to_proto(
    change: naast_domain::changes::Change,
    steps: &[&crate::households::Step],
) -> pb::HouseholdChange {
    use naast_domain::event::Subject;
    let (object, id) = match change.subject {
        Subject::Plan(id) => (pb::ChangedObject::Plan, id.to_string()),
        Subject::Goal(id) => (pb::ChangedObject::Goal, id.to_string()),
        Subject::Agreement(id) => (pb::ChangedObject::Agreement, id.to_string()),
    };
    pb::HouseholdChange {
        object: object as i32,
        id,
        title: change.title,
        added: change.added,
        fields: change
            .fields
            .into_iter()
            .map(|f| pb::FieldChange {
                field: f.field,
                before: f.before,
                after: f.after,
            })
            .collect(),
        events: steps
            .iter()
            .map(|step| pb::ChangeEvent {
                revision: step.recorded.revision,
                position: step.recorded.position,
                event_type: step.recorded.event_type.clone(),
                date: c::date_string(step.date),
                recorded_at: Some(c::timestamp(step.recorded.recorded_at_micros)),
                actor: step.recorded.metadata.actor.clone().unwrap_or_default(),
                summary: step.summary.clone(),
            })
            .collect(),
    }
}

fn household_to_proto(
    id: HouseholdId,
    state: &naast_domain::Household,
    revision: u64,
    view: Option<&View>,
    today: time::Date,
) -> pb::Household {
    let plans_visible = view.is_some_and(View::plans);
    pb::Household {
        household_id: id.to_string(),
        name: state.name.clone(),
        revision,
        members: state
            .members
            .iter()
            .filter(|(_, m)| !m.removed)
            .map(|(id, m)| pb::Member {
                member_id: id.to_string(),
                details: Some(c::member_to_proto(&m.details)),
            })
            .collect(),
        contacts: state
            .contacts
            .iter()
            .filter(|(_, x)| !x.removed)
            .map(|(id, x)| pb::Contact {
                contact_id: id.to_string(),
                details: Some(c::contact_to_proto(&x.details)),
            })
            .collect(),
        goals: state
            .goals
            .iter()
            .filter(|(gid, g)| view.is_some_and(|v| v.goal(state, **gid, g, today)))
            .map(|(id, g)| goal_to_proto(*id, g))
            .collect(),
        agreements: state
            .agreements
            .iter()
            .filter(|(_, a)| view.is_some_and(|v| v.agreement(state, a, today)))
            .map(|(id, a)| agreement_to_proto(*id, a))
            .collect(),
        plans: state
            .plans
            .iter()
            .filter(|_| plans_visible)
            .map(|(id, p)| plan_to_proto(*id, p))
            .collect(),
        indications: state
            .indications
            .iter()
            .filter(|_| plans_visible)
            .map(|(id, i)| pb::Indication {
                indication_id: id.to_string(),
                member_id: i.member.to_string(),
                kind: i.kind.to_proto(),
                care_profile: i.care_profile.clone().unwrap_or_default(),
                valid_from: c::date_string(i.valid_from),
                valid_until: i.valid_until.map(c::date_string).unwrap_or_default(),
            })
            .collect(),
        support_phase: state.support.map_or(0, |s| s.phase.to_proto()),
        hours_per_week: state.support.and_then(|s| s.hours_per_week),
        family_type: state.family_type.map_or(0, Vocabulary::to_proto),
        objects_to_evaluation: state.objects_to_evaluation,
    }
}

/// Who registers a household: the signed-in citizen, or the member a PGO platform acts for.
fn registrant(calling: &Calling) -> Option<naast_domain::Identity> {
    match calling {
        Calling::Unguarded => None,
        Calling::Caller(caller) => Some(
            caller
                .principal
                .acting_for
                .clone()
                .unwrap_or_else(|| caller.principal.identity.clone()),
        ),
    }
}

pub(super) fn household(id: &str) -> Result<HouseholdId, Status> {
    c::id("household_id", id)
}

/// A small number (a rating) from its proto `uint32`: one too large for a byte is refused here,
/// the domain checks the range.
fn small(field: &str, value: u32) -> Result<u8, Status> {
    u8::try_from(value)
        .map_err(|_| invalid_argument(field, format!("is {value}; ratings go from 1 to 10")))
}

fn goal_to_proto(id: GoalId, g: &Goal) -> pb::Goal {
    pb::Goal {
        goal_id: id.to_string(),
        owner_member_id: g.owner.to_string(),
        title: g.title.clone(),
        description: g.description.clone(),
        life_domains: g.life_domains.iter().map(|d| d.to_proto()).collect(),
        plan_id: g.plan.map(|p| p.to_string()).unwrap_or_default(),
        status: goal_status(g.status) as i32,
        progress_notes: g.progress_notes,
    }
}

fn goal_status(status: GoalStatus) -> pb::GoalStatus {
    match status {
        GoalStatus::Active => pb::GoalStatus::Active,
        GoalStatus::Achieved => pb::GoalStatus::Achieved,
        GoalStatus::Abandoned => pb::GoalStatus::Abandoned,
    }
}

fn agreement_to_proto(id: AgreementId, a: &Agreement) -> pb::Agreement {
    pb::Agreement {
        agreement_id: id.to_string(),
        terms: Some(c::terms_to_proto(&a.terms)),
        status: match a.status {
            AgreementStatus::Proposed => pb::AgreementStatus::Proposed,
            AgreementStatus::Accepted => pb::AgreementStatus::Accepted,
            AgreementStatus::Rejected => pb::AgreementStatus::Rejected,
            AgreementStatus::Ended => pb::AgreementStatus::Ended,
        } as i32,
        under_review: a.under_review,
    }
}

fn agreement_phase(phase: AgreementPhase) -> pb::AgreementPhase {
    match phase {
        AgreementPhase::Proposed => pb::AgreementPhase::Proposed,
        AgreementPhase::Upcoming => pb::AgreementPhase::Upcoming,
        AgreementPhase::Active => pb::AgreementPhase::Active,
        AgreementPhase::UnderReview => pb::AgreementPhase::UnderReview,
        AgreementPhase::Ended => pb::AgreementPhase::Ended,
        AgreementPhase::Rejected => pb::AgreementPhase::Rejected,
    }
}

fn plan_to_proto(id: PlanId, p: &Plan) -> pb::Plan {
    pb::Plan {
        plan_id: id.to_string(),
        kind: p.kind.to_proto(),
        title: p.title.clone(),
        summary: p.summary.clone(),
        version: p.version,
        status: match p.status {
            PlanStatus::Draft => pb::PlanStatus::Draft,
            PlanStatus::Active => pb::PlanStatus::Active,
            PlanStatus::Closed => pb::PlanStatus::Closed,
        } as i32,
        evaluation_dates: p.evaluations.iter().map(|d| c::date_string(*d)).collect(),
    }
}

/// `page_size` of a list request: 0 means `default`, above `MAX_LIST_PAGE` is refused.
pub(super) fn list_page_size(value: i32, default: usize) -> Result<usize, Status> {
    match usize::try_from(value) {
        Ok(0) => Ok(default),
        Ok(n) if n <= MAX_LIST_PAGE => Ok(n),
        _ => Err(invalid_argument(
            "page_size",
            format!("{value} is not between 0 and {MAX_LIST_PAGE}"),
        )),
    }
}

/// Offset page tokens (`o<n>`) of the per-household lists.
fn list_offset(token: &str) -> Result<usize, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix('o')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| invalid_argument("page_token", "is not a token of a previous page"))
}

/// One page of `items` from `offset`, and the token for the rest.
fn page_of<T>(items: Vec<T>, offset: usize, size: usize) -> (Vec<T>, String) {
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(size).collect();
    let next = offset + page.len();
    (
        page,
        if next < total {
            format!("o{next}")
        } else {
            String::new()
        },
    )
}

pub(super) type Answer<T> = Result<Response<T>, Status>;

type TimelineStream =
    Pin<Box<dyn Stream<Item = Result<pb::SubscribeTimelineResponse, Status>> + Send>>;
type SignalStream =
    Pin<Box<dyn Stream<Item = Result<pb::SubscribeSignalsResponse, Status>> + Send>>;

/// How often an open signal stream looks whether the day has turned in the Netherlands.
const DAY_TURN_CHECK: Duration = Duration::from_secs(60);

/// The open signals of one household, by what identifies each.
type OpenSignals = std::collections::BTreeMap<
    (
        naast_domain::signals::SignalKind,
        naast_domain::signals::Cause,
        Option<MemberId>,
    ),
    naast_domain::signals::Signal,
>;

/// What an open signal stream follows: the log, the households it watches with the signals the
/// caller saw last, and the changes still to send.
struct SignalSource {
    events: Subscription,
    households: Households,
    calling: Calling,
    kinds: Vec<naast_domain::signals::SignalKind>,
    today: time::Date,
    /// Following the caller's caseload (not one household): households that let the caller in
    /// later join it.
    caseload: bool,
    watched: std::collections::BTreeMap<HouseholdId, OpenSignals>,
    pending: std::collections::VecDeque<pb::SubscribeSignalsResponse>,
    tick: tokio::time::Interval,
}

impl SignalSource {
    /// Whether an event of `household`, a household the stream does not follow yet, has let the
    /// caller in: decided without an audit record (nothing of it is read unless it has; then
    /// `refresh` decides again and records the read).
    async fn let_in(&self, household: HouseholdId, event_type: &str) -> Result<bool, AppError> {
        if !self.caseload || !naast_domain::access::may_let_in(event_type) {
            return Ok(false);
        }
        let calling = &self.calling;
        self.households
            .inspect(household, |state, _| {
                calling
                    .access(state, Action::Read(ReadKind::Timeline))
                    .is_ok()
            })
            .await
    }

    /// The signals of `household` the caller may see now; `None` when they may no longer see
    /// its timeline (the refusal is recorded).
    async fn visible(&self, household: HouseholdId) -> Result<Option<OpenSignals>, AppError> {
        let view = match self
            .households
            .recheck(&self.calling, household, Action::Read(ReadKind::Timeline))
            .await
        {
            Ok(access) => access.view,
            Err(AppError::Denied(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let (today, kinds) = (self.today, &self.kinds);
        self.households
            .inspect(household, |state, _| {
                Some(open_signals(
                    naast_domain::signals::visible_signals(state, today, &view),
                    kinds,
                ))
            })
            .await
    }

    /// Queues what changed in `household` since the caller last saw it.
    async fn refresh(&mut self, household: HouseholdId) -> Result<(), AppError> {
        let now = self.visible(household).await?;
        let before = self.watched.remove(&household).unwrap_or_default();
        let after = now.clone().unwrap_or_default();
        let day = c::date_string(self.today);
        let change = |kind: pb::SignalChange, signal: &naast_domain::signals::Signal| {
            pb::SubscribeSignalsResponse {
                household_id: household.to_string(),
                change: kind as i32,
                signal: Some(c::signal_to_proto(signal)),
                as_of_date: day.clone(),
            }
        };
        for (key, signal) in &before {
            if !after.contains_key(key) {
                self.pending
                    .push_back(change(pb::SignalChange::Cleared, signal));
            }
        }
        for (key, signal) in &after {
            if before.get(key) != Some(signal) {
                self.pending
                    .push_back(change(pb::SignalChange::Appeared, signal));
            }
        }
        if now.is_some() {
            self.watched.insert(household, after);
        }
        Ok(())
    }
}

fn open_signals(
    signals: Vec<naast_domain::signals::Signal>,
    kinds: &[naast_domain::signals::SignalKind],
) -> OpenSignals {
    signals
        .into_iter()
        .filter(|s| kinds.is_empty() || kinds.contains(&s.kind))
        .map(|s| (s.key(), s))
        .collect()
}

/// The next change of an open signal stream: a queued one, else what the next event of a
/// watched household or the turn of the day brings.
fn next_signal(source: &mut SignalSource) -> Next<'_, pb::SubscribeSignalsResponse> {
    Box::pin(async move {
        if let Some(change) = source.pending.pop_front() {
            return Step::Send(Ok(change));
        }
        if source.watched.is_empty() && !source.caseload {
            // Nothing left that the caller may see.
            return Step::Send(Err(Status::permission_denied(
                "stream ended: the household may not be seen any longer",
            )));
        }
        tokio::select! {
            event = source.events.next() => {
                let event = match event {
                    Ok(event) => event,
                    Err(e) => return Step::Send(Err(super::status::from_log_error(e))),
                };
                let Some(household) = HouseholdId::of_stream(&event.stream_id) else {
                    return Step::Skip;
                };
                if !source.watched.contains_key(&household) {
                    match source.let_in(household, &event.event_type).await {
                        Ok(true) => {}
                        Ok(false) => return Step::Skip,
                        Err(e) => return Step::Send(Err(from_app_error(e))),
                    }
                }
                if let Err(e) = source.refresh(household).await {
                    return Step::Send(Err(from_app_error(e)));
                }
            }
            _ = source.tick.tick() => {
                let today = naast_domain::calendar::dutch_today();
                if today == source.today {
                    return Step::Skip;
                }
                source.today = today;
                let households: Vec<HouseholdId> = source.watched.keys().copied().collect();
                for household in households {
                    if let Err(e) = source.refresh(household).await {
                        return Step::Send(Err(from_app_error(e)));
                    }
                }
            }
        }
        Step::Skip
    })
}

/// Longest a subscription waits for the read model to catch up with one event.
const PROJECTION_WAIT: Duration = Duration::from_secs(30);

#[tonic::async_trait]
impl pb::household_service_server::HouseholdService for HouseholdApi {
    async fn create_household(
        &self,
        request: Request<pb::CreateHouseholdRequest>,
    ) -> Answer<pb::CreateHouseholdResponse> {
        let (calling, r) = split(request)?;
        let id: HouseholdId = c::new_id("household_id", &r.household_id, r.options.as_ref())?;
        let result = self
            .execute(
                &calling,
                id,
                r.options,
                Command::RegisterHousehold {
                    name: r.name,
                    registered_by: registrant(&calling),
                },
            )
            .await?;
        Ok(Response::new(pb::CreateHouseholdResponse {
            result: Some(result),
            household_id: id.to_string(),
        }))
    }

    async fn get_household(
        &self,
        request: Request<pb::GetHouseholdRequest>,
    ) -> Answer<pb::GetHouseholdResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let as_of = c::optional_date("as_of_date", &r.as_of_date)?;
        if as_of.is_some() && r.as_of_revision.is_some() {
            return Err(invalid_argument(
                "as_of_revision",
                "give a day or a revision to look back to, not both",
            ));
        }
        self.reach(r.min_position).await?;
        let today = naast_domain::calendar::dutch_today();
        // Decided on the household as it is now: the family's consent today governs what of
        // its past anyone sees.
        let (_, (now, view, revision)) = self
            .households
            .guard_read(
                &calling,
                id,
                Action::Read(ReadKind::Household),
                Vec::new(),
                |state, revision, _| {
                    let view = timeline_view(&calling, state);
                    let revision = revision.filter(|_| state.registered);
                    let now = revision.map(|revision| {
                        household_to_proto(
                            id,
                            state,
                            revision,
                            view.as_ref(),
                            as_of.unwrap_or(today),
                        )
                    });
                    (now, view, revision)
                },
            )
            .await
            .map_err(from_app_error)?;
        let Some(current) = revision else {
            return Err(Status::not_found(format!("household {id} not found")));
        };
        // A day before today, or an earlier revision: the household as it stood then.
        let then = match (as_of.filter(|day| *day < today), r.as_of_revision) {
            (Some(day), _) => Some((
                self.households
                    .state_on(id, day, current)
                    .map_err(from_app_error)?,
                day,
            )),
            (None, Some(until)) if until > current => {
                return Err(invalid_argument(
                    "as_of_revision",
                    format!("the household is at revision {current}, not yet {until}"),
                ));
            }
            (None, Some(until)) => Some((
                (
                    self.households
                        .state_at(id, until)
                        .map_err(from_app_error)?,
                    Some(until),
                ),
                today,
            )),
            (None, None) => None,
        };
        let household = match then {
            None => now,
            Some(((state, revision), day)) => match revision.filter(|_| state.registered) {
                Some(revision) => {
                    Some(household_to_proto(id, &state, revision, view.as_ref(), day))
                }
                None => {
                    return Err(Status::not_found(format!(
                        "household {id} had no record yet then"
                    )));
                }
            },
        };
        let household =
            household.ok_or_else(|| Status::not_found(format!("household {id} not found")))?;
        Ok(Response::new(pb::GetHouseholdResponse {
            household: Some(household),
        }))
    }

    async fn create_member(
        &self,
        request: Request<pb::CreateMemberRequest>,
    ) -> Answer<pb::CreateMemberResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let member: MemberId = c::new_id("member_id", &r.member_id, r.options.as_ref())?;
        let details = c::member_details("details", r.details)?;
        let result = self
            .execute(
                &calling,
                id,
                r.options,
                Command::AddMember { member, details },
            )
            .await?;
        Ok(Response::new(pb::CreateMemberResponse {
            result: Some(result),
            member_id: member.to_string(),
        }))
    }

    async fn update_member(
        &self,
        request: Request<pb::UpdateMemberRequest>,
    ) -> Answer<pb::UpdateMemberResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let member = c::id("member_id", &r.member_id)?;
        let details = c::member_details("details", r.details)?;
        let result = self
            .execute(
                &calling,
                id,
                r.options,
                Command::UpdateMember { member, details },
            )
            .await?;
        Ok(Response::new(pb::UpdateMemberResponse {
            result: Some(result),
        }))
    }

    async fn delete_member(
        &self,
        request: Request<pb::DeleteMemberRequest>,
    ) -> Answer<pb::DeleteMemberResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let member = c::id("member_id", &r.member_id)?;
        let result = self
            .execute(
                &calling,
                id,
                r.options,
                Command::RemoveMember {
                    member,
                    reason: r.reason,
                },
            )
            .await?;
        Ok(Response::new(pb::DeleteMemberResponse {
            result: Some(result),
        }))
    }

    async fn create_contact(
        &self,
        request: Request<pb::CreateContactRequest>,
    ) -> Answer<pb::CreateContactResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let contact = c::new_id("contact_id", &r.contact_id, r.options.as_ref())?;
        let details = c::contact_details("details", r.details)?;
        let result = self
            .execute(
                &calling,
                id,
                r.options,
                Command::AddContact { contact, details },
            )
            .await?;
        Ok(Response::new(pb::CreateContactResponse {
            result: Some(result),
            contact_id: contact.to_string(),
        }))
    }

    async fn update_contact(
        &self,
        request: Request<pb::UpdateContactRequest>,
    ) -> Answer<pb::UpdateContactResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let contact = c::id("contact_id", &r.contact_id)?;
        let details = c::contact_details("details", r.details)?;
        let result = self
            .execute(
                &calling,
                id,
                r.options,
                Command::UpdateContact { contact, details },
            )
            .await?;
        Ok(Response::new(pb::UpdateContactResponse {
            result: Some(result),
        }))
    }

    async fn get_plan(&self, request: Request<pb::GetPlanRequest>) -> Answer<pb::GetPlanResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let plan_id: PlanId = c::id("plan_id", &r.plan_id)?;
        let plan = self
            .read_decided(
                &calling,
                id,
                ReadKind::Plans,
                vec![plan_id.to_string()],
                r.min_position,
                |state, _, view, today| {
                    let plan = state.plans.get(&plan_id)?;
                    let goals: Vec<_> = state
                        .goals
                        .iter()
                        .filter(|(gid, g)| {
                            g.plan == Some(plan_id)
                                && view.is_none_or(|v| v.goal(state, **gid, g, today))
                        })
                        .collect();
                    let agreements = state
                        .agreements
                        .iter()
                        .filter(|(_, a)| {
                            (a.terms.plan == Some(plan_id)
                                || a.terms
                                    .goals
                                    .iter()
                                    .any(|g| goals.iter().any(|(id, _)| *id == g)))
                                && view.is_none_or(|v| v.agreement(state, a, today))
                        })
                        .map(|(id, a)| agreement_to_proto(*id, a))
                        .collect();
                    Some(pb::GetPlanResponse {
                        plan: Some(plan_to_proto(plan_id, plan)),
                        goals: goals
                            .into_iter()
                            .map(|(id, g)| goal_to_proto(*id, g))
                            .collect(),
                        agreements,
                    })
                },
            )
            .await?
            .ok_or_else(|| {
                Status::not_found(format!("plan {plan_id} not found in household {id}"))
            })?;
        Ok(Response::new(plan))
    }

    async fn list_goals(
        &self,
        request: Request<pb::ListGoalsRequest>,
    ) -> Answer<pb::ListGoalsResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let domains = LifeDomain::list("life_domains", &r.life_domains)?;
        let owner: Option<MemberId> = c::optional_id("owner_member_id", &r.owner_member_id)?;
        let plan: Option<PlanId> = c::optional_id("plan_id", &r.plan_id)?;
        let mut statuses = Vec::new();
        for (i, status) in r.statuses.iter().enumerate() {
            match pb::GoalStatus::try_from(*status) {
                Ok(pb::GoalStatus::Unspecified) | Err(_) => {
                    return Err(invalid_argument(
                        format!("statuses[{i}]"),
                        format!("{status} is not a goal status"),
                    ));
                }
                Ok(s) => statuses.push(s),
            }
        }
        let size = list_page_size(r.page_size, 100)?;
        let offset = list_offset(&r.page_token)?;
        let goals: Vec<pb::Goal> = self
            .read_decided(
                &calling,
                id,
                ReadKind::Goals,
                Vec::new(),
                r.min_position,
                |state, _, view, today| {
                    state
                        .goals
                        .iter()
                        .filter(|(gid, g)| {
                            view.is_none_or(|v| v.goal(state, **gid, g, today))
                                && (domains.is_empty()
                                    || g.life_domains.iter().any(|d| domains.contains(d)))
                                && owner.is_none_or(|o| g.owner == o)
                                && plan.is_none_or(|p| g.plan == Some(p))
                                && (statuses.is_empty()
                                    || statuses.contains(&goal_status(g.status)))
                        })
                        .map(|(id, g)| goal_to_proto(*id, g))
                        .collect()
                },
            )
            .await?;
        let (goals, next_page_token) = page_of(goals, offset, size);
        Ok(Response::new(pb::ListGoalsResponse {
            goals,
            next_page_token,
        }))
    }

    async fn list_agreements(
        &self,
        request: Request<pb::ListAgreementsRequest>,
    ) -> Answer<pb::ListAgreementsResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let provider: Option<naast_domain::ids::ContactId> =
            c::optional_id("responsible_contact_id", &r.responsible_contact_id)?;
        let funding = FundingDomain::list("funding_domains", &r.funding_domains)?;
        let mut phases = Vec::new();
        for (i, phase) in r.phases.iter().enumerate() {
            match pb::AgreementPhase::try_from(*phase) {
                Ok(pb::AgreementPhase::Unspecified) | Err(_) => {
                    return Err(invalid_argument(
                        format!("phases[{i}]"),
                        format!("{phase} is not an agreement phase"),
                    ));
                }
                Ok(p) => phases.push(p),
            }
        }
        let as_of = c::optional_date("as_of_date", &r.as_of_date)?
            .unwrap_or_else(naast_domain::calendar::dutch_today);
        let size = list_page_size(r.page_size, 100)?;
        let offset = list_offset(&r.page_token)?;
        // Today and later days from the state the read is decided on, with what the caller may
        // see of it; a past day as it stood then (an agreement accepted later is still only
        // proposed on that day), from the events up to the decided revision.
        let past = as_of < naast_domain::calendar::dutch_today();
        let (current, visible, revision) = self
            .read_decided(
                &calling,
                id,
                ReadKind::Agreements,
                Vec::new(),
                r.min_position,
                |state, revision, view, today| {
                    let visible: Option<BTreeSet<AgreementId>> = view.map(|v| {
                        state
                            .agreements
                            .iter()
                            .filter(|(_, a)| v.agreement(state, a, today))
                            .map(|(aid, _)| *aid)
                            .collect()
                    });
                    let current: Vec<(AgreementId, Agreement)> = if past {
                        Vec::new()
                    } else {
                        state
                            .agreements
                            .iter()
                            .map(|(aid, a)| (*aid, a.clone()))
                            .collect()
                    };
                    (current, visible, revision)
                },
            )
            .await?;
        let agreements = match (past, revision) {
            (true, Some(revision)) => self
                .households
                .state_on(id, as_of, revision)
                .map_err(from_app_error)?
                .0
                .agreements
                .into_iter()
                .collect(),
            _ => current,
        };
        let agreements: Vec<pb::AgreementView> = agreements
            .iter()
            .map(|(id, a)| (id, a, agreement_phase(a.phase(as_of)), a.funding_on(as_of)))
            .filter(|(aid, a, phase, funded)| {
                visible.as_ref().is_none_or(|v| v.contains(*aid))
                    && provider.is_none_or(|p| a.terms.responsible == Some(p))
                    && (funding.is_empty() || funding.contains(funded))
                    && (phases.is_empty() || phases.contains(phase))
            })
            .map(|(id, a, phase, funded)| pb::AgreementView {
                agreement: Some(agreement_to_proto(*id, a)),
                phase: phase as i32,
                funding_domain: funded.to_proto(),
            })
            .collect();
        let (agreements, next_page_token) = page_of(agreements, offset, size);
        Ok(Response::new(pb::ListAgreementsResponse {
            agreements,
            next_page_token,
        }))
    }

    async fn delete_contact(
        &self,
        request: Request<pb::DeleteContactRequest>,
    ) -> Answer<pb::DeleteContactResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let contact = c::id("contact_id", &r.contact_id)?;
        let result = self
            .execute(
                &calling,
                id,
                r.options,
                Command::RemoveContact {
                    contact,
                    reason: r.reason,
                },
            )
            .await?;
        Ok(Response::new(pb::DeleteContactResponse {
            result: Some(result),
        }))
    }

    async fn create_goal(
        &self,
        request: Request<pb::CreateGoalRequest>,
    ) -> Answer<pb::CreateGoalResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let goal = c::new_id("goal_id", &r.goal_id, r.options.as_ref())?;
        let command = Command::SetGoal {
            goal,
            owner: c::id("owner_member_id", &r.owner_member_id)?,
            title: r.title,
            description: r.description,
            life_domains: LifeDomain::list("life_domains", &r.life_domains)?,
            plan: c::optional_id("plan_id", &r.plan_id)?,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::CreateGoalResponse {
            result: Some(result),
            goal_id: goal.to_string(),
        }))
    }

    async fn update_goal(
        &self,
        request: Request<pb::UpdateGoalRequest>,
    ) -> Answer<pb::UpdateGoalResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::UpdateGoal {
            goal: c::id("goal_id", &r.goal_id)?,
            title: r.title,
            description: r.description,
            life_domains: LifeDomain::list("life_domains", &r.life_domains)?,
            plan: c::optional_id("plan_id", &r.plan_id)?,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::UpdateGoalResponse {
            result: Some(result),
        }))
    }

    async fn note_goal_progress(
        &self,
        request: Request<pb::NoteGoalProgressRequest>,
    ) -> Answer<pb::NoteGoalProgressResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::NoteGoalProgress {
            goal: c::id("goal_id", &r.goal_id)?,
            on: c::date("date", &r.date)?,
            note: r.note,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::NoteGoalProgressResponse {
            result: Some(result),
        }))
    }

    async fn achieve_goal(
        &self,
        request: Request<pb::AchieveGoalRequest>,
    ) -> Answer<pb::AchieveGoalResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::AchieveGoal {
            goal: c::id("goal_id", &r.goal_id)?,
            on: c::date("date", &r.date)?,
            note: r.note,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::AchieveGoalResponse {
            result: Some(result),
        }))
    }

    async fn abandon_goal(
        &self,
        request: Request<pb::AbandonGoalRequest>,
    ) -> Answer<pb::AbandonGoalResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::AbandonGoal {
            goal: c::id("goal_id", &r.goal_id)?,
            on: c::date("date", &r.date)?,
            reason: r.reason,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::AbandonGoalResponse {
            result: Some(result),
        }))
    }

    async fn reopen_goal(
        &self,
        request: Request<pb::ReopenGoalRequest>,
    ) -> Answer<pb::ReopenGoalResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::ReopenGoal {
            goal: c::id("goal_id", &r.goal_id)?,
            reason: r.reason,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::ReopenGoalResponse {
            result: Some(result),
        }))
    }

    async fn propose_agreement(
        &self,
        request: Request<pb::ProposeAgreementRequest>,
    ) -> Answer<pb::ProposeAgreementResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let agreement = c::new_id("agreement_id", &r.agreement_id, r.options.as_ref())?;
        let terms = c::terms("terms", r.terms)?;
        let result = self
            .execute(
                &calling,
                id,
                r.options,
                Command::ProposeAgreement { agreement, terms },
            )
            .await?;
        Ok(Response::new(pb::ProposeAgreementResponse {
            result: Some(result),
            agreement_id: agreement.to_string(),
        }))
    }

    async fn accept_agreement(
        &self,
        request: Request<pb::AcceptAgreementRequest>,
    ) -> Answer<pb::AcceptAgreementResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::AcceptAgreement {
            agreement: c::id("agreement_id", &r.agreement_id)?,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::AcceptAgreementResponse {
            result: Some(result),
        }))
    }

    async fn reject_agreement(
        &self,
        request: Request<pb::RejectAgreementRequest>,
    ) -> Answer<pb::RejectAgreementResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::RejectAgreement {
            agreement: c::id("agreement_id", &r.agreement_id)?,
            reason: r.reason,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::RejectAgreementResponse {
            result: Some(result),
        }))
    }

    async fn amend_agreement(
        &self,
        request: Request<pb::AmendAgreementRequest>,
    ) -> Answer<pb::AmendAgreementResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::AmendAgreement {
            agreement: c::id("agreement_id", &r.agreement_id)?,
            terms: c::terms("terms", r.terms)?,
            reason: r.reason,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::AmendAgreementResponse {
            result: Some(result),
        }))
    }

    async fn end_agreement(
        &self,
        request: Request<pb::EndAgreementRequest>,
    ) -> Answer<pb::EndAgreementResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::EndAgreement {
            agreement: c::id("agreement_id", &r.agreement_id)?,
            on: c::date("date", &r.date)?,
            reason: r.reason,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::EndAgreementResponse {
            result: Some(result),
        }))
    }

    async fn report_agreement_not_delivered(
        &self,
        request: Request<pb::ReportAgreementNotDeliveredRequest>,
    ) -> Answer<pb::ReportAgreementNotDeliveredResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::ReportNotDelivered {
            agreement: c::id("agreement_id", &r.agreement_id)?,
            on: c::date("date", &r.date)?,
            description: r.description,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::ReportAgreementNotDeliveredResponse {
            result: Some(result),
        }))
    }

    async fn record_funding_transition(
        &self,
        request: Request<pb::RecordFundingTransitionRequest>,
    ) -> Answer<pb::RecordFundingTransitionResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::RecordFundingTransition {
            member: c::id("member_id", &r.member_id)?,
            from: FundingDomain::required("from_funding_domain", r.from_funding_domain)?,
            to: FundingDomain::required("to_funding_domain", r.to_funding_domain)?,
            on: c::date("date", &r.date)?,
            reason: r.reason,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::RecordFundingTransitionResponse {
            result: Some(result),
        }))
    }

    async fn create_note(
        &self,
        request: Request<pb::CreateNoteRequest>,
    ) -> Answer<pb::CreateNoteResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let note = c::new_id("note_id", &r.note_id, r.options.as_ref())?;
        let command = Command::AddNote {
            note,
            about: c::optional_id("about_member_id", &r.about_member_id)?,
            text: r.text,
            life_domains: LifeDomain::list("life_domains", &r.life_domains)?,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::CreateNoteResponse {
            result: Some(result),
            note_id: note.to_string(),
        }))
    }

    async fn create_plan(
        &self,
        request: Request<pb::CreatePlanRequest>,
    ) -> Answer<pb::CreatePlanResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let plan = c::new_id("plan_id", &r.plan_id, r.options.as_ref())?;
        let command = Command::DraftPlan {
            plan,
            kind: PlanKind::required("kind", r.kind)?,
            title: r.title,
            summary: r.summary,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::CreatePlanResponse {
            result: Some(result),
            plan_id: plan.to_string(),
        }))
    }

    async fn revise_plan(
        &self,
        request: Request<pb::RevisePlanRequest>,
    ) -> Answer<pb::RevisePlanResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::RevisePlan {
            plan: c::id("plan_id", &r.plan_id)?,
            title: r.title,
            summary: r.summary,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::RevisePlanResponse {
            result: Some(result),
        }))
    }

    async fn activate_plan(
        &self,
        request: Request<pb::ActivatePlanRequest>,
    ) -> Answer<pb::ActivatePlanResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::ActivatePlan {
            plan: c::id("plan_id", &r.plan_id)?,
            on: c::date("date", &r.date)?,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::ActivatePlanResponse {
            result: Some(result),
        }))
    }

    async fn evaluate_plan(
        &self,
        request: Request<pb::EvaluatePlanRequest>,
    ) -> Answer<pb::EvaluatePlanResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::EvaluatePlan {
            plan: c::id("plan_id", &r.plan_id)?,
            on: c::date("date", &r.date)?,
            evaluation: r.evaluation,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::EvaluatePlanResponse {
            result: Some(result),
        }))
    }

    async fn close_plan(
        &self,
        request: Request<pb::ClosePlanRequest>,
    ) -> Answer<pb::ClosePlanResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::ClosePlan {
            plan: c::id("plan_id", &r.plan_id)?,
            on: c::date("date", &r.date)?,
            reason: r.reason,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::ClosePlanResponse {
            result: Some(result),
        }))
    }

    async fn record_indication(
        &self,
        request: Request<pb::RecordIndicationRequest>,
    ) -> Answer<pb::RecordIndicationResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let indication = c::new_id("indication_id", &r.indication_id, r.options.as_ref())?;
        let command = Command::RecordIndication {
            indication,
            member: c::id("member_id", &r.member_id)?,
            kind: IndicationKind::required("kind", r.kind)?,
            care_profile: Some(r.care_profile).filter(|p| !p.is_empty()),
            valid_from: c::date("valid_from", &r.valid_from)?,
            valid_until: c::optional_date("valid_until", &r.valid_until)?,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::RecordIndicationResponse {
            result: Some(result),
            indication_id: indication.to_string(),
        }))
    }

    async fn change_support_phase(
        &self,
        request: Request<pb::ChangeSupportPhaseRequest>,
    ) -> Answer<pb::ChangeSupportPhaseResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::ChangeSupportPhase {
            phase: SupportPhase::required("phase", r.phase)?,
            hours_per_week: r.hours_per_week,
            on: c::date("date", &r.date)?,
            contact_every_days: r.contact_every_days,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::ChangeSupportPhaseResponse {
            result: Some(result),
        }))
    }

    async fn record_check_in(
        &self,
        request: Request<pb::RecordCheckInRequest>,
    ) -> Answer<pb::RecordCheckInResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let check_in = c::new_id("check_in_id", &r.check_in_id, r.options.as_ref())?;
        let member: MemberId = c::id("member_id", &r.member_id)?;
        let command = Command::RecordCheckIn {
            check_in,
            member,
            respondent: c::optional_id("respondent_member_id", &r.respondent_member_id)?
                .unwrap_or(member),
            on: c::date("date", &r.date)?,
            rating: small("rating", r.rating)?,
            note: r.note,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::RecordCheckInResponse {
            result: Some(result),
            check_in_id: check_in.to_string(),
        }))
    }

    async fn set_check_in_threshold(
        &self,
        request: Request<pb::SetCheckInThresholdRequest>,
    ) -> Answer<pb::SetCheckInThresholdResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::SetCheckInThreshold {
            threshold: small("threshold", r.threshold)?,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::SetCheckInThresholdResponse {
            result: Some(result),
        }))
    }

    async fn record_measurement(
        &self,
        request: Request<pb::RecordMeasurementRequest>,
    ) -> Answer<pb::RecordMeasurementResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let measurement = c::new_id("measurement_id", &r.measurement_id, r.options.as_ref())?;
        let member: MemberId = c::id("member_id", &r.member_id)?;
        let respondent = match (
            c::optional_id("respondent_member_id", &r.respondent_member_id)?,
            c::optional_id("respondent_contact_id", &r.respondent_contact_id)?,
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid_argument(
                    "respondent_contact_id",
                    "name one respondent: a member or a contact",
                ));
            }
            (Some(by), None) => naast_domain::Party::Member(by),
            (None, Some(by)) => naast_domain::Party::Contact(by),
            (None, None) => naast_domain::Party::Member(member),
        };
        if r.instrument_key.is_empty() {
            return Err(invalid_argument("instrument_key", "must be set"));
        }
        let instrument = self
            .evaluation
            .instrument("instrument_key", &r.instrument_key, r.instrument_version)
            .await
            .map_err(from_app_error)?;
        let version = instrument.version;
        let answers = r
            .answers
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                Ok(naast_domain::measure::Answer {
                    item: a.item,
                    value: u8::try_from(a.value).map_err(|_| {
                        invalid_argument(
                            format!("answers[{i}].value"),
                            format!("{} is off every scale (at most 100)", a.value),
                        )
                    })?,
                    wants_change: a.wants_change,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let command = Command::RecordMeasurement {
            measurement,
            member,
            respondent,
            instrument,
            moment: naast_domain::vocab::MeasurementMoment::optional("moment", r.moment)?,
            on: c::date("date", &r.date)?,
            answers,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::RecordMeasurementResponse {
            result: Some(result),
            measurement_id: measurement.to_string(),
            instrument_version: version,
        }))
    }

    async fn set_family_type(
        &self,
        request: Request<pb::SetFamilyTypeRequest>,
    ) -> Answer<pb::SetFamilyTypeResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::SetFamilyType {
            family_type: naast_domain::vocab::FamilyType::optional("family_type", r.family_type)?,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::SetFamilyTypeResponse {
            result: Some(result),
        }))
    }

    async fn object_to_evaluation(
        &self,
        request: Request<pb::ObjectToEvaluationRequest>,
    ) -> Answer<pb::ObjectToEvaluationResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::ObjectToEvaluation { objects: r.objects };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::ObjectToEvaluationResponse {
            result: Some(result),
        }))
    }

    async fn list_signals(
        &self,
        request: Request<pb::ListSignalsRequest>,
    ) -> Answer<pb::ListSignalsResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let kinds = naast_domain::signals::SignalKind::list("kinds", &r.kinds)?;
        let as_of = c::optional_date("as_of_date", &r.as_of_date)?
            .unwrap_or_else(naast_domain::calendar::dutch_today);
        // A day before today is looked at with the household as it stood then; today and
        // later days with the state the read is decided on.
        let past = as_of < naast_domain::calendar::dutch_today();
        let (signals, view, revision) = self
            .read_decided(
                &calling,
                id,
                ReadKind::Timeline,
                Vec::new(),
                r.min_position,
                |state, revision, view, _| {
                    let view = view.cloned().unwrap_or_else(View::everything);
                    let signals = (!past)
                        .then(|| naast_domain::signals::visible_signals(state, as_of, &view));
                    (signals, view, revision)
                },
            )
            .await?;
        let signals = match (signals, revision) {
            (Some(signals), _) => signals,
            (None, Some(revision)) => {
                let (then, _) = self
                    .households
                    .state_on(id, as_of, revision)
                    .map_err(from_app_error)?;
                naast_domain::signals::visible_signals(&then, as_of, &view)
            }
            (None, None) => Vec::new(),
        };
        Ok(Response::new(pb::ListSignalsResponse {
            signals: signals
                .iter()
                .filter(|s| kinds.is_empty() || kinds.contains(&s.kind))
                .map(c::signal_to_proto)
                .collect(),
            as_of_date: c::date_string(as_of),
        }))
    }

    async fn list_changes(
        &self,
        request: Request<pb::ListChangesRequest>,
    ) -> Answer<pb::ListChangesResponse> {
        use crate::households::Moment;
        use naast_domain::event::Subject;
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let moment = |date_field: &str, date: &str, revision: Option<u64>| match (
            c::optional_date(date_field, date)?,
            revision,
        ) {
            (Some(_), Some(_)) => Err(invalid_argument(
                date_field,
                "give a day or a revision for a moment, not both",
            )),
            (Some(day), None) => Ok(Some(Moment::Day(day))),
            (None, Some(revision)) => Ok(Some(Moment::Revision(revision))),
            (None, None) => Ok(None),
        };
        let from = moment("from_date", &r.from_date, r.from_revision)?.ok_or_else(|| {
            invalid_argument(
                "from_date",
                "give the first moment: a day (from_date) or a revision (from_revision)",
            )
        })?;
        let to = moment("to_date", &r.to_date, r.to_revision)?;
        match (from, to) {
            (Moment::Day(_), Some(Moment::Revision(_))) => {
                return Err(invalid_argument(
                    "to_revision",
                    "compare two days or two revisions: the first moment is a day",
                ));
            }
            (Moment::Revision(_), Some(Moment::Day(_))) => {
                return Err(invalid_argument(
                    "to_date",
                    "compare two days or two revisions: the first moment is a revision",
                ));
            }
            (Moment::Day(a), Some(Moment::Day(b))) if a > b => {
                return Err(invalid_argument(
                    "to_date",
                    "the second day is before the first",
                ));
            }
            (Moment::Revision(a), Some(Moment::Revision(b))) if a > b => {
                return Err(invalid_argument(
                    "to_revision",
                    "the second revision is before the first",
                ));
            }
            _ => {}
        }
        let (view, revision, today) = self
            .read_decided(
                &calling,
                id,
                ReadKind::Timeline,
                Vec::new(),
                r.min_position,
                |state, revision, view, today| {
                    let view = view.cloned().unwrap_or_else(View::everything);
                    (view, revision.filter(|_| state.registered), today)
                },
            )
            .await?;
        let Some(current) = revision else {
            return Err(Status::not_found(format!("household {id} not found")));
        };
        for (field, moment) in [("from_revision", Some(from)), ("to_revision", to)] {
            if let Some(Moment::Revision(wanted)) = moment
                && wanted > current
            {
                return Err(invalid_argument(
                    field,
                    format!("the household is at revision {current}, not yet {wanted}"),
                ));
            }
        }
        let between = self
            .households
            .between(id, from, to.unwrap_or(Moment::Revision(current)), current)
            .map_err(from_app_error)?;
        // Each subject in the order first touched, with the events that touched it.
        let mut touched: Vec<(Subject, Vec<&crate::households::Step>)> = Vec::new();
        for step in &between.events {
            let Some(subject) = step.event.subject() else {
                continue;
            };
            match touched.iter_mut().find(|(s, _)| *s == subject) {
                Some((_, steps)) => steps.push(step),
                None => touched.push((subject, vec![step])),
            }
        }
        let changes = touched
            .into_iter()
            .filter(|(subject, _)| {
                view.subject(&between.before, *subject, today)
                    && view.subject(&between.after, *subject, today)
            })
            .filter_map(|(subject, steps)| {
                let change =
                    naast_domain::changes::change(&between.before, &between.after, subject)?;
                Some(change_to_proto(change, &steps))
            })
            .collect();
        Ok(Response::new(pb::ListChangesResponse {
            from_revision: between.before_revision,
            to_revision: between.after_revision.unwrap_or_default(),
            changes,
        }))
    }

    async fn list_caseload(
        &self,
        request: Request<pb::ListCaseloadRequest>,
    ) -> Answer<pb::ListCaseloadResponse> {
        let (calling, r) = split(request)?;
        let as_of = c::optional_date("as_of_date", &r.as_of_date)?
            .unwrap_or_else(naast_domain::calendar::dutch_today);
        if r.min_position > 0 {
            self.reach(r.min_position).await?;
            self.projections
                .wait_for(r.min_position, MAX_WAIT)
                .await
                .map_err(|e| Status::deadline_exceeded(e.to_string()))?;
        }
        let mut entries = self
            .read_caseload(&calling, |state, access| {
                naast_domain::caseload::entry(state, as_of, &access.view)
            })
            .await?;
        entries.sort_by(|(_, a), (_, b)| {
            let due = |e: &naast_domain::caseload::CaseloadEntry| {
                e.signals.first().map_or(time::Date::MAX, |s| s.due)
            };
            (due(a), &a.name).cmp(&(due(b), &b.name))
        });
        let optional = |d: Option<time::Date>| d.map(c::date_string).unwrap_or_default();
        Ok(Response::new(pb::ListCaseloadResponse {
            entries: entries
                .into_iter()
                .map(|(id, e)| pb::CaseloadEntry {
                    household_id: id.to_string(),
                    name: e.name,
                    phase: e.phase.map_or(0, Vocabulary::to_proto),
                    hours_per_week: e.hours_per_week,
                    minutes_per_week_4_weeks: e.minutes_per_week_4,
                    minutes_per_week_12_weeks: e.minutes_per_week_12,
                    last_contact_date: optional(e.last_contact),
                    signals: e.signals.iter().map(c::signal_to_proto).collect(),
                    next_review_date: optional(e.next_review),
                    next_expiry_date: optional(e.next_expiry),
                })
                .collect(),
            as_of_date: c::date_string(as_of),
        }))
    }

    async fn create_logbook_entry(
        &self,
        request: Request<pb::CreateLogbookEntryRequest>,
    ) -> Answer<pb::CreateLogbookEntryResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let entry = c::new_id("entry_id", &r.entry_id, r.options.as_ref())?;
        let command = Command::AddLogbookEntry {
            entry,
            supporter: c::id("supporter_contact_id", &r.supporter_contact_id)?,
            on: c::date("date", &r.date)?,
            minutes: r.minutes,
            mode: ContactMode::required("contact_mode", r.contact_mode)?,
            tasks: SupporterTask::list("tasks", &r.tasks)?,
            life_domains: LifeDomain::list("life_domains", &r.life_domains)?,
            summary: r.summary,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::CreateLogbookEntryResponse {
            result: Some(result),
            entry_id: entry.to_string(),
        }))
    }

    type SubscribeTimelineStream = TimelineStream;
    type SubscribeSignalsStream = SignalStream;

    async fn subscribe_signals(
        &self,
        request: Request<pb::SubscribeSignalsRequest>,
    ) -> Answer<Self::SubscribeSignalsStream> {
        let (calling, r) = split(request)?;
        let permit = super::forward::permit(&calling)?;
        let kinds = naast_domain::signals::SignalKind::list("kinds", &r.kinds)?;
        let today = naast_domain::calendar::dutch_today();
        // Events from here on are looked at: none between the first look and the stream.
        let events = self
            .households
            .log()
            .subscribe_all(self.households.log().head());
        let caseload = r.household_id.is_empty();
        let opened: Vec<(HouseholdId, OpenSignals)> = if caseload {
            self.read_caseload(&calling, |state, access| {
                open_signals(
                    naast_domain::signals::visible_signals(state, today, &access.view),
                    &kinds,
                )
            })
            .await?
        } else {
            let id = household(&r.household_id)?;
            let (_, (open, revision)) = self
                .households
                .guard_read(
                    &calling,
                    id,
                    Action::Read(ReadKind::Timeline),
                    Vec::new(),
                    |state, revision, access| {
                        (
                            open_signals(
                                naast_domain::signals::visible_signals(state, today, &access.view),
                                &kinds,
                            ),
                            revision,
                        )
                    },
                )
                .await
                .map_err(from_app_error)?;
            if revision.is_none() {
                return Err(Status::not_found(format!("household {id} not found")));
            }
            vec![(id, open)]
        };
        let day = c::date_string(today);
        let pending = opened
            .iter()
            .flat_map(|(id, open)| {
                open.values().map(|signal| pb::SubscribeSignalsResponse {
                    household_id: id.to_string(),
                    change: pb::SignalChange::Appeared as i32,
                    signal: Some(c::signal_to_proto(signal)),
                    as_of_date: day.clone(),
                })
            })
            .collect();
        let mut tick = tokio::time::interval(DAY_TURN_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let expiry = calling.expiry();
        let source = SignalSource {
            events,
            households: self.households.clone(),
            calling,
            kinds,
            today,
            caseload,
            watched: opened.into_iter().collect(),
            pending,
            tick,
        };
        let stream = forward(source, next_signal, self.shutdown.clone(), expiry, permit);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn subscribe_timeline(
        &self,
        request: Request<pb::SubscribeTimelineRequest>,
    ) -> Answer<Self::SubscribeTimelineStream> {
        let (calling, r) = split(request)?;
        let permit = super::forward::permit(&calling)?;
        let id = household(&r.household_id)?;
        let (_, last) = self
            .households
            .guard_read(
                &calling,
                id,
                Action::Read(ReadKind::Timeline),
                Vec::new(),
                |_, revision, _| revision,
            )
            .await
            .map_err(from_app_error)?;
        let log = self.households.log().clone();
        let stream = id.stream_id();
        let Some(last) = last else {
            return Err(Status::not_found(format!("household {id} not found")));
        };
        let from = r.start_revision.unwrap_or(last + 1);
        let events = log
            .subscribe_stream(&stream, from)
            .map_err(super::status::from_log_error)?;
        /// The household's event subscription and where its entries are.
        struct Source {
            events: Subscription,
            projections: Projections,
            households: Households,
            calling: Calling,
            household: HouseholdId,
        }
        // Each event of the stream becomes an entry once the read model has it; an event the
        // read model left out (unreadable) is skipped. Before each entry the caller's access is
        // checked again: a revoked or expired grant ends the stream at once, and what the
        // caller may see is what the grant shows now.
        fn next(source: &mut Source) -> Next<'_, pb::SubscribeTimelineResponse> {
            Box::pin(async move {
                let event = match source.events.next().await {
                    Ok(event) => event,
                    Err(e) => return Step::Send(Err(super::status::from_log_error(e))),
                };
                let behind = source
                    .households
                    .log()
                    .head()
                    .saturating_sub(event.position + 1);
                metrics::histogram!("naast_subscription_lag_events", "stream" => "timeline")
                    .record(behind as f64);
                let view = match source
                    .households
                    .recheck(
                        &source.calling,
                        source.household,
                        Action::Read(ReadKind::Timeline),
                    )
                    .await
                {
                    Ok(access) => access.view,
                    Err(e) => return Step::Send(Err(from_app_error(e))),
                };
                if let Err(e) = source
                    .projections
                    .wait_for(event.position, PROJECTION_WAIT)
                    .await
                {
                    return Step::Send(Err(Status::unavailable(e.to_string())));
                }
                match source.projections.entry_of(&event) {
                    Ok(Some(entry)) if view.entry(&entry.entry) => {
                        Step::Send(Ok(pb::SubscribeTimelineResponse {
                            entry: Some(entry_to_proto(&entry)),
                        }))
                    }
                    Ok(_) => Step::Skip,
                    Err(e) => Step::Send(Err(projection_error(e))),
                }
            })
        }
        let expiry = calling.expiry();
        let source = Source {
            events,
            projections: self.projections.clone(),
            households: self.households.clone(),
            calling,
            household: id,
        };
        let stream = forward(source, next, self.shutdown.clone(), expiry, permit);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_timeline_entries(
        &self,
        request: Request<pb::ListTimelineEntriesRequest>,
    ) -> Answer<pb::ListTimelineEntriesResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let filter = TimelineFilter::from_request(&r)?;
        let page_size = match usize::try_from(r.page_size) {
            Ok(0) => DEFAULT_TIMELINE_PAGE,
            Ok(n) if n <= MAX_TIMELINE_PAGE => n,
            _ => {
                return Err(invalid_argument(
                    "page_size",
                    format!("{} is not between 0 and {MAX_TIMELINE_PAGE}", r.page_size),
                ));
            }
        };
        let from = match r.page_token.as_str() {
            "" => filter
                .start
                .map_or(TimelinePosition::START, TimelinePosition::day),
            token => TimelinePosition::parse(token).ok_or_else(|| {
                invalid_argument("page_token", "is not a token of a previous page")
            })?,
        };
        // Decided on the household's state at a revision; entries past it are not shown (a
        // revocation, or a note written after it, a moment later changes nothing of this read).
        let (view, revision) = self
            .read_decided(
                &calling,
                id,
                ReadKind::Timeline,
                Vec::new(),
                r.min_position,
                |_, revision, view, _| (view.cloned(), revision),
            )
            .await?;
        let Some(revision) = revision else {
            return Err(Status::not_found(format!("household {id} not found")));
        };
        self.timeline_reaches(id, revision).await?;
        let (stored, next) = self
            .projections
            .timeline(
                id,
                from,
                filter.end,
                |e| {
                    e.revision <= revision
                        && view.as_ref().is_none_or(|v| v.entry(&e.entry))
                        && filter.admits(&e.entry)
                },
                page_size,
            )
            .map_err(projection_error)?;
        let entries = stored.iter().map(entry_to_proto).collect();
        let next_page_token = next.map(TimelinePosition::token).unwrap_or_default();
        Ok(Response::new(pb::ListTimelineEntriesResponse {
            entries,
            next_page_token,
        }))
    }
}

/// Which timeline entries a request wants.
struct TimelineFilter {
    member: Option<MemberId>,
    life_domains: Vec<LifeDomain>,
    funding_domains: Vec<FundingDomain>,
    kinds: Vec<i32>,
    start: Option<time::Date>,
    end: Option<time::Date>,
}

impl TimelineFilter {
    fn from_request(r: &pb::ListTimelineEntriesRequest) -> Result<Self, Status> {
        for (i, kind) in r.kinds.iter().enumerate() {
            match pb::TimelineEntryKind::try_from(*kind) {
                Ok(pb::TimelineEntryKind::Unspecified) | Err(_) => {
                    return Err(invalid_argument(
                        format!("kinds[{i}]"),
                        format!("{kind} is not a timeline entry kind"),
                    ));
                }
                Ok(_) => {}
            }
        }
        let filter = Self {
            member: c::optional_id("member_id", &r.member_id)?,
            life_domains: LifeDomain::list("life_domains", &r.life_domains)?,
            funding_domains: FundingDomain::list("funding_domains", &r.funding_domains)?,
            kinds: r.kinds.clone(),
            start: c::optional_date("start_date", &r.start_date)?,
            end: c::optional_date("end_date", &r.end_date)?,
        };
        if let (Some(start), Some(end)) = (filter.start, filter.end)
            && end < start
        {
            return Err(invalid_argument(
                "end_date",
                format!("{end} is before start_date {start}"),
            ));
        }
        Ok(filter)
    }

    fn admits(&self, entry: &TimelineEntry) -> bool {
        self.member.is_none_or(|m| entry.members.contains(&m))
            && (self.life_domains.is_empty()
                || entry
                    .life_domains
                    .iter()
                    .any(|d| self.life_domains.contains(d)))
            && (self.funding_domains.is_empty()
                || entry
                    .funding_domains
                    .iter()
                    .any(|d| self.funding_domains.contains(d)))
            && (self.kinds.is_empty()
                || self
                    .kinds
                    .contains(&(c::entry_kind_to_proto(entry.kind) as i32)))
            && self.start.is_none_or(|s| entry.date >= s)
            && self.end.is_none_or(|e| entry.date <= e)
    }
}

fn entry_to_proto(stored: &StoredEntry) -> pb::TimelineEntry {
    let entry = &stored.entry;
    pb::TimelineEntry {
        position: stored.position,
        revision: stored.revision,
        kind: c::entry_kind_to_proto(entry.kind) as i32,
        date: c::date_string(entry.date),
        summary: entry.summary.clone(),
        member_ids: entry.members.iter().map(|m| m.to_string()).collect(),
        life_domains: entry.life_domains.iter().map(|d| d.to_proto()).collect(),
        funding_domains: entry.funding_domains.iter().map(|d| d.to_proto()).collect(),
        event_type: stored.event_type.clone(),
        recorded_at: Some(c::timestamp(stored.recorded_at_micros)),
        actor: stored.actor.clone().unwrap_or_default(),
    }
}

fn projection_error(e: naast_projections::Error) -> Status {
    tracing::error!(error = %e, "read model failure");
    Status::internal("the timeline cannot be read right now; the operators have been alerted")
}
