//! Events as callers hand them in ([`NewEvent`]) and as the log stores them ([`RecordedEvent`]),
//! plus the record's byte format and its hash chain.
//!
//! # Record format (version 1)
//! All integers big-endian; strings UTF-8 with a length prefix; optional parts behind a flag byte.
//!
//! ```text
//! u8 format version (1) | [16] event id | u64 position | u64 revision | u64 recorded-at (µs since
//! 1970) | u32 schema version | u16+bytes stream id | u16+bytes event type | u8+[16] correlation id |
//! u8+[16] causation id | u8+u16+bytes actor | u32+bytes payload | [32] hash
//! ```
//!
//! The hash is SHA-256 over the previous record's hash (32 zero bytes before position 0) followed by
//! every byte of this record before the hash. Changing, removing or reordering any record breaks
//! the chain from that point on, which [`crate::EventLog::verify`] reports.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// Hash that precedes the record at position 0.
pub(crate) const GENESIS_HASH: [u8; 32] = [0; 32];

const FORMAT_VERSION: u8 = 1;

/// Who and what caused an event: the parts of an event that are not its payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Ties together all events caused by one user action or request.
    pub correlation_id: Option<Uuid>,
    /// The event or command that directly caused this event.
    pub causation_id: Option<Uuid>,
    /// The principal that wrote the event (a user or system id), if known.
    pub actor: Option<String>,
}

/// An event to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique id; retrying an append with the same ids is idempotent. [`NewEvent::new`] makes a
    /// UUID v7, which sorts by time and keeps the id index compact.
    pub id: Uuid,
    /// Name of the event type, e.g. `GoalSet`.
    pub event_type: String,
    /// Version of the payload's schema for this event type, starting at 1.
    pub schema_version: u32,
    /// Correlation, causation and actor.
    pub metadata: Metadata,
    /// The encoded event body; the log does not interpret it.
    pub payload: Bytes,
}

impl NewEvent {
    /// An event with a fresh UUID v7 id, schema version 1 and no metadata.
    pub fn new(event_type: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            metadata: Metadata::default(),
            payload: payload.into(),
        }
    }

    /// The same event with this metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// An event as stored in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The id it was appended with.
    pub id: Uuid,
    /// The stream it belongs to.
    pub stream_id: String,
    /// Its revision in the stream: 0, 1, 2, … without gaps.
    pub revision: u64,
    /// Its position in the whole log: 0, 1, 2, … without gaps.
    pub position: u64,
    /// Name of the event type.
    pub event_type: String,
    /// Version of the payload's schema.
    pub schema_version: u32,
    /// When the log wrote it, in microseconds since 1970-01-01 UTC.
    pub recorded_at_micros: u64,
    /// Correlation, causation and actor.
    pub metadata: Metadata,
    /// The event body.
    pub payload: Bytes,
    /// SHA-256 chained to the previous record of the log (see the module docs).
    pub hash: [u8; 32],
}

impl RecordedEvent {
    /// Bytes of its stored record (see the module docs for the format).
    pub fn encoded_len(&self) -> usize {
        let flagged_id = |id: Option<Uuid>| 1 + id.map_or(0, |_| 16);
        1 + 16
            + 8 * 3
            + 4
            + 2
            + self.stream_id.len()
            + 2
            + self.event_type.len()
            + flagged_id(self.metadata.correlation_id)
            + flagged_id(self.metadata.causation_id)
            + 1
            + self.metadata.actor.as_ref().map_or(0, |a| 2 + a.len())
            + 4
            + self.payload.len()
            + 32
    }

    /// When the log wrote it.
    pub fn recorded_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.recorded_at_micros)
    }
}

/// Microseconds since 1970 now; 0 if the clock is before 1970.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Encodes `event` (whose `hash` is ignored), computes its chained hash from `prev_hash`, stores
/// that hash in `event` and returns the full record bytes.
///
/// Field lengths were validated before (see `crate::limits`), so every length fits its prefix.
pub(crate) fn seal(event: &mut RecordedEvent, prev_hash: &[u8; 32]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(event.encoded_len());
    buf.push(FORMAT_VERSION);
    buf.extend_from_slice(event.id.as_bytes());
    buf.extend_from_slice(&event.position.to_be_bytes());
    buf.extend_from_slice(&event.revision.to_be_bytes());
    buf.extend_from_slice(&event.recorded_at_micros.to_be_bytes());
    buf.extend_from_slice(&event.schema_version.to_be_bytes());
    put_str16(&mut buf, &event.stream_id);
    put_str16(&mut buf, &event.event_type);
    put_uuid_opt(&mut buf, event.metadata.correlation_id);
    put_uuid_opt(&mut buf, event.metadata.causation_id);
    match &event.metadata.actor {
        Some(actor) => {
            buf.push(1);
            put_str16(&mut buf, actor);
        }
        None => buf.push(0),
    }
    let payload_len = u32::try_from(event.payload.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&payload_len.to_be_bytes());
    buf.extend_from_slice(&event.payload);
    event.hash = chain_hash(prev_hash, &buf);
    buf.extend_from_slice(&event.hash);
    buf
}

