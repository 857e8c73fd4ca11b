//! Proto ↔ domain conversion for the household API. Every parse failure names the request field.

use super::status::invalid_argument;
use naast_domain::event::{AgreementTerms, ContactDetails, MemberDetails, Party};
use naast_domain::timeline::EntryKind;
use naast_domain::validate::quote;
use naast_domain::vocab;
use naast_proto::pb;
use std::str::FromStr;
use time::Date;
use time::macros::format_description;
use tonic::Status;

/// Joins a field path: `prefix.name`, or `name` without a prefix.
pub fn path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A required id.
pub fn id<T: FromStr>(field: &str, value: &str) -> Result<T, Status> {
    if value.is_empty() {
        return Err(invalid_argument(field, "is required"));
    }
    let not_a_uuid = || invalid_argument(field, format!("{} is not a UUID", quote(value)));
    match uuid::Uuid::parse_str(value) {
        Ok(uuid) if uuid.is_nil() => Err(invalid_argument(
            field,
            "is the nil UUID, which names nothing; use a real id",
        )),
        Ok(_) => value.parse().map_err(|_| not_a_uuid()),
        Err(_) => Err(not_a_uuid()),
    }
}

/// An optional id: empty means none.
pub fn optional_id<T: FromStr>(field: &str, value: &str) -> Result<Option<T>, Status> {
    if value.is_empty() {
        Ok(None)
    } else {
        id(field, value).map(Some)
    }
}

/// The id for something new: the client's; when empty, for a command with a request id, one
/// derived from that id (so a retry names the same thing as the first try, and its answer names
/// what was made), else a fresh one.
pub fn new_id<T: FromStr + From<uuid::Uuid>>(
    field: &str,
    value: &str,
    options: Option<&pb::CommandOptions>,
) -> Result<T, Status> {
    if let Some(id) = optional_id(field, value)? {
        return Ok(id);
    }
    // A request id that is not a UUID is refused when the command is executed.
    let request = options.and_then(|o| uuid::Uuid::parse_str(&o.request_id).ok());
    Ok(T::from(match request {
        Some(request) => uuid::Uuid::new_v5(&request, field.as_bytes()),
        None => uuid::Uuid::now_v7(),
    }))
}

/// A required ISO 8601 day.
pub fn date(field: &str, value: &str) -> Result<Date, Status> {
    if value.is_empty() {
        return Err(invalid_argument(field, "is required (YYYY-MM-DD)"));
    }
    Date::parse(value, format_description!("[year]-[month]-[day]"))
        .map_err(|_| invalid_argument(field, format!("{} is not a date YYYY-MM-DD", quote(value))))
}

/// An optional ISO 8601 day: empty means none.
pub fn optional_date(field: &str, value: &str) -> Result<Option<Date>, Status> {
    if value.is_empty() {
        Ok(None)
    } else {
        date(field, value).map(Some)
    }
}

/// A recorded-at time (µs since 1970) as a protobuf timestamp.
pub fn timestamp(micros: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(micros / 1_000_000).unwrap_or(i64::MAX),
        // Below one million microseconds, so the nanoseconds fit an i32.
        nanos: i32::try_from((micros % 1_000_000) * 1_000).unwrap_or(0),
    }
}

/// A day as ISO 8601.
pub fn date_string(date: Date) -> String {
    date.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// Maps a proto enum to the domain vocabulary through the shared lower-case names
/// (`LIFE_DOMAIN_CARE_ORGANISATION` ↔ `care_organisation`).
pub trait Vocabulary: Sized + Copy {
    /// The proto enum.
    type Proto: TryFrom<i32> + Copy;
    /// Prefix of the proto value names.
    const PREFIX: &'static str;
    /// Proto value name.
    fn proto_name(proto: Self::Proto) -> &'static str;
    /// Proto value from its name.
    fn proto_from_name(name: &str) -> Option<Self::Proto>;
    /// Proto value as i32.
    fn proto_i32(proto: Self::Proto) -> i32;
    /// Domain value from its wire name.
    fn from_wire(name: &str) -> Option<Self>;
    /// Domain value's wire name.
    fn wire(self) -> &'static str;

    /// A required value: UNSPECIFIED and unknown numbers are refused, naming `field`.
    fn required(field: &str, value: i32) -> Result<Self, Status> {
        Self::optional(field, value)?.ok_or_else(|| invalid_argument(field, "must be set"))
    }

    /// An optional value: UNSPECIFIED means none; unknown numbers are refused.
    fn optional(field: &str, value: i32) -> Result<Option<Self>, Status> {
        let proto = Self::Proto::try_from(value)
            .map_err(|_| invalid_argument(field, format!("{value} is not a known value")))?;
        let name = Self::proto_name(proto);
        let wire = name
            .strip_prefix(Self::PREFIX)
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        Ok(Self::from_wire(&wire))
    }

    /// A list of required values, each named `field[i]`.
    fn list(field: &str, values: &[i32]) -> Result<Vec<Self>, Status> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Self::required(&format!("{field}[{i}]"), *v))
            .collect()
    }

    /// The proto value of a domain value.
    fn to_proto(self) -> i32 {
        let name = format!("{}{}", Self::PREFIX, self.wire().to_ascii_uppercase());
        Self::proto_from_name(&name).map_or(0, Self::proto_i32)
    }
}

