//! Who may do what in a household: the family's consent, applied to a caller.
//!
//! - **Owners** are the identity that registered the household and every member with the role
//!   client or legal representative who is linked to an identity. Owners may do everything, and
//!   only owners manage members, linked identities and consent.
//! - **Grantees** act through consent grants that hold today: grants to them as a person, to
//!   their organisation, or (for a PGO platform) to the platform.
//! - **Parties**: a contact linked to a professional's identity or organisation makes that
//!   professional a party to the agreements naming the contact. A party sees those agreements
//!   and the goals they serve, and may accept or reject them — nothing else unless granted more.
//! - A **PGO platform** acts for the member its token names: it may do what both that member and
//!   the platform's own grant allow, and sees what both may see.
//! - **Evaluators** see aggregate figures only, and **administrators** run the service: neither
//!   reads any household's data.
//!
//! A household that does not exist and one the caller may not see are refused alike, so a
//! refusal tells nothing about which households exist.

use crate::event::{Grantee, Identity, Party, Subject};
use crate::ids::{AgreementId, ContactId, GoalId, GrantId};
use crate::state::{Agreement, Goal, Grant, Household};
use crate::timeline::TimelineEntry;
use crate::vocab::{AccessScope, FundingDomain, LifeDomain, MemberRole, PrincipalRole};
use std::collections::BTreeSet;
use time::Date;

/// The caller, as their verified access token describes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Issuer and subject.
    pub identity: Identity,
    /// What kind of caller.
    pub role: PrincipalRole,
    /// Display name, when the token gives one.
    pub name: Option<String>,
    /// The organisation a professional or supporter acts for.
    pub organisation: Option<String>,
    /// The OAuth client the token was issued to.
    pub client_id: Option<String>,
    /// For a PGO platform: the member it acts for (same issuer).
    pub acting_for: Option<Identity>,
}

impl Principal {
    /// The organisation this caller acts for, as far as the access policy counts it: only a
    /// professional's or a supporter's claim does; on any other token it is ignored, everywhere
    /// (consent decisions, listing one's grants, asking for access in an organisation's name).
    pub fn organisation_claim(&self) -> Option<&str> {
        match self.role {
            PrincipalRole::Professional | PrincipalRole::Supporter => self.organisation.as_deref(),
            _ => None,
        }
    }

    /// Who a grant or request for this caller is for: the platform for a PGO, else the person.
    pub fn as_grantee(&self) -> Grantee {
        match (&self.role, &self.client_id) {
            (PrincipalRole::Platform, Some(client_id)) => Grantee::Platform {
                issuer: self.identity.issuer.clone(),
                client_id: client_id.clone(),
            },
            _ => Grantee::Person {
                identity: self.identity.clone(),
            },
        }
    }
}

/// What a caller wants to do in a household.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Register it.
    Register,
    /// Manage members, linked identities and consent.
    Own,
    /// A write one of the scopes allows (never [`AccessScope::ReadTimeline`]).
    Write(AccessScope),
    /// Accept or reject an agreement.
    Respond(AgreementId),
    /// Report an agreement not delivered.
    ReportNotDelivered(AgreementId),
    /// Ask the family for access.
    RequestAccess,
    /// Read something.
    Read(ReadKind),
}

/// What is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKind {
    /// The household: its members and network.
    Household,
    /// The timeline.
    Timeline,
    /// Goals.
    Goals,
    /// Agreements.
    Agreements,
    /// Plans.
    Plans,
}

/// Why an action is allowed, and what the caller may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// The grants, roles or links that allow it, e.g. `["owner:registrant"]`,
    /// `["grant:0193…"]`, `["party:0193…"]` (for an audit record).
    pub basis: Vec<String>,
    /// What may be seen.
    pub view: View,
}

impl Access {
    /// Everything may be seen, on `basis`.
    pub fn everything(basis: Vec<String>) -> Self {
        Self {
            basis,
            view: View::everything(),
        }
    }
}

/// Why an action is refused: `reason` for the caller, and for the audit record `detail` too when
/// telling the caller more would tell them something of the household.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Denied {
    /// What the caller is told.
    pub reason: String,
    /// What only the audit record says.
    pub detail: Option<String>,
}

