//! Commands: what people ask to happen. [`decide`] checks a command against the household's
//! state and returns the events it leads to, or why it is refused.

use crate::DomainError;
use crate::event::{
    AgreementTerms, ContactDetails, DomainEvent, GrantTerms, Grantee, Identity, MemberDetails,
    Party,
};
use crate::ids::{
    AccessRequestId, AgreementId, ContactId, EntryId, GoalId, GrantId, IndicationId, MemberId,
    PlanId,
};
use crate::measure::{Answer, Instrument};
use crate::state::{AgreementStatus, GoalStatus, Household, PlanStatus};
use crate::validate::{
    self as v, MAX_NAME_CHARS, MAX_REASON_CHARS, MAX_SHORT_CHARS, MAX_TEXT_CHARS, MAX_TITLE_CHARS,
};
use crate::vocab::{
    ContactKind, ContactMode, FamilyType, FundingDomain, IndicationKind, LifeDomain,
    MeasurementMoment, MemberRole, PlanKind, RespondentKind, SupportPhase, SupporterTask,
};
use time::Date;

/// Everything that can be asked of a household. Serialised only to fingerprint a command (see
/// `event::CommandStamp`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "command")]
#[allow(missing_docs)] // the fields mirror the events they lead to (see `crate::event`)
pub enum Command {
    /// Start the household's record.
    RegisterHousehold {
        name: String,
        /// The signed-in client or legal representative registering it.
        registered_by: Option<Identity>,
    },
    /// Forget the household: its data key is destroyed, its history unreadable for good.
    EraseHousehold,
    /// Link a member or contact to the identity they sign in with (and a contact to the
    /// organisation its professionals act for), or unlink them (both `None`).
    LinkIdentity {
        party: Party,
        identity: Option<Identity>,
        organisation_id: Option<String>,
    },
    /// Allow someone to see or do something, possibly answering their request.
    GrantAccess {
        grant: GrantId,
        grantee: Grantee,
        terms: GrantTerms,
        request: Option<AccessRequestId>,
    },
    /// End a grant.
    RevokeAccess { grant: GrantId, reason: String },
    /// Ask the family for access.
    RequestAccess {
        request: AccessRequestId,
        requester: Grantee,
        terms: GrantTerms,
        reason: String,
    },
    /// Decline a request for access.
    DeclineAccessRequest {
        request: AccessRequestId,
        reason: String,
    },
    /// Add a person.
    AddMember {
        member: MemberId,
        details: MemberDetails,
    },
    /// Replace a person's details.
    UpdateMember {
        member: MemberId,
        details: MemberDetails,
    },
    /// Remove a person (their history stays).
    RemoveMember { member: MemberId, reason: String },
    /// Add a network contact.
    AddContact {
        contact: ContactId,
        details: ContactDetails,
    },
    /// Replace a contact's details.
    UpdateContact {
        contact: ContactId,
        details: ContactDetails,
    },
    /// Remove a contact.
    RemoveContact { contact: ContactId, reason: String },
    /// Change the support phase and intensity.
    ChangeSupportPhase {
        phase: SupportPhase,
        hours_per_week: Option<u32>,
        on: Date,
        contact_every_days: Option<u32>,
    },
    /// Draft a plan.
    DraftPlan {
        plan: PlanId,
        kind: PlanKind,
        title: String,
        summary: String,
    },
    /// Revise a plan (new version).
    RevisePlan {
        plan: PlanId,
        title: String,
        summary: String,
    },
    /// Put a drafted plan into effect.
    ActivatePlan { plan: PlanId, on: Date },
    /// Evaluate an active plan.
    EvaluatePlan {
        plan: PlanId,
        on: Date,
        evaluation: String,
    },
    /// Close a plan.
    ClosePlan {
        plan: PlanId,
        on: Date,
        reason: String,
    },
    /// Set a goal for a member.
    SetGoal {
        goal: GoalId,
        owner: MemberId,
        title: String,
        description: String,
        life_domains: Vec<LifeDomain>,
        plan: Option<PlanId>,
    },
    /// Reword or retag an active goal.
    UpdateGoal {
        goal: GoalId,
        title: String,
        description: String,
        life_domains: Vec<LifeDomain>,
        plan: Option<PlanId>,
    },
    /// Note progress on an active goal.
    NoteGoalProgress {
        goal: GoalId,
        on: Date,
        note: String,
    },
    /// Mark an active goal achieved.
    AchieveGoal {
        goal: GoalId,
        on: Date,
        note: String,
    },
    /// Abandon an active goal.
    AbandonGoal {
        goal: GoalId,
        on: Date,
        reason: String,
    },
    /// Take up an achieved or abandoned goal again.
    ReopenGoal { goal: GoalId, reason: String },
    /// Propose an agreement.
    ProposeAgreement {
        agreement: AgreementId,
        terms: AgreementTerms,
    },
    /// Accept a proposed agreement.
    AcceptAgreement { agreement: AgreementId },
    /// Reject a proposed agreement.
    RejectAgreement {
        agreement: AgreementId,
        reason: String,
    },
    /// Change the terms of a proposed or accepted agreement.
    AmendAgreement {
        agreement: AgreementId,
        terms: AgreementTerms,
        reason: String,
    },
    /// End an accepted agreement.
    EndAgreement {
        agreement: AgreementId,
        on: Date,
        reason: String,
    },
    /// Report that an accepted agreement was not delivered as agreed.
    ReportNotDelivered {
        agreement: AgreementId,
        on: Date,
        description: String,
    },
    /// Record an indication or decision for a member.
    RecordIndication {
        indication: IndicationId,
        member: MemberId,
        kind: IndicationKind,
        care_profile: Option<String>,
        valid_from: Date,
        valid_until: Option<Date>,
    },
    /// Record that a member's care moves from one funding domain to another. Every accepted or
    /// proposed agreement of that member funded by `from` and still running on `on` carries over
    /// to `to` from that day, unchanged otherwise (same goals, parties, provider, review state):
    /// the need leads, the system follows.
    RecordFundingTransition {
        member: MemberId,
        from: FundingDomain,
        to: FundingDomain,
        on: Date,
        reason: String,
    },
    /// Add a supporter's logbook entry.
    AddLogbookEntry {
        entry: EntryId,
        supporter: ContactId,
        on: Date,
        minutes: u32,
        mode: ContactMode,
        tasks: Vec<SupporterTask>,
        life_domains: Vec<LifeDomain>,
        summary: String,
    },
    /// Add a free note.
    AddNote {
        note: EntryId,
        about: Option<MemberId>,
        text: String,
        life_domains: Vec<LifeDomain>,
    },
    /// Record a self check-in.
    RecordCheckIn {
        check_in: EntryId,
        member: MemberId,
        respondent: MemberId,
        on: Date,
        rating: u8,
        note: String,
    },
    /// Set the rating below which a check-in is a signal.
    SetCheckInThreshold { threshold: u8 },
    /// Record the answers to a measurement instrument. `instrument` is the version answered,
    /// as the catalogue holds it (the application looks it up).
    RecordMeasurement {
        measurement: EntryId,
        member: MemberId,
        respondent: Party,
        instrument: Instrument,
        moment: Option<MeasurementMoment>,
        on: Date,
        answers: Vec<Answer>,
    },
    /// Set (or clear) the household's family type, for the effect report's cohorts.
    SetFamilyType { family_type: Option<FamilyType> },
    /// The family objects to (or no longer objects to) counting in the effect report.
    ObjectToEvaluation { objects: bool },
}

