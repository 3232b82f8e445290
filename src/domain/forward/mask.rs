//! Masking the card number in a destination's answer, so that the merchant never receives a PAN it
//! did not send: the number written whole, or grouped with spaces or dashes (`4111 1111 1111 1111`).

use zeroize::Zeroizing;

/// `text` with every occurrence of `pan` replaced by `masked`, or `None` if there is none (the common
/// case, which then costs no copy).
pub fn mask_pan(text: &[u8], pan: &str, masked: &str) -> Option<Zeroizing<Vec<u8>>> {
    let pan = pan.as_bytes();
    let first = *pan.first()?;
    let mut out: Option<Zeroizing<Vec<u8>>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        if text[i] == first {
            if let Some(end) = match_at(text, i, pan) {
                let buffer =
                    out.get_or_insert_with(|| Zeroizing::new(Vec::with_capacity(text.len())));
                buffer.extend_from_slice(&text[copied..i]);
                buffer.extend_from_slice(masked.as_bytes());
                copied = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    let mut out = out?;
    out.extend_from_slice(&text[copied..]);
    Some(out)
}

/// Where a match of `pan` starting at `start` ends: its digits in order, with at most one space or
/// dash between two of them.
fn match_at(text: &[u8], start: usize, pan: &[u8]) -> Option<usize> {
    let mut at = start;
    for (n, &digit) in pan.iter().enumerate() {
        if n > 0 && matches!(text.get(at), Some(b' ' | b'-')) && text.get(at + 1) == Some(&digit) {
            at += 1;
        }
        if text.get(at) != Some(&digit) {
            return None;
        }
        at += 1;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAN: &str = "4111111111111111";
    const MASK: &str = "411111XXXXXX1111";

    fn masked(text: &str) -> Option<String> {
        mask_pan(text.as_bytes(), PAN, MASK).map(|v| String::from_utf8(v.to_vec()).unwrap())
    }

    #[test]
    fn an_echoed_number_is_masked_wherever_it_appears() {
        assert_eq!(
            masked(r#"{"card":"4111111111111111","again":"x4111111111111111y"}"#).unwrap(),
            r#"{"card":"411111XXXXXX1111","again":"x411111XXXXXX1111y"}"#
        );
        assert_eq!(masked("4111 1111 1111 1111").unwrap(), MASK);
        assert_eq!(
            masked("n=4111-1111-1111-1111&x").unwrap(),
            format!("n={MASK}&x")
        );
    }

    #[test]
    fn other_numbers_and_partial_numbers_are_left_alone() {
        assert_eq!(masked("no card here"), None);
        assert_eq!(masked("411111111111111"), None);
        assert_eq!(masked("4111  1111 1111 1111"), None);
        assert_eq!(masked("5555555555554444 and 1111"), None);
    }
}
