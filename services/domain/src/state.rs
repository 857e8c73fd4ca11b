//! A household's current state, folded from its events. Commands are decided against it.

use crate::event::{
    AgreementTerms, ContactDetails, DomainEvent, GrantTerms, Grantee, Identity, MemberDetails,
    Party,
};
use crate::ids::{
    AccessRequestId, AgreementId, ContactId, EntryId, GoalId, GrantId, IndicationId, MemberId,
    PlanId,
};
use crate::vocab::{
    FamilyType, FundingDomain, IndicationKind, LifeDomain, MeasurementMoment, PlanKind,
    RespondentKind, SupportPhase,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use time::Date;

/// A person in the household.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Who they are.
    pub details: MemberDetails,
    /// Removed from the record; their history stays.
    pub removed: bool,
}

/// A network contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Who they are.
    pub details: ContactDetails,
    /// Removed from the network; their history stays.
    pub removed: bool,
}

/// Where a plan is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlanStatus {
    /// Being written.
    Draft,
    /// In effect.
    Active,
    /// Closed.
    Closed,
}

/// A plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Its kind.
    pub kind: PlanKind,
    /// Its title.
    pub title: String,
    /// Its summary.
    pub summary: String,
    /// Version, 1 when drafted, +1 per revision.
    pub version: u32,
    /// Where it is.
    pub status: PlanStatus,
    /// Dates it was evaluated on.
    pub evaluations: Vec<Date>,
}

/// Where a goal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GoalStatus {
    /// Being worked on.
    Active,
    /// Achieved.
    Achieved,
    /// Given up.
    Abandoned,
}

/// A goal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goal {
    /// The member whose goal it is.
    pub owner: MemberId,
    /// Its title.
    pub title: String,
    /// Its description.
    pub description: String,
    /// Life domains it concerns.
    pub life_domains: Vec<LifeDomain>,
    /// The plan it belongs to.
    pub plan: Option<PlanId>,
    /// Where it is.
    pub status: GoalStatus,
    /// Progress notes so far.
    pub progress_notes: u32,
}

/// Where an agreement is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgreementStatus {
    /// Proposed, not yet accepted.
    Proposed,
    /// Accepted: applies over its period.
    Accepted,
    /// Rejected.
    Rejected,
    /// Ended.
    Ended,
}

/// Where an agreement stands on a given day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgreementPhase {
    /// Proposed, not accepted yet.
    Proposed,
    /// Accepted, starting later.
    Upcoming,
    /// Accepted and running.
    Active,
    /// Accepted and running, but reported not delivered as agreed, or past its review date.
    UnderReview,
    /// Ended, or past its end date.
    Ended,
    /// Rejected.
    Rejected,
}

/// An agreement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    /// Its current terms.
    pub terms: AgreementTerms,
    /// Where it is.
    pub status: AgreementStatus,
    /// Care was reported not delivered as agreed, and it has not been amended or ended since.
    pub under_review: bool,
    /// The funding domain it had before it was carried over, and the day the carry-over took
    /// effect (`terms.funding` holds the domain from that day on).
    pub funded_before: Option<(FundingDomain, Date)>,
    /// Why it was rejected, once it was.
    #[serde(default)]
    pub rejection: Option<String>,
    /// The day care was last reported not delivered as agreed, while that stands (see
    /// `under_review`).
    #[serde(default)]
    pub not_delivered_on: Option<Date>,
}

impl Agreement {
    /// The funding domain on day `on`.
    pub fn funding_on(&self, on: Date) -> FundingDomain {
        match self.funded_before {
            Some((before, from)) if on < from => before,
            _ => self.terms.funding,
        }
    }

    /// Where it stands on day `on`.
    pub fn phase(&self, on: Date) -> AgreementPhase {
        match self.status {
            AgreementStatus::Proposed => AgreementPhase::Proposed,
            AgreementStatus::Rejected => AgreementPhase::Rejected,
            AgreementStatus::Ended => AgreementPhase::Ended,
            AgreementStatus::Accepted if self.terms.end.is_some_and(|end| end < on) => {
                AgreementPhase::Ended
            }
            AgreementStatus::Accepted if self.terms.start > on => AgreementPhase::Upcoming,
            AgreementStatus::Accepted
                if self.under_review || self.terms.review_on.is_some_and(|r| r <= on) =>
            {
                AgreementPhase::UnderReview
            }
            AgreementStatus::Accepted => AgreementPhase::Active,
        }
    }
}