/// SHA-256 of the previous hash followed by the record body.
pub(crate) fn chain_hash(prev_hash: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(body);
    hasher.finalize().into()
}

fn put_str16(buf: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

fn put_uuid_opt(buf: &mut Vec<u8>, id: Option<Uuid>) {
    match id {
        Some(id) => {
            buf.push(1);
            buf.extend_from_slice(id.as_bytes());
        }
        None => buf.push(0),
    }
}

/// A record decoded from bytes, with the body its hash covers.
pub(crate) struct Decoded<'a> {
    pub event: RecordedEvent,
    /// The bytes the hash was computed over (everything before the hash).
    pub body: &'a [u8],
}

/// Why a record's bytes could not be decoded.
#[derive(Debug)]
pub(crate) struct DecodeError(pub &'static str);

/// Decodes an owned record, sharing its buffer with the payload instead of copying it.
pub(crate) fn decode_owned(bytes: Vec<u8>) -> Result<RecordedEvent, DecodeError> {
    let bytes = Bytes::from(bytes);
    let decoded = decode_with(&bytes, |range| bytes.slice(range))?;
    Ok(decoded.event)
}

/// Decodes record bytes written by [`seal`].
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    decode_with(bytes, |range| Bytes::copy_from_slice(&bytes[range]))
}

fn decode_with(
    bytes: &[u8],
    payload_of: impl FnOnce(std::ops::Range<usize>) -> Bytes,
) -> Result<Decoded<'_>, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    if r.u8()? != FORMAT_VERSION {
        return Err(DecodeError("unknown record format version"));
    }
    let id = Uuid::from_bytes(r.array::<16>()?);
    let position = r.u64()?;
    let revision = r.u64()?;
    let recorded_at_micros = r.u64()?;
    let schema_version = u32::from_be_bytes(r.array::<4>()?);
    let stream_id = r.str16()?;
    let event_type = r.str16()?;
    let correlation_id = r.uuid_opt()?;
    let causation_id = r.uuid_opt()?;
    let actor = match r.u8()? {
        0 => None,
        1 => Some(r.str16()?),
        _ => return Err(DecodeError("bad actor flag")),
    };
    let payload_len = u32::from_be_bytes(r.array::<4>()?) as usize;
    let payload_start = r.at;
    r.take(payload_len)?;
    let payload = payload_of(payload_start..r.at);
    let body_len = r.at;
    let hash = r.array::<32>()?;
    if r.at != bytes.len() {
        return Err(DecodeError("trailing bytes after the hash"));
    }
    Ok(Decoded {
        event: RecordedEvent {
            id,
            stream_id,
            revision,
            position,
            event_type,
            schema_version,
            recorded_at_micros,
            metadata: Metadata {
                correlation_id,
                causation_id,
                actor,
            },
            payload,
            hash,
        },
        body: &bytes[..body_len],
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DecodeError("record is truncated"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array::<8>()?))
    }

    fn str16(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(u16::from_be_bytes(self.array::<2>()?));
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError("string is not UTF-8"))
    }

    fn uuid_opt(&mut self) -> Result<Option<Uuid>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Uuid::from_bytes(self.array::<16>()?))),
            _ => Err(DecodeError("bad id flag")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordedEvent {
        RecordedEvent {
            id: Uuid::now_v7(),
            stream_id: "household-1".into(),
            revision: 3,
            position: 17,
            event_type: "GoalSet".into(),
            schema_version: 2,
            recorded_at_micros: 1_700_000_000_000_000,
            metadata: Metadata {
                correlation_id: Some(Uuid::now_v7()),
                causation_id: None,
                actor: Some("supporter:ally-1".into()),
            },
            payload: Bytes::from_static(b"{\"goal\":\"structuur\"}"),
            hash: [0; 32],
        }
    }

    #[test]
    fn decode_returns_what_seal_wrote_and_the_hash_checks() {
        let mut event = sample();
        let bytes = seal(&mut event, &GENESIS_HASH);
        let decoded = decode(&bytes).expect("a sealed record decodes");
        assert_eq!(decoded.event, event);
        assert_eq!(decode_owned(bytes.clone()).expect("decodes"), event);
        assert_eq!(bytes.len(), event.encoded_len());
        assert_eq!(chain_hash(&GENESIS_HASH, decoded.body), event.hash);
    }

    #[test]
    fn the_hash_depends_on_the_previous_hash_and_every_byte() {
        let mut a = sample();
        let mut b = a.clone();
        seal(&mut a, &GENESIS_HASH);
        seal(&mut b, &[1; 32]);
        assert_ne!(a.hash, b.hash);
        let mut c = sample();
        c.id = a.id;
        c.metadata = a.metadata.clone();
        c.payload = Bytes::from_static(b"{\"goal\":\"structuuR\"}");
        seal(&mut c, &GENESIS_HASH);
        assert_ne!(a.hash, c.hash);
    }

    #[test]
    fn truncated_or_padded_bytes_are_rejected_not_panicked_on() {
        let mut event = sample();
        let bytes = seal(&mut event, &GENESIS_HASH);
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "prefix of {len} bytes");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(decode(&padded).is_err());
    }
}
