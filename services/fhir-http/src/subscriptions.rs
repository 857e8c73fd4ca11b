//! FHIR `Subscription`s after the HL7 Subscriptions R5 Backport IG, on R4: a platform (or any
//! caller who may read a household's timeline) subscribes to the topic "a household's plan,
//! goals or agreements changed" for one household, and gets a rest-hook notification per change
//! (`id-only` or `empty`), each numbered: `events-since-subscription-start` has no gap, so a
//! receiver sees a missed notification and catches up with `$events`; `$status` says where the
//! subscription is.
//!
//! What a subscription is and how it is kept is the [`SubscriptionStore`]'s (the push adapter
//! keeps them beside its other state and delivers the notifications); this module is the REST
//! side: create, read, delete, `$status`, `$events`, and the shape of the notification Bundle.
//! Every call is decided and recorded like a read of the household's timeline.

use crate::handlers::id_of;
use crate::outcome::Failure;
use crate::{FHIR_JSON, Facade};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_sdk::r4b::codes::IssueType;
use naast_app::auth::caller::Calling;
use naast_domain::access::{Action, ReadKind};
use naast_domain::event::Identity;
use naast_domain::ids::HouseholdId;
use naast_domain::vocab::PrincipalRole;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;

/// The one topic naast offers: a household's plan, goals or agreements changed.
pub const TOPIC: &str = "https://naast.nl/fhir/SubscriptionTopic/household-changed";
/// The backport IG's base of extensions and profiles.
const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
/// Most events one `$events` call or one notification carries.
pub const MAX_EVENTS: u64 = 100;
/// The largest Subscription accepted.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Where a subscription is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created; the handshake is not answered yet.
    Requested,
    /// Notifications go out.
    Active,
    /// The endpoint refused (the reason is kept); nothing more is sent.
    Error,
    /// Ended: deleted by its owner, or the owner may no longer see the household.
    Off,
}

impl Status {
    /// Its FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Active => "active",
            Status::Error => "error",
            Status::Off => "off",
        }
    }
}

/// What a notification carries of the changed resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Content {
    /// Only the subscription's status.
    Empty,
    /// The status and the reference of what changed (the household's `Group`).
    IdOnly,
}

impl Content {
    fn code(self) -> &'static str {
        match self {
            Content::Empty => "empty",
            Content::IdOnly => "id-only",
        }
    }
}

/// Who made a subscription: their access is decided again for every event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Issuer and subject.
    pub identity: Identity,
    /// Their role.
    pub role: PrincipalRole,
    /// The organisation a professional or supporter acts for.
    pub organisation: Option<String>,
    /// The OAuth client (a platform's).
    pub client_id: Option<String>,
    /// The member a platform acts for.
    pub acting_for: Option<Identity>,
}

impl Owner {
    /// The owner as a principal, for access decisions.
    pub fn principal(&self) -> naast_domain::access::Principal {
        naast_domain::access::Principal {
            identity: self.identity.clone(),
            role: self.role,
            name: None,
            organisation: self.organisation.clone(),
            client_id: self.client_id.clone(),
            acting_for: self.acting_for.clone(),
        }
    }

    fn of(principal: &naast_domain::access::Principal) -> Self {
        Self {
            identity: principal.identity.clone(),
            role: principal.role,
            organisation: principal.organisation.clone(),
            client_id: principal.client_id.clone(),
            acting_for: principal.acting_for.clone(),
        }
    }
}

/// A subscription as kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Its id.
    pub id: Uuid,
    /// The household it follows.
    pub household: HouseholdId,
    /// The filter as given (`Group?_id=…` or `Patient?_id=…`).
    pub filter: String,
    /// Who made it.
    pub owner: Owner,
    /// Where notifications go.
    pub endpoint: String,
    /// Headers sent with each notification (`Name: value`).
    pub headers: Vec<String>,
    /// What a notification carries.
    pub content: Content,
    /// Why it was made, as its owner said.
    pub reason: String,
    /// Where it is.
    pub status: Status,
    /// Events numbered so far (`events-since-subscription-start`).
    pub events: u64,
    /// Why it is in error or off.
    pub error: Option<String>,
    /// The position in the event log from which it counts changes.
    pub from_position: u64,
}

/// One numbered event of a subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationEvent {
    /// Its number, from 1.
    pub number: u64,
    /// When the change was recorded (µs since 1970).
    pub at_micros: u64,
    /// What changed (`Group/{household}`).
    pub focus: String,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("subscription store: {0}")]
pub struct StoreFailure(pub String);

