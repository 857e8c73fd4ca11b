//! The events of a household's stream: what happened, in the family's own timeline.
//!
//! Events are stored as JSON (schema version [`SCHEMA_VERSION`]) with a `type` field equal to the
//! event type the log records. Once written, an event's shape only grows: new optional fields,
//! never renamed or removed ones.

use crate::ids::{
    AccessRequestId, AgreementId, ContactId, EntryId, GoalId, GrantId, IndicationId, MemberId,
    PlanId,
};
use crate::measure::Answer;
use crate::vocab::{
    AccessScope, ContactKind, ContactMode, FamilyType, FundingDomain, IndicationKind,
    InstitutionKind, LifeDomain, MeasurementMoment, MemberRole, PlanKind, Relation, RespondentKind,
    SupportPhase, SupporterKind, SupporterTask,
};
use serde::{Deserialize, Serialize};
use time::Date;

/// Version of the JSON shape of every event type below.
pub const SCHEMA_VERSION: u32 = 1;

/// A party to an agreement: a household member or a network contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Party {
    /// A member of the household.
    Member(MemberId),
    /// A contact of the household's network (supporter, provider, institution).
    Contact(ContactId),
}

/// A signed-in identity: the subject (`sub`) an OpenID issuer (`iss`) vouches for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identity {
    /// The issuer's URL, exactly as in its tokens.
    pub issuer: String,
    /// The subject at that issuer.
    pub subject: String,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.subject, self.issuer)
    }
}

/// Who a consent grant or an access request is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Grantee {
    /// One person (a supporter, a professional, a relative).
    Person {
        /// Their identity.
        identity: Identity,
    },
    /// Every professional of an organisation (by its identifier, e.g. an AGB or URA code, as
    /// the organisation's tokens carry it).
    Organisation {
        /// The organisation's identifier.
        id: String,
    },
    /// A PGO platform: an OAuth client acting for a household member. What it may do is at most
    /// what that member may do.
    Platform {
        /// The issuer that authenticates the platform.
        issuer: String,
        /// The platform's client id there.
        client_id: String,
    },
}

impl std::fmt::Display for Grantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Person { identity } => write!(f, "persoon {}", identity.subject),
            Self::Organisation { id } => write!(f, "organisatie {id}"),
            Self::Platform { client_id, .. } => write!(f, "PGO {client_id}"),
        }
    }
}

/// What a consent grant allows, and within which domains it lets its holder read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTerms {
    /// What is allowed.
    pub scopes: Vec<AccessScope>,
    /// Life domains it may read; empty: all.
    pub life_domains: Vec<LifeDomain>,
    /// Funding domains it may read; empty: all.
    pub funding_domains: Vec<FundingDomain>,
    /// Last day it holds; `None`: until revoked.
    pub until: Option<Date>,
}

/// Who a person in the household is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDetails {
    /// Name as the family uses it.
    pub name: String,
    /// Client, relative or legal representative.
    pub role: MemberRole,
    /// For relatives and representatives: how they are related.
    pub relation: Option<Relation>,
    /// Date of birth, when known (it drives the 18th-birthday transition).
    pub birth_date: Option<Date>,
}

/// Who a network contact is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactDetails {
    /// Supporter, care provider, professional or institution.
    pub kind: ContactKind,
    /// Name of the person or organisation.
    pub name: String,
    /// The organisation a professional or supporter works for.
    pub organisation: Option<String>,
    /// For supporters: which kind.
    pub supporter_kind: Option<SupporterKind>,
    /// For institutions: which kind.
    pub institution_kind: Option<InstitutionKind>,
}

/// The terms of an agreement (afspraak): who does what, when, funded how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementTerms {
    /// What is agreed, in one line, e.g. "logeeropvang twee weekenden per maand".
    pub title: String,
    /// Details.
    pub description: String,
    /// Who is party to it.
    pub parties: Vec<Party>,
    /// The provider responsible for delivering it, a network contact.
    pub responsible: Option<ContactId>,
    /// The funding domain.
    pub funding: FundingDomain,
    /// Paid through a personal budget (PGB) rather than in kind.
    pub pgb: bool,
    /// First day it applies.
    pub start: Date,
    /// Last day it applies, if it ends.
    pub end: Option<Date>,
    /// How often, e.g. "3 dagen per week".
    pub frequency: Option<String>,
    /// Goals it serves.
    pub goals: Vec<GoalId>,
    /// When to look at it again.
    pub review_on: Option<Date>,
    /// The plan it belongs to, if any.
    pub plan: Option<PlanId>,
}