/// The checks of `command` that need no household: a request for access from someone who may not
/// see the household is answered alike whether it exists or not, so its bad fields must be
/// refused before anything about the household is known.
pub fn check_without_household(command: &Command) -> Result<(), DomainError> {
    match command {
        Command::RequestAccess {
            requester,
            terms,
            reason,
            ..
        } => check_request_access(requester, terms, reason),
        _ => Ok(()),
    }
}

fn check_request_access(
    requester: &Grantee,
    terms: &GrantTerms,
    reason: &str,
) -> Result<(), DomainError> {
    v::grantee("requester", requester)?;
    grant_terms(terms)?;
    v::text("reason", reason, MAX_REASON_CHARS, true)
}

/// The events `command` leads to in `household`, or why it is refused.
pub fn decide(household: &Household, command: Command) -> Result<Vec<DomainEvent>, DomainError> {
    use Command as C;
    use DomainEvent as E;
    if !household.registered && !matches!(command, C::RegisterHousehold { .. }) {
        return Err(DomainError::not_found(
            "household_id",
            "household",
            "(this id)",
        ));
    }
    if household.erased {
        return Err(DomainError::FailedPrecondition(
            "the household was erased".to_owned(),
        ));
    }
    let event = match command {
        C::EraseHousehold => {
            // Whom the family had let in, so they can be told to remove what they were sent
            // (an expired grant too: what was sent before it expired may still be there).
            let mut platforms: Vec<crate::event::PlatformClient> = household
                .grants
                .values()
                .filter(|g| !g.revoked)
                .filter_map(|g| match &g.grantee {
                    Grantee::Platform { issuer, client_id } => Some(crate::event::PlatformClient {
                        issuer: issuer.clone(),
                        client_id: client_id.clone(),
                    }),
                    _ => None,
                })
                .collect();
            platforms.sort();
            platforms.dedup();
            E::HouseholdErased { platforms }
        }
        C::RegisterHousehold {
            name,
            registered_by,
        } => {
            if household.registered {
                return Err(DomainError::exists(
                    "household_id",
                    "household",
                    "(this id)",
                ));
            }
            v::text("name", &name, MAX_NAME_CHARS, false)?;
            if let Some(identity) = &registered_by {
                v::identity("registered_by", identity)?;
            }
            E::HouseholdRegistered {
                name,
                registered_by,
            }
        }
        C::LinkIdentity {
            party,
            identity,
            organisation_id,
        } => {
            match party {
                Party::Member(m) => {
                    existing_member(household, "member_id", m)?;
                    if organisation_id.is_some() {
                        return Err(DomainError::invalid(
                            "organisation_id",
                            "only a contact acts for an organisation",
                        ));
                    }
                }
                Party::Contact(c) => {
                    existing_contact(household, "contact_id", c)?;
                }
            }
            if let Some(identity) = &identity {
                v::identity("identity", identity)?;
                if let Some((other, _)) = household
                    .links
                    .iter()
                    .find(|(p, l)| **p != party && l.identity.as_ref() == Some(identity))
                {
                    return Err(DomainError::invalid(
                        "identity",
                        format!("is already linked to {}", party_name(other)),
                    ));
                }
            }
            if let Some(org) = &organisation_id {
                v::text("organisation_id", org, MAX_SHORT_CHARS, false)?;
            }
            E::IdentityLinked {
                party,
                identity,
                organisation_id,
            }
        }
        C::GrantAccess {
            grant,
            grantee,
            terms,
            request,
        } => {
            if household.grants.contains_key(&grant) {
                return Err(DomainError::exists("grant_id", "grant", grant));
            }
            v::grantee("grantee", &grantee)?;
            grant_terms(&terms)?;
            if let Some(r) = request {
                let asked = household
                    .access_requests
                    .get(&r)
                    .ok_or_else(|| DomainError::not_found("access_request_id", "request", r))?;
                if asked.status != crate::state::RequestStatus::Open {
                    return Err(DomainError::invalid(
                        "access_request_id",
                        "has been answered already",
                    ));
                }
                if asked.requester != grantee {
                    return Err(DomainError::invalid(
                        "grantee",
                        format!("the request came from {}", asked.requester),
                    ));
                }
            }
            E::AccessGranted {
                grant,
                grantee,
                terms,
                request,
            }
        }
        C::RevokeAccess { grant, reason } => {
            let held = household
                .grants
                .get(&grant)
                .ok_or_else(|| DomainError::not_found("grant_id", "grant", grant))?;
            if held.revoked {
                return Err(DomainError::invalid("grant_id", "is revoked already"));
            }
            // The family owes nobody a reason.
            v::optional_text("reason", &reason, MAX_REASON_CHARS, true)?;
            E::AccessRevoked { grant, reason }
        }
        C::RequestAccess {
            request,
            requester,
            terms,
            reason,
        } => {
            if household.access_requests.contains_key(&request) {
                return Err(DomainError::exists("access_request_id", "request", request));
            }
            check_request_access(&requester, &terms, &reason)?;
            E::AccessRequested {
                request,
                requester,
                terms,
                reason,
            }
        }
        C::DeclineAccessRequest { request, reason } => {
            let asked = household
                .access_requests
                .get(&request)
                .ok_or_else(|| DomainError::not_found("access_request_id", "request", request))?;
            if asked.status != crate::state::RequestStatus::Open {
                return Err(DomainError::invalid(
                    "access_request_id",
                    "has been answered already",
                ));
            }
            v::optional_text("reason", &reason, MAX_REASON_CHARS, true)?;
            E::AccessRequestDeclined { request, reason }
        }
        C::AddMember { member, details } => {
            if household.members.contains_key(&member) {
                return Err(DomainError::exists("member_id", "member", member));
            }
            member_details(&details)?;
            E::MemberAdded { member, details }
        }
        C::UpdateMember { member, details } => {
            existing_member(household, "member_id", member)?;
            member_details(&details)?;
            E::MemberUpdated { member, details }
        }
        C::RemoveMember { member, reason } => {
            existing_member(household, "member_id", member)?;
            v::text("reason", &reason, MAX_REASON_CHARS, true)?;
            E::MemberRemoved { member, reason }
        }
        C::AddContact { contact, details } => {
            if household.contacts.contains_key(&contact) {
                return Err(DomainError::exists("contact_id", "contact", contact));
            }
            contact_details(&details)?;
            E::ContactAdded { contact, details }
        }
        C::UpdateContact { contact, details } => {
            existing_contact(household, "contact_id", contact)?;
            contact_details(&details)?;
            E::ContactUpdated { contact, details }
        }
        C::RemoveContact { contact, reason } => {
            existing_contact(household, "contact_id", contact)?;
            v::text("reason", &reason, MAX_REASON_CHARS, true)?;
            E::ContactRemoved { contact, reason }
        }
        C::ChangeSupportPhase {
            phase,
            hours_per_week,
            on,
            contact_every_days,
        } => {
            if hours_per_week.is_some_and(|h| h > v::MAX_HOURS_PER_WEEK) {
                return Err(DomainError::invalid(
                    "hours_per_week",
                    format!("must be at most {}", v::MAX_HOURS_PER_WEEK),
                ));
            }
            if contact_every_days.is_some_and(|d| d == 0 || d > v::MAX_CONTACT_INTERVAL_DAYS) {
                return Err(DomainError::invalid(
                    "contact_every_days",
                    format!("must be 1 to {}", v::MAX_CONTACT_INTERVAL_DAYS),
                ));
            }
            v::date("date", on)?;
            E::SupportPhaseChanged {
                phase,
                hours_per_week,
                on,
                contact_every_days,
            }
        }
        C::DraftPlan {
            plan,
            kind,
            title,
            summary,
        } => {
            if household.plans.contains_key(&plan) {
                return Err(DomainError::exists("plan_id", "plan", plan));
            }
            v::text("title", &title, MAX_TITLE_CHARS, false)?;
            v::optional_text("summary", &summary, MAX_TEXT_CHARS, true)?;
            E::PlanDrafted {
                plan,
                kind,
                title,
                summary,
            }
        }
        C::RevisePlan {
            plan,
            title,
            summary,
        } => {
            let current = existing_plan(household, "plan_id", plan)?;
            if current.status == PlanStatus::Closed {
                return Err(DomainError::FailedPrecondition(format!(
                    "plan {plan} is closed; draft a new plan instead"
                )));
            }
            v::text("title", &title, MAX_TITLE_CHARS, false)?;
            v::optional_text("summary", &summary, MAX_TEXT_CHARS, true)?;
            E::PlanRevised {
                plan,
                version: current.version + 1,
                title,
                summary,
            }
        }
        C::ActivatePlan { plan, on } => {
            let current = existing_plan(household, "plan_id", plan)?;
            if current.status != PlanStatus::Draft {
                return Err(DomainError::FailedPrecondition(format!(
                    "plan {plan} is {:?}; only a draft can be activated",
                    current.status
                )));
            }
            v::date("date", on)?;
            E::PlanActivated { plan, on }
        }
        C::EvaluatePlan {
            plan,
            on,
            evaluation,
        } => {
            let current = existing_plan(household, "plan_id", plan)?;
            if current.status != PlanStatus::Active {
                return Err(DomainError::FailedPrecondition(format!(
                    "plan {plan} is {:?}; only an active plan is evaluated",
                    current.status
                )));
            }
            v::date("date", on)?;
            v::text("evaluation", &evaluation, MAX_TEXT_CHARS, true)?;
            E::PlanEvaluated {
                plan,
                on,
                evaluation,
            }
        }
        C::ClosePlan { plan, on, reason } => {
            let current = existing_plan(household, "plan_id", plan)?;
            if current.status == PlanStatus::Closed {
                return Err(DomainError::FailedPrecondition(format!(
                    "plan {plan} is already closed"
                )));
            }
            v::date("date", on)?;
            v::text("reason", &reason, MAX_REASON_CHARS, true)?;
            E::PlanClosed { plan, on, reason }
        }
        C::SetGoal {
            goal,
            owner,
            title,
            description,
            life_domains,
            plan,
        } => {
            if household.goals.contains_key(&goal) {
                return Err(DomainError::exists("goal_id", "goal", goal));
            }
            existing_member(household, "owner_member_id", owner)?;
            goal_fields(household, &title, &description, &life_domains, plan)?;
            E::GoalSet {
                goal,
                owner,
                title,
                description,
                life_domains,
                plan,
            }
        }
        C::UpdateGoal {
            goal,
            title,
            description,
            life_domains,
            plan,
        } => {
            active_goal(household, goal, "updated")?;
            goal_fields(household, &title, &description, &life_domains, plan)?;
            E::GoalUpdated {
                goal,
                title,
                description,
                life_domains,
                plan,
            }
        }
        C::NoteGoalProgress { goal, on, note } => {
            active_goal(household, goal, "given progress")?;
            v::date("date", on)?;
            v::text("note", &note, MAX_TEXT_CHARS, true)?;
            E::GoalProgressNoted { goal, on, note }
        }
        C::AchieveGoal { goal, on, note } => {
            active_goal(household, goal, "achieved")?;
            v::date("date", on)?;
            v::optional_text("note", &note, MAX_TEXT_CHARS, true)?;
            E::GoalAchieved { goal, on, note }
        }
        C::AbandonGoal { goal, on, reason } => {
            active_goal(household, goal, "abandoned")?;
            v::date("date", on)?;
            v::text("reason", &reason, MAX_REASON_CHARS, true)?;
            E::GoalAbandoned { goal, on, reason }
        }
        C::ReopenGoal { goal, reason } => {
            let current = household
                .goals
                .get(&goal)
                .ok_or_else(|| DomainError::not_found("goal_id", "goal", goal))?;
            if current.status == GoalStatus::Active {
                return Err(DomainError::FailedPrecondition(format!(
                    "goal {goal} is active; only an achieved or abandoned goal is reopened"
                )));
            }
            v::text("reason", &reason, MAX_REASON_CHARS, true)?;
            E::GoalReopened { goal, reason }
        }
        C::ProposeAgreement { agreement, terms } => {
            if household.agreements.contains_key(&agreement) {
                return Err(DomainError::exists("agreement_id", "agreement", agreement));
            }
            agreement_terms(household, &terms)?;
            E::AgreementProposed { agreement, terms }
        }
        C::AcceptAgreement { agreement } => {
            agreement_in(
                household,
                agreement,
                &[AgreementStatus::Proposed],
                "accepted",
            )?;
            E::AgreementAccepted { agreement }
        }
        C::RejectAgreement { agreement, reason } => {
            agreement_in(
                household,
                agreement,
                &[AgreementStatus::Proposed],
                "rejected",
            )?;
            v::text("reason", &reason, MAX_REASON_CHARS, true)?;
            E::AgreementRejected { agreement, reason }
        }
        C::AmendAgreement {
            agreement,
            terms,
            reason,
        } => {
            agreement_in(
                household,
                agreement,
                &[AgreementStatus::Proposed, AgreementStatus::Accepted],
                "amended",
            )?;
            agreement_terms(household, &terms)?;
            v::text("reason", &reason, MAX_REASON_CHARS, true)?;
            E::AgreementAmended {
                agreement,
                terms,
                reason,
            }
        }
        C::EndAgreement {
            agreement,
            on,
            reason,
        } => {
            let current =
                agreement_in(household, agreement, &[AgreementStatus::Accepted], "ended")?;
            v::date("date", on)?;
            if on < current.terms.start {
                return Err(DomainError::invalid(
                    "date",
                    format!(
                        "{on} is before the agreement's start {}",
                        current.terms.start
                    ),
                ));
            }
            v::text("reason", &reason, MAX_REASON_CHARS, true)?;
            E::AgreementEnded {
                agreement,
                on,
                reason,
            }
        }
        C::ReportNotDelivered {
            agreement,
            on,
            description,
        } => {
            let current = agreement_in(
                household,
                agreement,
                &[AgreementStatus::Accepted],
                "reported not delivered",
            )?;
            v::date("date", on)?;
            let terms = &current.terms;
            if on < terms.start || terms.end.is_some_and(|end| on > end) {
                return Err(DomainError::invalid(
                    "date",
                    format!("{on} is outside the agreement's period"),
                ));
            }
            v::text("description", &description, MAX_TEXT_CHARS, true)?;
            E::AgreementNotDelivered {
                agreement,
                on,
                description,
            }
        }
        C::RecordIndication {
            indication,
            member,
            kind,
            care_profile,
            valid_from,
            valid_until,
        } => {
            if household.indications.contains_key(&indication) {
                return Err(DomainError::exists(
                    "indication_id",
                    "indication",
                    indication,
                ));
            }
            existing_member(household, "member_id", member)?;
            if let Some(profile) = &care_profile {
                v::text("care_profile", profile, MAX_SHORT_CHARS, false)?;
            }
            v::period("valid_from", valid_from, "valid_until", valid_until)?;
            E::IndicationRecorded {
                indication,
                member,
                kind,
                care_profile,
                valid_from,
                valid_until,
            }
        }
        C::RecordFundingTransition {
            member,
            from,
            to,
            on,
            reason,
        } => return funding_transition(household, member, from, to, on, reason),
        C::AddLogbookEntry {
            entry,
            supporter,
            on,
            minutes,
            mode,
            tasks,
            life_domains,
            summary,
        } => {
            new_entry(household, "entry_id", "logbook entry", entry)?;
            let contact = existing_contact(household, "supporter_contact_id", supporter)?;
            if contact.details.kind != ContactKind::Supporter {
                return Err(DomainError::invalid(
                    "supporter_contact_id",
                    format!("contact {supporter} is not a supporter"),
                ));
            }
            v::date("date", on)?;
            if minutes == 0 || minutes > v::MAX_LOGBOOK_MINUTES {
                return Err(DomainError::invalid(
                    "minutes",
                    format!("must be 1 to {}", v::MAX_LOGBOOK_MINUTES),
                ));
            }
            if tasks.is_empty() {
                return Err(DomainError::invalid("tasks", "name at least one task"));
            }
            v::no_repeats("tasks", &tasks)?;
            v::life_domains("life_domains", &life_domains, false)?;
            v::text("summary", &summary, MAX_TEXT_CHARS, true)?;
            E::LogbookEntryAdded {
                entry,
                supporter,
                on,
                minutes,
                mode,
                tasks,
                life_domains,
                summary,
            }
        }
        C::AddNote {
            note,
            about,
            text,
            life_domains,
        } => {
            new_entry(household, "note_id", "note", note)?;
            if let Some(member) = about {
                existing_member(household, "about_member_id", member)?;
            }
            v::text("text", &text, MAX_TEXT_CHARS, true)?;
            v::life_domains("life_domains", &life_domains, false)?;
            E::NoteAdded {
                note,
                about,
                text,
                life_domains,
            }
        }
        C::RecordCheckIn {
            check_in,
            member,
            respondent,
            on,
            rating,
            note,
        } => {
            new_entry(household, "check_in_id", "check-in", check_in)?;
            existing_member(household, "member_id", member)?;
            existing_member(household, "respondent_member_id", respondent)?;
            v::date("date", on)?;
            v::rating("rating", rating)?;
            v::optional_text("note", &note, MAX_TEXT_CHARS, true)?;
            E::CheckInRecorded {
                check_in,
                member,
                respondent,
                on,
                rating,
                note,
            }
        }
        C::SetCheckInThreshold { threshold } => {
            v::rating("threshold", threshold)?;
            E::CheckInThresholdSet { threshold }
        }
        C::RecordMeasurement {
            measurement,
            member,
            respondent,
            instrument,
            moment,
            on,
            answers,
        } => {
            new_entry(household, "measurement_id", "measurement", measurement)?;
            existing_member(household, "member_id", member)?;
            respondent_fits(household, respondent, instrument.respondent)?;
            v::date("date", on)?;
            crate::measure::check_answers(&instrument, &answers)?;
            if let Some(moment) = moment
                && household.measurements.iter().any(|m| {
                    m.member == member
                        && m.respondent == respondent
                        && m.instrument == instrument.key
                        && m.moment == Some(moment)
                })
            {
                return Err(DomainError::invalid(
                    "moment",
                    format!(
                        "the {} of {} by this respondent about this member is already recorded",
                        moment.display_name(),
                        instrument.key
                    ),
                ));
            }
            E::MeasurementRecorded {
                measurement,
                member,
                respondent,
                respondent_kind: instrument.respondent,
                instrument: instrument.key,
                version: instrument.version,
                moment,
                on,
                answers,
            }
        }
        C::SetFamilyType { family_type } => E::FamilyTypeSet { family_type },
        C::ObjectToEvaluation { objects } => E::EvaluationObjectionSet { objects },
    };
    Ok(vec![event])
}

