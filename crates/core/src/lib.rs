//! outboxd's pure model: which webhooks an event goes to, how a request is signed and
//! framed, how an attempt's result becomes a verdict, and when the next attempt is due.
//! Nothing here does I/O, reads a clock or draws random numbers: callers pass the current
//! time and a uniform draw in, so every rule is a plain function with table tests.

pub mod address;
pub mod breaker;
pub mod descriptors;
pub mod express;
pub mod lanes;
pub mod matching;
pub mod message;
pub mod ordering;
pub mod outcome;
pub mod partitions;
pub mod portal_link;
pub mod rate;
pub mod retry;
pub mod share;
pub mod signing;
pub mod state;
pub mod stored;
pub mod wakeup;
pub mod window;

pub use breaker::{Breaker, BreakerPolicy};
pub use lanes::{Lane, Rooms};
pub use matching::{
    any_matches, is_valid_event_type, is_valid_pattern, pattern_matches, Subscriptions,
};
pub use message::{MAX_RESPONSE_BODY_KEPT, MAX_RESPONSE_BODY_READ};
pub use outcome::{classify, AttemptResult, Outcome, TransportError, Verdict};
pub use retry::{PolicyError, RetryPolicy};
pub use signing::{Secret, SigningError};
pub use state::DeliveryState;
pub use wakeup::{Activity, Wait, WakePolicy};
pub use window::Windows;
