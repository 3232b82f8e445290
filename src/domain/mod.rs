//! The domain layer: validation, state machines and multi-step flows over the store.

pub mod accounts;