/// An indication or decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indication {
    /// Whose.
    pub member: MemberId,
    /// Which kind.
    pub kind: IndicationKind,
    /// Care profile (Wlz), e.g. "VG6".
    pub care_profile: Option<String>,
    /// First valid day.
    pub valid_from: Date,
    /// Last valid day.
    pub valid_until: Option<Date>,
}

/// Where support stands: the phase set last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Support {
    /// The phase.
    pub phase: SupportPhase,
    /// Hours of support per week, when given.
    pub hours_per_week: Option<u32>,
    /// The day the phase began.
    pub since: Date,
    /// How often the supporter keeps in touch in it (days), when the plan says.
    pub contact_every_days: Option<u32>,
}

/// A self check-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckIn {
    /// Whom it is about.
    pub member: MemberId,
    /// Who rated: the member, or a relative.
    pub respondent: MemberId,
    /// The day it is about.
    pub on: Date,
    /// 1 (very badly) to 10 (very well).
    pub rating: u8,
}

/// Answers to a measurement instrument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurement {
    /// Its id (a timeline entry's).
    pub id: EntryId,
    /// Whom the answers are about.
    pub member: MemberId,
    /// Who answered.
    pub respondent: Party,
    /// As whom they answered.
    pub respondent_kind: RespondentKind,
    /// The instrument's key.
    pub instrument: String,
    /// The version answered.
    pub version: u32,
    /// The moment of the effect measurement, if it is one.
    pub moment: Option<MeasurementMoment>,
    /// The day it is about.
    pub on: Date,
    /// The answers.
    pub answers: Vec<crate::measure::Answer>,
}

/// The identity a member or contact signs in with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// Their own identity.
    pub identity: Option<Identity>,
    /// For a contact: the organisation whose professionals act as this contact.
    pub organisation_id: Option<String>,
}

/// A consent grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Who holds it.
    pub grantee: Grantee,
    /// What it allows, until when.
    pub terms: GrantTerms,
    /// The request it answered.
    pub request: Option<AccessRequestId>,
    /// Revoked before its time.
    pub revoked: bool,
}

impl Grant {
    /// Whether it holds on `day`.
    pub fn holds_on(&self, day: Date) -> bool {
        !self.revoked && self.terms.until.is_none_or(|until| day <= until)
    }
}

/// Where a request for access is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestStatus {
    /// Awaiting the family.
    Open,
    /// Answered with this grant.
    Granted(GrantId),
    /// Declined.
    Declined,
}

/// A request for access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRequest {
    /// Who asks.
    pub requester: Grantee,
    /// What they ask for.
    pub terms: GrantTerms,
    /// Why.
    pub reason: String,
    /// Where it is.
    pub status: RequestStatus,
}

