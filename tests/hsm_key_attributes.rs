//! The `pkcs11` provider's master key cannot leave the HSM: generated sensitive and not extractable, its
//! value cannot be read, nor wrapped out under another key. A test binary of its own, with one test, so
//! that it can point SoftHSM2 at a token of its own (`SOFTHSM2_CONF`) before any other thread runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use strongroom::vault::pkcs11::{Pkcs11Provider, Pkcs11Settings};
use strongroom::vault::provider::KeyProvider;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

#[test]
fn the_hsm_master_key_is_sensitive_not_extractable_and_cannot_be_read_or_wrapped_out() {
    // Beside the Rust toolchain this test needs SoftHSM2: `.ci/run` installs it and requires it.
    if !std::path::Path::new(MODULE).exists() {
        assert!(
            std::env::var_os("STRONGROOM_TEST_REQUIRE_TOOLS").is_none(),
            "{MODULE} is missing: apt-get install -y softhsm2 (.ci/run does it)"
        );
        eprintln!("skipped: {MODULE} is missing (apt-get install -y softhsm2)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tokens")).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.path().join("tokens").display()
        ),
    )
    .unwrap();
    // Before any other thread exists in this binary.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "attrs",
            "--pin",
            "4321",
        ])
        .args(["--so-pin", "87654321"])
        .output()
        .expect("softhsm2-util runs (apt-get install -y softhsm2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.path().join("pin"), "4321\n").unwrap();
    let settings = Pkcs11Settings {
        module: MODULE.into(),
        token_label: "attrs".into(),
        pin_file: dir.path().join("pin"),
        key_label: "strongroom-master".into(),
    };
    let provider = Pkcs11Provider::open(&settings, dir.path()).unwrap();
    assert_eq!(provider.init().unwrap(), 1);
    assert_eq!(provider.add_version().unwrap(), 2);
    assert_eq!(provider.versions(), vec![1, 2]);

    // Look at the keys as any other program with the PIN would.
    let pkcs11 = Pkcs11::new(MODULE).unwrap();
    let _ = pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = pkcs11
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).unwrap().label().trim_end() == "attrs")
        .unwrap();
    let session = pkcs11.open_rw_session(slot).unwrap();
    let _ = session.login(
        cryptoki::session::UserType::User,
        Some(&cryptoki::types::AuthPin::from("4321".to_owned())),
    );
    let keys = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"strongroom-master".to_vec()),
        ])
        .unwrap();
    assert_eq!(keys.len(), 2);
    // A key of our own to try wrapping the master key out under.
    let outside = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(false),
                Attribute::Wrap(true),
            ],
        )
        .unwrap();
    for key in keys {
        let attrs = session
            .get_attributes(
                key,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Token,
                ],
            )
            .unwrap();
        assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
        assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
        assert!(attrs.contains(&Attribute::Token(true)), "{attrs:?}");
        let value = session.get_attributes(key, &[AttributeType::Value]);
        assert!(
            !matches!(&value, Ok(v) if v.iter().any(|a| matches!(a, Attribute::Value(_)))),
            "the key's value was readable: {value:?}"
        );
        assert!(session
            .wrap_key(&Mechanism::AesKeyWrapPad, outside, key)
            .is_err());
    }
    // And the provider still wraps and unwraps with them.
    let key = zeroize::Zeroizing::new([7u8; 32]);
    let wrapped = provider.wrap(1, b"aad", &key).unwrap();
    assert_eq!(*provider.unwrap(1, b"aad", &wrapped).unwrap(), [7u8; 32]);
    assert!(provider.unwrap(2, b"aad", &wrapped).is_err());
    assert!(provider.unwrap(1, b"other aad", &wrapped).is_err());
}
