//! The event payload: a JSON object of a chosen size that carries the event's sequence
//! number and its publish time, so a subscriber can tell which event a frame is and
//! how long it took, whatever envelope the server wraps around it.

/// Key of the sequence number. Long enough not to collide with a server's own keys
/// (tidings' frames carry a `cursor`, not a `seq`, but the baseline is free to change).
const SEQ_KEY: &str = "\"fanout_seq\":";
/// Key of the publish time, microseconds on the load generator's monotonic clock.
const T0_KEY: &str = "\"fanout_t0\":";

/// `{"fanout_seq":S,"fanout_t0":T,"pad":"xx…"}`, padded to `bytes` when that is
/// more than the unpadded object.
pub fn payload(seq: u64, t0_micros: u64, bytes: usize) -> String {
    let head = format!("{{{SEQ_KEY}{seq},{T0_KEY}{t0_micros},\"pad\":\"");
    let tail = "\"}";
    let pad = bytes.saturating_sub(head.len() + tail.len());
    let mut out = String::with_capacity(head.len() + pad + tail.len());
    out.push_str(&head);
    out.extend(std::iter::repeat_n('x', pad));
    out.push_str(tail);
    out
}

/// The (sequence number, publish time) a frame carries, if it is an event frame.
pub fn parse(frame: &str) -> Option<(u64, u64)> {
    Some((number_after(frame, SEQ_KEY)?, number_after(frame, T0_KEY)?))
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}