/// A PGO platform, as a grant names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlatformClient {
    /// The issuer of its tokens.
    pub issuer: String,
    /// Its OAuth client id.
    pub client_id: String,
}

/// Everything that can happen in a household's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[allow(missing_docs)] // each variant's fields are described by its doc line and their types
pub enum DomainEvent {
    /// The household starts using naast. Who registered it (a client or legal representative,
    /// signed in) decides who may see it, with the household's linked clients and legal
    /// representatives.
    HouseholdRegistered {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        registered_by: Option<Identity>,
    },
    /// A member or contact is linked to the identity they sign in with (and a contact to the
    /// organisation its professionals' tokens name), or unlinked (`None`, `None`).
    IdentityLinked {
        party: Party,
        identity: Option<Identity>,
        organisation_id: Option<String>,
    },
    /// The household is forgotten (the right to erasure): its data key is destroyed, so every
    /// earlier event of its stream is unreadable for good. This tombstone itself holds nothing
    /// personal and stays readable: only the PGO platforms the family had granted access, which
    /// must be told to remove what they were sent (organisations, not people).
    HouseholdErased {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        platforms: Vec<PlatformClient>,
    },
    /// The client or legal representative allows someone to see or do something.
    AccessGranted {
        grant: GrantId,
        grantee: Grantee,
        terms: GrantTerms,
        /// The request it answers, if any.
        request: Option<AccessRequestId>,
    },
    /// A grant ends before its time.
    AccessRevoked { grant: GrantId, reason: String },
    /// Someone asks the family for access.
    AccessRequested {
        request: AccessRequestId,
        requester: Grantee,
        terms: GrantTerms,
        reason: String,
    },
    /// The family declines a request for access.
    AccessRequestDeclined {
        request: AccessRequestId,
        reason: String,
    },
    /// A person joins the household's record.
    MemberAdded {
        member: MemberId,
        details: MemberDetails,
    },
    /// A person's details change (all of them are given).
    MemberUpdated {
        member: MemberId,
        details: MemberDetails,
    },
    /// A person leaves the household's record (their history stays).
    MemberRemoved { member: MemberId, reason: String },
    /// A supporter, provider, professional or institution joins the network.
    ContactAdded {
        contact: ContactId,
        details: ContactDetails,
    },
    /// A network contact's details change.
    ContactUpdated {
        contact: ContactId,
        details: ContactDetails,
    },
    /// A contact leaves the network.
    ContactRemoved { contact: ContactId, reason: String },
    /// Support moves to another phase, or its intensity changes.
    SupportPhaseChanged {
        phase: SupportPhase,
        hours_per_week: Option<u32>,
        on: Date,
        /// How often the supporter keeps in touch in this phase, as the plan says (days); in
        /// the pilot-light phase a longer silence is a signal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact_every_days: Option<u32>,
    },
    /// A plan is drafted (version 1).
    PlanDrafted {
        plan: PlanId,
        kind: PlanKind,
        title: String,
        summary: String,
    },
    /// A plan gets a new version.
    PlanRevised {
        plan: PlanId,
        version: u32,
        title: String,
        summary: String,
    },
    /// A plan takes effect.
    PlanActivated { plan: PlanId, on: Date },
    /// A plan is evaluated with the family.
    PlanEvaluated {
        plan: PlanId,
        on: Date,
        evaluation: String,
    },
    /// A plan is closed.
    PlanClosed {
        plan: PlanId,
        on: Date,
        reason: String,
    },
    /// A goal (doel, or in pilot 2 an expectation) is set for a member.
    GoalSet {
        goal: GoalId,
        owner: MemberId,
        title: String,
        description: String,
        life_domains: Vec<LifeDomain>,
        plan: Option<PlanId>,
    },
    /// A goal is reworded or retagged.
    GoalUpdated {
        goal: GoalId,
        title: String,
        description: String,
        life_domains: Vec<LifeDomain>,
        plan: Option<PlanId>,
    },
    /// Progress on a goal is noted.
    GoalProgressNoted {
        goal: GoalId,
        on: Date,
        note: String,
    },
    /// A goal is achieved.
    GoalAchieved {
        goal: GoalId,
        on: Date,
        note: String,
    },
    /// A goal is abandoned.
    GoalAbandoned {
        goal: GoalId,
        on: Date,
        reason: String,
    },
    /// An achieved or abandoned goal is taken up again.
    GoalReopened { goal: GoalId, reason: String },
    /// An agreement is proposed.
    AgreementProposed {
        agreement: AgreementId,
        terms: AgreementTerms,
    },
    /// A proposed agreement is accepted and applies.
    AgreementAccepted { agreement: AgreementId },
    /// A proposed agreement is rejected.
    AgreementRejected {
        agreement: AgreementId,
        reason: String,
    },
    /// An agreement's terms change (all of them are given).
    AgreementAmended {
        agreement: AgreementId,
        terms: AgreementTerms,
        reason: String,
    },
    /// An agreement ends.
    AgreementEnded {
        agreement: AgreementId,
        on: Date,
        reason: String,
    },
    /// Care was not delivered as agreed; the agreement is under review until amended or ended.
    AgreementNotDelivered {
        agreement: AgreementId,
        on: Date,
        description: String,
    },
    /// An indication or decision giving access to funded care.
    IndicationRecorded {
        indication: IndicationId,
        member: MemberId,
        kind: IndicationKind,
        care_profile: Option<String>,
        valid_from: Date,
        valid_until: Option<Date>,
    },
    /// A member's care moves from one funding domain to another (turning 18, a first Wlz
    /// indication, hospital discharge). Running agreements follow by `AgreementCarriedOver`.
    FundingTransitionRecorded {
        member: MemberId,
        from: FundingDomain,
        to: FundingDomain,
        on: Date,
        reason: String,
    },
    /// A running agreement continues, unchanged otherwise, under another funding domain from day
    /// `on` (because its member's care moved there).
    AgreementCarriedOver {
        agreement: AgreementId,
        from: FundingDomain,
        to: FundingDomain,
        on: Date,
    },
    /// A supporter's logbook entry.
    LogbookEntryAdded {
        entry: EntryId,
        supporter: ContactId,
        on: Date,
        minutes: u32,
        mode: ContactMode,
        tasks: Vec<SupporterTask>,
        life_domains: Vec<LifeDomain>,
        summary: String,
    },
    /// A free note, by the family or anyone allowed to write.
    NoteAdded {
        note: EntryId,
        about: Option<MemberId>,
        text: String,
        life_domains: Vec<LifeDomain>,
    },
    /// A self check-in: `respondent` (the member, or a relative) rates how things go for
    /// `member`, 1 (very badly) to 10 (very well), typically from a PGO.
    CheckInRecorded {
        check_in: EntryId,
        member: MemberId,
        respondent: MemberId,
        on: Date,
        rating: u8,
        note: String,
    },
    /// The rating below which a check-in is a signal for the supporter.
    CheckInThresholdSet { threshold: u8 },
    /// Answers to version `version` of the measurement instrument `instrument`, by
    /// `respondent` about `member`, at a moment of the effect measurement or on a day of its own.
    MeasurementRecorded {
        measurement: EntryId,
        member: MemberId,
        respondent: Party,
        respondent_kind: RespondentKind,
        instrument: String,
        version: u32,
        moment: Option<MeasurementMoment>,
        on: Date,
        answers: Vec<Answer>,
    },
    /// The household's family type (pilot 5's six), or none.
    FamilyTypeSet { family_type: Option<FamilyType> },
    /// Whether the family objects to counting in the effect report.
    EvaluationObjectionSet { objects: bool },
}

