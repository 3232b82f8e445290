//! Payments over HTTP: each use case and sandbox outcome, the status machine, refunds, subsequent
//! payments and crash recovery. The list with its filters and pages is in `payments_list`.

mod commerce;
mod create;
mod modify;
mod recovery;
mod series;
