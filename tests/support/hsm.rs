//! A SoftHSM2 token of the test's own: a private `SOFTHSM2_CONF` pointing at a token directory in a
//! temp dir, a token initialised with `softhsm2-util`, a PIN file, and the `STRONGROOM_*` settings that
//! point the binary at it.

use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

pub struct SoftHsm {
    dir: TempDir,
    pub label: String,
}

impl SoftHsm {
    /// A fresh token. `.ci/run` installs SoftHSM2; without it the test fails and says so.
    pub fn new() -> Self {
        assert!(
            std::path::Path::new(SOFTHSM_MODULE).exists(),
            "SoftHSM2 is not installed: apt-get install -y softhsm2 (.ci/run does it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let label = format!("sr-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", &label])
            .args(["--pin", "4321", "--so-pin", "87654321"])
            .env("SOFTHSM2_CONF", dir.path().join("softhsm2.conf"))
            .output()
            .expect("softhsm2-util runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pin = dir.path().join("pin");
        std::fs::write(&pin, "4321\n").unwrap();
        Self { dir, label }
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// The environment that makes the binary use this token.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("SOFTHSM2_CONF".into(), self.conf().display().to_string()),
            ("STRONGROOM_KEY_PROVIDER".into(), "pkcs11".into()),
            ("STRONGROOM_PKCS11_MODULE".into(), SOFTHSM_MODULE.into()),
            ("STRONGROOM_PKCS11_TOKEN_LABEL".into(), self.label.clone()),
            (
                "STRONGROOM_PKCS11_PIN_FILE".into(),
                self.dir.path().join("pin").display().to_string(),
            ),
            (
                "STRONGROOM_PKCS11_KEY_LABEL".into(),
                "strongroom-master".into(),
            ),
        ]
    }

    /// The token's files, where a key's value would be stored (encrypted by the token's PIN).
    pub fn token_dir(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }
}
