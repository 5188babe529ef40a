//! The states of a delivery, as `outbox.deliveries.state` spells them (its
//! CHECK `state_known` allows exactly these): one type for the CLI's
//! filters, the console, the result writer and the tests, instead of the
//! same six strings typed in each.
//!
//! With the `postgres` feature a state reads straight from a row; writing
//! one goes through `as_str`, as the SQL compares with text.

use std::fmt;
use std::str::FromStr;

use crate::outcome::Outcome;

/// pending -> in_flight -> delivered | pending (retry) | failed; held
/// before pending while an earlier delivery of its ordering key is in the
/// way (ordered webhooks, `crate::ordering`); cancelled when the webhook is
/// disabled or deleted first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// Leased to a worker, its request under way.
    InFlight,
    /// Waiting behind an earlier delivery of its ordering key; not claimed
    /// until promoted to pending.
    Held,
    Delivered,
    /// The attempt budget is spent, or the receiver answered 410 Gone.
    Failed,
    /// Its webhook was disabled or deleted before it was delivered.
    Cancelled,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 6] = [
        DeliveryState::Pending,
        DeliveryState::InFlight,
        DeliveryState::Held,
        DeliveryState::Delivered,
        DeliveryState::Failed,
        DeliveryState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Held => "held",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more happens to it unless it is replayed.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            DeliveryState::Delivered | DeliveryState::Failed | DeliveryState::Cancelled
        )
    }

    /// "pending, in_flight, held, delivered, failed, cancelled", for messages.
    pub fn list() -> String {
        DeliveryState::ALL.map(DeliveryState::as_str).join(", ")
    }
}

impl From<Outcome> for DeliveryState {
    /// The state an attempt with this outcome leaves its delivery in.
    fn from(outcome: Outcome) -> DeliveryState {
        match outcome {
            Outcome::Delivered => DeliveryState::Delivered,
            Outcome::Retry => DeliveryState::Pending,
            Outcome::Failed => DeliveryState::Failed,
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of the five.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{:?} is not a delivery state; use one of {}", .0, DeliveryState::list())]
pub struct UnknownState(pub String);

impl FromStr for DeliveryState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<DeliveryState, UnknownState> {
        DeliveryState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

impl serde::Serialize for DeliveryState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(feature = "postgres")]
impl<'a> postgres_types::FromSql<'a> for DeliveryState {
    fn from_sql(
        ty: &postgres_types::Type,
        raw: &'a [u8],
    ) -> Result<DeliveryState, Box<dyn std::error::Error + Sync + Send>> {
        Ok(<&str as postgres_types::FromSql>::from_sql(ty, raw)?.parse()?)
    }

    fn accepts(ty: &postgres_types::Type) -> bool {
        <&str as postgres_types::FromSql>::accepts(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_as_written() {
        for state in DeliveryState::ALL {
            assert_eq!(state.as_str().parse(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
        }
        assert_eq!(
            DeliveryState::list(),
            "pending, in_flight, held, delivered, failed, cancelled"
        );
    }

    #[test]
    fn an_unknown_state_is_refused_with_the_known_ones() {
        let e = "done".parse::<DeliveryState>().unwrap_err().to_string();
        assert_eq!(
            e,
            "\"done\" is not a delivery state; use one of pending, in_flight, held, delivered, failed, cancelled"
        );
        assert!(
            "Pending".parse::<DeliveryState>().is_err(),
            "as the CHECK spells them"
        );
    }

    #[test]
    fn an_outcome_leaves_its_delivery_in_a_state() {
        for (outcome, state, finished) in [
            (Outcome::Delivered, DeliveryState::Delivered, true),
            (Outcome::Retry, DeliveryState::Pending, false),
            (Outcome::Failed, DeliveryState::Failed, true),
        ] {
            assert_eq!(DeliveryState::from(outcome), state);
            assert_eq!(state.is_finished(), finished);
        }
        assert!(DeliveryState::Cancelled.is_finished());
        assert!(!DeliveryState::InFlight.is_finished());
        assert!(!DeliveryState::Held.is_finished());
    }
}