/// A household's current state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Household {
    /// Registered (its first event happened).
    pub registered: bool,
    /// Display name, e.g. "Familie Jansen".
    pub name: String,
    /// Who registered it, until a client or legal representative is linked to an identity
    /// (then `None`: ownership follows the linked members from then on).
    pub registered_by: Option<Identity>,
    /// Erased: nothing of it is left but this mark.
    pub erased: bool,
    /// Identities linked to members and contacts.
    pub links: BTreeMap<Party, Link>,
    /// Consent grants, by id (revoked ones too).
    pub grants: BTreeMap<GrantId, Grant>,
    /// Requests for access, by id.
    pub access_requests: BTreeMap<AccessRequestId, AccessRequest>,
    /// People, by id.
    pub members: BTreeMap<MemberId, Member>,
    /// Network, by id.
    pub contacts: BTreeMap<ContactId, Contact>,
    /// Where support stands, once a phase was set.
    pub support: Option<Support>,
    /// Plans, by id.
    pub plans: BTreeMap<PlanId, Plan>,
    /// Goals, by id.
    pub goals: BTreeMap<GoalId, Goal>,
    /// Agreements, by id.
    pub agreements: BTreeMap<AgreementId, Agreement>,
    /// Indications, by id.
    pub indications: BTreeMap<IndicationId, Indication>,
    /// Ids of logbook entries, notes and check-ins.
    pub entries: BTreeSet<EntryId>,
    /// Minutes of supporters' logbook contacts, by day.
    pub contact_minutes: BTreeMap<Date, u32>,
    /// Self check-ins, in the order recorded.
    pub check_ins: Vec<(EntryId, CheckIn)>,
    /// The rating below which a check-in is a signal, when the household set one.
    pub check_in_threshold: Option<u8>,
    /// Answers to measurement instruments, in the order recorded.
    pub measurements: Vec<Measurement>,
    /// Its family type, when set.
    pub family_type: Option<FamilyType>,
    /// The family objects to counting in the effect report.
    pub objects_to_evaluation: bool,
}