/// Where subscriptions are kept (and from where their notifications are sent).
pub trait SubscriptionStore: Send + Sync {
    /// Keeps a new subscription (status `requested`) and starts its handshake.
    fn create(&self, subscription: &Subscription) -> Result<(), StoreFailure>;
    /// One subscription.
    fn get(&self, id: Uuid) -> Result<Option<Subscription>, StoreFailure>;
    /// Ends it (status `off`).
    fn turn_off(&self, id: Uuid, why: &str) -> Result<(), StoreFailure>;
    /// Its events numbered `since..=until`, at most [`MAX_EVENTS`].
    fn events(
        &self,
        id: Uuid,
        since: u64,
        until: u64,
    ) -> Result<Vec<NotificationEvent>, StoreFailure>;
}

/// `micros` (since 1970) as a FHIR instant.
pub fn instant(micros: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The kinds of SubscriptionStatus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationType {
    /// The first, sent when the subscription is made.
    Handshake,
    /// Events.
    EventNotification,
    /// An answer to `$status`.
    QueryStatus,
    /// An answer to `$events`.
    QueryEvent,
}

impl NotificationType {
    fn code(self) -> &'static str {
        match self {
            NotificationType::Handshake => "handshake",
            NotificationType::EventNotification => "event-notification",
            NotificationType::QueryStatus => "query-status",
            NotificationType::QueryEvent => "query-event",
        }
    }
}

/// The SubscriptionStatus (a `Parameters` resource, as the backport IG profiles it on R4).
pub fn status_parameters(
    subscription: &Subscription,
    kind: NotificationType,
    events: &[NotificationEvent],
) -> Value {
    let mut parameter = vec![
        json!({"name": "subscription", "valueReference": {"reference": format!("Subscription/{}", subscription.id)}}),
        json!({"name": "topic", "valueCanonical": TOPIC}),
        json!({"name": "status", "valueCode": subscription.status.code()}),
        json!({"name": "type", "valueCode": kind.code()}),
        json!({"name": "events-since-subscription-start", "valueString": subscription.events.to_string()}),
    ];
    for event in events {
        let mut part = vec![
            json!({"name": "event-number", "valueString": event.number.to_string()}),
            json!({"name": "timestamp", "valueInstant": instant(event.at_micros)}),
        ];
        if subscription.content == Content::IdOnly {
            part.push(json!({"name": "focus", "valueReference": {"reference": event.focus}}));
        }
        parameter.push(json!({"name": "notification-event", "part": part}));
    }
    if let Some(error) = &subscription.error {
        parameter.push(json!({"name": "error", "valueCodeableConcept": {"text": error}}));
    }
    json!({
        "resourceType": "Parameters",
        "id": Uuid::now_v7().to_string(),
        "meta": {"profile": [format!("{BACKPORT}/backport-subscription-status-r4")]},
        "parameter": parameter,
    })
}

/// A notification (`history` Bundle) of `kind` carrying `events`: the SubscriptionStatus first,
/// then for `id-only` an entry per changed resource, without the resource.
pub fn notification(
    subscription: &Subscription,
    kind: NotificationType,
    events: &[NotificationEvent],
) -> Value {
    let status = status_parameters(subscription, kind, events);
    let mut entry = vec![json!({
        "fullUrl": format!("urn:uuid:{}", status["id"].as_str().unwrap_or_default()),
        "resource": status,
        "request": {"method": "GET", "url": format!("Subscription/{}/$status", subscription.id)},
        "response": {"status": "200"},
    })];
    if subscription.content == Content::IdOnly && kind == NotificationType::EventNotification {
        let mut foci: Vec<&str> = events.iter().map(|e| e.focus.as_str()).collect();
        foci.dedup();
        for focus in foci {
            entry.push(json!({
                "fullUrl": focus,
                "request": {"method": "PUT", "url": focus},
                "response": {"status": "200"},
            }));
        }
    }
    json!({
        "resourceType": "Bundle",
        "id": Uuid::now_v7().to_string(),
        "type": "history",
        "timestamp": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "entry": entry,
    })
}

/// The Subscription resource of `subscription`.
pub fn resource(subscription: &Subscription) -> Value {
    let mut channel = json!({
        "type": "rest-hook",
        "endpoint": subscription.endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{
            "url": format!("{BACKPORT}/backport-payload-content"),
            "valueCode": subscription.content.code(),
        }]},
    });
    if !subscription.headers.is_empty() {
        // Headers may hold credentials: they are kept, never shown again.
        channel["header"] = json!(["(kept, not shown)"]);
    }
    let mut resource = json!({
        "resourceType": "Subscription",
        "id": subscription.id.to_string(),
        "meta": {"profile": [format!("{BACKPORT}/backport-subscription")]},
        "status": subscription.status.code(),
        "reason": subscription.reason,
        "criteria": TOPIC,
        "_criteria": {"extension": [{
            "url": format!("{BACKPORT}/backport-filter-criteria"),
            "valueString": subscription.filter,
        }]},
        "channel": channel,
    });
    if let Some(error) = &subscription.error {
        resource["error"] = Value::String(error.clone());
    }
    resource
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