/// Refuses `id` for a new timeline entry (logbook entry, note, check-in, measurement) when the
/// household has an entry with it already.
fn new_entry(
    household: &Household,
    field: &str,
    what: &'static str,
    id: EntryId,
) -> Result<(), DomainError> {
    if household.entries.contains(&id) {
        return Err(DomainError::exists(field, what, id));
    }
    Ok(())
}

/// Whether `respondent` is someone who answers an instrument meant for `kind`: a client member,
/// a relative (or legal representative) member, or a supporter in the network.
fn respondent_fits(
    household: &Household,
    respondent: Party,
    kind: RespondentKind,
) -> Result<(), DomainError> {
    let fits = match respondent {
        Party::Member(member) => {
            let role = existing_member(household, "respondent.member_id", member)?
                .details
                .role;
            match kind {
                RespondentKind::Client => role == MemberRole::Client,
                RespondentKind::Relative => role != MemberRole::Client,
                RespondentKind::Supporter => false,
            }
        }
        Party::Contact(contact) => {
            let details = &existing_contact(household, "respondent.contact_id", contact)?.details;
            kind == RespondentKind::Supporter && details.kind == ContactKind::Supporter
        }
    };
    if fits {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "respondent",
            format!("this instrument is answered by a {}", kind.display_name()),
        ))
    }
}