/// What [`Denied::no_access`] says.
const NO_ACCESS: &str = "no such household, or no access to it";

impl Denied {
    /// A refusal saying `reason`, to the caller and the audit record alike.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            detail: None,
        }
    }

    /// The one refusal for a household that does not exist and one the caller may not see, so
    /// that refusals tell nothing about which households exist.
    pub fn no_access() -> Self {
        Self::new(NO_ACCESS)
    }

    /// [`Denied::no_access`] for the caller, with `detail` in the audit record only.
    pub fn no_access_because(detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..Self::no_access()
        }
    }

    /// Whether the caller is told only [`Denied::no_access`].
    pub fn is_no_access(&self) -> bool {
        self.reason == NO_ACCESS
    }

    /// What the audit record says: the reason, and the detail the caller was not told.
    pub fn for_audit(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{}: {detail}", self.reason),
            None => self.reason.clone(),
        }
    }
}

/// What a caller may see: an item is visible when every layer admits it (one layer for a
/// person; for a PGO platform, the member's and the platform's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    layers: Vec<Layer>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Layer {
    /// Everything.
    all: bool,
    /// Read grants: life and funding domains (empty: all).
    reads: Vec<(Vec<LifeDomain>, Vec<FundingDomain>)>,
    /// Contacts the caller acts as: their agreements and the goals these serve.
    parties: BTreeSet<ContactId>,
}

impl View {
    /// Sees everything (an owner, or no authorisation at all).
    pub fn everything() -> Self {
        Self {
            layers: vec![Layer {
                all: true,
                ..Layer::default()
            }],
        }
    }

    /// Whether the timeline entry is visible.
    pub fn entry(&self, entry: &TimelineEntry) -> bool {
        self.domains(&entry.life_domains, &entry.funding_domains)
    }

    /// Whether something concerning these life and funding domains is visible (as a timeline
    /// entry of them would be: a reader limited to some domains sees nothing that names none).
    pub fn domains(&self, life_domains: &[LifeDomain], funding_domains: &[FundingDomain]) -> bool {
        self.layers.iter().all(|l| {
            l.all
                || l.reads.iter().any(|(life, funding)| {
                    overlaps(life, life_domains) && overlaps(funding, funding_domains)
                })
        })
    }

    /// Whether the goal is visible (`today` decides agreements' funding domains).
    pub fn goal(&self, household: &Household, id: GoalId, goal: &Goal, today: Date) -> bool {
        let serving = || {
            household
                .agreements
                .values()
                .filter(move |a| a.terms.goals.contains(&id))
        };
        self.layers.iter().all(|l| {
            l.all
                || l.reads.iter().any(|(life, funding)| {
                    overlaps(life, &goal.life_domains)
                        && (funding.is_empty()
                            || serving().any(|a| funding.contains(&a.funding_on(today))))
                })
                || serving().any(|a| party_to(&l.parties, a))
        })
    }

    /// Whether the agreement is visible.
    pub fn agreement(&self, household: &Household, agreement: &Agreement, today: Date) -> bool {
        let goal_domains: Vec<LifeDomain> = agreement
            .terms
            .goals
            .iter()
            .filter_map(|g| household.goals.get(g))
            .flat_map(|g| g.life_domains.iter().copied())
            .collect();
        self.layers.iter().all(|l| {
            l.all
                || l.reads.iter().any(|(life, funding)| {
                    overlaps(life, &goal_domains)
                        && (funding.is_empty() || funding.contains(&agreement.funding_on(today)))
                })
                || party_to(&l.parties, agreement)
        })
    }

    /// Whether the plan, goal or agreement `subject` is visible as it is in `household` (also
    /// when it is not there: nothing of it to hide).
    pub fn subject(&self, household: &Household, subject: Subject, today: Date) -> bool {
        match subject {
            Subject::Plan(_) => self.plans(),
            Subject::Goal(id) => household
                .goals
                .get(&id)
                .is_none_or(|g| self.goal(household, id, g, today)),
            Subject::Agreement(id) => household
                .agreements
                .get(&id)
                .is_none_or(|a| self.agreement(household, a, today)),
        }
    }

