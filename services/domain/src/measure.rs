//! Measurements as data: the questionnaires (instruments) the pilots measured effects with, and
//! the answers to them.
//!
//! An instrument is a versioned definition (questions, scales, who answers) stored as events of
//! its own, not code: the catalogue is folded from them. [`seed`] holds the instruments the
//! meta-analysis of the five pilots describes, written to the log once when a data directory is
//! new. A question keeps its key across versions only while it measures on the same scale, so
//! answers to one key are comparable over time ([`Catalogue::define`] enforces it).

use crate::DomainError;
use crate::validate::{self as v, MAX_SHORT_CHARS, MAX_TITLE_CHARS};
use crate::vocab::{ItemKind, LifeDomain, RespondentKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The event type of a definition in the instruments' stream.
pub const INSTRUMENT_DEFINED: &str = "InstrumentDefined";
/// The stream of instrument definitions.
pub const INSTRUMENTS_STREAM: &str = "naast-instruments";
/// Longest instrument or question key, in characters.
pub const MAX_KEY_CHARS: usize = 64;
/// Longest question text, in characters.
pub const MAX_QUESTION_CHARS: usize = 500;
/// Most questions in one instrument.
pub const MAX_ITEMS: usize = 100;
/// Highest value any scale may reach.
pub const MAX_SCALE: u8 = 100;

/// A question of an instrument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Stable key, e.g. `structuur`: the indicator its answers count towards.
    pub key: String,
    /// What it measures.
    pub kind: ItemKind,
    /// The question or statement, as the respondent reads it.
    pub text: String,
    /// Lowest answer.
    pub min: u8,
    /// Highest answer.
    pub max: u8,
    /// A label per point of the scale from `min` up (e.g. "slecht" … "uitstekend"); empty for
    /// a plain number scale.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The life domain it is about (required for a satisfaction question).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub life_domain: Option<LifeDomain>,
}

/// A questionnaire, one version of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instrument {
    /// Stable key, e.g. `kwaliteit-van-leven`.
    pub key: String,
    /// 1 for the first definition, one more for each next.
    pub version: u32,
    /// Its title.
    pub title: String,
    /// Who answers it.
    pub respondent: RespondentKind,
    /// Its questions.
    pub items: Vec<Item>,
}

impl Instrument {
    /// The question with this key.
    pub fn item(&self, key: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.key == key)
    }
}

/// One answer in a measurement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The question's key.
    pub item: String,
    /// The value on the question's scale.
    pub value: u8,
    /// For a satisfaction question: whether the respondent wants this domain to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wants_change: Option<bool>,
}

/// Every version of every instrument, folded from their definitions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalogue {
    versions: BTreeMap<String, Vec<Instrument>>,
}

impl Catalogue {
    /// The catalogue after `definitions`, in order, skipping any that do not follow on (the
    /// stream only holds checked ones).
    pub fn from_definitions(definitions: impl IntoIterator<Item = Instrument>) -> Self {
        let mut catalogue = Self::default();
        for instrument in definitions {
            let _ = catalogue.define(instrument);
        }
        catalogue
    }

    /// The latest version of each instrument, by key.
    pub fn latest(&self) -> impl Iterator<Item = &Instrument> {
        self.versions.values().filter_map(|v| v.last())
    }

    /// Every version of every instrument, by key, then version.
    pub fn all(&self) -> impl Iterator<Item = &Instrument> {
        self.versions.values().flatten()
    }

    /// Version `version` of instrument `key`; version 0 means the latest.
    pub fn get(&self, key: &str, version: u32) -> Option<&Instrument> {
        let versions = self.versions.get(key)?;
        if version == 0 {
            versions.last()
        } else {
            versions.get(usize::try_from(version).ok()?.checked_sub(1)?)
        }
    }

    /// Checks `instrument` as the next version of its key and adds it.
    pub fn define(&mut self, instrument: Instrument) -> Result<(), DomainError> {
        self.check(&instrument)?;
        self.versions
            .entry(instrument.key.clone())
            .or_default()
            .push(instrument);
        Ok(())
    }

