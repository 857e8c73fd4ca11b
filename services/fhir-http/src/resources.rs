//! Which FHIR resources of a household a caller may see: each resource type answers to one of
//! the access decisions the gRPC reads make (the household, goals, agreements, plans, consent),
//! and what a grant shows (life and funding domains, the agreements a provider is party to) is
//! applied per resource, exactly as the gRPC views apply it.

use fhir_sdk::r4b::resources::Resource;
use naast_app::auth::caller::Calling;
use naast_domain::Household;
use naast_domain::access::{Access, Action, Denied, ReadKind, View};
use naast_domain::ids::{
    AgreementId, GoalId, GrantId, HouseholdId, IndicationId, MemberId, PlanId,
};
use naast_domain::vocab::MemberRole;
use naast_fhir::{
    MapError, agreements, consent, goals, household, indications, members, network, plans, tasks,
};
use time::Date;
use uuid::Uuid;

/// The household-held resource types the facade serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Clients.
    Patient,
    /// Relatives and legal representatives.
    RelatedPerson,
    /// The household.
    Group,
    /// The household's network.
    CareTeam,
    /// Goals.
    Goal,
    /// Plans and agreements.
    CarePlan,
    /// Indications and decisions.
    Coverage,
    /// Consent grants.
    Consent,
    /// The answer to each agreement's proposal.
    Task,
    /// Notes and logbook entries (read off the household's events, not its state).
    Communication,
    /// Who recorded each version (read off the commands' stamps in the log).
    Provenance,
}

impl Kind {
    /// Every kind, in the order a household's resources are listed.
    pub const ALL: [Kind; 9] = [
        Kind::Group,
        Kind::Patient,
        Kind::RelatedPerson,
        Kind::CareTeam,
        Kind::CarePlan,
        Kind::Goal,
        Kind::Coverage,
        Kind::Task,
        Kind::Consent,
    ];

    /// The kind named `name` (a FHIR resource type), if the facade serves it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain([Kind::Communication, Kind::Provenance])
            .find(|k| k.name() == name)
    }

    /// Its FHIR resource type.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Patient => "Patient",
            Kind::RelatedPerson => "RelatedPerson",
            Kind::Group => "Group",
            Kind::CareTeam => "CareTeam",
            Kind::Goal => "Goal",
            Kind::CarePlan => "CarePlan",
            Kind::Coverage => "Coverage",
            Kind::Consent => "Consent",
            Kind::Task => "Task",
            Kind::Communication => "Communication",
            Kind::Provenance => "Provenance",
        }
    }

    /// The access a read of this kind asks for (and is recorded under). A plan read as a
    /// `CarePlan` asks for plans besides.
    pub fn action(self) -> Action {
        match self {
            Kind::Patient | Kind::RelatedPerson | Kind::Group | Kind::CareTeam => {
                Action::Read(ReadKind::Household)
            }
            Kind::Goal => Action::Read(ReadKind::Goals),
            Kind::CarePlan | Kind::Task => Action::Read(ReadKind::Agreements),
            Kind::Coverage => Action::Read(ReadKind::Plans),
            Kind::Consent => Action::Own,
            Kind::Communication => Action::Read(ReadKind::Timeline),
            // Asked on the resource whose provenance is read.
            Kind::Provenance => Action::Read(ReadKind::Timeline),
        }
    }
}

/// What one caller may see of one household's state: each kind's decision.
#[derive(Clone)]
pub struct Sight {
    /// What the caller sees of the timeline (`None`: nothing).
    pub timeline: Option<View>,
    household: bool,
    goals: Option<View>,
    agreements: Option<View>,
    plans: bool,
    consents: bool,
}

impl Sight {
    /// `calling`'s sight of `state` today.
    pub fn of(calling: &Calling, state: &Household) -> Self {
        Self::deciding(|action| calling.access(state, action))
    }

    /// What the family's grants to the PGO platform (`issuer`, `client_id`) let naast send it
    /// of `state` on `today`, no member acting through it (a push).
    pub fn of_platform(state: &Household, issuer: &str, client_id: &str, today: Date) -> Self {
        Self::deciding(|action| {
            naast_domain::access::authorize_platform(state, issuer, client_id, action, today)
        })
    }

    /// The sight `decide` allows, one access decision per kind of read.
    fn deciding(decide: impl Fn(Action) -> Result<Access, Denied>) -> Self {
        let view = |kind| decide(Action::Read(kind)).ok().map(|a| a.view);
        Self {
            timeline: view(ReadKind::Timeline),
            household: decide(Action::Read(ReadKind::Household)).is_ok(),
            goals: view(ReadKind::Goals),
            agreements: view(ReadKind::Agreements),
            plans: view(ReadKind::Plans).is_some_and(|v| v.plans()),
            consents: decide(Action::Own).is_ok(),
        }
    }

    /// Whether nothing at all may be seen.
    pub fn is_blind(&self) -> bool {
        self.timeline.is_none()
            && !self.household
            && self.goals.is_none()
            && self.agreements.is_none()
            && !self.plans
            && !self.consents
    }
}

/// Why one resource is not shown.
pub enum Unseen {
    /// The household holds no such resource.
    Missing,
    /// It does, but the caller may not see it.
    Denied(Denied),
    /// It could not be mapped.
    Map(MapError),
}

