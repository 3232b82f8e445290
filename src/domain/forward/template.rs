//! The placeholders of a forwarded body: `{{ account_number }}`, `{{ cardholder_name }}`,
//! `{{ expiration_month }}`, `{{ expiration_year }}`, `{{ security_code }}`, optionally `| unwrap`. Parsing
//! finds them and checks them without card data; filling writes each value escaped for the body's syntax.

use std::ops::Range;

use zeroize::Zeroizing;

/// The card fields a placeholder can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    AccountNumber,
    CardholderName,
    ExpirationMonth,
    ExpirationYear,
    SecurityCode,
}

impl Field {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "account_number" => Field::AccountNumber,
            "cardholder_name" => Field::CardholderName,
            "expiration_month" => Field::ExpirationMonth,
            "expiration_year" => Field::ExpirationYear,
            "security_code" => Field::SecurityCode,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::AccountNumber => "account_number",
            Field::CardholderName => "cardholder_name",
            Field::ExpirationMonth => "expiration_month",
            Field::ExpirationYear => "expiration_year",
            Field::SecurityCode => "security_code",
        }
    }
}

/// How values are escaped, from the body's content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// Placeholders sit inside JSON strings; values are JSON-escaped.
    Json,
    /// `application/x-www-form-urlencoded`: values are percent-encoded.
    Form,
    /// XML: values are written as character data, `&<>"'` escaped.
    Xml,
    /// Anything else: values are written as they are.
    Text,
}

impl Syntax {
    pub fn of_content_type(content_type: Option<&str>) -> Self {
        let Some(value) = content_type else {
            return Syntax::Text;
        };
        let essence = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence == "application/json" || essence.ends_with("+json") {
            Syntax::Json
        } else if essence == "application/x-www-form-urlencoded" {
            Syntax::Form
        } else if essence == "application/xml" || essence == "text/xml" || essence.ends_with("+xml")
        {
            Syntax::Xml
        } else {
            Syntax::Text
        }
    }
}

/// One placeholder: the bytes of the body it replaces (with the quotes around it for a JSON `unwrap`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot {
    span: Range<usize>,
    field: Field,
    unwrap: bool,
}

/// A parsed body: where its placeholders are. It holds no card data and no copy of the body.
#[derive(Debug)]
pub struct Template {
    syntax: Syntax,
    slots: Vec<Slot>,
}

/// The values a body is filled with, borrowed from the opened card for the time of filling.
pub struct Values<'a> {
    pub account_number: &'a str,
    pub cardholder_name: Option<&'a str>,
    pub expiration_month: u8,
    pub expiration_year: u16,
    pub security_code: Option<&'a str>,
}

/// The longest text between `{{` and `}}` taken for a placeholder; longer runs are left as they are.
const MAX_PLACEHOLDER: usize = 96;

impl Template {
    /// Finds and checks every placeholder. The error names the placeholder, never a value.
    pub fn parse(body: &[u8], syntax: Syntax) -> Result<Self, String> {
        let mut slots = Vec::new();
        let mut json = JsonState::default();
        let mut i = 0;
        while i < body.len() {
            if body[i..].starts_with(b"{{") {
                if let Some(close) = find_close(body, i + 2) {
                    let slot = placeholder(body, i, close, syntax, &json)?;
                    let end = slot.span.end;
                    if slot.unwrap && syntax == Syntax::Json {
                        // The quotes went with the placeholder: the string it was is over.
                        json.in_string = false;
                    }
                    slots.push(slot);
                    i = end;
                    continue;
                }
            }
            json.step(body[i], i);
            i += 1;
        }
        Ok(Self { syntax, slots })
    }

