//! The state machines of payments and refunds, in one place: every allowed move between statuses, and
//! the webhook events each move emits. Every step of a payment is checked against these tables before
//! it is saved, and the webhooks read a step's events from them.

use crate::domain::webhooks::EventType;
use crate::model::payment::{PaymentStatus, RefundStatus};

/// An allowed move of a payment or a refund, and the events it emits, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move<S: 'static> {
    pub from: S,
    pub to: S,
    pub events: &'static [EventType],
}

const fn go<S>(from: S, to: S, events: &'static [EventType]) -> Move<S> {
    Move { from, to, events }
}

/// A new payment starts `processing`, emitting `payment.processing`.
pub const PAYMENT_START: (PaymentStatus, &[EventType]) =
    (PaymentStatus::Processing, &[EventType::PaymentProcessing]);

/// Every move of a payment. In-between statuses (`capturing`, `voiding`, `settling`) emit nothing; a
/// capture or void the processor declines returns the payment to `authorized`, and says so.
pub const PAYMENT_MOVES: &[Move<PaymentStatus>] = {
    use EventType as E;
    use PaymentStatus as P;
    &[
        // The authorization, at creation or by recovery.
        go(P::Processing, P::Authorized, &[E::PaymentAuthorized]),
        go(P::Processing, P::Captured, &[E::PaymentCaptured]),
        go(P::Processing, P::Failed, &[E::PaymentFailed]),
        // Capture.
        go(P::Authorized, P::Capturing, &[]),
        go(P::Capturing, P::Captured, &[E::PaymentCaptured]),
        go(P::Capturing, P::Authorized, &[E::PaymentAuthorized]),
        // Void.
        go(P::Authorized, P::Voiding, &[]),
        go(P::Voiding, P::Voided, &[E::PaymentVoided]),
        go(P::Voiding, P::Authorized, &[E::PaymentAuthorized]),
        // Settlement.
        go(P::Captured, P::Settling, &[]),
        go(P::Settling, P::Settled, &[E::PaymentSettled]),
    ]
};

/// The statuses in which a payment accepts refunds (up to what was captured); refunds do not move it.
pub const REFUNDABLE: &[PaymentStatus] = &[
    PaymentStatus::Captured,
    PaymentStatus::Settling,
    PaymentStatus::Settled,
];

/// A new refund starts `processing`, emitting `refund.processing`.
pub const REFUND_START: (RefundStatus, &[EventType]) =
    (RefundStatus::Processing, &[EventType::RefundProcessing]);

/// Every move of a refund. A completed refund also grows the payment's refunded amount, so it emits
/// `payment.refunded` after `refund.completed`.
pub const REFUND_MOVES: &[Move<RefundStatus>] = {
    use EventType as E;
    use RefundStatus as R;
    &[
        go(
            R::Processing,
            R::Completed,
            &[E::RefundCompleted, E::PaymentRefunded],
        ),
        go(R::Processing, R::Failed, &[E::RefundFailed]),
    ]
};

/// The move of a payment from `from` to `to`, if it is allowed.
pub fn payment_move(
    from: PaymentStatus,
    to: PaymentStatus,
) -> Option<&'static Move<PaymentStatus>> {
    PAYMENT_MOVES.iter().find(|m| m.from == from && m.to == to)
}

/// Whether a payment may move from `from` to `to`.
pub fn can_move(from: PaymentStatus, to: PaymentStatus) -> bool {
    payment_move(from, to).is_some()
}

/// The move of a refund from `from` to `to`, if it is allowed.
pub fn refund_move(from: RefundStatus, to: RefundStatus) -> Option<&'static Move<RefundStatus>> {
    REFUND_MOVES.iter().find(|m| m.from == from && m.to == to)
}

/// Whether a payment in `status` accepts a refund.
pub fn refundable(status: PaymentStatus) -> bool {
    REFUNDABLE.contains(&status)
}

/// The events of a payment moving from `from` to `to`: none if it stays. The events of a move depend
/// only on the status it enters (the tests below hold the tables to that), so a change is notified by
/// the status it reaches.
pub fn payment_events(from: PaymentStatus, to: PaymentStatus) -> &'static [EventType] {
    if from == to {
        return &[];
    }
    if to == PAYMENT_START.0 {
        return PAYMENT_START.1;
    }
    PAYMENT_MOVES
        .iter()
        .find(|m| m.to == to)
        .map_or(&[], |m| m.events)
}

/// The events of a refund reaching `to`: accepted (`processing`) or answered.
pub fn refund_events(to: RefundStatus) -> &'static [EventType] {
    if to == REFUND_START.0 {
        return REFUND_START.1;
    }
    REFUND_MOVES
        .iter()
        .find(|m| m.to == to)
        .map_or(&[], |m| m.events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_are_unique_and_only_final_statuses_emit_events() {
        for (i, m) in PAYMENT_MOVES.iter().enumerate() {
            assert_eq!(payment_move(m.from, m.to), Some(&PAYMENT_MOVES[i]));
            assert_ne!(m.from, m.to);
        }
        let in_between = [
            PaymentStatus::Capturing,
            PaymentStatus::Voiding,
            PaymentStatus::Settling,
        ];
        for m in PAYMENT_MOVES {
            assert_eq!(m.events.is_empty(), in_between.contains(&m.to), "{m:?}");
        }
        for m in PAYMENT_MOVES {
            assert_eq!(payment_events(m.from, m.to), m.events, "{m:?}");
        }
        for m in REFUND_MOVES {
            assert_eq!(refund_events(m.to), m.events, "{m:?}");
        }
        assert!(!can_move(PaymentStatus::Captured, PaymentStatus::Voiding));
        assert!(refund_move(RefundStatus::Completed, RefundStatus::Failed).is_none());
    }
}
