//! The unified timeline: each event of a household as one entry people can read, with the
//! structured fields to filter on (members, life domains, funding domains, kind, date).

use crate::event::{DomainEvent, Party};
use crate::ids::MemberId;
use crate::state::Household;
use crate::vocab::{FundingDomain, LifeDomain};
use serde::{Deserialize, Serialize};
use time::Date;

/// What an entry is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// The household and its members.
    Household,
    /// The network: supporters, providers, institutions.
    Network,
    /// Support phase and intensity.
    Support,
    /// Plans.
    Plan,
    /// Goals.
    Goal,
    /// Agreements.
    Agreement,
    /// Indications and decisions.
    Indication,
    /// Moves between funding domains.
    Transition,
    /// The supporter's logbook.
    Logbook,
    /// Free notes.
    Note,
    /// Self check-ins: how things go, rated 1 to 10.
    CheckIn,
    /// Answers to a measurement instrument (an effect measurement).
    Measurement,
    /// Consent: identities, grants and requests for access.
    Access,
}

/// One entry of a household's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// What it is about.
    pub kind: EntryKind,
    /// The day it concerns: the date the event names, or else the day it was recorded.
    pub date: Date,
    /// One line for people, e.g. "Afspraak geaccepteerd: logeeropvang (Wlz, PGB)".
    pub summary: String,
    /// Members it concerns.
    pub members: Vec<MemberId>,
    /// Life domains it concerns.
    pub life_domains: Vec<LifeDomain>,
    /// Funding domains it concerns.
    pub funding_domains: Vec<FundingDomain>,
}

/// The day an entry for `event` concerns: the day the event names itself (a plan activated, a
/// funding transition, a logbook entry, an indication's first day, …), or else `recorded_on`,
/// the day it happened. It depends on the event alone, never on the household's state, so the
/// read models can key an entry by it and find it again from the event. Every event is listed,
/// so a new one has to say which day it concerns.
pub fn date_of(event: &DomainEvent, recorded_on: Date) -> Date {
    use DomainEvent as E;
    match event {
        E::SupportPhaseChanged { on, .. }
        | E::PlanActivated { on, .. }
        | E::PlanEvaluated { on, .. }
        | E::PlanClosed { on, .. }
        | E::GoalProgressNoted { on, .. }
        | E::GoalAchieved { on, .. }
        | E::GoalAbandoned { on, .. }
        | E::AgreementEnded { on, .. }
        | E::AgreementNotDelivered { on, .. }
        | E::FundingTransitionRecorded { on, .. }
        | E::AgreementCarriedOver { on, .. }
        | E::LogbookEntryAdded { on, .. }
        | E::CheckInRecorded { on, .. }
        | E::MeasurementRecorded { on, .. } => *on,
        E::IndicationRecorded { valid_from, .. } => *valid_from,
        E::HouseholdRegistered { .. }
        | E::IdentityLinked { .. }
        | E::HouseholdErased { .. }
        | E::AccessGranted { .. }
        | E::AccessRevoked { .. }
        | E::AccessRequested { .. }
        | E::AccessRequestDeclined { .. }
        | E::MemberAdded { .. }
        | E::MemberUpdated { .. }
        | E::MemberRemoved { .. }
        | E::ContactAdded { .. }
        | E::ContactUpdated { .. }
        | E::ContactRemoved { .. }
        | E::PlanDrafted { .. }
        | E::PlanRevised { .. }
        | E::GoalSet { .. }
        | E::GoalUpdated { .. }
        | E::GoalReopened { .. }
        | E::AgreementProposed { .. }
        | E::AgreementAccepted { .. }
        | E::AgreementRejected { .. }
        | E::AgreementAmended { .. }
        | E::NoteAdded { .. }
        | E::CheckInThresholdSet { .. }
        | E::FamilyTypeSet { .. }
        | E::EvaluationObjectionSet { .. } => recorded_on,
    }
}

