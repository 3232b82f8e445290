//! A response read whole (`Answer`), and the exact error bodies the API gives, for tests to compare
//! answers against.

use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

/// A response read whole: status, headers and the body as JSON (`Value::Null` if empty or not JSON).
pub struct Answer {
    /// `METHOD /path` of the request, for failure messages.
    pub request: String,
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body of a 200; any other status fails the test, showing the body.
    pub fn ok_body(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self.body
    }

    /// The body of any 2xx; any other status fails the test, showing the request and the body.
    pub fn success_body(self) -> Value {
        assert!(
            self.status.is_success(),
            "{}: {} {}",
            self.request,
            self.status,
            self.body
        );
        self.body
    }
}

pub async fn send(request: RequestBuilder) -> Answer {
    let (client, request) = request.build_split();
    let request = request.expect("a well-formed request");
    let what = format!("{} {}", request.method(), request.url().path());
    let response = client.execute(request).await.expect("request is answered");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        request: what,
        status,
        headers,
        body,
    }
}

/// The exact error body the API gives for `status`.
pub fn error_body(code: u16, classifier: &str, message: &str) -> Value {
    serde_json::json!({"code": code, "classifier": classifier, "message": message})
}

pub fn validation_body(errors: &[(&str, &str)]) -> Value {
    serde_json::json!({
        "code": 422,
        "classifier": "VALIDATION_ERROR",
        "message": "Validation error",
        "validation_errors": errors.iter().map(|(p, m)| serde_json::json!({"path": p, "message": m})).collect::<Vec<_>>(),
    })
}
