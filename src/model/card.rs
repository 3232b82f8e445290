//! Card data as checked types: a `Pan` and a `SecurityCode` can only be built through their checks, print
//! as `****`, are read only through `peek`, and wipe their memory on drop. Also the derived, non-secret
//! facts of a card: scheme, IIN, mask.

use std::fmt;

use serde::Serialize;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A primary account number: 12 to 19 digits passing the Luhn check.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Pan(String);

impl Pan {
    /// Checks `digits`; the error names what is wrong without repeating the number.
    pub fn parse(digits: &str) -> Result<Self, &'static str> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must contain digits only");
        }
        if !(12..=19).contains(&digits.len()) {
            return Err("must be 12 to 19 digits long");
        }
        if !luhn_valid(digits) {
            return Err("is not a valid card number (Luhn check failed)");
        }
        Ok(Self(digits.to_owned()))
    }

    /// The digits, for sealing or for the processor; never for logs.
    pub fn peek(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn scheme(&self) -> Scheme {
        Scheme::of(&self.0)
    }

    /// First 8 digits for numbers of 16 digits or more, else as many as the mask shows (first 6,
    /// fewer for numbers under 16 digits: see [`Pan::masked`]), so that the IIN and the mask together
    /// never show more than the mask alone does.
    pub fn issuer_identification_number(&self) -> String {
        let n = if self.0.len() >= 16 {
            8
        } else {
            self.shown_prefix()
        };
        self.0[..n].to_owned()
    }

    pub fn last_four(&self) -> String {
        self.0[self.0.len() - 4..].to_owned()
    }

    /// The first digits, an `X` for each hidden digit, the last 4: the full length, with at least
    /// six digits hidden. The first 6 are shown when that leaves six hidden (16 digits or more);
    /// shorter numbers show fewer (12 digits: 2, 13: 3, 14: 4, 15: 5). With first 6 and last 4, a
    /// 12-digit number would hide 2 digits, which the Luhn check narrows to about 10 candidates;
    /// six hidden digits leave about 100,000.
    pub fn masked(&self) -> String {
        let len = self.0.len();
        let shown = self.shown_prefix();
        format!(
            "{}{}{}",
            &self.0[..shown],
            "X".repeat(len - shown - 4),
            &self.0[len - 4..]
        )
    }

    /// How many leading digits the mask shows: 6, or fewer so that at least 6 stay hidden.
    fn shown_prefix(&self) -> usize {
        self.0.len().saturating_sub(MIN_HIDDEN + 4).min(6)
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pan(****)")
    }
}

/// Digits every mask hides, whatever the number's length.
const MIN_HIDDEN: usize = 6;

pub fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 {
                    dd - 9
                } else {
                    dd
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// A card security code (CVC2/CVV2/CID): 3 digits, or 4 for American Express. Held in memory only.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecurityCode(String);

impl SecurityCode {
    pub fn parse(code: &str, scheme: Scheme) -> Result<Self, &'static str> {
        if code.is_empty() || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must contain digits only");
        }
        match (scheme, code.len()) {
            (Scheme::AmericanExpress, 4) => Ok(Self(code.to_owned())),
            (Scheme::AmericanExpress, _) => Err("must be 4 digits for American Express"),
            (_, 3) => Ok(Self(code.to_owned())),
            (_, 4) => Err("must be 3 digits (4 only for American Express)"),
            _ => Err("must be 3 or 4 digits"),
        }
    }

    pub fn peek(&self) -> &str {
        &self.0
    }

    /// A code read back from the cache, where it was stored after `parse` checked it against its scheme.
    pub fn from_cache(code: &str) -> Option<Self> {
        ((3..=4).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self(code.to_owned()))
    }
}

impl fmt::Debug for SecurityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecurityCode(****)")
    }
}

/// The card data that is sealed: everything needed to pay with it again.
#[derive(Clone, PartialEq, Eq)]
pub struct CardData {
    pub pan: Pan,
    pub expiry_month: u8,
    pub expiry_year: u16,
    pub cardholder_name: Option<String>,
}

impl fmt::Debug for CardData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardData")
            .field("pan", &self.pan)
            .finish_non_exhaustive()
    }
}

impl Drop for CardData {
    fn drop(&mut self) {
        if let Some(name) = self.cardholder_name.as_mut() {
            name.zeroize();
        }
    }
}

impl CardData {
    /// The plaintext that is sealed, in memory that is wiped after use.
    pub fn to_plaintext(&self) -> Zeroizing<Vec<u8>> {
        #[derive(Serialize)]
        struct SealedRef<'a> {
            pan: &'a str,
            m: u8,
            y: u16,
            name: Option<&'a str>,
        }
        // Room for the largest record, so that no reallocation leaves a copy behind.
        let mut out = Zeroizing::new(Vec::with_capacity(1024));
        let record = SealedRef {
            pan: self.pan.peek(),
            m: self.expiry_month,
            y: self.expiry_year,
            name: self.cardholder_name.as_deref(),
        };
        // Writing JSON into a Vec cannot fail; an empty plaintext would fail to open, never leak.
        let _ = serde_json::to_writer(&mut *out, &record);
        out
    }

    pub fn from_plaintext(plaintext: &[u8]) -> Option<Self> {
        #[derive(serde::Deserialize)]
        struct Sealed<'a> {
            pan: &'a str,
            m: u8,
            y: u16,
            name: Option<String>,
        }
        let sealed: Sealed = serde_json::from_slice(plaintext).ok()?;
        Some(Self {
            pan: Pan::parse(sealed.pan).ok()?,
            expiry_month: sealed.m,
            expiry_year: sealed.y,
            cardholder_name: sealed.name,
        })
    }
}

