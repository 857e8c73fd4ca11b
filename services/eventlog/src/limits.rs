//! The documented limits on what may be appended, and the checks that enforce them before
//! anything reaches the writer.

use crate::{Error, NewEvent, Result};
use std::collections::HashSet;

/// Longest stream id, in bytes of UTF-8.
pub const MAX_STREAM_ID_BYTES: usize = 200;
/// Longest event type name, in bytes of UTF-8.
pub const MAX_EVENT_TYPE_BYTES: usize = 128;
/// Longest actor in the metadata, in bytes of UTF-8.
pub const MAX_ACTOR_BYTES: usize = 256;
/// Largest payload of one event: 64 KiB. Care-plan events are small (a note of 4,000 characters
/// is at most 16 KB); documents belong elsewhere. The cap keeps every record, and every leaf of
/// records sled writes, inside sled's log, away from its unsynced blob files (see
/// [`crate::storage::SledStorage`]).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Most events in one append.
pub const MAX_EVENTS_PER_APPEND: usize = 1_000;
/// Largest sum of payloads in one append: 4 MiB.
pub const MAX_APPEND_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A name: not empty, at most `max` bytes, no control characters.
fn check_name(field: impl Into<String>, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(invalid(
            field,
            format!("is {} bytes, more than the limit of {max}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks a stream id.
pub(crate) fn check_stream_id(stream_id: &str) -> Result<()> {
    check_name("stream_id", stream_id, MAX_STREAM_ID_BYTES)
}

/// Checks everything about an append that does not depend on the log's state.
pub(crate) fn check_append(stream_id: &str, events: &[NewEvent]) -> Result<()> {
    check_stream_id(stream_id)?;
    if events.is_empty() {
        return Err(invalid("events", "an append needs at least one event"));
    }
    if events.len() > MAX_EVENTS_PER_APPEND {
        return Err(invalid(
            "events",
            format!(
                "{} events, more than the limit of {MAX_EVENTS_PER_APPEND} per append",
                events.len()
            ),
        ));
    }
    let mut ids = HashSet::with_capacity(events.len());
    let mut total = 0usize;
    for (i, event) in events.iter().enumerate() {
        if event.id.is_nil() {
            return Err(invalid(
                format!("events[{i}].id"),
                "must not be the nil UUID",
            ));
        }
        if !ids.insert(event.id) {
            return Err(invalid(
                format!("events[{i}].id"),
                format!("{} occurs twice in this append", event.id),
            ));
        }
        check_name(
            format!("events[{i}].event_type"),
            &event.event_type,
            MAX_EVENT_TYPE_BYTES,
        )?;
        if event.schema_version == 0 {
            return Err(invalid(
                format!("events[{i}].schema_version"),
                "must be 1 or more",
            ));
        }
        if let Some(actor) = &event.metadata.actor {
            check_name(
                format!("events[{i}].metadata.actor"),
                actor,
                MAX_ACTOR_BYTES,
            )?;
        }
        if event.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(invalid(
                format!("events[{i}].payload"),
                format!(
                    "is {} bytes, more than the limit of {MAX_PAYLOAD_BYTES}",
                    event.payload.len()
                ),
            ));
        }
        total += event.payload.len();
    }
    if total > MAX_APPEND_PAYLOAD_BYTES {
        return Err(invalid(
            "events",
            format!(
                "payloads total {total} bytes, more than the limit of {MAX_APPEND_PAYLOAD_BYTES} per append"
            ),
        ));
    }
    Ok(())
}