/// The plan, goal or agreement an event changes, if any: the resource a change notification
/// (the FHIR push to platforms) names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A plan.
    Plan(PlanId),
    /// A goal.
    Goal(GoalId),
    /// An agreement.
    Agreement(AgreementId),
}

impl DomainEvent {
    /// The plan, goal or agreement this event changes.
    pub fn subject(&self) -> Option<Subject> {
        use DomainEvent as E;
        match self {
            E::PlanDrafted { plan, .. }
            | E::PlanRevised { plan, .. }
            | E::PlanActivated { plan, .. }
            | E::PlanEvaluated { plan, .. }
            | E::PlanClosed { plan, .. } => Some(Subject::Plan(*plan)),
            E::GoalSet { goal, .. }
            | E::GoalUpdated { goal, .. }
            | E::GoalProgressNoted { goal, .. }
            | E::GoalAchieved { goal, .. }
            | E::GoalAbandoned { goal, .. }
            | E::GoalReopened { goal, .. } => Some(Subject::Goal(*goal)),
            E::AgreementProposed { agreement, .. }
            | E::AgreementAccepted { agreement }
            | E::AgreementRejected { agreement, .. }
            | E::AgreementAmended { agreement, .. }
            | E::AgreementEnded { agreement, .. }
            | E::AgreementNotDelivered { agreement, .. }
            | E::AgreementCarriedOver { agreement, .. } => Some(Subject::Agreement(*agreement)),
            E::HouseholdRegistered { .. }
            | E::HouseholdErased { .. }
            | E::IdentityLinked { .. }
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
            | E::SupportPhaseChanged { .. }
            | E::IndicationRecorded { .. }
            | E::FundingTransitionRecorded { .. }
            | E::LogbookEntryAdded { .. }
            | E::NoteAdded { .. }
            | E::CheckInRecorded { .. }
            | E::CheckInThresholdSet { .. }
            | E::MeasurementRecorded { .. }
            | E::FamilyTypeSet { .. }
            | E::EvaluationObjectionSet { .. } => None,
        }
    }

