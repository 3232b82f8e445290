//! Token imports against a fake Stripe (a real HTTP server on port 0 that forwards card data to our
//! ingest endpoint): counters, tokens, each failure kind, conflicts, abort, pagination of failures, and a
//! kill -9 in the middle of an import.

mod control;
mod failures;
mod progress;
mod run;