macro_rules! vocabulary {
    ($domain:ty, $proto:ty, $prefix:literal) => {
        impl Vocabulary for $domain {
            type Proto = $proto;
            const PREFIX: &'static str = $prefix;
            fn proto_name(proto: $proto) -> &'static str {
                proto.as_str_name()
            }
            fn proto_from_name(name: &str) -> Option<$proto> {
                <$proto>::from_str_name(name)
            }
            fn proto_i32(proto: $proto) -> i32 {
                proto as i32
            }
            fn from_wire(name: &str) -> Option<Self> {
                <$domain>::from_wire(name)
            }
            fn wire(self) -> &'static str {
                self.wire_name()
            }
        }
    };
}

vocabulary!(vocab::FundingDomain, pb::FundingDomain, "FUNDING_DOMAIN_");
vocabulary!(vocab::LifeDomain, pb::LifeDomain, "LIFE_DOMAIN_");
vocabulary!(vocab::MemberRole, pb::MemberRole, "MEMBER_ROLE_");
vocabulary!(vocab::Relation, pb::Relation, "RELATION_");
vocabulary!(vocab::ContactKind, pb::ContactKind, "CONTACT_KIND_");
vocabulary!(vocab::SupporterKind, pb::SupporterKind, "SUPPORTER_KIND_");
vocabulary!(
    vocab::InstitutionKind,
    pb::InstitutionKind,
    "INSTITUTION_KIND_"
);
vocabulary!(vocab::PlanKind, pb::PlanKind, "PLAN_KIND_");
vocabulary!(
    vocab::RespondentKind,
    pb::RespondentKind,
    "RESPONDENT_KIND_"
);
vocabulary!(
    vocab::MeasurementMoment,
    pb::MeasurementMoment,
    "MEASUREMENT_MOMENT_"
);
vocabulary!(vocab::ItemKind, pb::ItemKind, "ITEM_KIND_");
vocabulary!(vocab::FamilyType, pb::FamilyType, "FAMILY_TYPE_");
vocabulary!(
    vocab::IndicationKind,
    pb::IndicationKind,
    "INDICATION_KIND_"
);
vocabulary!(vocab::SupportPhase, pb::SupportPhase, "SUPPORT_PHASE_");
vocabulary!(vocab::ContactMode, pb::ContactMode, "CONTACT_MODE_");
vocabulary!(vocab::SupporterTask, pb::SupporterTask, "SUPPORTER_TASK_");
vocabulary!(vocab::AccessScope, pb::AccessScope, "ACCESS_SCOPE_");
vocabulary!(vocab::PrincipalRole, pb::PrincipalRole, "PRINCIPAL_ROLE_");
vocabulary!(
    naast_domain::signals::SignalKind,
    pb::SignalKind,
    "SIGNAL_KIND_"
);

/// Member details from the request field `prefix`.
pub fn member_details(
    prefix: &str,
    details: Option<pb::MemberDetails>,
) -> Result<MemberDetails, Status> {
    let details = details.ok_or_else(|| invalid_argument(prefix, "is required"))?;
    Ok(MemberDetails {
        name: details.name,
        role: vocab::MemberRole::required(&path(prefix, "role"), details.role)?,
        relation: vocab::Relation::optional(&path(prefix, "relation"), details.relation)?,
        birth_date: optional_date(&path(prefix, "birth_date"), &details.birth_date)?,
    })
}