    /// Whether whole plans are visible: they span every domain, so only to those who may read
    /// the whole timeline.
    pub fn plans(&self) -> bool {
        self.layers.iter().all(Layer::unrestricted)
    }

    /// Whether the view is limited at all.
    pub fn is_everything(&self) -> bool {
        self.layers.iter().all(|l| l.all)
    }
}

impl Layer {
    fn unrestricted(&self) -> bool {
        self.all
            || self
                .reads
                .iter()
                .any(|(life, funding)| life.is_empty() && funding.is_empty())
    }
}

/// `allowed` is empty (no limit) or shares a value with `values`.
fn overlaps<T: PartialEq>(allowed: &[T], values: &[T]) -> bool {
    allowed.is_empty() || values.iter().any(|v| allowed.contains(v))
}

fn party_to(parties: &BTreeSet<ContactId>, agreement: &Agreement) -> bool {
    agreement
        .terms
        .responsible
        .is_some_and(|c| parties.contains(&c))
        || agreement
            .terms
            .parties
            .iter()
            .any(|p| matches!(p, Party::Contact(c) if parties.contains(c)))
}

/// Where one caller (or the platform they use) stands in a household.
struct Standing<'a> {
    owner: Option<String>,
    grants: Vec<(GrantId, &'a Grant)>,
    parties: BTreeSet<ContactId>,
}

impl<'a> Standing<'a> {
    fn of_person(
        household: &'a Household,
        identity: &Identity,
        organisation: Option<&str>,
        today: Date,
    ) -> Self {
        // Members who are a client or legal representative, linked to an identity.
        let owners: Vec<(crate::ids::MemberId, &Identity)> = household
            .links
            .iter()
            .filter_map(|(party, link)| match party {
                Party::Member(m)
                    if household.member(*m).is_some_and(|member| {
                        matches!(
                            member.details.role,
                            MemberRole::Client | MemberRole::LegalRepresentative
                        )
                    }) =>
                {
                    link.identity.as_ref().map(|linked| (*m, linked))
                }
                _ => None,
            })
            .collect();
        let owner = match owners.iter().find(|(_, linked)| *linked == identity) {
            Some((m, _)) => Some(format!("owner:member:{m}")),
            // The registrant holds the household only until its owners are linked (the state
            // then forgets the registrant): from then on ownership follows the members, so a
            // registrant who is not one of them, or stops being one, no longer owns it.
            None if owners.is_empty() && household.registered_by.as_ref() == Some(identity) => {
                Some("owner:registrant".to_owned())
            }
            None => None,
        };
        let grants = household
            .grants
            .iter()
            .filter(|(_, g)| g.holds_on(today))
            .filter(|(_, g)| match &g.grantee {
                Grantee::Person { identity: who } => who == identity,
                Grantee::Organisation { id } => organisation == Some(id.as_str()),
                Grantee::Platform { .. } => false,
            })
            .map(|(id, g)| (*id, g))
            .collect();
        let parties = household
            .links
            .iter()
            .filter_map(|(party, link)| match party {
                Party::Contact(c)
                    if household.contact(*c).is_some()
                        && (link.identity.as_ref() == Some(identity)
                            || (organisation.is_some()
                                && link.organisation_id.as_deref() == organisation)) =>
                {
                    Some(*c)
                }
                _ => None,
            })
            .collect();
        Self {
            owner,
            grants,
            parties,
        }
    }

    fn of_platform(household: &'a Household, issuer: &str, client_id: &str, today: Date) -> Self {
        let grants = household
            .grants
            .iter()
            .filter(|(_, g)| g.holds_on(today))
            .filter(|(_, g)| {
                matches!(&g.grantee, Grantee::Platform { issuer: i, client_id: c }
                    if i == issuer && c == client_id)
            })
            .map(|(id, g)| (*id, g))
            .collect();
        Self {
            owner: None,
            grants,
            parties: BTreeSet::new(),
        }
    }

    fn grants_with(&self, scope: AccessScope) -> impl Iterator<Item = &(GrantId, &'a Grant)> {
        self.grants
            .iter()
            .filter(move |(_, g)| g.terms.scopes.contains(&scope))
    }

