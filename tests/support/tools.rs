//! Programs a few tests need beside the Rust toolchain (SoftHSM2, openssl, redis-server). `.ci/run`
//! installs them and sets `STRONGROOM_TEST_REQUIRE_TOOLS`, so in CI a missing one fails the test; on a
//! newcomer's machine such a test says it is skipped and which package to install.

use std::path::Path;

/// Set (to anything) to make a missing tool fail the test instead of skipping it.
pub const REQUIRE_TOOLS_VAR: &str = "STRONGROOM_TEST_REQUIRE_TOOLS";

/// Whether `path` (a program on the `PATH`, or an absolute file such as a PKCS#11 module) exists; when
/// it does not, panics under `STRONGROOM_TEST_REQUIRE_TOOLS` or prints that the test is skipped.
pub fn tool_available(path: &str, package: &str) -> bool {
    let found = if path.starts_with('/') {
        Path::new(path).exists()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(path).is_file()))
    };
    if found {
        return true;
    }
    assert!(
        std::env::var_os(REQUIRE_TOOLS_VAR).is_none(),
        "{path} is missing: apt-get install -y {package} (.ci/run does it)"
    );
    eprintln!(
        "skipped: {path} is missing (apt-get install -y {package}); set {REQUIRE_TOOLS_VAR}=1 to fail instead"
    );
    false
}

/// SoftHSM2's library and its token tool.
pub fn softhsm_available() -> bool {
    tool_available(super::hsm::SOFTHSM_MODULE, "softhsm2")
        && tool_available("softhsm2-util", "softhsm2")
}