/// Contact details from the request field `prefix`.
pub fn contact_details(
    prefix: &str,
    details: Option<pb::ContactDetails>,
) -> Result<ContactDetails, Status> {
    let details = details.ok_or_else(|| invalid_argument(prefix, "is required"))?;
    Ok(ContactDetails {
        kind: vocab::ContactKind::required(&path(prefix, "kind"), details.kind)?,
        name: details.name,
        organisation: Some(details.organisation).filter(|o| !o.is_empty()),
        supporter_kind: vocab::SupporterKind::optional(
            &path(prefix, "supporter_kind"),
            details.supporter_kind,
        )?,
        institution_kind: vocab::InstitutionKind::optional(
            &path(prefix, "institution_kind"),
            details.institution_kind,
        )?,
    })
}

/// Agreement terms from the request field `prefix`.
pub fn terms(prefix: &str, terms: Option<pb::AgreementTerms>) -> Result<AgreementTerms, Status> {
    let terms = terms.ok_or_else(|| invalid_argument(prefix, "is required"))?;
    let parties = terms
        .parties
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let field = format!("{prefix}.parties[{i}]");
            match &p.party {
                Some(pb::party::Party::MemberId(m)) => Ok(Party::Member(id(&field, m)?)),
                Some(pb::party::Party::ContactId(c)) => Ok(Party::Contact(id(&field, c)?)),
                None => Err(invalid_argument(field, "name a member_id or a contact_id")),
            }
        })
        .collect::<Result<_, _>>()?;
    let goals = terms
        .goal_ids
        .iter()
        .enumerate()
        .map(|(i, g)| id(&format!("{prefix}.goal_ids[{i}]"), g))
        .collect::<Result<_, _>>()?;
    Ok(AgreementTerms {
        title: terms.title,
        description: terms.description,
        parties,
        responsible: optional_id(
            &path(prefix, "responsible_contact_id"),
            &terms.responsible_contact_id,
        )?,
        funding: vocab::FundingDomain::required(
            &path(prefix, "funding_domain"),
            terms.funding_domain,
        )?,
        pgb: terms.pgb,
        start: date(&path(prefix, "start_date"), &terms.start_date)?,
        end: optional_date(&path(prefix, "end_date"), &terms.end_date)?,
        frequency: Some(terms.frequency).filter(|f| !f.is_empty()),
        goals,
        review_on: optional_date(&path(prefix, "review_date"), &terms.review_date)?,
        plan: optional_id(&path(prefix, "plan_id"), &terms.plan_id)?,
    })
}

/// Agreement terms as proto.
pub fn terms_to_proto(terms: &AgreementTerms) -> pb::AgreementTerms {
    pb::AgreementTerms {
        title: terms.title.clone(),
        description: terms.description.clone(),
        parties: terms
            .parties
            .iter()
            .map(|p| pb::Party {
                party: Some(match p {
                    Party::Member(m) => pb::party::Party::MemberId(m.to_string()),
                    Party::Contact(c) => pb::party::Party::ContactId(c.to_string()),
                }),
            })
            .collect(),
        responsible_contact_id: terms.responsible.map(|c| c.to_string()).unwrap_or_default(),
        funding_domain: terms.funding.to_proto(),
        pgb: terms.pgb,
        start_date: date_string(terms.start),
        end_date: terms.end.map(date_string).unwrap_or_default(),
        frequency: terms.frequency.clone().unwrap_or_default(),
        goal_ids: terms.goals.iter().map(|g| g.to_string()).collect(),
        review_date: terms.review_on.map(date_string).unwrap_or_default(),
        plan_id: terms.plan.map(|p| p.to_string()).unwrap_or_default(),
    }
}

/// Member details as proto.
pub fn member_to_proto(details: &MemberDetails) -> pb::MemberDetails {
    pb::MemberDetails {
        name: details.name.clone(),
        role: details.role.to_proto(),
        relation: details.relation.map_or(0, Vocabulary::to_proto),
        birth_date: details.birth_date.map(date_string).unwrap_or_default(),
    }
}

