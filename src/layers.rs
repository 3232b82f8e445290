//! The layering rule, checked on the source tree: the layers below `api/` never name the API or axum, the
//! store never names the domain, and the model and the lower layers stay free of what sits above them.
//! A `use` that breaks the rule fails `cargo test` with the file and line.

use std::path::{Path, PathBuf};

/// (folder under `src/`, what no file in it may name).
const RULES: &[(&str, &[&str])] = &[
    ("domain", &["crate::api", "axum"]),
    (
        "vault",
        &["crate::api", "axum", "crate::domain", "crate::config"],
    ),
    ("connectors", &["crate::api", "axum", "crate::domain"]),
    (
        "store",
        &["crate::api", "axum", "crate::domain", "crate::config"],
    ),
    (
        "model",
        &[
            "crate::api",
            "axum",
            "sqlx",
            "crate::domain",
            "crate::store",
        ],
    ),
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The code of a line without its comment, with grouped imports spelled out enough to be found:
/// `use crate::{api, store}` names `crate::api` as surely as `use crate::api`.
fn code_of(line: &str) -> String {
    let code = line.split("//").next().unwrap_or("");
    let mut spelled = code.to_owned();
    if let Some(group) = code.split("crate::{").nth(1) {
        for name in group.split([',', '}', ' ']).filter(|n| !n.is_empty()) {
            let root = name.split("::").next().unwrap_or(name);
            spelled.push_str(&format!(" crate::{root}"));
        }
    }
    spelled
}

/// Whether `code` names `forbidden` as a whole path segment (`crate::api` but not `crate::apis`).
fn names(code: &str, forbidden: &str) -> bool {
    code.match_indices(forbidden).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + forbidden.len()..].chars().next();
        let boundary = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        boundary(before) && boundary(after)
    })
}

#[test]
fn no_layer_names_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut breaches = Vec::new();
    for (folder, forbidden) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(folder), &mut files);
        assert!(!files.is_empty(), "src/{folder} has no Rust files");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                let code = code_of(line);
                for name in forbidden.iter().filter(|f| names(&code, f)) {
                    breaches.push(format!("{}:{}: names `{name}`", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        breaches.is_empty(),
        "layering broken:\n{}",
        breaches.join("\n")
    );
}

#[test]
fn the_check_sees_grouped_imports_and_ignores_comments() {
    assert!(names(
        &code_of("use crate::{api::error, store};"),
        "crate::api"
    ));
    assert!(names(&code_of("use axum::Json;"), "axum"));
    assert!(!names(&code_of("// no axum here"), "axum"));
    assert!(!names(&code_of("use crate::apis;"), "crate::api"));
}