fn existing_member<'a>(
    household: &'a Household,
    field: &str,
    member: MemberId,
) -> Result<&'a crate::state::Member, DomainError> {
    household
        .member(member)
        .ok_or_else(|| DomainError::not_found(field, "member", member))
}

fn existing_contact<'a>(
    household: &'a Household,
    field: &str,
    contact: ContactId,
) -> Result<&'a crate::state::Contact, DomainError> {
    household
        .contact(contact)
        .ok_or_else(|| DomainError::not_found(field, "contact", contact))
}

fn existing_plan<'a>(
    household: &'a Household,
    field: &str,
    plan: PlanId,
) -> Result<&'a crate::state::Plan, DomainError> {
    household
        .plans
        .get(&plan)
        .ok_or_else(|| DomainError::not_found(field, "plan", plan))
}

fn active_goal<'a>(
    household: &'a Household,
    goal: GoalId,
    verb: &str,
) -> Result<&'a crate::state::Goal, DomainError> {
    let current = household
        .goals
        .get(&goal)
        .ok_or_else(|| DomainError::not_found("goal_id", "goal", goal))?;
    if current.status != GoalStatus::Active {
        return Err(DomainError::FailedPrecondition(format!(
            "goal {goal} is {:?}; only an active goal can be {verb} (reopen it first)",
            current.status
        )));
    }
    Ok(current)
}

