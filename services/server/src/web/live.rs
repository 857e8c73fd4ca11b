//! Live updates of an open timeline: server-sent events fed by the timeline subscription of
//! the gRPC door, on behalf of the signed-in person. Each entry is checked against the
//! family's consent as it comes (the subscription does that): once access is revoked or
//! expires, the page is told so and the stream ends; it ends too when the session does (checked
//! every [`SESSION_CHECK`]), when the service stops, and when the browser stops reading for
//! [`SLOW_CLIENT`].

use super::pages::{TimelineQuery, dutch_day, entry_item};
use super::{Peer, Web};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use naast_proto::pb;
use naast_proto::pb::household_service_server::HouseholdService as _;
use std::time::Duration;
use tokio_stream::StreamExt as _;

/// The filters of the page, and the first revision it does not show yet.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct LiveQuery {
    #[serde(flatten)]
    filters: TimelineQuery,
    /// A number; kept as text, since the filters' flattening reads every value as text.
    #[serde(default)]
    vanaf: String,
}

/// What the page is told when the stream ends.
const ENDED_NO_ACCESS: &str =
    "U heeft geen toegang meer tot deze tijdlijn; nieuwe gebeurtenissen worden niet meer getoond.";
const ENDED_SIGNED_OUT: &str = "U bent afgemeld; nieuwe gebeurtenissen worden niet meer getoond.";
/// How often an open page's session is checked (a sign-out ends its updates within this).
const SESSION_CHECK: Duration = Duration::from_secs(2);
/// How long an update may wait for a browser that stopped reading before the stream ends.
const SLOW_CLIENT: Duration = Duration::from_secs(30);
const ENDED_OTHER: &str =
    "Live bijwerken is gestopt. Laad de pagina opnieuw om de nieuwste stand te zien.";

/// `GET /huishoudens/{id}/tijdlijn/live`: `entry` events (the day, its heading and the entry's
/// HTML, as JSON) and one `end` event with the reason when the stream ends.
pub(crate) async fn timeline(
    State(web): State<Web>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<LiveQuery>,
) -> Response {
    let Ok(from) = query.vanaf.parse::<u64>() else {
        return super::refusal_page(
            axum::http::StatusCode::BAD_REQUEST,
            "Onbekende keuze",
            "De pagina vroeg om live bijwerken vanaf een onbekend punt.",
        );
    };
    let (signed, calling) = match web.admit(&headers, peer.0, "SubscribeTimeline").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let subscription = match web
        .ask(
            &calling,
            "SubscribeTimeline",
            pb::SubscribeTimelineRequest {
                household_id: id,
                start_revision: Some(from),
            },
            |r| web.households.subscribe_timeline(r),
        )
        .await
    {
        Ok(answer) => answer.into_inner(),
        Err(status) => return super::status_page(&status),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let session = signed.id;
    let filters = query.filters;
    let mut stop = web.shutdown.clone();
    tokio::spawn(async move {
        let mut subscription = subscription;
        let mut check = tokio::time::interval(SESSION_CHECK);
        let end = loop {
            let item = tokio::select! {
                item = subscription.next() => item,
                _ = stop.wait_for(|stop| *stop) => break ENDED_OTHER,
                () = tx.closed() => return,
                _ = check.tick() => {
                    if web.is_open(&session) {
                        continue;
                    }
                    break ENDED_SIGNED_OUT;
                }
            };
            let entry = match item {
                Some(Ok(pb::SubscribeTimelineResponse { entry: Some(entry) })) => entry,
                Some(Ok(_)) => continue,
                Some(Err(status))
                    if matches!(
                        status.code(),
                        tonic::Code::PermissionDenied | tonic::Code::NotFound
                    ) =>
                {
                    break ENDED_NO_ACCESS;
                }
                Some(Err(_)) | None => break ENDED_OTHER,
            };
            if !web.is_open(&session) {
                break ENDED_SIGNED_OUT;
            }
            if !filters.admits(&entry) {
                continue;
            }
            let data = serde_json::json!({
                "day": entry.date,
                "heading": dutch_day(&entry.date),
                "revision": entry.revision,
                "html": entry_item(&entry).into_string(),
            });
            let event = Event::default().event("entry").data(data.to_string());
            // A browser that stops reading is let go after a while, and never holds up a stop.
            tokio::select! {
                sent = tokio::time::timeout(SLOW_CLIENT, tx.send(event)) => match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return,
                },
                _ = stop.wait_for(|stop| *stop) => return,
            }
        };
        let _ = tx.try_send(Event::default().event("end").data(end));
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
