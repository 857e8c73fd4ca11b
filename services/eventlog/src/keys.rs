//! Key layout in the one ordered keyspace of the log. Integers are big-endian so that a byte-wise
//! ordered scan returns them in numeric order.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `g` | `g` + position (u64) | the record (see [`crate::record`]) |
//! | `s` | `s` + stream id length (u8) + stream id + revision (u64) | position (u64) |
//! | `e` | `e` + event id (16 bytes) | position (u64) |
//!
//! The length prefix keeps one stream's keys apart from those of a stream whose id extends it.

use uuid::Uuid;

const LOG: u8 = b'g';
const STREAM: u8 = b's';
const EVENT_ID: u8 = b'e';

pub(crate) fn log(position: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(LOG);
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// One past the last possible log key.
pub(crate) fn log_end() -> Vec<u8> {
    vec![LOG + 1]
}

pub(crate) fn log_position(key: &[u8]) -> Option<u64> {
    match key {
        [LOG, rest @ ..] => rest.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

/// Stream ids are at most 255 bytes (checked by `crate::limits`), so the length fits a u8.
fn stream_prefix(stream_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + stream_id.len() + 8);
    key.push(STREAM);
    key.push(u8::try_from(stream_id.len()).unwrap_or(u8::MAX));
    key.extend_from_slice(stream_id.as_bytes());
    key
}

pub(crate) fn stream(stream_id: &str, revision: u64) -> Vec<u8> {
    let mut key = stream_prefix(stream_id);
    key.extend_from_slice(&revision.to_be_bytes());
    key
}

/// The range holding all of one stream's keys: `[stream(id, 0), stream_end(id))`.
pub(crate) fn stream_end(stream_id: &str) -> Vec<u8> {
    let mut key = stream_prefix(stream_id);
    key.extend_from_slice(&[0xff; 9]);
    key
}

/// The revision at the end of a stream key.
pub(crate) fn stream_revision(key: &[u8]) -> Option<u64> {
    key.len()
        .checked_sub(8)
        .and_then(|at| key[at..].try_into().ok())
        .map(u64::from_be_bytes)
}

pub(crate) fn event_id(id: Uuid) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.push(EVENT_ID);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The ranges of the two indexes (stream and event id), whose values are positions.
pub(crate) fn index_ranges() -> [(Vec<u8>, Vec<u8>); 2] {
    [
        (vec![STREAM], vec![STREAM + 1]),
        (vec![EVENT_ID], vec![EVENT_ID + 1]),
    ]
}

pub(crate) fn position_value(position: u64) -> Vec<u8> {
    position.to_be_bytes().to_vec()
}

pub(crate) fn parse_position_value(value: &[u8]) -> Option<u64> {
    value.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_sort_numerically() {
        assert!(log(255) < log(256));
        assert!(log(u64::MAX) < log_end());
        assert_eq!(log_position(&log(70_000)), Some(70_000));
    }

    #[test]
    fn a_stream_range_holds_only_that_stream() {
        let (start, end) = (stream("ab", 0), stream_end("ab"));
        assert!(stream("ab", u64::MAX) < end);
        assert!(stream("ab", 7) >= start);
        assert!(!(start.clone()..end.clone()).contains(&stream("abc", 0)));
        assert!(!(start..end).contains(&stream("a", 0)));
        assert_eq!(stream_revision(&stream("ab", 42)), Some(42));
    }
}