/// The entry for `event`, described with `before`, the household's state before it.
/// `recorded_on` is the day it happened: the day the log recorded it, or the day given when it
/// was recorded later. Events that name their own day are dated by that.
pub fn entry(before: &Household, event: &DomainEvent, recorded_on: Date) -> TimelineEntry {
    use DomainEvent as E;
    let member_name = |id: &MemberId| {
        before
            .members
            .get(id)
            .map_or_else(|| "?".to_owned(), |m| m.details.name.clone())
    };
    let goal_title = |id| {
        before
            .goals
            .get(id)
            .map_or_else(|| "?".to_owned(), |g| g.title.clone())
    };
    let goal_owner = |id| before.goals.get(id).map(|g| g.owner);
    let goal_domains = |id| {
        before
            .goals
            .get(id)
            .map(|g| g.life_domains.clone())
            .unwrap_or_default()
    };
    let agreement = |id| before.agreements.get(id);
    let agreement_title =
        |id| agreement(id).map_or_else(|| "?".to_owned(), |a| a.terms.title.clone());
    let agreement_members = |id| {
        agreement(id)
            .map(|a| members_of(&a.terms.parties))
            .unwrap_or_default()
    };
    let agreement_funding = |id| {
        agreement(id)
            .map(|a| vec![a.terms.funding])
            .unwrap_or_default()
    };
    let plan_title = |id| {
        before
            .plans
            .get(id)
            .map_or_else(|| "?".to_owned(), |p| format!("{} ({})", p.title, p.kind))
    };
    let contact_name = |id| {
        before
            .contacts
            .get(id)
            .map_or_else(|| "?".to_owned(), |c| c.details.name.clone())
    };
    let date = date_of(event, recorded_on);
    let new = |kind, summary: String| TimelineEntry {
        kind,
        date,
        summary,
        members: Vec::new(),
        life_domains: Vec::new(),
        funding_domains: Vec::new(),
    };
    match event {
        E::HouseholdRegistered { name, .. } => new(
            EntryKind::Household,
            format!("Huishouden aangemeld: {name}"),
        ),
        E::HouseholdErased { .. } => new(EntryKind::Household, "Huishouden gewist".to_owned()),
        E::IdentityLinked {
            party,
            identity,
            organisation_id,
        } => {
            let (name, members) = match party {
                Party::Member(m) => (member_name(m), vec![*m]),
                Party::Contact(c) => (contact_name(c), Vec::new()),
            };
            let summary = match (identity, organisation_id) {
                (None, None) => format!("Inlog van {name} ontkoppeld"),
                (Some(_), None) => format!("Inlog gekoppeld aan {name}"),
                (_, Some(org)) => format!("{name} gekoppeld aan organisatie {org}"),
            };
            TimelineEntry {
                members,
                ..new(EntryKind::Access, summary)
            }
        }
        E::AccessGranted { grantee, terms, .. } => new(
            EntryKind::Access,
            format!(
                "Toegang verleend aan {}: {}",
                grantee_name(before, grantee),
                describe_terms(terms)
            ),
        ),
        E::AccessRevoked { grant, reason } => {
            let who = before
                .grants
                .get(grant)
                .map_or_else(|| "?".to_owned(), |g| grantee_name(before, &g.grantee));
            new(
                EntryKind::Access,
                with_reason(format!("Toegang van {who} ingetrokken"), reason),
            )
        }
        E::AccessRequested {
            requester, terms, ..
        } => new(
            EntryKind::Access,
            format!(
                "{} vraagt toegang: {}",
                grantee_name(before, requester),
                describe_terms(terms)
            ),
        ),
        E::AccessRequestDeclined { request, reason } => {
            let who = before
                .access_requests
                .get(request)
                .map_or_else(|| "?".to_owned(), |r| grantee_name(before, &r.requester));
            new(
                EntryKind::Access,
                with_reason(format!("Toegangsverzoek van {who} afgewezen"), reason),
            )
        }
        E::MemberAdded { member, details } => TimelineEntry {
            members: vec![*member],
            ..new(
                EntryKind::Household,
                format!("{} toegevoegd als {}", details.name, details.role),
            )
        },
        E::MemberUpdated { member, details } => TimelineEntry {
            members: vec![*member],
            ..new(
                EntryKind::Household,
                format!("Gegevens van {} bijgewerkt", details.name),
            )
        },
        E::MemberRemoved { member, reason } => TimelineEntry {
            members: vec![*member],
            ..new(
                EntryKind::Household,
                format!("{} uit het dossier: {reason}", member_name(member)),
            )
        },
        E::ContactAdded { details, .. } => {
            let what = details
                .supporter_kind
                .map(|k| k.display_name())
                .or(details.institution_kind.map(|k| k.display_name()))
                .unwrap_or(details.kind.display_name());
            new(
                EntryKind::Network,
                format!("{} in het netwerk ({what})", details.name),
            )
        }
        E::ContactUpdated { details, .. } => new(
            EntryKind::Network,
            format!("Gegevens van {} bijgewerkt", details.name),
        ),
        E::ContactRemoved { contact, reason } => new(
            EntryKind::Network,
            format!("{} uit het netwerk: {reason}", contact_name(contact)),
        ),
        E::SupportPhaseChanged {
            phase,
            hours_per_week,
            contact_every_days,
            ..
        } => new(
            EntryKind::Support,
            format!(
                "Fase: {phase}{}{}",
                hours_per_week
                    .map(|h| format!(", {h} uur per week"))
                    .unwrap_or_default(),
                contact_every_days
                    .map(|d| format!(", contact minstens elke {d} dagen"))
                    .unwrap_or_default()
            ),
        ),
        E::PlanDrafted { kind, title, .. } => {
            new(EntryKind::Plan, format!("Plan opgesteld: {title} ({kind})"))
        }
        E::PlanRevised { version, title, .. } => new(
            EntryKind::Plan,
            format!("Plan herzien: {title}, versie {version}"),
        ),
        E::PlanActivated { plan, .. } => new(
            EntryKind::Plan,
            format!("Plan van kracht: {}", plan_title(plan)),
        ),
        E::PlanEvaluated {
            plan, evaluation, ..
        } => new(
            EntryKind::Plan,
            format!("Plan geëvalueerd: {} — {evaluation}", plan_title(plan)),
        ),
        E::PlanClosed { plan, reason, .. } => new(
            EntryKind::Plan,
            format!("Plan afgesloten: {} — {reason}", plan_title(plan)),
        ),
        E::GoalSet {
            owner,
            title,
            life_domains,
            ..
        } => TimelineEntry {
            members: vec![*owner],
            life_domains: life_domains.clone(),
            ..new(
                EntryKind::Goal,
                format!("Doel van {}: {title}", member_name(owner)),
            )
        },
        E::GoalUpdated {
            goal,
            title,
            life_domains,
            ..
        } => TimelineEntry {
            members: goal_owner(goal).into_iter().collect(),
            life_domains: life_domains.clone(),
            ..new(EntryKind::Goal, format!("Doel bijgesteld: {title}"))
        },
        E::GoalProgressNoted { goal, note, .. } => TimelineEntry {
            members: goal_owner(goal).into_iter().collect(),
            life_domains: goal_domains(goal),
            ..new(
                EntryKind::Goal,
                format!("Voortgang {}: {note}", goal_title(goal)),
            )
        },
        E::GoalAchieved { goal, .. } => TimelineEntry {
            members: goal_owner(goal).into_iter().collect(),
            life_domains: goal_domains(goal),
            ..new(
                EntryKind::Goal,
                format!("Doel bereikt: {}", goal_title(goal)),
            )
        },
        E::GoalAbandoned { goal, reason, .. } => TimelineEntry {
            members: goal_owner(goal).into_iter().collect(),
            life_domains: goal_domains(goal),
            ..new(
                EntryKind::Goal,
                format!("Doel losgelaten: {} — {reason}", goal_title(goal)),
            )
        },
        E::GoalReopened { goal, reason } => TimelineEntry {
            members: goal_owner(goal).into_iter().collect(),
            life_domains: goal_domains(goal),
            ..new(
                EntryKind::Goal,
                format!("Doel heropend: {} — {reason}", goal_title(goal)),
            )
        },
        E::AgreementProposed { terms, .. } => TimelineEntry {
            members: members_of(&terms.parties),
            funding_domains: vec![terms.funding],
            life_domains: terms
                .goals
                .iter()
                .flat_map(goal_domains)
                .fold(Vec::new(), dedup),
            ..new(
                EntryKind::Agreement,
                format!(
                    "Afspraak voorgesteld: {} ({}{}), vanaf {}",
                    terms.title,
                    terms.funding,
                    if terms.pgb { ", PGB" } else { "" },
                    terms.start
                ),
            )
        },
        E::AgreementAccepted { agreement: id } => TimelineEntry {
            members: agreement_members(id),
            funding_domains: agreement_funding(id),
            ..new(
                EntryKind::Agreement,
                format!("Afspraak geaccepteerd: {}", agreement_title(id)),
            )
        },
        E::AgreementRejected {
            agreement: id,
            reason,
        } => TimelineEntry {
            members: agreement_members(id),
            funding_domains: agreement_funding(id),
            ..new(
                EntryKind::Agreement,
                format!("Afspraak afgewezen: {} — {reason}", agreement_title(id)),
            )
        },
        E::AgreementAmended {
            agreement: id,
            terms,
            reason,
        } => TimelineEntry {
            members: members_of(&terms.parties),
            funding_domains: agreement_funding(id)
                .into_iter()
                .chain([terms.funding])
                .fold(Vec::new(), dedup),
            ..new(
                EntryKind::Agreement,
                format!("Afspraak gewijzigd: {} — {reason}", terms.title),
            )
        },
        E::AgreementEnded {
            agreement: id,
            reason,
            ..
        } => TimelineEntry {
            members: agreement_members(id),
            funding_domains: agreement_funding(id),
            ..new(
                EntryKind::Agreement,
                format!("Afspraak beëindigd: {} — {reason}", agreement_title(id)),
            )
        },
        E::AgreementNotDelivered {
            agreement: id,
            description,
            ..
        } => TimelineEntry {
            members: agreement_members(id),
            funding_domains: agreement_funding(id),
            ..new(
                EntryKind::Agreement,
                format!(
                    "Niet geleverd zoals afgesproken: {} — {description}",
                    agreement_title(id)
                ),
            )
        },
        E::IndicationRecorded {
            member,
            kind,
            care_profile,
            valid_until,
            ..
        } => TimelineEntry {
            members: vec![*member],
            funding_domains: vec![kind.funding_domain()],
            ..new(
                EntryKind::Indication,
                format!(
                    "{kind} voor {}{}{}",
                    member_name(member),
                    care_profile
                        .as_ref()
                        .map(|p| format!(", zorgprofiel {p}"))
                        .unwrap_or_default(),
                    valid_until
                        .map(|u| format!(", geldig tot en met {u}"))
                        .unwrap_or_default()
                ),
            )
        },
        E::FundingTransitionRecorded {
            member,
            from,
            to,
            reason,
            ..
        } => TimelineEntry {
            members: vec![*member],
            funding_domains: vec![*from, *to],
            ..new(
                EntryKind::Transition,
                format!("{}: van {from} naar {to} — {reason}", member_name(member)),
            )
        },
        E::AgreementCarriedOver {
            agreement: id,
            from,
            to,
            ..
        } => TimelineEntry {
            members: agreement_members(id),
            funding_domains: vec![*from, *to],
            ..new(
                EntryKind::Agreement,
                format!(
                    "Afspraak loopt door onder de {to} (was {from}): {}",
                    agreement_title(id)
                ),
            )
        },
        E::LogbookEntryAdded {
            supporter,
            minutes,
            mode,
            tasks,
            life_domains,
            summary,
            ..
        } => TimelineEntry {
            life_domains: life_domains.clone(),
            ..new(
                EntryKind::Logbook,
                format!(
                    "{} ({mode}, {minutes} min; {}): {summary}",
                    contact_name(supporter),
                    tasks
                        .iter()
                        .map(|t| t.display_name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        },
        E::NoteAdded {
            about,
            text,
            life_domains,
            ..
        } => TimelineEntry {
            members: about.iter().copied().collect(),
            life_domains: life_domains.clone(),
            ..new(EntryKind::Note, format!("Notitie: {text}"))
        },
        E::CheckInRecorded {
            member,
            respondent,
            rating,
            note,
            ..
        } => TimelineEntry {
            members: if member == respondent {
                vec![*member]
            } else {
                vec![*member, *respondent]
            },
            ..new(
                EntryKind::CheckIn,
                format!(
                    "Check-in over {}: {rating}/10{}{}",
                    member_name(member),
                    if member == respondent {
                        String::new()
                    } else {
                        format!(" (door {})", member_name(respondent))
                    },
                    if note.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {note}")
                    }
                ),
            )
        },
        E::MeasurementRecorded {
            member,
            respondent,
            instrument,
            version,
            moment,
            answers,
            ..
        } => TimelineEntry {
            members: match respondent {
                Party::Member(by) if by != member => vec![*member, *by],
                _ => vec![*member],
            },
            // What people answer about their own life is about their wellbeing: a grant for
            // other domains does not show it.
            life_domains: vec![LifeDomain::MentalHealthAndWellbeing],
            ..new(
                EntryKind::Measurement,
                format!(
                    "Meting{} ingevuld over {}: {instrument} (versie {version}), {} {}{}",
                    moment.map_or(String::new(), |m| format!(" ({})", m.display_name())),
                    member_name(member),
                    answers.len(),
                    if answers.len() == 1 {
                        "antwoord"
                    } else {
                        "antwoorden"
                    },
                    match respondent {
                        Party::Member(by) if by != member => format!(", door {}", member_name(by)),
                        Party::Member(_) => String::new(),
                        Party::Contact(by) => format!(", door {}", contact_name(by)),
                    }
                ),
            )
        },
        E::FamilyTypeSet { family_type } => new(
            EntryKind::Support,
            match family_type {
                Some(t) => format!("Gezinstype: {}", t.display_name()),
                None => "Gezinstype gewist".to_owned(),
            },
        ),
        E::EvaluationObjectionSet { objects } => new(
            EntryKind::Access,
            if *objects {
                "Het gezin telt niet mee in de effectmeting (bezwaar)".to_owned()
            } else {
                "Het gezin telt weer mee in de effectmeting".to_owned()
            },
        ),
        E::CheckInThresholdSet { threshold } => new(
            EntryKind::Support,
            format!("Check-ins onder de {threshold} worden een signaal"),
        ),
    }
}

/// Who a grantee is, by the name of the member or contact their identity is linked to, if any.
fn grantee_name(household: &Household, grantee: &crate::event::Grantee) -> String {
    let crate::event::Grantee::Person { identity } = grantee else {
        return grantee.to_string();
    };
    household
        .links
        .iter()
        .find(|(_, link)| link.identity.as_ref() == Some(identity))
        .and_then(|(party, _)| match party {
            Party::Member(m) => household.members.get(m).map(|m| m.details.name.clone()),
            Party::Contact(c) => household.contacts.get(c).map(|c| c.details.name.clone()),
        })
        .unwrap_or_else(|| grantee.to_string())
}

/// `what`, with `: reason` when one was given.
fn with_reason(what: String, reason: &str) -> String {
    if reason.trim().is_empty() {
        what
    } else {
        format!("{what}: {reason}")
    }
}

/// "tijdlijn inzien, logboek bijhouden (Wonen, Gezondheid; tot 2027-01-01)".
fn describe_terms(terms: &crate::event::GrantTerms) -> String {
    let scopes: Vec<&str> = terms.scopes.iter().map(|s| s.display_name()).collect();
    let mut limits: Vec<String> = terms
        .life_domains
        .iter()
        .map(|d| d.display_name().to_owned())
        .chain(
            terms
                .funding_domains
                .iter()
                .map(|d| d.display_name().to_owned()),
        )
        .collect();
    if let Some(until) = terms.until {
        limits.push(format!("tot en met {until}"));
    }
    if limits.is_empty() {
        scopes.join(", ")
    } else {
        format!("{} ({})", scopes.join(", "), limits.join("; "))
    }
}

fn members_of(parties: &[Party]) -> Vec<MemberId> {
    parties
        .iter()
        .filter_map(|p| match p {
            Party::Member(m) => Some(*m),
            Party::Contact(_) => None,
        })
        .collect()
}

fn dedup<T: PartialEq>(mut acc: Vec<T>, item: T) -> Vec<T> {
    if !acc.contains(&item) {
        acc.push(item);
    }
    acc
}