crate::model::string_enum! {
    /// Card schemes, spelled as the spec's enum.
    pub enum Scheme {
        Visa = "VISA",
        Mastercard = "Mastercard",
        AmericanExpress = "American Express",
        Discover = "Discover",
        DinersClub = "Diners Club",
        Jcb = "JCB",
        UnionPay = "UnionPay",
        Unknown = "Unknown",
    }
}

impl Scheme {
    /// The scheme from the IIN ranges; Discover's ranges are checked before UnionPay's 62.
    pub fn of(digits: &str) -> Self {
        let prefix = |n: usize| {
            digits
                .get(..n)
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(0)
        };
        let (p2, p3, p4) = (prefix(2), prefix(3), prefix(4));
        if digits.starts_with('4') {
            Scheme::Visa
        } else if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) {
            Scheme::Mastercard
        } else if p2 == 34 || p2 == 37 {
            Scheme::AmericanExpress
        } else if p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 {
            Scheme::Discover
        } else if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 {
            Scheme::DinersClub
        } else if (3528..=3589).contains(&p4) {
            Scheme::Jcb
        } else if p2 == 62 || p2 == 81 {
            Scheme::UnionPay
        } else {
            Scheme::Unknown
        }
    }

    /// The scheme a stored or forwarded name spells; anything else is `Unknown`.
    pub fn parse(text: &str) -> Self {
        text.parse().unwrap_or(Scheme::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_a_changed_digit() {
        for pan in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
        ] {
            assert!(luhn_valid(pan), "{pan}");
        }
        assert!(!luhn_valid("4111111111111112"));
    }

    #[test]
    fn schemes_follow_the_iin_ranges() {
        let cases = [
            ("4111111111111111", Scheme::Visa),
            ("5555555555554444", Scheme::Mastercard),
            ("2223003122003222", Scheme::Mastercard),
            ("378282246310005", Scheme::AmericanExpress),
            ("6011111111111117", Scheme::Discover),
            ("6445644564456445", Scheme::Discover),
            ("6500000000000002", Scheme::Discover),
            ("30569309025904", Scheme::DinersClub),
            ("3530111333300000", Scheme::Jcb),
            ("6200000000000005", Scheme::UnionPay),
            ("8171999927660000", Scheme::UnionPay),
            ("9999999999999995", Scheme::Unknown),
        ];
        for (pan, scheme) in cases {
            assert_eq!(Scheme::of(pan), scheme, "{pan}");
        }
    }

    #[test]
    fn mask_iin_and_last_four_follow_the_length() {
        let visa = Pan::parse("4111111111111111").unwrap();
        assert_eq!(visa.masked(), "411111XXXXXX1111");
        assert_eq!(visa.issuer_identification_number(), "41111111");
        let amex = Pan::parse("378282246310005").unwrap();
        assert_eq!(amex.masked(), "37828XXXXXX0005");
        assert_eq!(amex.issuer_identification_number(), "37828");
        assert_eq!(amex.last_four(), "0005");
    }

    #[test]
    fn every_mask_hides_at_least_six_digits_and_the_iin_shows_no_more() {
        for (prefix, mask, iin) in [
            ("41111111111", "41XXXXXX1111", "41"),
            ("411111111111", "411XXXXXX1111", "411"),
            ("3056930902590", "3056XXXXXX5904", "3056"),
            ("37828224631000", "37828XXXXXX0005", "37828"),
            ("411111111111111", "411111XXXXXX1111", "41111111"),
            ("411111111111111111", "411111XXXXXXXXX1111", "41111111"),
        ] {
            let digits = (0..10)
                .map(|d| format!("{prefix}{d}"))
                .find(|p| luhn_valid(p))
                .unwrap();
            let pan = Pan::parse(&digits).unwrap();
            let masked = pan.masked();
            assert_eq!(masked.len(), digits.len());
            assert!(masked.matches('X').count() >= 6, "{masked}");
            assert_eq!(
                &masked[..masked.find('X').unwrap()],
                &mask[..mask.find('X').unwrap()]
            );
            assert_eq!(masked.matches('X').count(), mask.matches('X').count());
            assert_eq!(pan.issuer_identification_number(), iin);
        }
    }

    #[test]
    fn card_data_never_prints_its_digits() {
        let card = CardData {
            pan: Pan::parse("4111111111111111").unwrap(),
            expiry_month: 4,
            expiry_year: 2031,
            cardholder_name: Some("Jane Holder".into()),
        };
        let shown = format!(
            "{card:?} {:?}",
            SecurityCode::parse("123", Scheme::Visa).unwrap()
        );
        assert!(
            !shown.contains("4111") && !shown.contains("123") && !shown.contains("Jane"),
            "{shown}"
        );
    }

    #[test]
    fn card_data_survives_its_plaintext_form() {
        let card = CardData {
            pan: Pan::parse("378282246310005").unwrap(),
            expiry_month: 12,
            expiry_year: 2030,
            cardholder_name: None,
        };
        assert_eq!(CardData::from_plaintext(&card.to_plaintext()), Some(card));
    }

    #[test]
    fn security_code_length_depends_on_the_scheme() {
        assert!(SecurityCode::parse("123", Scheme::Visa).is_ok());
        assert!(SecurityCode::parse("1234", Scheme::AmericanExpress).is_ok());
        assert!(SecurityCode::parse("123", Scheme::AmericanExpress).is_err());
        assert!(SecurityCode::parse("1234", Scheme::Visa).is_err());
        assert!(SecurityCode::parse("12", Scheme::Visa).is_err());
        assert!(SecurityCode::parse("12345", Scheme::Visa).is_err());
        assert!(SecurityCode::parse("12a", Scheme::Visa).is_err());
    }
}