    fn basis_of_grants(&self, scope: AccessScope) -> Vec<String> {
        self.grants_with(scope)
            .map(|(id, _)| format!("grant:{id}"))
            .collect()
    }

    fn party_basis(&self, agreement: Option<&Agreement>) -> Vec<String> {
        self.parties
            .iter()
            .filter(|c| agreement.is_none_or(|a| party_to(&BTreeSet::from([**c]), a)))
            .map(|c| format!("party:{c}"))
            .collect()
    }

    /// The basis and the layer of what may be seen, if `action` is allowed.
    fn allows(&self, household: &Household, action: Action) -> Option<(Vec<String>, Layer)> {
        if let Some(owner) = &self.owner {
            return Some((
                vec![owner.clone()],
                Layer {
                    all: true,
                    ..Layer::default()
                },
            ));
        }
        let nonempty = |basis: Vec<String>| (!basis.is_empty()).then_some(basis);
        let nothing = Layer::default();
        match action {
            Action::Register | Action::Own => None,
            Action::RequestAccess => Some((vec!["request".to_owned()], nothing)),
            Action::Write(scope) => nonempty(self.basis_of_grants(scope)).map(|b| (b, nothing)),
            Action::Respond(agreement) => {
                let a = household.agreements.get(&agreement)?;
                nonempty(self.party_basis(Some(a))).map(|b| (b, nothing))
            }
            Action::ReportNotDelivered(agreement) => {
                let a = household.agreements.get(&agreement)?;
                let mut basis = self.basis_of_grants(AccessScope::ProposeAgreements);
                basis.extend(self.party_basis(Some(a)));
                nonempty(basis).map(|b| (b, nothing))
            }
            Action::Read(kind) => {
                let reads: Vec<_> = self.grants_with(AccessScope::ReadTimeline).collect();
                let mut layer = Layer {
                    all: false,
                    reads: reads
                        .iter()
                        .map(|(_, g)| {
                            (
                                g.terms.life_domains.clone(),
                                g.terms.funding_domains.clone(),
                            )
                        })
                        .collect(),
                    parties: BTreeSet::new(),
                };
                let mut basis: Vec<String> =
                    reads.iter().map(|(id, _)| format!("grant:{id}")).collect();
                match kind {
                    ReadKind::Household => {
                        // Names and network of the whole family: whole-timeline readers and
                        // those who manage the network.
                        basis = self
                            .grants
                            .iter()
                            .filter(|(_, g)| {
                                g.terms.scopes.contains(&AccessScope::ManageNetwork)
                                    || (g.terms.scopes.contains(&AccessScope::ReadTimeline)
                                        && g.terms.life_domains.is_empty()
                                        && g.terms.funding_domains.is_empty())
                            })
                            .map(|(id, _)| format!("grant:{id}"))
                            .collect();
                        layer = Layer {
                            all: true,
                            ..Layer::default()
                        };
                    }
                    ReadKind::Plans => {
                        if !layer.unrestricted() {
                            return None;
                        }
                    }
                    ReadKind::Timeline => {}
                    ReadKind::Goals | ReadKind::Agreements => {
                        basis.extend(self.party_basis(None));
                        layer.parties = self.parties.clone();
                    }
                }
                nonempty(basis).map(|b| (b, layer))
            }
        }
    }
}

/// Whose standing in a household a caller has: their own, or for a platform the member it acts
/// for; and the organisation they act for — only professionals and supporters do, an
/// organisation claim on any other token is ignored.
fn standing_of(principal: &Principal) -> (&Identity, Option<&str>) {
    let person = match principal.role {
        PrincipalRole::Platform => principal.acting_for.as_ref(),
        _ => None,
    }
    .unwrap_or(&principal.identity);
    (person, principal.organisation_claim())
}

/// Whether an event of type `event_type` can let someone in who could not see the household
/// before: its registration, a link, a grant, or a member or contact whose details change (a
/// linked member may become a legal representative). Any other event can only keep or narrow
/// who sees it, so a reader that follows who may see what need look again only after these.
pub fn may_let_in(event_type: &str) -> bool {
    matches!(
        event_type,
        "HouseholdRegistered"
            | "IdentityLinked"
            | "AccessGranted"
            | "MemberAdded"
            | "MemberUpdated"
            | "ContactAdded"
            | "ContactUpdated"
    )
}

