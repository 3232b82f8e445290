//! Which database a test runs on, and `on_both_backends!`, which runs each test on SQLite and on
//! PostgreSQL (the second half is skipped, saying so, when no PostgreSQL URL is given).

pub const POSTGRES_URL_VAR: &str = "STRONGROOM_TEST_POSTGRES_URL";
pub const REDIS_URL_VAR: &str = "STRONGROOM_TEST_REDIS_URL";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `$name(backend)` as two tests, `$name::sqlite` and `$name::postgres`; the second says it is
/// skipped when no PostgreSQL URL is given.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::support::postgres_available() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            }
        }
    )*};
}
pub(crate) use on_both_backends;

pub fn postgres_available() -> bool {
    if std::env::var(POSTGRES_URL_VAR)
        .map(|v| !v.is_empty())
        .unwrap_or(false)
    {
        true
    } else {
        eprintln!("skipped: set {POSTGRES_URL_VAR} (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run the PostgreSQL half");
        false
    }
}

/// The Redis URL to test against, or `None` (saying the test is skipped) when none is given.
pub fn redis_url() -> Option<String> {
    let url = std::env::var(REDIS_URL_VAR).ok().filter(|v| !v.is_empty());
    if url.is_none() {
        eprintln!(
            "skipped: set {REDIS_URL_VAR} (e.g. redis://127.0.0.1:6379) to run the Redis test"
        );
    }
    url
}
