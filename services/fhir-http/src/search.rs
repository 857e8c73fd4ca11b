//! Search parameters as the facade understands them: which household a search runs in, which
//! resources match, and the page links. Several values of one parameter, separated by commas,
//! are alternatives; a parameter given twice must match both times (as FHIR says). A parameter
//! the facade does not support is refused (`400`, naming it), never silently ignored: a PGO that
//! filters on it would otherwise show a family more than it asked for.

use crate::handlers::{DEFAULT_COUNT, count_of, quote, unknown_parameter};
use crate::outcome::Failure;
use crate::resources::Kind;
use fhir_sdk::r4b::resources::Resource;
use fhir_sdk::time::OffsetDateTime;
use serde_json::Value;
use uuid::Uuid;

/// The identifier system of naast's ids.
const UUID_SYSTEM: &str = naast_fhir::UUID_SYSTEM;

/// One search, parsed.
pub struct Search {
    kind: Kind,
    /// Results per page.
    pub count: usize,
    /// Continue after this id (the page token of a `next` link).
    pub after: Option<Uuid>,
    anchor: Option<(Kind, Uuid)>,
    ids: Vec<Vec<Uuid>>,
    references: Vec<Vec<String>>,
    statuses: Vec<Vec<String>>,
    categories: Vec<Vec<(Option<String>, String)>>,
    updated: Vec<(Prefix, OffsetDateTime, OffsetDateTime)>,
    dates: Vec<(Prefix, time::Date)>,
    /// The parameters as given, but the page token: for `self` and `next` links.
    given: Vec<(String, String)>,
}