impl From<MapError> for Unseen {
    fn from(e: MapError) -> Self {
        Unseen::Map(e)
    }
}

fn denied(what: &str) -> Unseen {
    Unseen::Denied(Denied::new(format!(
        "your access to this household does not show this {what}"
    )))
}

/// The resource `kind`/`id` of `household` as `sight` allows it, mapped from `state`.
pub fn one(
    household: HouseholdId,
    state: &Household,
    kind: Kind,
    id: Uuid,
    sight: &Sight,
    today: time::Date,
) -> Result<Resource, Unseen> {
    let need = |allowed: bool, what: &str| if allowed { Ok(()) } else { Err(denied(what)) };
    match kind {
        Kind::Patient | Kind::RelatedPerson => {
            let member = state.members.get(&MemberId(id)).ok_or(Unseen::Missing)?;
            need(sight.household, "member")?;
            match (kind, member.details.role) {
                (Kind::Patient, MemberRole::Client) => {
                    Ok(members::patient(MemberId(id), member)?.into())
                }
                (Kind::RelatedPerson, role) if role != MemberRole::Client => {
                    let client = members::first_client(state).ok_or(Unseen::Missing)?;
                    Ok(members::related_person(MemberId(id), member, client)?.into())
                }
                _ => Err(Unseen::Missing),
            }
        }
        Kind::Group | Kind::CareTeam => {
            if id != household.0 {
                return Err(Unseen::Missing);
            }
            need(sight.household, "household")?;
            Ok(match kind {
                Kind::Group => household::group(household, state)?.into(),
                _ => network::care_team(household, state)?.into(),
            })
        }
        Kind::Goal => {
            let goal = state.goals.get(&GoalId(id)).ok_or(Unseen::Missing)?;
            let visible = sight
                .goals
                .as_ref()
                .is_some_and(|v| v.goal(state, GoalId(id), goal, today));
            need(visible, "goal")?;
            Ok(goals::goal(household, state, GoalId(id), goal)?.into())
        }
        Kind::CarePlan => {
            if let Some(plan) = state.plans.get(&PlanId(id)) {
                need(sight.plans, "plan")?;
                return Ok(plans::care_plan(household, state, PlanId(id), plan)?.into());
            }
            let agreement = state
                .agreements
                .get(&AgreementId(id))
                .ok_or(Unseen::Missing)?;
            let visible = sight
                .agreements
                .as_ref()
                .is_some_and(|v| v.agreement(state, agreement, today));
            need(visible, "agreement")?;
            Ok(agreements::care_plan(household, state, AgreementId(id), agreement, today)?.into())
        }
        Kind::Coverage => {
            let indication = state
                .indications
                .get(&IndicationId(id))
                .ok_or(Unseen::Missing)?;
            need(sight.plans, "indication")?;
            Ok(indications::coverage(household, state, IndicationId(id), indication)?.into())
        }
        Kind::Task => {
            let agreement = state
                .agreements
                .get(&AgreementId(id))
                .ok_or(Unseen::Missing)?;
            let visible = sight
                .agreements
                .as_ref()
                .is_some_and(|v| v.agreement(state, agreement, today));
            need(visible, "agreement")?;
            Ok(tasks::task(household, state, AgreementId(id), agreement)?.into())
        }
        // Not in a household's state: see `crate::events`.
        Kind::Communication | Kind::Provenance => Err(Unseen::Missing),
        Kind::Consent => {
            let grant = state.grants.get(&GrantId(id)).ok_or(Unseen::Missing)?;
            need(sight.consents, "consent")?;
            Ok(consent::consent(household, state, GrantId(id), grant, today)?.into())
        }
    }
}

/// Every resource of `household` of the kinds in `kinds` that `sight` allows, in the order of
/// [`Kind::ALL`] and then by id, each with its kind and id.
pub fn visible(
    household: HouseholdId,
    state: &Household,
    kinds: &[Kind],
    sight: &Sight,
    today: time::Date,
) -> Result<Vec<(Kind, Uuid, Resource)>, MapError> {
    let mut out = Vec::new();
    for kind in Kind::ALL.into_iter().filter(|k| kinds.contains(k)) {
        let ids: Vec<Uuid> = match kind {
            Kind::Patient | Kind::RelatedPerson => state.members.keys().map(|m| m.0).collect(),
            Kind::Group | Kind::CareTeam => vec![household.0],
            Kind::Goal => state.goals.keys().map(|g| g.0).collect(),
            Kind::CarePlan => {
                let mut ids: Vec<Uuid> = state.plans.keys().map(|p| p.0).collect();
                ids.extend(state.agreements.keys().map(|a| a.0));
                ids.sort_unstable();
                ids
            }
            Kind::Coverage => state.indications.keys().map(|i| i.0).collect(),
            Kind::Consent => state.grants.keys().map(|g| g.0).collect(),
            Kind::Task => state.agreements.keys().map(|a| a.0).collect(),
            Kind::Communication | Kind::Provenance => Vec::new(),
        };
        let mut ids = ids;
        ids.sort_unstable();
        for id in ids {
            match one(household, state, kind, id, sight, today) {
                Ok(resource) => out.push((kind, id, resource)),
                Err(Unseen::Map(e)) => return Err(e),
                Err(Unseen::Missing | Unseen::Denied(_)) => {}
            }
        }
    }
    Ok(out)
}
