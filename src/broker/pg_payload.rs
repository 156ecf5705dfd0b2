//! The text form of a payload in a Postgres NOTIFY.
//!
//! A NOTIFY payload is text (no NUL byte) shorter than 8000 bytes. Broker messages
//! are JSON, already UTF-8 text, so they go as they are, behind a `t` tag, and keep
//! the whole limit; any other bytes go as base64 behind a `b` tag, so the broker
//! stays binary-safe like every other one.

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;

/// The most bytes a NOTIFY payload may have (Postgres requires fewer than 8000).
pub(super) const NOTIFY_MAX_BYTES: usize = 7999;

const TEXT_TAG: char = 't';
const BASE64_TAG: char = 'b';

/// `payload` as a NOTIFY payload.
pub(super) fn encode(payload: &[u8]) -> String {
    match as_text(payload) {
        Some(text) => format!("{TEXT_TAG}{text}"),
        None => format!("{BASE64_TAG}{}", STANDARD.encode(payload)),
    }
}

/// The length [`encode`] gives `payload`, without encoding it.
pub(super) fn encoded_len(payload: &[u8]) -> usize {
    1 + match as_text(payload) {
        Some(text) => text.len(),
        None => base64::encoded_len(payload.len(), true).unwrap_or(usize::MAX - 1),
    }
}

/// The bytes behind a NOTIFY payload; `None` for text not written by [`encode`].
pub(super) fn decode(text: &str) -> Option<Bytes> {
    if let Some(raw) = text.strip_prefix(TEXT_TAG) {
        return Some(Bytes::copy_from_slice(raw.as_bytes()));
    }
    let encoded = text.strip_prefix(BASE64_TAG)?;
    STANDARD.decode(encoded).ok().map(Bytes::from)
}

/// `payload` as text Postgres accepts as it is: UTF-8 without NUL.
fn as_text(payload: &[u8]) -> Option<&str> {
    std::str::from_utf8(payload)
        .ok()
        .filter(|text| !text.contains('\0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_payloads_round_trip_with_the_predicted_length() {
        let cases: [&[u8]; 5] = [
            b"",
            b"{\"kind\":\"x\"}",
            "h\u{e9}llo".as_bytes(),
            b"a\0b",
            &[0xff, 0, 7],
        ];
        for payload in cases {
            let encoded = encode(payload);
            assert_eq!(encoded.len(), encoded_len(payload), "{payload:?}");
            assert!(!encoded.contains('\0'));
            assert_eq!(decode(&encoded).as_deref(), Some(payload));
        }
        assert_eq!(decode("not ours"), None);
    }
}
