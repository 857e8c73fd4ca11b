//! The family's notes and the supporter's logbook as FHIR `Communication`s: something said, by
//! someone, about someone, on a day. A logbook entry is a contact the supporter had with the
//! family (sender the supporter, medium how, reasons the supporter's tasks and the life domains,
//! the minutes spent in a note); a note is the family's or a network member's own words.
//!
//! `Communication` rather than `Encounter`: an entry records what was communicated and by whom;
//! nothing in it is an episode of care with a location, participants' periods and a service
//! provider, which an `Encounter` is for, and a family's note is no encounter at all.

use crate::MapError;
use crate::codes::{Vocabulary, coding, life_domain};
use crate::members::reference_to;
use fhir_sdk::r4b::codes::EventStatus;
use fhir_sdk::r4b::resources::{Communication, CommunicationPayload, CommunicationPayloadContent};
use fhir_sdk::r4b::types::{Annotation, CodeableConcept, Coding, Reference};
use fhir_sdk::{Date, DateTime};
use naast_domain::Household;
use naast_domain::event::DomainEvent;
use naast_domain::ids::{EntryId, HouseholdId};
use naast_domain::vocab::ContactMode;

/// HL7 v3 participation modes: how a contact took place.
const PARTICIPATION_MODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode";

/// The entry (note or logbook entry) `event` added to `household` as a `Communication`, dated
/// `day`; `None` for any other event. `state` is the household just after it.
pub fn communication(
    household: HouseholdId,
    state: &Household,
    event: &DomainEvent,
    day: time::Date,
) -> Result<Option<(EntryId, Communication)>, MapError> {
    let failed = |e| MapError::build("Communication", e);
    let category = |text: &str| {
        CodeableConcept::builder()
            .text(text.to_owned())
            .build()
            .map(Some)
            .map_err(failed)
    };
    let payload = |text: &str| {
        CommunicationPayload::builder()
            .content(CommunicationPayloadContent::String(text.to_owned()))
            .build()
            .map(Some)
            .map_err(failed)
    };
    let subject = |about: Option<naast_domain::ids::MemberId>| match about {
        Some(member) => reference_to(household, state, member),
        None => crate::household::reference(household, state),
    };
    let (id, mut communication) = match event {
        DomainEvent::NoteAdded {
            note,
            about,
            text,
            life_domains,
        } => {
            let reasons = life_domains
                .iter()
                .map(|d| life_domain(*d).map(Some))
                .collect::<Result<Vec<_>, _>>()?;
            let communication = Communication::builder()
                .id(note.to_string())
                .identifier(vec![Some(crate::uuid_identifier(note)?)])
                .status(EventStatus::Completed)
                .category(vec![category("notitie")?])
                .subject(subject(*about)?)
                .reason_code(reasons)
                .payload(vec![payload(text)?])
                .build()
                .map_err(failed)?;
            (*note, communication)
        }
        DomainEvent::LogbookEntryAdded {
            entry,
            supporter,
            on,
            minutes,
            mode,
            tasks,
            life_domains,
            summary,
        } => {
            let mut reasons = tasks
                .iter()
                .map(|t| {
                    coding(Vocabulary::SupporterTask, t.wire_name(), t.display_name()).and_then(
                        |c| {
                            CodeableConcept::builder()
                                .coding(vec![Some(c)])
                                .build()
                                .map(Some)
                                .map_err(failed)
                        },
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            for domain in life_domains {
                reasons.push(Some(life_domain(*domain)?));
            }
            let name = state
                .contacts
                .get(supporter)
                .map_or_else(|| "?".to_owned(), |c| c.details.name.clone());
            let sender = Reference::builder()
                .identifier(crate::uuid_identifier(supporter)?)
                .display(name)
                .build()
                .map_err(failed)?;
            let (code, display) = match mode {
                ContactMode::HomeVisit | ContactMode::Accompanying => ("FACE", "face-to-face"),
                ContactMode::Phone => ("PHONE", "telephone"),
                ContactMode::App => ("ELECTRONIC", "electronic data"),
                ContactMode::Video => ("VIDEOCONF", "videoconferencing"),
            };
            let medium = CodeableConcept::builder()
                .coding(vec![Some(
                    Coding::builder()
                        .system(PARTICIPATION_MODE.to_owned())
                        .code(code.to_owned())
                        .display(display.to_owned())
                        .build()
                        .map_err(failed)?,
                )])
                .text(mode.display_name().to_owned())
                .build()
                .map_err(failed)?;
            let mut communication = Communication::builder()
                .id(entry.to_string())
                .identifier(vec![Some(crate::uuid_identifier(entry)?)])
                .status(EventStatus::Completed)
                .category(vec![category("logboek")?])
                .medium(vec![Some(medium)])
                .subject(subject(None)?)
                .sender(sender)
                .reason_code(reasons)
                .payload(vec![payload(summary)?])
                .note(vec![Some(
                    Annotation::builder()
                        .text(format!("{minutes} minuten"))
                        .build()
                        .map_err(failed)?,
                )])
                .build()
                .map_err(failed)?;
            communication.sent = Some(DateTime::Date(Date::Date(*on)));
            (*entry, communication)
        }
        _ => return Ok(None),
    };
    if communication.sent.is_none() {
        communication.sent = Some(DateTime::Date(Date::Date(day)));
    }
    Ok(Some((id, communication)))
}