    pub fn needs(&self, field: Field) -> bool {
        self.slots.iter().any(|s| s.field == field)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The filled body, in memory wiped on drop. `None` if it would be longer than `limit` bytes.
    /// Every field the template needs must be in `values` (the caller checked `needs`).
    pub fn fill(
        &self,
        body: &[u8],
        values: &Values<'_>,
        limit: usize,
    ) -> Option<Zeroizing<Vec<u8>>> {
        // Counted first, so that the buffer is allocated once and no reallocation leaves a copy behind.
        let mut counter = Counter(0);
        self.write(body, values, &mut counter);
        if counter.0 > limit {
            return None;
        }
        let mut out = Zeroizing::new(Vec::with_capacity(counter.0));
        self.write(body, values, &mut *out);
        Some(out)
    }

    fn write(&self, body: &[u8], values: &Values<'_>, out: &mut dyn Sink) {
        let mut at = 0;
        for slot in &self.slots {
            out.put(&body[at..slot.span.start]);
            write_value(self.syntax, slot, values, out);
            at = slot.span.end;
        }
        out.put(&body[at..]);
    }
}

/// Where `}}` closes a placeholder opened before `from`, if it does within `MAX_PLACEHOLDER` bytes
/// without another `{{` first.
fn find_close(body: &[u8], from: usize) -> Option<usize> {
    let window = &body[from..body.len().min(from + MAX_PLACEHOLDER + 2)];
    let close = window.windows(2).position(|w| w == b"}}")?;
    let inner = &window[..close];
    (!inner.windows(2).any(|w| w == b"{{")).then_some(from + close)
}

/// Checks the placeholder between `open` (its `{{`) and `close` (its `}}`).
fn placeholder(
    body: &[u8],
    open: usize,
    close: usize,
    syntax: Syntax,
    json: &JsonState,
) -> Result<Slot, String> {
    let inner = std::str::from_utf8(&body[open + 2..close])
        .map_err(|_| "a placeholder is not valid text".to_owned())?;
    let mut parts = inner.split('|').map(str::trim);
    let name = parts.next().unwrap_or("");
    let shown = printable(inner);
    let field =
        Field::parse(name).ok_or_else(|| format!("unknown placeholder `{{{{ {shown} }}}}`"))?;
    let mut unwrap = false;
    for filter in parts {
        match filter {
            "unwrap" if !unwrap => unwrap = true,
            "unwrap" => return Err(format!("`unwrap` is given twice in `{{{{ {shown} }}}}`")),
            other => {
                return Err(format!(
                    "unknown filter `{}` in `{{{{ {shown} }}}}`",
                    printable(other)
                ))
            }
        }
    }
    if unwrap && matches!(field, Field::CardholderName | Field::SecurityCode) {
        return Err(format!(
            "`unwrap` applies to account_number, expiration_month and expiration_year, not to `{{{{ {shown} }}}}`"
        ));
    }
    let mut span = open..close + 2;
    if syntax == Syntax::Json {
        if !json.in_string {
            return Err(format!(
                "`{{{{ {shown} }}}}` must sit inside a JSON string (\"{{{{ {} }}}}\")",
                field.name()
            ));
        }
        if unwrap {
            // The bare number replaces the whole string, quotes included.
            if json.string_start != Some(open.wrapping_sub(1)) || body.get(close + 2) != Some(&b'"')
            {
                return Err(format!(
                    "`{{{{ {shown} }}}}` must be the whole JSON string to be unwrapped"
                ));
            }
            span = open - 1..close + 3;
        }
    }
    Ok(Slot {
        span,
        field,
        unwrap,
    })
}

/// What a client wrote inside the braces, fit for an error message: it is not card data, but it is
/// shortened and stripped of control characters all the same.
fn printable(text: &str) -> String {
    text.trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(40)
        .collect()
}

/// Whether the scan is inside a JSON string, and where that string's quote is.
#[derive(Default)]
struct JsonState {
    in_string: bool,
    escaped: bool,
    string_start: Option<usize>,
}

impl JsonState {
    fn step(&mut self, byte: u8, at: usize) {
        if !self.in_string {
            if byte == b'"' {
                self.in_string = true;
                self.string_start = Some(at);
            }
        } else if self.escaped {
            self.escaped = false;
        } else if byte == b'\\' {
            self.escaped = true;
        } else if byte == b'"' {
            self.in_string = false;
            self.string_start = None;
        }
    }
}

trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

struct Counter(usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn write_value(syntax: Syntax, slot: &Slot, values: &Values<'_>, out: &mut dyn Sink) {
    let mut digits = [0u8; 4];
    let text: &str = match slot.field {
        Field::AccountNumber => values.account_number,
        Field::CardholderName => values.cardholder_name.unwrap_or(""),
        Field::SecurityCode => values.security_code.unwrap_or(""),
        Field::ExpirationMonth if slot.unwrap => {
            number(u16::from(values.expiration_month), &mut digits)
        }
        // Two digits, as card forms and processors spell a month.
        Field::ExpirationMonth => {
            digits[0] = b'0' + values.expiration_month / 10 % 10;
            digits[1] = b'0' + values.expiration_month % 10;
            std::str::from_utf8(&digits[..2]).unwrap_or("")
        }
        Field::ExpirationYear => number(values.expiration_year, &mut digits),
    };
    if slot.unwrap {
        // Digits only, so there is nothing to escape in any syntax.
        out.put(text.as_bytes());
        return;
    }
    match syntax {
        Syntax::Json => json_escape(text, out),
        Syntax::Form => form_encode(text, out),
        Syntax::Xml => xml_escape(text, out),
        Syntax::Text => out.put(text.as_bytes()),
    }
}

/// `n` in decimal without leading zeros, written into `buf`.
fn number(n: u16, buf: &mut [u8; 4]) -> &str {
    let mut n = n.min(9999);
    let mut len = 0;
    let mut rev = [0u8; 4];
    loop {
        rev[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[i] = rev[len - 1 - i];
    }
    std::str::from_utf8(&buf[..len]).unwrap_or("")
}

fn json_escape(text: &str, out: &mut dyn Sink) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in text.bytes() {
        match byte {
            b'"' => out.put(b"\\\""),
            b'\\' => out.put(b"\\\\"),
            b'\n' => out.put(b"\\n"),
            b'\r' => out.put(b"\\r"),
            b'\t' => out.put(b"\\t"),
            0..=0x1f => out.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
            _ => out.put(&[byte]),
        }
    }
}

fn form_encode(text: &str, out: &mut dyn Sink) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.put(&[byte]),
            b' ' => out.put(b"+"),
            _ => out.put(&[
                b'%',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
        }
    }
}

fn xml_escape(text: &str, out: &mut dyn Sink) {
    for byte in text.bytes() {
        match byte {
            b'&' => out.put(b"&amp;"),
            b'<' => out.put(b"&lt;"),
            b'>' => out.put(b"&gt;"),
            b'"' => out.put(b"&quot;"),
            b'\'' => out.put(b"&apos;"),
            _ => out.put(&[byte]),
        }
    }
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