    /// The id of what this event brings into the household's record (a member, contact, plan,
    /// goal, agreement, indication, grant, logbook entry or note), if any: what a reader looking for that id must
    /// find this household by.
    pub fn introduces(&self) -> Option<uuid::Uuid> {
        use DomainEvent as E;
        match self {
            E::MemberAdded { member, .. } => Some(member.0),
            E::ContactAdded { contact, .. } => Some(contact.0),
            E::PlanDrafted { plan, .. } => Some(plan.0),
            E::GoalSet { goal, .. } => Some(goal.0),
            E::AgreementProposed { agreement, .. } => Some(agreement.0),
            E::IndicationRecorded { indication, .. } => Some(indication.0),
            E::AccessGranted { grant, .. } => Some(grant.0),
            E::LogbookEntryAdded { entry, .. } => Some(entry.0),
            E::NoteAdded { note, .. } => Some(note.0),
            E::CheckInRecorded { check_in, .. } => Some(check_in.0),
            E::MeasurementRecorded { measurement, .. } => Some(measurement.0),
            _ => None,
        }
    }

    /// The event type recorded in the log; equal to the JSON `type` field.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::HouseholdRegistered { .. } => "HouseholdRegistered",
            Self::HouseholdErased { .. } => "HouseholdErased",
            Self::IdentityLinked { .. } => "IdentityLinked",
            Self::AccessGranted { .. } => "AccessGranted",
            Self::AccessRevoked { .. } => "AccessRevoked",
            Self::AccessRequested { .. } => "AccessRequested",
            Self::AccessRequestDeclined { .. } => "AccessRequestDeclined",
            Self::MemberAdded { .. } => "MemberAdded",
            Self::MemberUpdated { .. } => "MemberUpdated",
            Self::MemberRemoved { .. } => "MemberRemoved",
            Self::ContactAdded { .. } => "ContactAdded",
            Self::ContactUpdated { .. } => "ContactUpdated",
            Self::ContactRemoved { .. } => "ContactRemoved",
            Self::SupportPhaseChanged { .. } => "SupportPhaseChanged",
            Self::PlanDrafted { .. } => "PlanDrafted",
            Self::PlanRevised { .. } => "PlanRevised",
            Self::PlanActivated { .. } => "PlanActivated",
            Self::PlanEvaluated { .. } => "PlanEvaluated",
            Self::PlanClosed { .. } => "PlanClosed",
            Self::GoalSet { .. } => "GoalSet",
            Self::GoalUpdated { .. } => "GoalUpdated",
            Self::GoalProgressNoted { .. } => "GoalProgressNoted",
            Self::GoalAchieved { .. } => "GoalAchieved",
            Self::GoalAbandoned { .. } => "GoalAbandoned",
            Self::GoalReopened { .. } => "GoalReopened",
            Self::AgreementProposed { .. } => "AgreementProposed",
            Self::AgreementAccepted { .. } => "AgreementAccepted",
            Self::AgreementRejected { .. } => "AgreementRejected",
            Self::AgreementAmended { .. } => "AgreementAmended",
            Self::AgreementEnded { .. } => "AgreementEnded",
            Self::AgreementNotDelivered { .. } => "AgreementNotDelivered",
            Self::IndicationRecorded { .. } => "IndicationRecorded",
            Self::FundingTransitionRecorded { .. } => "FundingTransitionRecorded",
            Self::AgreementCarriedOver { .. } => "AgreementCarriedOver",
            Self::LogbookEntryAdded { .. } => "LogbookEntryAdded",
            Self::NoteAdded { .. } => "NoteAdded",
            Self::CheckInRecorded { .. } => "CheckInRecorded",
            Self::CheckInThresholdSet { .. } => "CheckInThresholdSet",
            Self::MeasurementRecorded { .. } => "MeasurementRecorded",
            Self::FamilyTypeSet { .. } => "FamilyTypeSet",
            Self::EvaluationObjectionSet { .. } => "EvaluationObjectionSet",
        }
    }

    /// The JSON payload stored in the log, with the day it happened when that was not the day
    /// it was recorded (see [`Stored`]).
    pub fn to_payload(&self, happened_on: Option<Date>) -> Vec<u8> {
        self.to_payload_of_command(happened_on, None)
    }

    /// As [`DomainEvent::to_payload`], stamped with the command that caused it (on the first
    /// event of a command).
    pub fn to_payload_of_command(
        &self,
        happened_on: Option<Date>,
        command: Option<&CommandStamp>,
    ) -> Vec<u8> {
        // Serialising these plain data types cannot fail: no maps with non-string keys, no
        // custom serialisers that error.
        serde_json::to_vec(&StoredRef {
            event: self,
            happened_on,
            command,
        })
        .unwrap_or_default()
    }

    /// Reads a payload written by [`DomainEvent::to_payload`] (of any schema version up to
    /// [`SCHEMA_VERSION`]).
    pub fn from_payload(payload: &[u8]) -> Result<Stored, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

/// An event as stored: the event's own fields, plus `happened_on`, the day it happened when it
/// was recorded later (a provider backfilling an agreement that started last year, say). Events
/// that name their own day (`GoalAchieved.on`, …) keep it; `happened_on` dates the others. The
/// first event of a command carries a stamp of that command (`naast_command`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Stored {
    /// The event.
    #[serde(flatten)]
    pub event: DomainEvent,
    /// The day it happened, if not the day it was recorded.
    #[serde(default)]
    pub happened_on: Option<Date>,
    /// The command that caused it, on a command's first event (events written before stamps
    /// existed have none).
    #[serde(default, rename = "naast_command")]
    pub command: Option<CommandStamp>,
}

/// What the log keeps of the command that wrote a group of events, sealed with them: enough to
/// tell a retry from another command under the same request id, and to write the command's audit
/// record again should a crash have lost it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandStamp {
    /// A digest of who asked what of which household (hex SHA-256): a retry has the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The command's audit record as the audit log would store it (opaque to the domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct StoredRef<'a> {
    #[serde(flatten)]
    event: &'a DomainEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    happened_on: Option<Date>,
    #[serde(rename = "naast_command", skip_serializing_if = "Option::is_none")]
    command: Option<&'a CommandStamp>,
}