    /// Whether `instrument` may be added as it is.
    fn check(&self, instrument: &Instrument) -> Result<(), DomainError> {
        key("instrument.key", &instrument.key)?;
        let previous = self.versions.get(&instrument.key).and_then(|v| v.last());
        let expected = previous.map_or(1, |p| p.version.saturating_add(1));
        if instrument.version != expected {
            return Err(DomainError::invalid(
                "instrument.version",
                format!(
                    "is {}; the next version of {} is {expected}",
                    instrument.version,
                    v::quote(&instrument.key)
                ),
            ));
        }
        v::text(
            "instrument.title",
            &instrument.title,
            MAX_TITLE_CHARS,
            false,
        )?;
        if let Some(previous) = previous
            && previous.respondent != instrument.respondent
        {
            return Err(DomainError::invalid(
                "instrument.respondent",
                format!(
                    "version {} is answered by {}; a new respondent needs a new instrument key",
                    previous.version,
                    previous.respondent.wire_name()
                ),
            ));
        }
        if instrument.items.is_empty() || instrument.items.len() > MAX_ITEMS {
            return Err(DomainError::invalid(
                "instrument.items",
                format!(
                    "has {} questions; 1 to {MAX_ITEMS} are allowed",
                    instrument.items.len()
                ),
            ));
        }
        for (i, item) in instrument.items.iter().enumerate() {
            let field = |name: &str| format!("instrument.items[{i}].{name}");
            key(&field("key"), &item.key)?;
            if instrument.items[..i].iter().any(|o| o.key == item.key) {
                return Err(DomainError::invalid(
                    field("key"),
                    format!("{} is listed twice", v::quote(&item.key)),
                ));
            }
            v::text(&field("text"), &item.text, MAX_QUESTION_CHARS, false)?;
            if item.min >= item.max || item.max > MAX_SCALE {
                return Err(DomainError::invalid(
                    field("max"),
                    format!(
                        "the scale {}..{} must rise, up to at most {MAX_SCALE}",
                        item.min, item.max
                    ),
                ));
            }
            if item.kind == ItemKind::LifeRating && (item.min, item.max) != (1, 10) {
                return Err(DomainError::invalid(
                    field("max"),
                    "a rating of one's life is a rapportcijfer: 1 to 10",
                ));
            }
            let points = usize::from(item.max - item.min) + 1;
            if !item.labels.is_empty() && item.labels.len() != points {
                return Err(DomainError::invalid(
                    field("labels"),
                    format!(
                        "has {} labels; the scale has {points} points (or give none)",
                        item.labels.len()
                    ),
                ));
            }
            for (j, label) in item.labels.iter().enumerate() {
                v::text(
                    &format!("{}[{j}]", field("labels")),
                    label,
                    MAX_SHORT_CHARS,
                    false,
                )?;
            }
            if item.kind == ItemKind::DomainSatisfaction && item.life_domain.is_none() {
                return Err(DomainError::invalid(
                    field("life_domain"),
                    "a satisfaction question names the life domain it is about",
                ));
            }
            if let Some(earlier) = previous.and_then(|p| p.item(&item.key))
                && (earlier.kind, earlier.min, earlier.max, earlier.life_domain)
                    != (item.kind, item.min, item.max, item.life_domain)
            {
                return Err(DomainError::invalid(
                    field("key"),
                    format!(
                        "{} measured {} on {}..{} in version {}; answers to one key must stay comparable, so a changed question needs a new key",
                        v::quote(&item.key),
                        earlier.kind.wire_name(),
                        earlier.min,
                        earlier.max,
                        previous.map_or(0, |p| p.version)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A key: lowercase letters, digits and dashes, 1 to [`MAX_KEY_CHARS`].
fn key(field: &str, value: &str) -> Result<(), DomainError> {
    let fine = !value.is_empty()
        && value.len() <= MAX_KEY_CHARS
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if fine {
        Ok(())
    } else {
        Err(DomainError::invalid(
            field,
            format!(
                "{} is not a key: 1 to {MAX_KEY_CHARS} lowercase letters, digits and dashes",
                v::quote(value)
            ),
        ))
    }
}

/// Whether `answers` fit `instrument`: known questions, each once, on its scale; "wants change"
/// only for a satisfaction question. At least one answer; questions may be left open.
pub fn check_answers(instrument: &Instrument, answers: &[Answer]) -> Result<(), DomainError> {
    if answers.is_empty() {
        return Err(DomainError::invalid(
            "answers",
            "a measurement answers at least one question",
        ));
    }
    for (i, answer) in answers.iter().enumerate() {
        let field = |name: &str| format!("answers[{i}].{name}");
        let item = instrument.item(&answer.item).ok_or_else(|| {
            DomainError::invalid(
                field("item"),
                format!(
                    "{} is not a question of {} version {}",
                    v::quote(&answer.item),
                    instrument.key,
                    instrument.version
                ),
            )
        })?;
        if answers[..i].iter().any(|a| a.item == answer.item) {
            return Err(DomainError::invalid(
                field("item"),
                format!("{} is answered twice", v::quote(&answer.item)),
            ));
        }
        if !(item.min..=item.max).contains(&answer.value) {
            return Err(DomainError::invalid(
                field("value"),
                format!(
                    "{} is off the scale of {}: {} to {}",
                    answer.value, item.key, item.min, item.max
                ),
            ));
        }
        if answer.wants_change.is_some() && item.kind != ItemKind::DomainSatisfaction {
            return Err(DomainError::invalid(
                field("wants_change"),
                "only a satisfaction question asks whether the domain should change",
            ));
        }
    }
    Ok(())
}

/// The life domains each seeded instrument asks satisfaction about, with their question keys.
const SATISFACTION: &[(LifeDomain, &str, &str)] = &[
    (LifeDomain::Housing, "tevredenheid-wonen", "wonen"),
    (
        LifeDomain::DaytimeActivitiesAndWork,
        "tevredenheid-dagbesteding-werk",
        "dagbesteding en werk",
    ),
    (
        LifeDomain::FinancesAndIncome,
        "tevredenheid-financien",
        "financiën en inkomen",
    ),
    (
        LifeDomain::PhysicalHealth,
        "tevredenheid-lichamelijke-gezondheid",
        "lichamelijke gezondheid",
    ),
    (
        LifeDomain::MentalHealthAndWellbeing,
        "tevredenheid-psychisch-welzijn",
        "psychische gezondheid en welzijn",
    ),
    (
        LifeDomain::SocialNetwork,
        "tevredenheid-sociaal-netwerk",
        "sociale contacten",
    ),
    (
        LifeDomain::FamilyLifeAndRelationships,
        "tevredenheid-gezinsleven",
        "gezinsleven en relaties",
    ),
    (
        LifeDomain::SelfDetermination,
        "tevredenheid-eigen-regie",
        "eigen regie",
    ),
    (
        LifeDomain::LeisureAndHobbies,
        "tevredenheid-vrije-tijd",
        "vrije tijd en hobby's",
    ),
];

fn item(key: &str, kind: ItemKind, text: &str, min: u8, max: u8) -> Item {
    Item {
        key: key.into(),
        kind,
        text: text.into(),
        min,
        max,
        labels: Vec::new(),
        life_domain: None,
    }
}

fn labelled(mut item: Item, labels: &[&str]) -> Item {
    item.labels = labels.iter().map(|l| (*l).to_owned()).collect();
    item
}

fn common(life_rating: &str, health: &str, resilience: &str) -> Vec<Item> {
    let mut items = vec![
        item("leven", ItemKind::LifeRating, life_rating, 1, 10),
        labelled(
            item("gezondheid", ItemKind::SelfRatedHealth, health, 1, 5),
            &["slecht", "matig", "goed", "zeer goed", "uitstekend"],
        ),
        labelled(
            item("veerkracht", ItemKind::Resilience, resilience, 1, 5),
            &[
                "helemaal mee oneens",
                "mee oneens",
                "neutraal",
                "mee eens",
                "helemaal mee eens",
            ],
        ),
    ];
    items.extend(SATISFACTION.iter().map(|(domain, key, name)| Item {
        life_domain: Some(*domain),
        ..item(
            key,
            ItemKind::DomainSatisfaction,
            &format!(
                "Hoe tevreden bent u over uw {name}? (1 = zeer ontevreden, 10 = zeer tevreden)"
            ),
            1,
            10,
        )
    }));
    items
}

/// The instruments the meta-analysis of the five pilots describes (programme "Volwaardig leven",
/// 2021), as version 1 each: the life rating, the statements pilot 2 measured ("Ik heb
/// structuur in mijn leven" 5.4 → 6.6), self-rated health as pilot 4 asked it of relatives,
/// satisfaction per life domain with whether the respondent wants change (the capability
/// approach), and resilience (veerkracht, pilot 5); one for clients, one for relatives, and the
/// supporter's view of the household that the copilots gave for each of their families.
pub fn seed() -> Vec<Instrument> {
    let statement = |key: &str, text: &str| item(key, ItemKind::Statement, text, 1, 10);
    let mut client = common(
        "Welk rapportcijfer geeft u uw leven op dit moment?",
        "Hoe is over het algemeen uw gezondheid?",
        "Na moeilijke tijden ben ik snel weer de oude.",
    );
    client.extend([
        statement("structuur", "Ik heb structuur in mijn leven."),
        statement("kwetsbaarheden", "Ik kan omgaan met mijn kwetsbaarheden."),
        statement("tevreden-met-mezelf", "Ik ben tevreden met mezelf."),
        statement("eigen-problemen", "Ik kan mijn eigen problemen oplossen."),
        statement("bijdrage", "Ik lever een bijdrage aan de maatschappij."),
    ]);
    let mut relative = common(
        "Welk rapportcijfer geeft u uw eigen leven op dit moment?",
        "Hoe is over het algemeen uw eigen gezondheid?",
        "Na moeilijke tijden ben ik snel weer de oude.",
    );
    relative.extend([
        statement("tijd-voor-mezelf", "Ik heb tijd voor mezelf."),
        statement("niet-alleen", "Ik sta er niet alleen voor."),
        statement(
            "vertrouwen-in-zorg",
            "Ik heb vertrouwen in de zorg voor mijn naaste.",
        ),
        statement("regellast", "De regelzaken rond de zorg zijn te dragen."),
    ]);
    let supporter = vec![
        statement("situatie", "Welk cijfer geeft u de situatie van het gezin?"),
        statement(
            "grip-op-zorg",
            "Het gezin heeft grip op de zorg en ondersteuning.",
        ),
        statement(
            "passende-zorg",
            "De cliënt krijgt zorg en ondersteuning die passen.",
        ),
        statement("ontlast", "De naasten zijn ontlast."),
        statement("netwerk", "Het gezin kan terugvallen op een eigen netwerk."),
    ];
    vec![
        Instrument {
            key: "kwaliteit-van-leven-client".into(),
            version: 1,
            title: "Kwaliteit van leven (cliënt)".into(),
            respondent: RespondentKind::Client,
            items: client,
        },
        Instrument {
            key: "kwaliteit-van-leven-naaste".into(),
            version: 1,
            title: "Kwaliteit van leven (naaste)".into(),
            respondent: RespondentKind::Relative,
            items: relative,
        },
        Instrument {
            key: "situatie-gezin-ondersteuner".into(),
            version: 1,
            title: "Situatie van het gezin (ondersteuner)".into(),
            respondent: RespondentKind::Supporter,
            items: supporter,
        },
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is a failed check
    use super::*;

    #[test]
    fn the_seed_passes_its_own_checks() {
        let mut catalogue = Catalogue::default();
        for instrument in seed() {
            catalogue.define(instrument).unwrap();
        }
        assert_eq!(catalogue.latest().count(), 3);
    }

    #[test]
    fn a_question_keeps_its_scale_across_versions() {
        let mut catalogue = Catalogue::from_definitions(seed());
        let mut next = catalogue
            .get("kwaliteit-van-leven-client", 0)
            .unwrap()
            .clone();
        next.version = 2;
        let structuur = next
            .items
            .iter_mut()
            .find(|i| i.key == "structuur")
            .unwrap();
        structuur.max = 5;
        let refused = catalogue.define(next.clone()).unwrap_err();
        assert!(refused.to_string().contains("new key"), "{refused}");
        let structuur = next
            .items
            .iter_mut()
            .find(|i| i.key == "structuur")
            .unwrap();
        structuur.max = 10;
        structuur.text = "Mijn dagen hebben een vaste structuur.".into();
        catalogue.define(next).unwrap();
        assert_eq!(
            catalogue
                .get("kwaliteit-van-leven-client", 0)
                .map(|i| i.version),
            Some(2)
        );
        assert_eq!(
            catalogue
                .get("kwaliteit-van-leven-client", 1)
                .map(|i| i.version),
            Some(1)
        );
    }
}