fn store(facade: &Facade) -> Result<&Arc<dyn SubscriptionStore>, Failure> {
    facade.subscriptions.as_ref().ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_IMPLEMENTED,
            IssueType::NotSupported,
            "subscriptions are not kept by this server",
        )
    })
}

fn store_failed(e: StoreFailure) -> Failure {
    Failure::internal("the subscription store", e)
}

fn invalid(expression: &str, diagnostics: impl Into<String>) -> Failure {
    Failure::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        IssueType::Invalid,
        diagnostics,
    )
    .at(expression)
}

/// The extension `url` of a primitive's `_element`, as a string.
fn extension<'a>(element: &'a Value, url: &str) -> Option<&'a Value> {
    element["extension"]
        .as_array()?
        .iter()
        .find(|e| e["url"].as_str() == Some(url))
}

/// The caller, who must be signed in: a subscription belongs to someone.
fn caller(calling: &Calling) -> Result<Owner, Failure> {
    match calling {
        Calling::Caller(caller) => Ok(Owner::of(&caller.principal)),
        Calling::Unguarded => Err(Failure::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            "a subscription belongs to someone: authentication is switched off",
        )),
    }
}

/// `POST /fhir/Subscription`.
pub async fn create(
    State(facade): State<Facade>,
    Extension(calling): Extension<Calling>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let store = store(&facade)?.clone();
    let owner = caller(&calling)?;
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !media.contains("json") {
        return Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            "send the Subscription as application/fhir+json",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                IssueType::TooLong,
                format!("a Subscription is at most {MAX_BODY_BYTES} bytes"),
            )
        })?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::bad_request(format!("not JSON: {e}")))?;
    if value["resourceType"] != "Subscription" {
        return Err(invalid("resourceType", "POST a Subscription here"));
    }
    let known = [
        "resourceType",
        "id",
        "meta",
        "text",
        "status",
        "reason",
        "criteria",
        "_criteria",
        "channel",
        "end",
        "contact",
    ];
    if let Some(object) = value.as_object()
        && let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str()))
    {
        return Err(invalid(
            &format!("Subscription.{unknown}"),
            format!("{unknown} is not supported on a Subscription here"),
        ));
    }
    if value["criteria"] != TOPIC {
        return Err(invalid(
            "Subscription.criteria",
            format!("the topic must be {TOPIC} (a household's plan, goals or agreements changed)"),
        ));
    }
    let filter = extension(&value["_criteria"], &format!("{BACKPORT}/backport-filter-criteria"))
        .and_then(|e| e["valueString"].as_str())
        .ok_or_else(|| {
            invalid(
                "Subscription.criteria.extension",
                "name the household with a backport-filter-criteria: Group?_id={household} or Patient?_id={client}",
            )
        })?
        .to_owned();
    let named = filter
        .strip_prefix("Group?_id=")
        .or_else(|| filter.strip_prefix("Patient?_id="))
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| {
            invalid(
                "Subscription.criteria.extension",
                "the filter must be Group?_id={household} or Patient?_id={client}",
            )
        })?;
    let channel = &value["channel"];
    if channel["type"] != "rest-hook" {
        return Err(invalid(
            "Subscription.channel.type",
            "only rest-hook notifications are sent",
        ));
    }
    let endpoint = channel["endpoint"].as_str().unwrap_or_default().to_owned();
    if !is_http_url(&endpoint) {
        return Err(invalid(
            "Subscription.channel.endpoint",
            "an http(s) URL to send notifications to",
        ));
    }
    if !channel["payload"].is_null() && channel["payload"] != "application/fhir+json" {
        return Err(invalid(
            "Subscription.channel.payload",
            "notifications are application/fhir+json",
        ));
    }
    let content = match extension(
        &channel["_payload"],
        &format!("{BACKPORT}/backport-payload-content"),
    )
    .and_then(|e| e["valueCode"].as_str())
    {
        None | Some("id-only") => Content::IdOnly,
        Some("empty") => Content::Empty,
        Some(other) => {
            return Err(invalid(
                "Subscription.channel.payload.extension",
                format!("{other} content is not sent; ask for id-only or empty and read over FHIR"),
            ));
        }
    };
    let headers_wanted: Vec<String> = match &channel["header"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|h| {
                h.as_str()
                    .filter(|h| {
                        h.split_once(':')
                            .is_some_and(|(name, _)| !name.trim().is_empty())
                    })
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        invalid(
                            "Subscription.channel.header",
                            "each header is `Name: value`",
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(invalid(
                "Subscription.channel.header",
                "a list of `Name: value`",
            ));
        }
    };
    let household = facade
        .projections
        .household_holding(named)
        .map_err(|e| Failure::internal("the read models", e))?
        .unwrap_or(HouseholdId(named));
    // Whoever may read the household's timeline may follow it; the decision is recorded.
    let id = Uuid::now_v7();
    facade
        .households
        .guard_read(
            &calling,
            household,
            Action::Read(ReadKind::Timeline),
            vec![format!("Subscription/{id}")],
            |_, _, _| (),
        )
        .await
        .map_err(Failure::from)?;
    let subscription = Subscription {
        id,
        household,
        filter,
        owner,
        endpoint,
        headers: headers_wanted,
        content,
        reason: value["reason"].as_str().unwrap_or_default().to_owned(),
        status: Status::Requested,
        events: 0,
        error: None,
        from_position: facade.households.log().head(),
    };
    store.create(&subscription).map_err(store_failed)?;
    let mut response = json_response(StatusCode::CREATED, &resource(&subscription));
    if let Ok(location) = HeaderValue::from_str(&format!("Subscription/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn is_http_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > "http://".len()
        && !url.chars().any(char::is_whitespace)
}

/// The subscription `id` if the caller owns it (else `404`: it tells nothing of others').
async fn owned(facade: &Facade, calling: &Calling, id: &str) -> Result<Subscription, Failure> {
    let store = store(facade)?;
    let owner = caller(calling)?;
    let id = id_of(id)?;
    let subscription = store
        .get(id)
        .map_err(store_failed)?
        .filter(|s| s.owner.identity == owner.identity && s.owner.client_id == owner.client_id)
        .ok_or_else(|| Failure::not_found(format!("Subscription/{id} not found")))?;
    // Reading it is reading about the household: decided and recorded as such.
    facade
        .households
        .guard_read(
            calling,
            subscription.household,
            Action::Read(ReadKind::Timeline),
            vec![format!("Subscription/{id}")],
            |_, _, _| (),
        )
        .await
        .map_err(Failure::from)?;
    Ok(subscription)
}

/// `GET /fhir/Subscription/{id}`.
pub async fn read(
    State(facade): State<Facade>,
    Extension(calling): Extension<Calling>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let subscription = owned(&facade, &calling, &id).await?;
    Ok(json_response(StatusCode::OK, &resource(&subscription)))
}

/// `DELETE /fhir/Subscription/{id}`: it is turned off; nothing more is sent.
pub async fn delete(
    State(facade): State<Facade>,
    Extension(calling): Extension<Calling>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let subscription = owned(&facade, &calling, &id).await?;
    store(&facade)?
        .turn_off(subscription.id, "deleted by its owner")
        .map_err(store_failed)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /fhir/Subscription/{id}/$status`: a searchset Bundle with its SubscriptionStatus.
pub async fn status(
    State(facade): State<Facade>,
    Extension(calling): Extension<Calling>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let subscription = owned(&facade, &calling, &id).await?;
    let status = status_parameters(&subscription, NotificationType::QueryStatus, &[]);
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [{
            "fullUrl": format!("urn:uuid:{}", status["id"].as_str().unwrap_or_default()),
            "resource": status,
            "search": {"mode": "match"},
        }],
    });
    Ok(json_response(StatusCode::OK, &bundle))
}

/// `GET /fhir/Subscription/{id}/$events?eventsSinceNumber=…&eventsUntilNumber=…`: the events
/// asked for (at most [`MAX_EVENTS`], from the first kept when no start is given), as a
/// `query-event` notification.
pub async fn events(
    State(facade): State<Facade>,
    Extension(calling): Extension<Calling>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Failure> {
    let subscription = owned(&facade, &calling, &id).await?;
    let mut since = 1;
    let mut until = subscription.events;
    for pair in query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value.parse::<u64>().map_err(|_| {
                Failure::bad_request(format!("{name} must be a whole number")).at(name.to_owned())
            })
        };
        match name {
            "eventsSinceNumber" => since = number()?.max(1),
            "eventsUntilNumber" => until = number()?.min(subscription.events),
            "content" if matches!(value, "id-only" | "empty") => {}
            "_format" => {}
            other => return Err(crate::handlers::unknown_parameter(other, "$events")),
        }
    }
    let until = until.min(since.saturating_add(MAX_EVENTS - 1));
    let events = if since <= until {
        store(&facade)?
            .events(subscription.id, since, until)
            .map_err(store_failed)?
    } else {
        Vec::new()
    };
    Ok(json_response(
        StatusCode::OK,
        &notification(&subscription, NotificationType::QueryEvent, &events),
    ))
}