/// A date comparison.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Search {
    /// The search of `kind` that `params` describe.
    pub fn parse(kind: Kind, params: &[(String, String)]) -> Result<Self, Failure> {
        let mut search = Search {
            kind,
            count: DEFAULT_COUNT,
            after: None,
            anchor: None,
            ids: Vec::new(),
            references: Vec::new(),
            statuses: Vec::new(),
            categories: Vec::new(),
            updated: Vec::new(),
            dates: Vec::new(),
            given: Vec::new(),
        };
        for (name, value) in params {
            if name != "_page" {
                search.given.push((name.clone(), value.clone()));
            }
            let values = || value.split(',').map(str::trim).filter(|v| !v.is_empty());
            match name.as_str() {
                // The total is always counted exactly: asking how is answered by doing so.
                "_format" | "_total" | "_totalMethod" => {}
                "_count" => search.count = count_of(value)?,
                "_page" => {
                    search.after = Some(Uuid::parse_str(value).map_err(|_| {
                        Failure::bad_request(format!(
                            "_page {} is not a page token of this server",
                            quote(value)
                        ))
                        .at("_page")
                    })?);
                }
                "_id" => {
                    let ids = values()
                        .map(|v| uuid_of(v, "_id"))
                        .collect::<Result<Vec<_>, _>>()?;
                    search.anchor_on(kind, ids.first().copied());
                    search.ids.push(ids);
                }
                "identifier" => {
                    let ids = values()
                        .map(|v| {
                            let v = v.strip_prefix(&format!("{UUID_SYSTEM}|")).unwrap_or(v);
                            let id = v.strip_prefix("urn:uuid:").ok_or_else(|| {
                                Failure::bad_request(format!(
                                    "identifier {}: naast's identifiers are {UUID_SYSTEM}|urn:uuid:…",
                                    quote(v)
                                ))
                                .at("identifier")
                            })?;
                            uuid_of(id, "identifier")
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    search.anchor_on(kind, ids.first().copied());
                    search.ids.push(ids);
                }
                "patient" | "subject" if search_on(kind, name) => {
                    let mut references = Vec::new();
                    for v in values() {
                        let (target, id) = match v.split_once('/') {
                            Some((target, id)) => (target, id),
                            None if name == "patient" => ("Patient", v),
                            None => {
                                return Err(Failure::bad_request(format!(
                                    "{name} {}: give a reference, Type/id",
                                    quote(v)
                                ))
                                .at(name.clone()));
                            }
                        };
                        let target = Kind::parse(target)
                            .filter(|k| {
                                matches!(k, Kind::Patient | Kind::Group | Kind::RelatedPerson)
                            })
                            .ok_or_else(|| {
                                Failure::bad_request(format!(
                                    "{name} {}: a subject is a Patient, RelatedPerson or Group",
                                    quote(v)
                                ))
                                .at(name.clone())
                            })?;
                        let id = uuid_of(id, name)?;
                        search.anchor_on(target, Some(id));
                        references.push(format!("{}/{id}", target.name()));
                    }
                    search.references.push(references);
                }
                "status" | "lifecycle-status" if search_on(kind, name) => {
                    search.statuses.push(values().map(str::to_owned).collect());
                }
                "category" if search_on(kind, name) => {
                    search.categories.push(
                        values()
                            .map(|v| match v.split_once('|') {
                                Some((system, code)) => (
                                    Some(system.to_owned()).filter(|s| !s.is_empty()),
                                    code.to_owned(),
                                ),
                                None => (None, v.to_owned()),
                            })
                            .collect(),
                    );
                }
                "_lastUpdated" => search.updated.push(date_of(value)?),
                "date" if search_on(kind, name) => {
                    let (prefix, from, _) = date_of(value).map_err(|f| f.at("date"))?;
                    if from.time() != time::Time::MIDNIGHT || value.contains('T') {
                        return Err(Failure::bad_request(format!(
                            "date {}: an agreement's or plan's period is in whole days: give [eq|gt|ge|lt|le]YYYY-MM-DD",
                            quote(value)
                        ))
                        .at("date"));
                    }
                    search.dates.push((prefix, from.date()));
                }
                other => return Err(unknown_parameter(other, kind.name())),
            }
        }
        Ok(search)
    }

    fn anchor_on(&mut self, kind: Kind, id: Option<Uuid>) {
        if self.anchor.is_none()
            && let Some(id) = id
        {
            self.anchor = Some((kind, id));
        }
    }

    /// The resource that names the household searched in.
    pub fn anchor(&self) -> Option<(Kind, Uuid)> {
        self.anchor
    }

    /// Whether `resource` (last updated at `at`, µs since 1970) matches.
    pub fn matches(&self, resource: &Resource, at: u64) -> bool {
        let Ok(value) = serde_json::to_value(resource) else {
            return false;
        };
        let id = value
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| Uuid::parse_str(id).ok());
        let text = |path: &str| value.get(path).and_then(Value::as_str).map(str::to_owned);
        let reference = |path: &str| {
            value
                .get(path)
                .and_then(|r| r.get("reference"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let references: Vec<String> = ["subject", "patient", "beneficiary", "for"]
            .into_iter()
            .filter_map(reference)
            .collect();
        let status = match self.kind {
            Kind::Goal => text("lifecycleStatus"),
            _ => text("status"),
        };
        let codings: Vec<(Option<String>, String)> = value
            .get("category")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| {
                c.get("coding")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter_map(|c| {
                let code = c.get("code")?.as_str()?.to_owned();
                let system = c.get("system").and_then(Value::as_str).map(str::to_owned);
                Some((system, code))
            })
            .collect();
        let updated = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000).ok();
        let day = |path: &str| {
            value
                .get("period")
                .and_then(|p| p.get(path))
                .and_then(Value::as_str)
                .and_then(|d| {
                    time::Date::parse(d, &time::format_description::well_known::Iso8601::DATE).ok()
                })
        };
        let (start, end) = (day("start"), day("end"));
        self.ids
            .iter()
            .all(|any| id.is_some_and(|id| any.contains(&id)))
            && self
                .references
                .iter()
                .all(|any| any.iter().any(|r| references.contains(r)))
            && self
                .statuses
                .iter()
                .all(|any| status.as_ref().is_some_and(|s| any.contains(s)))
            && self.categories.iter().all(|any| {
                any.iter().any(|(system, code)| {
                    codings.iter().any(|(s, c)| {
                        c == code
                            && system
                                .as_ref()
                                .is_none_or(|system| s.as_ref() == Some(system))
                    })
                })
            })
            && self.dates.iter().all(|(prefix, on)| {
                // The period has a day that compares so (an open end runs on for ever).
                let starts_by = |d: time::Date| start.is_some_and(|s| s <= d);
                let ends_from = |d: time::Date| end.is_none_or(|e| e >= d);
                match prefix {
                    Prefix::Eq => starts_by(*on) && ends_from(*on),
                    Prefix::Ge => ends_from(*on),
                    Prefix::Gt => on.next_day().is_some_and(ends_from),
                    Prefix::Le => starts_by(*on),
                    Prefix::Lt => on.previous_day().is_some_and(starts_by),
                }
            })
            && self.updated.iter().all(|(prefix, from, until)| {
                updated.is_some_and(|t| match prefix {
                    Prefix::Eq => t >= *from && t < *until,
                    Prefix::Gt => t >= *until,
                    Prefix::Ge => t >= *from,
                    Prefix::Lt => t < *from,
                    Prefix::Le => t < *until,
                })
            })
    }

    /// The parameters as given (without a page token), as a query string.
    pub fn query(&self) -> String {
        let mut query = String::new();
        for (name, value) in &self.given {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&encode(name));
            query.push('=');
            query.push_str(&encode(value));
        }
        query
    }

    /// The query of the page after id `last`: the same search, continued after it. Resources
    /// are listed in id order, so the link stays valid while writes happen: nothing listed
    /// before comes again, nothing that existed is skipped.
    pub fn query_after(&self, last: Uuid) -> String {
        let mut query = self.query();
        if !self.given.iter().any(|(n, _)| n == "_count") {
            query.push_str(&format!("&_count={}", self.count));
        }
        format!("{query}&_page={last}")
    }
}

/// Whether `kind` has the search parameter `name`.
fn search_on(kind: Kind, name: &str) -> bool {
    match name {
        "patient" => matches!(
            kind,
            Kind::Goal
                | Kind::CarePlan
                | Kind::Coverage
                | Kind::Consent
                | Kind::RelatedPerson
                | Kind::CareTeam
                | Kind::Task
                | Kind::Communication
        ),
        "subject" => matches!(
            kind,
            Kind::Goal | Kind::CarePlan | Kind::CareTeam | Kind::Communication
        ),
        "status" => matches!(
            kind,
            Kind::CarePlan | Kind::Coverage | Kind::Consent | Kind::CareTeam | Kind::Task
        ),
        "lifecycle-status" => kind == Kind::Goal,
        "date" => kind == Kind::CarePlan,
        "category" => matches!(
            kind,
            Kind::CarePlan | Kind::Goal | Kind::Consent | Kind::CareTeam
        ),
        _ => false,
    }
}

fn uuid_of(value: &str, parameter: &str) -> Result<Uuid, Failure> {
    crate::handlers::id_of(value).map_err(|_| {
        Failure::bad_request(format!(
            "{parameter} {}: naast's ids are UUIDs",
            quote(value)
        ))
        .at(parameter.to_owned())
    })
}

/// A `_lastUpdated` value: its prefix, and the span of time its precision covers (a day, or an
/// instant).
fn date_of(value: &str) -> Result<(Prefix, OffsetDateTime, OffsetDateTime), Failure> {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("gt", Prefix::Gt),
        ("ge", Prefix::Ge),
        ("lt", Prefix::Lt),
        ("le", Prefix::Le),
    ];
    let (prefix, rest) = prefixes
        .iter()
        .find_map(|(p, prefix)| value.strip_prefix(p).map(|rest| (*prefix, rest)))
        .unwrap_or((Prefix::Eq, value));
    let bad = || {
        Failure::bad_request(format!(
            "_lastUpdated {}: give [eq|gt|ge|lt|le]YYYY-MM-DD or an instant",
            quote(value)
        ))
        .at("_lastUpdated")
    };
    if let Ok(day) = time::Date::parse(rest, &time::format_description::well_known::Iso8601::DATE) {
        let from = day.midnight().assume_utc();
        return Ok((prefix, from, from + time::Duration::days(1)));
    }
    let at = OffsetDateTime::parse(rest, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad())?;
    Ok((prefix, at, at + time::Duration::milliseconds(1)))
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
