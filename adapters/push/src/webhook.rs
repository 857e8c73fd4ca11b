//! Webhooks: for a platform that prefers a small signed notice and then reads over gRPC or
//! FHIR. Each change of the platform's change feed ([`crate::feed`], one per event) becomes a
//! notice in the Standard Webhooks shape:
//!
//! ```json
//! {"type": "household.changed", "timestamp": "2026-12-01T10:00:00.000000Z",
//!  "data": {"household_id": "…", "cursor": 1234, "revision": 17, "kinds": ["goals"]}}
//! ```
//!
//! `household.withdrawn` says the platform may no longer see the household (a revoked grant, an
//! erasure): it should remove what it read. `cursor` continues the change feed
//! (`SubscribeChanges` with `after_cursor`). The `webhook-id` is made from the endpoint and the
//! cursor, so a notice sent again after a crash or a retry carries the same id: a receiver that
//! deduplicates on it sees every change exactly once. Notices go out one at a time, in the
//! order of the log, each signed anew at each attempt (`webhook-timestamp` is the attempt's).

use crate::deliver::{Answer, Request};
use crate::feed::{Change, ChangeKind, Feed};
use crate::store::{DeadLetter, Notice};
use crate::worker::{Context, WorkerError, send};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::watch;
use uuid::Uuid;

/// Events taken from the log per batch.
const BATCH: usize = 256;

/// The namespace of webhook message ids (a UUID v5 of the endpoint's name and the cursor).
const MESSAGE_NAMESPACE: Uuid = Uuid::from_u128(0x6e61_6173_742d_7765_6268_6f6f_6b2d_6964);

fn kind_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Household => "household",
        ChangeKind::Plans => "plans",
        ChangeKind::Goals => "goals",
        ChangeKind::Agreements => "agreements",
        ChangeKind::Indications => "indications",
        ChangeKind::Notes => "notes",
        ChangeKind::Access => "access",
        ChangeKind::Withdrawn => "withdrawn",
    }
}

/// The notice of `change` to `endpoint`: its message id and body.
pub fn notice(endpoint: &str, change: &Change) -> Notice {
    let withdrawn = change.kinds.contains(&ChangeKind::Withdrawn);
    let timestamp = naast_fhir_http::subscriptions::instant(change.recorded_at_micros);
    let body = serde_json::json!({
        "type": if withdrawn { "household.withdrawn" } else { "household.changed" },
        "timestamp": timestamp,
        "data": {
            "household_id": change.household.to_string(),
            "cursor": change.cursor,
            "revision": change.revision,
            "kinds": change.kinds.iter().map(|k| kind_name(*k)).collect::<Vec<_>>(),
        },
    });
    let id = Uuid::new_v5(
        &MESSAGE_NAMESPACE,
        format!("{endpoint}:{}", change.cursor).as_bytes(),
    );
    Notice {
        id: format!("msg_{}", id.simple()),
        body: body.to_string(),
    }
}

/// Follows the log from the checkpoint, sending a notice per change, until the log closes or
/// `stop` turns true.
pub(crate) async fn follow(
    context: &Arc<Context>,
    replays: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<DeadLetter>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let name = context.endpoint.name.clone();
    let log = context.households.log().clone();
    let mut checkpoint = crate::worker::starting_checkpoint(context)?;
    let mut feed = Feed::new(
        context.households.clone(),
        context.endpoint.platform.issuer.clone(),
        context.endpoint.platform.client_id.clone(),
    )
    .per_event();
    let mut subscription = log.subscribe_all(checkpoint);
    loop {
        let woke = tokio::select! {
            event = subscription.next() => Ok(event),
            Some(letters) = replays.recv() => Err(letters),
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let first = match woke {
            Ok(Ok(event)) => event,
            Ok(Err(naast_eventlog::Error::Closed)) => return Ok(()),
            Ok(Err(e)) => return Err(e.into()),
            Err(letters) => {
                for letter in letters {
                    if let Some(notice) = &letter.notice {
                        // Sent again (or refused again, and filed anew): the old one goes.
                        deliver(context, letter.household, notice, &[], None, stop).await?;
                        context.store.remove_dead_letter(&name, letter.id)?;
                    }
                }
                continue;
            }
        };
        let mut events = vec![first];
        events.extend(subscription.ready(BATCH - 1));
        for change in feed.changes(&events)? {
            let why = change
                .kinds
                .contains(&ChangeKind::Withdrawn)
                .then_some("withdrawn: the platform may no longer see the household");
            let notice = notice(&name, &change);
            deliver(context, change.household, &notice, &change.basis, why, stop).await?;
        }
        let next = events.last().map_or(checkpoint, |e| e.position + 1);
        context.store.set_checkpoint(&name, next).await?;
        checkpoint = next;
    }
}

/// Sends one notice until it is answered for good; a refusal is filed as a dead letter that
/// keeps the notice.
async fn deliver(
    context: &Context,
    household: naast_domain::ids::HouseholdId,
    notice: &Notice,
    basis: &[String],
    why: Option<&str>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let Ok(url) = reqwest::Url::parse(&context.endpoint.url) else {
        return Ok(());
    };
    let request = Request {
        method: reqwest::Method::POST,
        url,
        body: Some(Bytes::from(notice.body.clone())),
        webhook_id: Some(notice.id.clone()),
        headers: Vec::new(),
    };
    let record = context.record(
        "notify",
        household,
        vec![format!("Group/{household}")],
        basis,
        why,
    );
    if let Answer::Refused { status, body } = send(context, &request, record, false, stop).await? {
        tracing::warn!(endpoint = %context.endpoint.name, %household, status,
            "webhook refused by the platform; filed as a dead letter");
        context.store.add_dead_letter(
            &context.endpoint.name,
            DeadLetter {
                id: 0,
                household,
                resource_type: "notice".to_owned(),
                resource_id: household.0,
                method: "POST".to_owned(),
                status,
                body,
                at_micros: crate::deliver::now_micros(),
                notice: Some(notice.clone()),
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use naast_domain::ids::HouseholdId;

    #[test]
    fn a_notice_is_the_same_whenever_it_is_made_and_differs_per_endpoint_and_cursor() {
        let change = Change {
            cursor: 41,
            household: HouseholdId(Uuid::now_v7()),
            revision: 3,
            kinds: [ChangeKind::Goals, ChangeKind::Agreements].into(),
            recorded_at_micros: 1_764_583_200_000_000,
            basis: Vec::new(),
        };
        let first = notice("jo", &change);
        assert_eq!(first, notice("jo", &change));
        assert_ne!(first.id, notice("kt", &change).id);
        assert_ne!(
            first.id,
            notice(
                "jo",
                &Change {
                    cursor: 42,
                    ..change.clone()
                }
            )
            .id
        );
        let body: serde_json::Value = serde_json::from_str(&first.body).unwrap();
        assert_eq!(body["type"], "household.changed");
        assert_eq!(body["timestamp"], "2025-12-01T10:00:00Z");
        assert_eq!(body["data"]["cursor"], 41);
        assert_eq!(
            body["data"]["kinds"],
            serde_json::json!(["goals", "agreements"])
        );
        let gone = Change {
            kinds: [ChangeKind::Withdrawn].into(),
            ..change
        };
        let body: serde_json::Value = serde_json::from_str(&notice("jo", &gone).body).unwrap();
        assert_eq!(body["type"], "household.withdrawn");
    }
}
