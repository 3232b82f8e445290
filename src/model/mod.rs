//! The public objects and their typed values, below every other layer: card data as checked types, and
//! the objects the API answers and the webhooks carry. No axum, no sqlx, no I/O.

pub mod card;
pub mod payment;