impl Household {
    /// The state after all `events`, in order.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a DomainEvent>) -> Self {
        let mut household = Self::default();
        for event in events {
            household.apply(event);
        }
        household
    }

    /// The day of the last logbook contact on or before `on`, if any.
    pub fn last_contact(&self, on: Date) -> Option<Date> {
        self.contact_minutes
            .range(..=on)
            .next_back()
            .map(|(day, _)| *day)
    }

    /// The member with this id, unless removed.
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.members.get(&id).filter(|m| !m.removed)
    }

    /// The contact with this id, unless removed.
    pub fn contact(&self, id: ContactId) -> Option<&Contact> {
        self.contacts.get(&id).filter(|c| !c.removed)
    }

    /// Folds one event in. Events were validated when decided, so an event that refers to
    /// something unknown (which only a damaged log could hold) changes nothing.
    pub fn apply(&mut self, event: &DomainEvent) {
        self.fold(event);
        if matches!(
            event,
            DomainEvent::IdentityLinked { .. }
                | DomainEvent::MemberAdded { .. }
                | DomainEvent::MemberUpdated { .. }
        ) && self.has_linked_owner()
        {
            // The registrant held the household until its owners were linked; from then on
            // ownership follows them, for good.
            self.registered_by = None;
        }
    }

    /// Whether a current client or legal representative is linked to a sign-in identity.
    pub fn has_linked_owner(&self) -> bool {
        self.links.iter().any(|(party, link)| match party {
            Party::Member(m) => {
                link.identity.is_some()
                    && self.member(*m).is_some_and(|member| {
                        matches!(
                            member.details.role,
                            crate::vocab::MemberRole::Client
                                | crate::vocab::MemberRole::LegalRepresentative
                        )
                    })
            }
            Party::Contact(_) => false,
        })
    }

    fn fold(&mut self, event: &DomainEvent) {
        use DomainEvent as E;
        match event {
            E::HouseholdRegistered {
                name,
                registered_by,
            } => {
                self.registered = true;
                self.name.clone_from(name);
                self.registered_by.clone_from(registered_by);
            }
            E::HouseholdErased { .. } => {
                *self = Household {
                    registered: true,
                    erased: true,
                    ..Household::default()
                };
            }
            E::IdentityLinked {
                party,
                identity,
                organisation_id,
            } => {
                if identity.is_none() && organisation_id.is_none() {
                    self.links.remove(party);
                } else {
                    self.links.insert(
                        *party,
                        Link {
                            identity: identity.clone(),
                            organisation_id: organisation_id.clone(),
                        },
                    );
                }
            }
            E::AccessGranted {
                grant,
                grantee,
                terms,
                request,
            } => {
                self.grants.insert(
                    *grant,
                    Grant {
                        grantee: grantee.clone(),
                        terms: terms.clone(),
                        request: *request,
                        revoked: false,
                    },
                );
                if let Some(r) = request.and_then(|r| self.access_requests.get_mut(&r)) {
                    r.status = RequestStatus::Granted(*grant);
                }
            }
            E::AccessRevoked { grant, .. } => {
                if let Some(g) = self.grants.get_mut(grant) {
                    g.revoked = true;
                }
            }
            E::AccessRequested {
                request,
                requester,
                terms,
                reason,
            } => {
                self.access_requests.insert(
                    *request,
                    AccessRequest {
                        requester: requester.clone(),
                        terms: terms.clone(),
                        reason: reason.clone(),
                        status: RequestStatus::Open,
                    },
                );
            }
            E::AccessRequestDeclined { request, .. } => {
                if let Some(r) = self.access_requests.get_mut(request) {
                    r.status = RequestStatus::Declined;
                }
            }
            E::MemberAdded { member, details } | E::MemberUpdated { member, details } => {
                self.members.insert(
                    *member,
                    Member {
                        details: details.clone(),
                        removed: false,
                    },
                );
            }
            E::MemberRemoved { member, .. } => {
                if let Some(m) = self.members.get_mut(member) {
                    m.removed = true;
                }
            }
            E::ContactAdded { contact, details } | E::ContactUpdated { contact, details } => {
                self.contacts.insert(
                    *contact,
                    Contact {
                        details: details.clone(),
                        removed: false,
                    },
                );
            }
            E::ContactRemoved { contact, .. } => {
                if let Some(c) = self.contacts.get_mut(contact) {
                    c.removed = true;
                }
            }
            E::SupportPhaseChanged {
                phase,
                hours_per_week,
                on,
                contact_every_days,
            } => {
                self.support = Some(Support {
                    phase: *phase,
                    hours_per_week: *hours_per_week,
                    since: *on,
                    contact_every_days: *contact_every_days,
                });
            }
            E::PlanDrafted {
                plan,
                kind,
                title,
                summary,
            } => {
                self.plans.insert(
                    *plan,
                    Plan {
                        kind: *kind,
                        title: title.clone(),
                        summary: summary.clone(),
                        version: 1,
                        status: PlanStatus::Draft,
                        evaluations: Vec::new(),
                    },
                );
            }
            E::PlanRevised {
                plan,
                version,
                title,
                summary,
            } => {
                if let Some(p) = self.plans.get_mut(plan) {
                    p.version = *version;
                    p.title.clone_from(title);
                    p.summary.clone_from(summary);
                }
            }
            E::PlanActivated { plan, .. } => self.set_plan_status(*plan, PlanStatus::Active),
            E::PlanEvaluated { plan, on, .. } => {
                if let Some(p) = self.plans.get_mut(plan) {
                    p.evaluations.push(*on);
                }
            }
            E::PlanClosed { plan, .. } => self.set_plan_status(*plan, PlanStatus::Closed),
            E::GoalSet {
                goal,
                owner,
                title,
                description,
                life_domains,
                plan,
            } => {
                self.goals.insert(
                    *goal,
                    Goal {
                        owner: *owner,
                        title: title.clone(),
                        description: description.clone(),
                        life_domains: life_domains.clone(),
                        plan: *plan,
                        status: GoalStatus::Active,
                        progress_notes: 0,
                    },
                );
            }
            E::GoalUpdated {
                goal,
                title,
                description,
                life_domains,
                plan,
            } => {
                if let Some(g) = self.goals.get_mut(goal) {
                    g.title.clone_from(title);
                    g.description.clone_from(description);
                    g.life_domains.clone_from(life_domains);
                    g.plan = *plan;
                }
            }
            E::GoalProgressNoted { goal, .. } => {
                if let Some(g) = self.goals.get_mut(goal) {
                    g.progress_notes += 1;
                }
            }
            E::GoalAchieved { goal, .. } => self.set_goal_status(*goal, GoalStatus::Achieved),
            E::GoalAbandoned { goal, .. } => self.set_goal_status(*goal, GoalStatus::Abandoned),
            E::GoalReopened { goal, .. } => self.set_goal_status(*goal, GoalStatus::Active),
            E::AgreementProposed { agreement, terms } => {
                self.agreements.insert(
                    *agreement,
                    Agreement {
                        terms: terms.clone(),
                        status: AgreementStatus::Proposed,
                        under_review: false,
                        funded_before: None,
                        rejection: None,
                        not_delivered_on: None,
                    },
                );
            }
            E::AgreementAccepted { agreement } => {
                self.set_agreement_status(*agreement, AgreementStatus::Accepted);
            }
            E::AgreementRejected { agreement, reason } => {
                self.set_agreement_status(*agreement, AgreementStatus::Rejected);
                if let Some(a) = self.agreements.get_mut(agreement) {
                    a.rejection = Some(reason.clone());
                }
            }
            E::AgreementAmended {
                agreement, terms, ..
            } => {
                if let Some(a) = self.agreements.get_mut(agreement) {
                    a.terms = terms.clone();
                    a.under_review = false;
                    a.not_delivered_on = None;
                }
            }
            E::AgreementEnded { agreement, .. } => {
                self.set_agreement_status(*agreement, AgreementStatus::Ended);
                if let Some(a) = self.agreements.get_mut(agreement) {
                    a.under_review = false;
                    a.not_delivered_on = None;
                }
            }
            E::AgreementNotDelivered { agreement, on, .. } => {
                if let Some(a) = self.agreements.get_mut(agreement) {
                    a.under_review = true;
                    a.not_delivered_on = Some(*on);
                }
            }
            E::IndicationRecorded {
                indication,
                member,
                kind,
                care_profile,
                valid_from,
                valid_until,
            } => {
                self.indications.insert(
                    *indication,
                    Indication {
                        member: *member,
                        kind: *kind,
                        care_profile: care_profile.clone(),
                        valid_from: *valid_from,
                        valid_until: *valid_until,
                    },
                );
            }
            E::FundingTransitionRecorded { .. } => {}
            E::AgreementCarriedOver {
                agreement,
                from,
                to,
                on,
            } => {
                if let Some(a) = self.agreements.get_mut(agreement) {
                    a.terms.funding = *to;
                    a.funded_before = Some((*from, *on));
                }
            }
            E::LogbookEntryAdded {
                entry, on, minutes, ..
            } => {
                self.entries.insert(*entry);
                let day = self.contact_minutes.entry(*on).or_default();
                *day = day.saturating_add(*minutes);
            }
            E::NoteAdded { note: entry, .. } => {
                self.entries.insert(*entry);
            }
            E::CheckInRecorded {
                check_in,
                member,
                respondent,
                on,
                rating,
                ..
            } => {
                self.entries.insert(*check_in);
                self.check_ins.push((
                    *check_in,
                    CheckIn {
                        member: *member,
                        respondent: *respondent,
                        on: *on,
                        rating: *rating,
                    },
                ));
            }
            E::CheckInThresholdSet { threshold } => self.check_in_threshold = Some(*threshold),
            E::MeasurementRecorded {
                measurement,
                member,
                respondent,
                respondent_kind,
                instrument,
                version,
                moment,
                on,
                answers,
            } => {
                self.entries.insert(*measurement);
                self.measurements.push(Measurement {
                    id: *measurement,
                    member: *member,
                    respondent: *respondent,
                    respondent_kind: *respondent_kind,
                    instrument: instrument.clone(),
                    version: *version,
                    moment: *moment,
                    on: *on,
                    answers: answers.clone(),
                });
            }
            E::FamilyTypeSet { family_type } => self.family_type = *family_type,
            E::EvaluationObjectionSet { objects } => self.objects_to_evaluation = *objects,
        }
    }

    fn set_plan_status(&mut self, plan: PlanId, status: PlanStatus) {
        if let Some(p) = self.plans.get_mut(&plan) {
            p.status = status;
        }
    }

    fn set_goal_status(&mut self, goal: GoalId, status: GoalStatus) {
        if let Some(g) = self.goals.get_mut(&goal) {
            g.status = status;
        }
    }

    fn set_agreement_status(&mut self, agreement: AgreementId, status: AgreementStatus) {
        if let Some(a) = self.agreements.get_mut(&agreement) {
            a.status = status;
        }
    }
}
