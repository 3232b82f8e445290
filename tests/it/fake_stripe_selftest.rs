//! The fake Stripe against its own contract: list pagination, authentication, forwarding with the
//! card filled in, idempotent replays and the injected failures.

mod faults;
mod forwarding;
mod lists;
