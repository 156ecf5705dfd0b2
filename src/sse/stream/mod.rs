//! One Datastar SSE stream, by job: `registration` in the hub (subscriptions
//! admitted by the access policy, and the guard that undoes them), its `start` (a
//! replay or an opening; why the order of a start makes it exact is told there), the
//! `live` body that writes deliveries and keep-alives, and `refusal`: [`StreamError`],
//! why a stream was refused, and its HTTP answer.

mod live;
mod refusal;
mod registration;
mod start;

pub use refusal::StreamError;
pub(crate) use registration::{Registration, admit};
pub(crate) use start::{Opening, last_event_id};