/// Contact details as proto.
pub fn contact_to_proto(details: &ContactDetails) -> pb::ContactDetails {
    pb::ContactDetails {
        kind: details.kind.to_proto(),
        name: details.name.clone(),
        organisation: details.organisation.clone().unwrap_or_default(),
        supporter_kind: details.supporter_kind.map_or(0, Vocabulary::to_proto),
        institution_kind: details.institution_kind.map_or(0, Vocabulary::to_proto),
    }
}

/// A timeline entry kind as proto.
pub fn entry_kind_to_proto(kind: EntryKind) -> pb::TimelineEntryKind {
    match kind {
        EntryKind::Household => pb::TimelineEntryKind::Household,
        EntryKind::Network => pb::TimelineEntryKind::Network,
        EntryKind::Support => pb::TimelineEntryKind::Support,
        EntryKind::Plan => pb::TimelineEntryKind::Plan,
        EntryKind::Goal => pb::TimelineEntryKind::Goal,
        EntryKind::Agreement => pb::TimelineEntryKind::Agreement,
        EntryKind::Indication => pb::TimelineEntryKind::Indication,
        EntryKind::Transition => pb::TimelineEntryKind::Transition,
        EntryKind::Logbook => pb::TimelineEntryKind::Logbook,
        EntryKind::Note => pb::TimelineEntryKind::Note,
        EntryKind::Access => pb::TimelineEntryKind::Access,
        EntryKind::CheckIn => pb::TimelineEntryKind::CheckIn,
        EntryKind::Measurement => pb::TimelineEntryKind::Measurement,
    }
}

/// A signal as proto.
pub fn signal_to_proto(signal: &naast_domain::signals::Signal) -> pb::Signal {
    use naast_domain::signals::Cause;
    use pb::signal::Cause as P;
    pb::Signal {
        kind: signal.kind.to_proto(),
        reason: signal.reason.clone(),
        due_date: date_string(signal.due),
        member_id: signal.member.map(|m| m.to_string()).unwrap_or_default(),
        cause: Some(match signal.cause {
            Cause::Agreement(id) => P::AgreementId(id.to_string()),
            Cause::Indication(id) => P::IndicationId(id.to_string()),
            Cause::CheckIn(id) => P::CheckInId(id.to_string()),
            Cause::Household => P::Household(true),
        }),
        funding_domains: signal
            .funding_domains
            .iter()
            .map(|d| d.to_proto())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<V: Vocabulary + PartialEq + std::fmt::Debug>(all: &[V]) {
        for value in all {
            let proto = value.to_proto();
            assert_ne!(proto, 0, "{value:?} has no proto value");
            assert_eq!(V::required("f", proto).ok(), Some(*value));
        }
    }

    #[test]
    fn every_domain_value_has_its_proto_value_and_back() {
        round_trips(vocab::FundingDomain::ALL);
        round_trips(vocab::LifeDomain::ALL);
        round_trips(vocab::MemberRole::ALL);
        round_trips(vocab::Relation::ALL);
        round_trips(vocab::ContactKind::ALL);
        round_trips(vocab::SupporterKind::ALL);
        round_trips(vocab::RespondentKind::ALL);
        round_trips(vocab::MeasurementMoment::ALL);
        round_trips(vocab::ItemKind::ALL);
        round_trips(vocab::FamilyType::ALL);
        round_trips(vocab::InstitutionKind::ALL);
        round_trips(vocab::PlanKind::ALL);
        round_trips(vocab::IndicationKind::ALL);
        round_trips(vocab::SupportPhase::ALL);
        round_trips(naast_domain::signals::SignalKind::ALL);
        round_trips(vocab::ContactMode::ALL);
        round_trips(vocab::SupporterTask::ALL);
        round_trips(vocab::AccessScope::ALL);
        round_trips(vocab::PrincipalRole::ALL);
    }

    #[test]
    fn unspecified_and_unknown_values_are_refused_naming_the_field() {
        for value in [0, 99, -1] {
            let err = vocab::LifeDomain::required("life_domains[2]", value).err();
            assert_eq!(err.map(|s| s.code()), Some(tonic::Code::InvalidArgument));
        }
        assert_eq!(vocab::Relation::optional("relation", 0).ok(), Some(None));
        assert!(date("date", "2026-02-30").is_err());
        assert!(date("date", "14-03-2026").is_err());
        assert_eq!(
            date_string(date("d", "2026-03-14").unwrap_or(Date::MIN)),
            "2026-03-14"
        );
    }
}
