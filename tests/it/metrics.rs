//! The metrics listener, scraped after a few requests: the exposition text is parsed (strictly), every
//! documented family is there with its labels, the counts are what the test did, and nothing in it is
//! an id or a card number.

use std::collections::{BTreeMap, HashMap};

use reqwest::StatusCode;

use crate::support::{card, on_both_backends, payment, Backend, ServerProcess, TestDb};

on_both_backends!(the_metrics_listener_counts_what_was_done_and_leaks_no_ids,);

/// One sample: its metric name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict parser of the text exposition (OpenMetrics 1.0 / Prometheus 0.0.4): `# HELP`, `# TYPE`,
/// `# EOF` and sample lines `name{label="value",...} number`; anything else fails the test.
fn parse(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line == "# EOF" || line.starts_with("# HELP ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment line: {line}");
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let mut key = String::new();
            let close = loop {
                let (at, c) = chars.next().expect("unterminated labels");
                match c {
                    '}' if key.is_empty() => break at,
                    ',' if key.is_empty() => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        let mut value = String::new();
                        loop {
                            match chars.next().expect("unterminated value").1 {
                                '"' => break,
                                '\\' => value.push(chars.next().expect("escape").1),
                                c => value.push(c),
                            }
                        }
                        assert!(
                            labels.insert(std::mem::take(&mut key), value).is_none(),
                            "a label twice: {line}"
                        );
                    }
                    c if c.is_ascii_alphanumeric() || c == '_' => key.push(c),
                    _ => panic!("bad label syntax: {line}"),
                }
            };
            rest = &body[close + 1..];
        }
        let value = rest.trim().split(' ').next().expect("value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    (types, samples)
}

fn metrics_addr(server: &ServerProcess) -> String {
    let log = server.stderr_log();
    log.lines()
        .find(|l| l.contains("strongroom is serving"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("metrics_addr="))
        })
        .expect("the serving line names the metrics address")
        .to_owned()
}

async fn the_metrics_listener_counts_what_was_done_and_leaks_no_ids(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = ServerProcess::start_with(
        &db,
        "metrics",
        &[("STRONGROOM_METRICS_LISTEN", "127.0.0.1:0")],
    );
    let key = server.default_api_key();
    let api = server.api(&key);
    let account_id = api.account_id().await.to_string();

    let mut tokens = Vec::new();
    for pan in ["4242424242424242", "4111111111111111", "5555555555554444"] {
        let answer = api.tokenize(&card(pan)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        tokens.push(answer.body["id"].as_str().unwrap().to_owned());
    }
    for id in &tokens[..2] {
        assert_eq!(api.get_token(id).await.status, StatusCode::OK);
    }
    let refused = api.with_key("sr_not_a_key").get("/tokens").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let paid = api
        .create_payment("one-off", &payment(&tokens[0], 1000, "automatic"))
        .await;
    assert!(paid.status.is_success(), "{}", paid.body);

    let addr = metrics_addr(&server);
    let api_port = server.base.rsplit(':').next().unwrap().to_owned();
    assert!(!addr.ends_with(&format!(":{api_port}")));
    // The API's port does not serve the metrics.
    let on_api = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap();
    assert_eq!(on_api.status(), StatusCode::NOT_FOUND);

    let scraped = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    let text = scraped.text().await.unwrap();
    let (types, samples) = parse(&text);

    // Every family, of its type, with its labels.
    let families: &[(&str, &str, &str, &[&str])] = &[
        (
            "strongroom_http_requests",
            "counter",
            "_total",
            &["route", "method", "status"],
        ),
        (
            "strongroom_http_request_duration_seconds",
            "histogram",
            "_count",
            &["route", "method"],
        ),
        (
            "strongroom_tokens_created",
            "counter",
            "_total",
            &["origin"],
        ),
        ("strongroom_card_reads", "counter", "_total", &["purpose"]),
        ("strongroom_jobs_queued", "gauge", "", &["kind"]),
        ("strongroom_job_oldest_due_seconds", "gauge", "", &["kind"]),
        (
            "strongroom_jobs_finished",
            "counter",
            "_total",
            &["kind", "outcome"],
        ),
        ("strongroom_import_cards", "counter", "_total", &["outcome"]),
        ("strongroom_imports_running", "gauge", "", &[]),
        (
            "strongroom_webhook_deliveries",
            "counter",
            "_total",
            &["outcome"],
        ),
        (
            "strongroom_webhook_delivery_lag_seconds",
            "histogram",
            "_count",
            &[],
        ),
        ("strongroom_db_pool_connections", "gauge", "", &["state"]),
        (
            "strongroom_db_query_duration_seconds",
            "histogram",
            "_count",
            &["op"],
        ),
        (
            "strongroom_build_info",
            "gauge",
            "",
            &["version", "backend"],
        ),
    ];
    for (family, kind, suffix, labels) in families {
        assert_eq!(
            types.get(*family).map(String::as_str),
            Some(*kind),
            "{family}"
        );
        let name = format!("{family}{suffix}");
        let of: Vec<&Sample> = samples.iter().filter(|s| s.name == name).collect();
        assert!(!of.is_empty(), "no sample of {name}:\n{text}");
        for sample in of {
            let keys: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
            let mut want: Vec<&str> = labels.to_vec();
            want.sort_unstable();
            assert_eq!(keys, want, "labels of {name}");
        }
    }

    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    };
    let requests = "strongroom_http_requests_total";
    assert_eq!(
        value(
            requests,
            &[
                ("route", "/cde-import"),
                ("method", "POST"),
                ("status", "200")
            ]
        ),
        3.0
    );
    assert_eq!(
        value(
            requests,
            &[
                ("route", "/tokens/{id}"),
                ("method", "GET"),
                ("status", "200")
            ]
        ),
        2.0
    );
    assert_eq!(
        value(
            requests,
            &[("route", "/tokens"), ("method", "GET"), ("status", "401")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "strongroom_http_request_duration_seconds_count",
            &[("route", "/cde-import"), ("method", "POST")]
        ),
        3.0
    );
    assert_eq!(
        value("strongroom_tokens_created_total", &[("origin", "api")]),
        3.0
    );
    assert_eq!(
        value("strongroom_tokens_created_total", &[("origin", "import")]),
        0.0
    );
    assert_eq!(
        value("strongroom_card_reads_total", &[("purpose", "payment")]),
        1.0
    );
    assert_eq!(value("strongroom_imports_running", &[]), 0.0);
    assert!(
        value(
            "strongroom_db_query_duration_seconds_count",
            &[("op", "insert_tokens")]
        ) >= 1.0
    );
    let backend_label = if backend == Backend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(
        value("strongroom_build_info", &[("backend", backend_label)]),
        1.0
    );

    // No id, key or card number anywhere.
    for secret in tokens.iter().chain([&account_id, &key]) {
        assert!(!text.contains(secret.as_str()), "the metrics show {secret}");
    }
    // Sample values are floats (`0.0012345678901234`); names, labels and help text are not.
    let mut words: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    for sample in &samples {
        words.push(&sample.name);
        words.extend(sample.labels.values().map(String::as_str));
    }
    for word in words {
        let mut run = 0;
        for c in word.chars() {
            run = if c.is_ascii_digit() { run + 1 } else { 0 };
            assert!(
                run < 12,
                "a digit run of card length in the metrics: {word}"
            );
        }
    }
}
