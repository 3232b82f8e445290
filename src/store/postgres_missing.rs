//! Stands in for the PostgreSQL backend in builds without the `postgres` feature.
//! Opening a URL of that backend fails with a message naming the cargo feature to enable.

use super::{DynStore, OpenError};

pub async fn open(
    _url: &str,
    _max_connections: u32,
    _acquire_timeout: std::time::Duration,
) -> Result<DynStore, OpenError> {
    Err(OpenError::NotCompiled("PostgreSQL", "postgres"))
}
