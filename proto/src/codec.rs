//! The codec of every naast service: prost's, except that a message that is not valid protobuf
//! is the sender's fault, not the receiver's.
//!
//! tonic-prost answers an undecodable body with `INTERNAL`, as the gRPC status-code guide says
//! for a *response* a client cannot parse. A server that gets a request body it cannot parse
//! (bytes that are not protobuf, a truncated varint, a length past the end, wire type 7, a string
//! field that is not UTF-8) has received bad input from its caller: that is `INVALID_ARGUMENT`,
//! and must not count as a failure of the service in its logs or metrics. The same code reaches a
//! client of this crate should a server ever send it a body that does not decode.

use std::marker::PhantomData;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Longest decode error quoted back to the caller: prost names the message and field that
/// failed, which is all a caller needs.
const MAX_REASON: usize = 200;

/// prost's codec with undecodable messages answered `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct StrictCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(ProstDecoder::default())
    }
}

/// prost's decoder, with decode errors as `INVALID_ARGUMENT`.
#[derive(Debug, Clone, Default)]
pub struct StrictDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // prost's errors (the only ones this decoder returns) become the caller's fault; the
        // message names the message type and field that failed.
        self.0.decode(buf).map_err(|status| {
            let reason = status.message();
            let reason = match reason.char_indices().nth(MAX_REASON) {
                Some((cut, _)) => &reason[..cut],
                None => reason,
            };
            Status::invalid_argument(format!("the message is not valid protobuf: {reason}"))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