fn agreement_in<'a>(
    household: &'a Household,
    agreement: AgreementId,
    allowed: &[AgreementStatus],
    verb: &str,
) -> Result<&'a crate::state::Agreement, DomainError> {
    let current = household
        .agreements
        .get(&agreement)
        .ok_or_else(|| DomainError::not_found("agreement_id", "agreement", agreement))?;
    if !allowed.contains(&current.status) {
        return Err(DomainError::FailedPrecondition(format!(
            "agreement {agreement} is {:?}; it cannot be {verb}",
            current.status
        )));
    }
    Ok(current)
}

fn party_name(party: &Party) -> String {
    match party {
        Party::Member(m) => format!("member {m}"),
        Party::Contact(c) => format!("contact {c}"),
    }
}

fn grant_terms(terms: &GrantTerms) -> Result<(), DomainError> {
    if terms.scopes.is_empty() {
        return Err(DomainError::invalid(
            "terms.scopes",
            "name at least one thing to allow",
        ));
    }
    v::no_repeats("terms.scopes", &terms.scopes)?;
    v::no_repeats("terms.life_domains", &terms.life_domains)?;
    v::no_repeats("terms.funding_domains", &terms.funding_domains)?;
    if let Some(until) = terms.until {
        v::date("terms.until", until)?;
    }
    Ok(())
}

