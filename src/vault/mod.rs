//! The vault: the master key hierarchy and, built on it, the sealing of card data.

pub mod master;