/// Whether `principal` may do `action` in `household` on `today`, on what basis, seeing what.
pub fn authorize(
    household: &Household,
    principal: &Principal,
    action: Action,
    today: Date,
) -> Result<Access, Denied> {
    let no_access = Denied::no_access;
    match principal.role {
        PrincipalRole::Evaluator => {
            return Err(Denied::new(
                "an evaluator sees aggregate figures, never one household",
            ));
        }
        PrincipalRole::Administrator => {
            return Err(Denied::new(
                "an administrator runs the service and reads no household's data",
            ));
        }
        _ => {}
    }
    if principal.role == PrincipalRole::Platform && principal.acting_for.is_none() {
        return Err(Denied::new(
            "the platform's token names no member it acts for",
        ));
    }
    let action = match (action, household.registered, principal.role) {
        // Only a client or legal representative (possibly through their PGO) registers a
        // household, and becomes its first owner.
        (Action::Register, false, PrincipalRole::Citizen | PrincipalRole::Platform) => {
            return Ok(Access::everything(vec!["owner:registrant".to_owned()]));
        }
        (Action::Register, false, _) => {
            return Err(Denied::new(
                "a household is registered by its client or legal representative",
            ));
        }
        // Registering it again: only its owners may learn that it exists.
        (Action::Register, true, _) => Action::Own,
        (action, ..) => action,
    };
    if !household.registered || household.erased {
        return Err(no_access());
    }
    let (person, organisation) = standing_of(principal);
    let standing = Standing::of_person(household, person, organisation, today);
    let (mut basis, layer) = standing.allows(household, action).ok_or_else(no_access)?;
    let mut layers = vec![layer];
    if principal.role == PrincipalRole::Platform {
        let client_id = principal.client_id.as_deref().unwrap_or_default();
        let platform =
            Standing::of_platform(household, &principal.identity.issuer, client_id, today);
        let (platform_basis, platform_layer) =
            platform.allows(household, action).ok_or_else(|| {
                // The caller learns no more than a stranger would: naming the platform's refusal
                // would tell that the member it acts for belongs to this household.
                Denied::no_access_because(format!(
                    "the household has not allowed platform {client_id} to do this"
                ))
            })?;
        basis.extend(platform_basis);
        layers.push(platform_layer);
    }
    Ok(Access {
        basis,
        view: View { layers },
    })
}

/// The family's grants to a PGO platform (`issuer`, `client_id`) that hold on `today`, as audit
/// bases (`grant:…`), in order: on what naast sends that platform anything.
pub fn platform_grants(
    household: &Household,
    issuer: &str,
    client_id: &str,
    today: Date,
) -> Vec<String> {
    let mut basis: Vec<String> = Standing::of_platform(household, issuer, client_id, today)
        .grants
        .iter()
        .map(|(id, _)| format!("grant:{id}"))
        .collect();
    basis.sort();
    basis
}

/// What the family's own grants to a PGO platform (`issuer`, `client_id`) allow it on `today`,
/// with no member acting through it: what naast may send that platform unasked (a push). Only
/// reads are ever allowed this way; a household that does not exist, is erased or granted the
/// platform nothing is refused alike.
pub fn authorize_platform(
    household: &Household,
    issuer: &str,
    client_id: &str,
    action: Action,
    today: Date,
) -> Result<Access, Denied> {
    if !household.registered || household.erased || !matches!(action, Action::Read(_)) {
        return Err(Denied::no_access());
    }
    let standing = Standing::of_platform(household, issuer, client_id, today);
    let (basis, layer) = standing
        .allows(household, action)
        .ok_or_else(Denied::no_access)?;
    Ok(Access {
        basis,
        view: View {
            layers: vec![layer],
        },
    })
}