fn member_details(details: &MemberDetails) -> Result<(), DomainError> {
    v::text("details.name", &details.name, MAX_NAME_CHARS, false)?;
    if details.role == MemberRole::Relative && details.relation.is_none() {
        return Err(DomainError::invalid(
            "details.relation",
            "a relative needs a relation",
        ));
    }
    if let Some(birth) = details.birth_date {
        v::date("details.birth_date", birth)?;
    }
    Ok(())
}

fn contact_details(details: &ContactDetails) -> Result<(), DomainError> {
    v::text("details.name", &details.name, MAX_NAME_CHARS, false)?;
    if let Some(organisation) = &details.organisation {
        v::text("details.organisation", organisation, MAX_NAME_CHARS, false)?;
    }
    match details.kind {
        ContactKind::Supporter if details.supporter_kind.is_none() => Err(DomainError::invalid(
            "details.supporter_kind",
            "a supporter needs a supporter kind",
        )),
        ContactKind::Institution if details.institution_kind.is_none() => {
            Err(DomainError::invalid(
                "details.institution_kind",
                "an institution needs an institution kind",
            ))
        }
        ContactKind::CareProvider | ContactKind::Professional | ContactKind::Institution
            if details.supporter_kind.is_some() =>
        {
            Err(DomainError::invalid(
                "details.supporter_kind",
                "only supporters have a supporter kind",
            ))
        }
        ContactKind::CareProvider | ContactKind::Professional | ContactKind::Supporter
            if details.institution_kind.is_some() =>
        {
            Err(DomainError::invalid(
                "details.institution_kind",
                "only institutions have an institution kind",
            ))
        }
        _ => Ok(()),
    }
}

