//! The cards the fake stores and what it derives from them: Luhn check digits, the masked number,
//! the brand and Stripe's fingerprint, plus Stripe-like random ids.

use std::fmt;
use std::hash::{Hash, Hasher};

use rand::Rng;

/// A card as the fake stores it. `Debug` shows only the last four digits of the number.
#[derive(Clone, PartialEq, Eq)]
pub struct FakeCard {
    pub number: String,
    pub exp_month: u32,
    pub exp_year: u32,
    pub name: Option<String>,
    pub cvc: Option<String>,
}

impl fmt::Debug for FakeCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeCard")
            .field("number", &format_args!("****{}", last4(&self.number)))
            .field("exp_month", &self.exp_month)
            .field("exp_year", &self.exp_year)
            .field("name", &self.name)
            .field("cvc", &self.cvc.as_ref().map(|_| "***"))
            .finish()
    }
}

impl FakeCard {
    /// A Visa test card: `4242` + `n` on 11 digits + the Luhn check digit (16 digits, distinct for
    /// each `n`), expiring 12/2030, held by "Test Holder", CVC "123".
    pub fn visa(n: u32) -> FakeCard {
        let body = format!("4242{n:011}");
        let check = luhn_check_digit(&body);
        FakeCard {
            number: format!("{body}{check}"),
            exp_month: 12,
            exp_year: 2030,
            name: Some("Test Holder".to_owned()),
            cvc: Some("123".to_owned()),
        }
    }

    pub fn last4(&self) -> String {
        last4(&self.number)
    }
}

/// The digit that makes `body` followed by it pass the Luhn check (non-digits count as 0).
pub fn luhn_check_digit(body: &str) -> u32 {
    let sum: u32 = body
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap_or(0);
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// Whether `number` is all digits and passes the Luhn check.
pub fn luhn_valid(number: &str) -> bool {
    let Some((body, check)) = number.len().checked_sub(1).map(|i| number.split_at(i)) else {
        return false;
    };
    !body.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
        && check.chars().next().and_then(|c| c.to_digit(10)) == Some(luhn_check_digit(body))
}

pub(super) fn last4(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars
        .get(chars.len().saturating_sub(4)..)
        .unwrap_or(&[])
        .iter()
        .collect()
}

/// `424242******4242`
pub(super) fn mask_number(number: &str) -> String {
    let first6: String = number.chars().take(6).collect();
    format!("{first6}******{}", last4(number))
}

pub(super) fn brand(number: &str) -> &'static str {
    let prefix2: u32 = number.get(..2).and_then(|p| p.parse().ok()).unwrap_or(0);
    let prefix4: u32 = number.get(..4).and_then(|p| p.parse().ok()).unwrap_or(0);
    if number.starts_with('4') {
        "visa"
    } else if (51..=55).contains(&prefix2) || (2221..=2720).contains(&prefix4) {
        "mastercard"
    } else if prefix2 == 34 || prefix2 == 37 {
        "amex"
    } else if prefix4 == 6011 || prefix2 == 65 {
        "discover"
    } else {
        "unknown"
    }
}

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub(super) fn random_id(rng: &mut impl Rng, len: usize) -> String {
    (0..len)
        .map(|_| {
            let i = rng.gen_range(0..ALPHABET.len());
            char::from(ALPHABET.get(i).copied().unwrap_or(b'0'))
        })
        .collect()
}

/// The same 16 characters for the same number, as Stripe's card fingerprint.
pub(super) fn fingerprint(number: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    ("strongroom-fake-stripe", number).hash(&mut hasher);
    let mut state = hasher.finish() | 1;
    (0..16)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = usize::try_from(state % ALPHABET.len() as u64).unwrap_or(0);
            char::from(ALPHABET.get(i).copied().unwrap_or(b'0'))
        })
        .collect()
}
