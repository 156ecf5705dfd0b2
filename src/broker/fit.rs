//! Keeps a payload within a backend's message size limit: a logged event that is too
//! large goes by reference (a [`BrokerMessage::Doorbell`]), so no backend limit ever
//! costs an event, only one read of the log on each node.

use bytes::Bytes;

use super::{BrokerError, BrokerMessage};

/// `payload` itself when it is at most `max_len` bytes; otherwise, for an encoded
/// [`BrokerMessage::Logged`] or [`BrokerMessage::Batch`], the encoded doorbell for the
/// same epoch and (last) seq.
///
/// Fails for a payload that is too large and cannot go by reference (a direct
/// event, or bytes that are not a broker message).
pub fn fit_payload(payload: Bytes, max_len: usize) -> Result<Bytes, BrokerError> {
    fit_payload_by(payload, |candidate| candidate.len() <= max_len)
}

/// Like [`fit_payload`], for backends whose limit applies to an encoding of the
/// payload rather than to its raw length: `fits` tells whether a candidate fits.
pub fn fit_payload_by(payload: Bytes, fits: impl Fn(&[u8]) -> bool) -> Result<Bytes, BrokerError> {
    if fits(&payload) {
        return Ok(payload);
    }
    let doorbell = BrokerMessage::decode(&payload)
        .as_ref()
        .and_then(BrokerMessage::to_doorbell)
        .map(|doorbell| doorbell.encode());
    match doorbell {
        Some(doorbell) if fits(&doorbell) => Ok(doorbell),
        _ => Err(BrokerError(format!(
            "a {}-byte message exceeds the broker's size limit and is not a logged event, \
             so it cannot be sent by reference",
            payload.len()
        ))),
    }
}