fn goal_fields(
    household: &Household,
    title: &str,
    description: &str,
    life_domains: &[LifeDomain],
    plan: Option<PlanId>,
) -> Result<(), DomainError> {
    v::text("title", title, MAX_TITLE_CHARS, false)?;
    v::optional_text("description", description, MAX_TEXT_CHARS, true)?;
    v::life_domains("life_domains", life_domains, true)?;
    if let Some(plan) = plan {
        let current = existing_plan(household, "plan_id", plan)?;
        if current.status == PlanStatus::Closed {
            return Err(DomainError::FailedPrecondition(format!(
                "plan {plan} is closed"
            )));
        }
    }
    Ok(())
}

fn agreement_terms(household: &Household, terms: &AgreementTerms) -> Result<(), DomainError> {
    v::text("terms.title", &terms.title, MAX_TITLE_CHARS, false)?;
    v::optional_text(
        "terms.description",
        &terms.description,
        MAX_TEXT_CHARS,
        true,
    )?;
    if terms.parties.is_empty() {
        return Err(DomainError::invalid(
            "terms.parties",
            "name at least one party",
        ));
    }
    v::no_repeats("terms.parties", &terms.parties)?;
    for (i, party) in terms.parties.iter().enumerate() {
        let field = format!("terms.parties[{i}]");
        match *party {
            Party::Member(member) => {
                existing_member(household, &field, member)?;
            }
            Party::Contact(contact) => {
                existing_contact(household, &field, contact)?;
            }
        }
    }
    if let Some(responsible) = terms.responsible {
        existing_contact(household, "terms.responsible_contact_id", responsible)?;
    }
    v::period("terms.start_date", terms.start, "terms.end_date", terms.end)?;
    if let Some(frequency) = &terms.frequency {
        v::text("terms.frequency", frequency, MAX_SHORT_CHARS, false)?;
    }
    v::no_repeats("terms.goal_ids", &terms.goals)?;
    for (i, goal) in terms.goals.iter().enumerate() {
        if !household.goals.contains_key(goal) {
            return Err(DomainError::not_found(
                format!("terms.goal_ids[{i}]"),
                "goal",
                goal,
            ));
        }
    }
    if let Some(review) = terms.review_on {
        v::date("terms.review_date", review)?;
    }
    if let Some(plan) = terms.plan
        && existing_plan(household, "terms.plan_id", plan)?.status == PlanStatus::Closed
    {
        return Err(DomainError::FailedPrecondition(format!(
            "plan {plan} is closed"
        )));
    }
    Ok(())
}

fn funding_transition(
    household: &Household,
    member: MemberId,
    from: FundingDomain,
    to: FundingDomain,
    on: Date,
    reason: String,
) -> Result<Vec<DomainEvent>, DomainError> {
    existing_member(household, "member_id", member)?;
    if from == to {
        return Err(DomainError::invalid(
            "to_funding_domain",
            "must differ from the domain the care moves from",
        ));
    }
    v::date("date", on)?;
    v::text("reason", &reason, MAX_REASON_CHARS, true)?;
    let mut events = vec![DomainEvent::FundingTransitionRecorded {
        member,
        from,
        to,
        on,
        reason: reason.clone(),
    }];
    for (id, agreement) in &household.agreements {
        let carries_over = matches!(
            agreement.status,
            AgreementStatus::Proposed | AgreementStatus::Accepted
        ) && agreement.terms.funding == from
            && agreement.terms.parties.contains(&Party::Member(member))
            && agreement.terms.end.is_none_or(|end| end >= on);
        if carries_over {
            events.push(DomainEvent::AgreementCarriedOver {
                agreement: *id,
                from,
                to,
                on,
            });
        }
    }
    Ok(events)
}
