//! The family's access log as `AuditEvent`s: `GET /fhir/AuditEvent?entity=Group/{household}`
//! (or `patient=Patient/{client}`), for the household's owners only, exactly as
//! `ListAccessLog` over gRPC; the read of the log is itself recorded first. Pages follow the
//! log's order (oldest first) with a cursor that later records never move.

use crate::Facade;
use crate::handlers::{base, count_of, id_of, json, quote, searchset, unknown_parameter};
use crate::outcome::Failure;
use crate::resources::Kind;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fhir_sdk::r4b::resources::Resource;
use naast_app::audit::{Cursor, Filter};
use naast_app::auth::caller::Calling;
use naast_domain::access::Action;

/// Records per page when the caller names no `_count`.
const DEFAULT_COUNT: usize = 100;

/// `GET /fhir/AuditEvent?…`.
pub async fn search(
    facade: &Facade,
    calling: &Calling,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<Response, Failure> {
    let mut anchor = None;
    let mut count = DEFAULT_COUNT;
    let mut from = Cursor::default();
    let mut filter = Filter::default();
    let mut given = Vec::new();
    for (name, value) in params {
        if name != "_page" {
            given.push(format!("{name}={value}"));
        }
        match name.as_str() {
            "_format" | "_total" | "_totalMethod" => {}
            "_count" => count = count_of(value)?,
            "_page" => {
                from = Cursor::parse(value).ok_or_else(|| {
                    Failure::bad_request(format!(
                        "_page {} is not a page token of this server",
                        quote(value)
                    ))
                    .at("_page")
                })?;
            }
            "entity" | "patient" => {
                let (kind, id) = value.split_once('/').unwrap_or(("Patient", value));
                let kind = Kind::parse(kind)
                    .filter(|k| matches!(k, Kind::Group | Kind::Patient))
                    .ok_or_else(|| {
                        Failure::bad_request(format!(
                            "{name} {}: name the household (Group/…) or a client (Patient/…)",
                            quote(value)
                        ))
                        .at(name.clone())
                    })?;
                anchor = Some((kind, id_of(id).map_err(|f| f.at(name.clone()))?));
            }
            "date" => {
                let (prefix, day) = value.split_at(value.len().min(2));
                let day =
                    time::Date::parse(day, &time::format_description::well_known::Iso8601::DATE)
                        .ok()
                        .filter(|_| matches!(prefix, "ge" | "lt"))
                        .ok_or_else(|| {
                            Failure::bad_request(format!(
                                "date {}: give geYYYY-MM-DD or ltYYYY-MM-DD (UTC days)",
                                quote(value)
                            ))
                            .at("date")
                        })?;
                let micros =
                    u64::try_from(day.midnight().assume_utc().unix_timestamp_nanos() / 1_000)
                        .unwrap_or(0);
                match prefix {
                    "ge" => filter.from_micros = Some(micros),
                    _ => filter.until_micros = Some(micros),
                }
            }
            other => return Err(unknown_parameter(other, "AuditEvent")),
        }
    }
    let (kind, id) = anchor.ok_or_else(|| {
        Failure::bad_request(
            "name the household's access log: entity=Group/{id} or patient=Patient/{id}",
        )
    })?;
    if facade.guard.is_none() {
        return Err(Failure::not_found(
            "authentication is switched off: there is no access log",
        ));
    }
    let household = facade.household_holding(calling, kind, id).await?;
    // Only the household's owners read who looked at it; this read is recorded first.
    facade
        .households
        .guard_read(calling, household, Action::Own, Vec::new(), |_, _, _| ())
        .await
        .map_err(Failure::from)?;
    let (records, next) = facade
        .households
        .access_log(household, from, count, &filter)
        .map_err(Failure::from)?;
    let entries = records
        .iter()
        .map(|stored| {
            naast_fhir::audit::audit_event(stored)
                .map(|event| (format!("AuditEvent/{}", stored.id), Resource::from(event)))
                .map_err(|e| Failure::internal("mapping an audit record", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let base = base(headers);
    let query = given.join("&");
    let next = next.map(|cursor| format!("{base}/AuditEvent?{query}&_page={}", cursor.token()));
    let total = entries.len();
    let mut bundle = searchset(
        &base,
        entries,
        total,
        &format!("{base}/AuditEvent?{query}"),
        next,
    )?;
    // The log is paged without counting it whole: no total.
    bundle.total = None;
    Ok(json(StatusCode::OK, &bundle.into()))
}