/// Whether `principal` may execute `command` in `household` on `today`: [`authorize`] for what
/// it amounts to, and, for a write through grants limited to some life domains, whether the
/// write stays within them (a grant for "wonen" writes goals and notes about housing only).
pub fn authorize_command(
    household: &Household,
    principal: &Principal,
    command: &crate::Command,
    today: Date,
) -> Result<Access, Denied> {
    let action = action_for(command);
    let access = authorize(household, principal, action, today)?;
    let Action::Write(scope) = action else {
        return Ok(access);
    };
    if !access.basis.iter().any(|b| b.starts_with("grant:")) {
        // Owners (and parties) write by their standing, not through a grant's domains.
        return Ok(access);
    }
    let Some(touched) = command_domains(household, command) else {
        return Ok(access);
    };
    let mut limits = Vec::new();
    let (person, organisation) = standing_of(principal);
    limits.push(write_limits(
        &Standing::of_person(household, person, organisation, today),
        scope,
    ));
    if principal.role == PrincipalRole::Platform {
        let client_id = principal.client_id.as_deref().unwrap_or_default();
        limits.push(write_limits(
            &Standing::of_platform(household, &principal.identity.issuer, client_id, today),
            scope,
        ));
    }
    for allowed in limits.into_iter().flatten() {
        if touched.is_empty() || touched.iter().any(|d| !allowed.contains(d)) {
            return Err(Denied::new(format!(
                "the grant allows writing about {} only",
                allowed
                    .iter()
                    .map(|d| d.display_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(access)
}

/// The life domains a write of `scope` is limited to (`None`: not limited — an owner, or a
/// grant of it without life-domain limits).
fn write_limits(standing: &Standing<'_>, scope: AccessScope) -> Option<Vec<LifeDomain>> {
    if standing.owner.is_some() {
        return None;
    }
    let grants: Vec<_> = standing.grants_with(scope).collect();
    if grants.is_empty() || grants.iter().any(|(_, g)| g.terms.life_domains.is_empty()) {
        return None;
    }
    let mut domains: Vec<LifeDomain> = grants
        .iter()
        .flat_map(|(_, g)| g.terms.life_domains.iter().copied())
        .collect();
    domains.sort();
    domains.dedup();
    Some(domains)
}

/// The life domains a command writes about, for commands that have them: a goal's (before and
/// after an update), a note's, a logbook entry's.
fn command_domains(household: &Household, command: &crate::Command) -> Option<Vec<LifeDomain>> {
    use crate::Command as C;
    let goal = |id: &GoalId| {
        household
            .goals
            .get(id)
            .map(|g| g.life_domains.clone())
            .unwrap_or_default()
    };
    match command {
        C::SetGoal { life_domains, .. }
        | C::AddNote { life_domains, .. }
        | C::AddLogbookEntry { life_domains, .. } => Some(life_domains.clone()),
        C::UpdateGoal {
            goal: id,
            life_domains,
            ..
        } => Some(
            goal(id)
                .into_iter()
                .chain(life_domains.iter().copied())
                .collect(),
        ),
        C::NoteGoalProgress { goal: id, .. }
        | C::AchieveGoal { goal: id, .. }
        | C::AbandonGoal { goal: id, .. }
        | C::ReopenGoal { goal: id, .. } => Some(goal(id)),
        _ => None,
    }
}

/// What executing `command` amounts to, for [`authorize`].
pub fn action_for(command: &crate::Command) -> Action {
    use crate::Command as C;
    use AccessScope as S;
    match command {
        C::RegisterHousehold { .. } => Action::Register,
        C::EraseHousehold
        | C::AddMember { .. }
        | C::UpdateMember { .. }
        | C::RemoveMember { .. }
        | C::LinkIdentity { .. }
        | C::GrantAccess { .. }
        | C::RevokeAccess { .. }
        | C::DeclineAccessRequest { .. }
        | C::ObjectToEvaluation { .. } => Action::Own,
        C::RequestAccess { .. } => Action::RequestAccess,
        C::AddContact { .. } | C::UpdateContact { .. } | C::RemoveContact { .. } => {
            Action::Write(S::ManageNetwork)
        }
        C::ChangeSupportPhase { .. }
        | C::DraftPlan { .. }
        | C::RevisePlan { .. }
        | C::ActivatePlan { .. }
        | C::EvaluatePlan { .. }
        | C::ClosePlan { .. }
        | C::RecordIndication { .. }
        | C::RecordFundingTransition { .. }
        | C::SetCheckInThreshold { .. }
        | C::SetFamilyType { .. } => Action::Write(S::ManagePlans),
        C::SetGoal { .. }
        | C::UpdateGoal { .. }
        | C::NoteGoalProgress { .. }
        | C::AchieveGoal { .. }
        | C::AbandonGoal { .. }
        | C::ReopenGoal { .. }
        | C::AddNote { .. }
        | C::RecordCheckIn { .. }
        | C::RecordMeasurement { .. } => Action::Write(S::WriteGoalsNotes),
        C::ProposeAgreement { .. } | C::AmendAgreement { .. } | C::EndAgreement { .. } => {
            Action::Write(S::ProposeAgreements)
        }
        C::AcceptAgreement { agreement } | C::RejectAgreement { agreement, .. } => {
            Action::Respond(*agreement)
        }
        C::ReportNotDelivered { agreement, .. } => Action::ReportNotDelivered(*agreement),
        C::AddLogbookEntry { .. } => Action::Write(S::KeepLogbook),
    }
}

/// The ids a command touches within its household (for an audit record).
pub fn objects_of(command: &crate::Command) -> Vec<String> {
    use crate::Command as C;
    let party = |p: &Party| match p {
        Party::Member(m) => m.to_string(),
        Party::Contact(c) => c.to_string(),
    };
    match command {
        C::RegisterHousehold { .. } | C::EraseHousehold => Vec::new(),
        C::AddMember { member, .. }
        | C::UpdateMember { member, .. }
        | C::RemoveMember { member, .. }
        | C::RecordFundingTransition { member, .. } => vec![member.to_string()],
        C::LinkIdentity { party: p, .. } => vec![party(p)],
        C::GrantAccess { grant, request, .. } => std::iter::once(grant.to_string())
            .chain(request.map(|r| r.to_string()))
            .collect(),
        C::RevokeAccess { grant, .. } => vec![grant.to_string()],
        C::RequestAccess { request, .. } | C::DeclineAccessRequest { request, .. } => {
            vec![request.to_string()]
        }
        C::AddContact { contact, .. }
        | C::UpdateContact { contact, .. }
        | C::RemoveContact { contact, .. } => vec![contact.to_string()],
        C::ChangeSupportPhase { .. }
        | C::SetCheckInThreshold { .. }
        | C::SetFamilyType { .. }
        | C::ObjectToEvaluation { .. } => Vec::new(),
        C::RecordMeasurement {
            measurement,
            member,
            respondent,
            ..
        } => {
            let mut ids = vec![measurement.to_string(), member.to_string()];
            if *respondent != Party::Member(*member) {
                ids.push(party(respondent));
            }
            ids
        }
        C::RecordCheckIn {
            check_in,
            member,
            respondent,
            ..
        } => {
            let mut ids = vec![check_in.to_string(), member.to_string()];
            if respondent != member {
                ids.push(respondent.to_string());
            }
            ids
        }
        C::DraftPlan { plan, .. }
        | C::RevisePlan { plan, .. }
        | C::ActivatePlan { plan, .. }
        | C::EvaluatePlan { plan, .. }
        | C::ClosePlan { plan, .. } => vec![plan.to_string()],
        C::RecordIndication {
            indication, member, ..
        } => vec![indication.to_string(), member.to_string()],
        C::SetGoal { goal, owner, .. } => vec![goal.to_string(), owner.to_string()],
        C::UpdateGoal { goal, .. }
        | C::NoteGoalProgress { goal, .. }
        | C::AchieveGoal { goal, .. }
        | C::AbandonGoal { goal, .. }
        | C::ReopenGoal { goal, .. } => vec![goal.to_string()],
        C::AddNote { note, about, .. } => std::iter::once(note.to_string())
            .chain(about.map(|m| m.to_string()))
            .collect(),
        C::ProposeAgreement { agreement, .. }
        | C::AmendAgreement { agreement, .. }
        | C::EndAgreement { agreement, .. }
        | C::AcceptAgreement { agreement }
        | C::RejectAgreement { agreement, .. }
        | C::ReportNotDelivered { agreement, .. } => vec![agreement.to_string()],
        C::AddLogbookEntry {
            entry, supporter, ..
        } => vec![entry.to_string(), supporter.to_string()],
    }
}
