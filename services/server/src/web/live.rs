//! Live updates of an open timeline: server-sent events fed by the timeline subscription of
//! the gRPC door, on behalf of the signed-in person. Each entry is checked against the
//! family's consent as it comes (the subscription does that): once access is revoked or
//! expires, the page is told so and the stream ends; it ends too when the session does.

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
        .households
        .subscribe_timeline(super::request(
            &calling,
            pb::SubscribeTimelineRequest {
                household_id: id,
                start_revision: Some(from),
            },
        ))
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
        loop {
            let item = tokio::select! {
                item = subscription.next() => item,
                _ = stop.wait_for(|stop| *stop) => None,
                () = tx.closed() => return,
            };
            let event = match item {
                Some(Ok(pb::SubscribeTimelineResponse { entry: Some(entry) })) => {
                    if !web.is_open(&session) {
                        Event::default().event("end").data(ENDED_OTHER)
                    } else if !filters.admits(&entry) {
                        continue;
                    } else {
                        let data = serde_json::json!({
                            "day": entry.date,
                            "heading": dutch_day(&entry.date),
                            "revision": entry.revision,
                            "html": entry_item(&entry).into_string(),
                        });
                        if tx
                            .send(Event::default().event("entry").data(data.to_string()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        continue;
                    }
                }
                Some(Ok(_)) => continue,
                Some(Err(status))
                    if matches!(
                        status.code(),
                        tonic::Code::PermissionDenied | tonic::Code::NotFound
                    ) =>
                {
                    Event::default().event("end").data(ENDED_NO_ACCESS)
                }
                Some(Err(_)) | None => Event::default().event("end").data(ENDED_OTHER),
            };
            let _ = tx.send(event).await;
            return;
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
