//! Unit tests of the placeholder parser and filler, with randomised names for the escaping of each syntax.

use rand::Rng;
use serde_json::Value;

use super::*;

const PAN: &str = "4111111111111111";

fn values(name: Option<&str>) -> Values<'_> {
    Values {
        account_number: PAN,
        cardholder_name: name,
        expiration_month: 4,
        expiration_year: 2031,
        security_code: Some("737"),
    }
}

fn fill(body: &str, syntax: Syntax, name: Option<&str>) -> String {
    let template = Template::parse(body.as_bytes(), syntax).unwrap();
    let out = template
        .fill(body.as_bytes(), &values(name), 1 << 20)
        .unwrap();
    String::from_utf8(out.to_vec()).unwrap()
}

fn error(body: &str, syntax: Syntax) -> String {
    Template::parse(body.as_bytes(), syntax).unwrap_err()
}

#[test]
fn every_placeholder_is_filled_with_or_without_spaces() {
    let body = r#"{"n":"{{account_number}}","m":"{{ expiration_month }}","y":"{{  expiration_year}}","c":"{{security_code }}","h":"{{ cardholder_name }}"}"#;
    let filled: Value = serde_json::from_str(&fill(body, Syntax::Json, Some("Jane"))).unwrap();
    assert_eq!(
        filled,
        serde_json::json!({"n": PAN, "m": "04", "y": "2031", "c": "737", "h": "Jane"})
    );
}

#[test]
fn unwrap_replaces_the_whole_string_by_the_bare_number() {
    let body = r#"{"n": "{{ account_number | unwrap }}", "m": "{{expiration_month|unwrap}}", "y": "{{ expiration_year | unwrap }}"}"#;
    let text = fill(body, Syntax::Json, None);
    assert_eq!(text, r#"{"n": 4111111111111111, "m": 4, "y": 2031}"#);
}

#[test]
fn a_placeholder_inside_a_longer_json_string_is_filled_in_place() {
    let body = r#"{"exp": "{{ expiration_month }}/{{ expiration_year }}", "q": "a \"{{ account_number }}\" b"}"#;
    let filled: Value = serde_json::from_str(&fill(body, Syntax::Json, None)).unwrap();
    assert_eq!(filled["exp"], "04/2031");
    assert_eq!(filled["q"], format!("a \"{PAN}\" b"));
}

#[test]
fn unknown_placeholders_and_filters_are_named() {
    assert_eq!(
        error(r#"{"a": "{{ cvv }}"}"#, Syntax::Json),
        "unknown placeholder `{{ cvv }}`"
    );
    assert_eq!(
        error("n={{ account_number | upper }}", Syntax::Form),
        "unknown filter `upper` in `{{ account_number | upper }}`"
    );
    assert!(error("{{ cardholder_name | unwrap }}", Syntax::Text).contains("`unwrap` applies to"));
    assert!(error("{{ security_code|unwrap }}", Syntax::Text).contains("`unwrap` applies to"));
}

#[test]
fn in_json_a_placeholder_must_sit_in_a_string_and_unwrap_must_be_the_whole_string() {
    assert!(error(r#"{"n": {{ account_number }}}"#, Syntax::Json).contains("inside a JSON string"));
    assert!(
        error(r#"{"n": "x{{ account_number | unwrap }}"}"#, Syntax::Json)
            .contains("whole JSON string")
    );
    assert!(
        error(r#"{"n": "{{ account_number | unwrap }} "}"#, Syntax::Json)
            .contains("whole JSON string")
    );
    // A quote escaped inside a string does not end it.
    let body = r#"{"k\"": "{{ account_number }}"}"#;
    assert!(Template::parse(body.as_bytes(), Syntax::Json).is_ok());
}

#[test]
fn braces_that_are_not_placeholders_stay_as_they_are() {
    let body = "{ {x} } {{ no close and {{ account_number }} }";
    assert_eq!(
        fill(body, Syntax::Text, None),
        format!("{{ {{x}} }} {{{{ no close and {PAN} }}")
    );
    let template = Template::parse(b"no placeholders", Syntax::Text).unwrap();
    assert!(template.is_empty());
}

#[test]
fn the_filled_body_is_refused_past_the_limit() {
    let body = b"{{ account_number }}";
    let template = Template::parse(body, Syntax::Text).unwrap();
    assert!(template.fill(body, &values(None), 15).is_none());
    assert_eq!(template.fill(body, &values(None), 16).unwrap().len(), 16);
}

#[test]
fn content_types_choose_the_syntax() {
    assert_eq!(
        Syntax::of_content_type(Some("application/json; charset=utf-8")),
        Syntax::Json
    );
    assert_eq!(
        Syntax::of_content_type(Some("application/vnd.api+json")),
        Syntax::Json
    );
    assert_eq!(
        Syntax::of_content_type(Some("application/x-www-form-urlencoded")),
        Syntax::Form
    );
    assert_eq!(Syntax::of_content_type(Some("TEXT/XML")), Syntax::Xml);
    assert_eq!(
        Syntax::of_content_type(Some("application/soap+xml")),
        Syntax::Xml
    );
    assert_eq!(Syntax::of_content_type(Some("text/plain")), Syntax::Text);
    assert_eq!(Syntax::of_content_type(None), Syntax::Text);
}

/// A name of random characters, heavy on the ones each syntax must escape.
fn random_name(rng: &mut impl Rng) -> String {
    const AWKWARD: &[char] = &[
        '"', '\'', '\\', '&', '<', '>', '=', '+', '%', ' ', '\n', '\t', '\u{1}', '/', '{', '}',
        'é', 'ß', '中', '😀',
    ];
    (0..rng.gen_range(1..40))
        .map(|_| {
            if rng.gen_bool(0.5) {
                AWKWARD[rng.gen_range(0..AWKWARD.len())]
            } else {
                char::from(rng.gen_range(b'a'..=b'z'))
            }
        })
        .collect::<String>()
        .replace("{{", "{ {")
}

#[test]
fn any_name_survives_json_escaping() {
    let mut rng = rand::thread_rng();
    for _ in 0..500 {
        let name = random_name(&mut rng);
        let filled = fill(
            r#"{"name": "Mr {{ cardholder_name }}"}"#,
            Syntax::Json,
            Some(&name),
        );
        let parsed: Value = serde_json::from_str(&filled).unwrap();
        assert_eq!(parsed["name"], format!("Mr {name}"));
    }
}

fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn any_name_survives_form_encoding() {
    let mut rng = rand::thread_rng();
    for _ in 0..500 {
        let name = random_name(&mut rng);
        let filled = fill(
            "a=1&name={{ cardholder_name }}&b=2",
            Syntax::Form,
            Some(&name),
        );
        let fields: Vec<&str> = filled.split('&').collect();
        assert_eq!(fields.len(), 3, "{filled}");
        assert_eq!(form_decode(fields[1].strip_prefix("name=").unwrap()), name);
    }
}

#[test]
fn any_name_survives_xml_escaping() {
    let mut rng = rand::thread_rng();
    for _ in 0..500 {
        let name = random_name(&mut rng);
        let filled = fill("<n>{{ cardholder_name }}</n>", Syntax::Xml, Some(&name));
        let inner = filled
            .strip_prefix("<n>")
            .unwrap()
            .strip_suffix("</n>")
            .unwrap();
        assert!(!inner.contains('<') && !inner.contains('"'), "{inner}");
        let back = inner
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&");
        assert_eq!(back, name);
    }
}
