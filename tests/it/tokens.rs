//! The token lifecycle over HTTP: tokenizing with `POST /cde-import`, reading, listing, consuming and
//! deleting tokens.

mod create;
mod ephemeral;
mod ids;
mod lifecycle;
mod list;
