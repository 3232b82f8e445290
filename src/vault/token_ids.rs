//! Token ids that name their row: a UUIDv4 whose 122 free bits are a keyed pseudorandom permutation
//! (AES-256 restricted to the set of v4 UUIDs by cycle walking) of the token's creation time, random
//! bits and a zero check field. Without the account's id key an id is as unpredictable as a random
//! v4; with it, the server reads back the creation time, so that a token is found through the index
//! on (account, creation time) that every token write appends to anyway, instead of an index keyed by
//! a random value, whose insert writes a page at a random place of the index for every token.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes256;
use rand::RngCore;
use uuid::Uuid;

use crate::store::Ts;

/// Bits of the plaintext: the creation time in microseconds since 1970 (enough until the year 4253),
/// random bits that tell apart the tokens an account makes in the same microsecond, and a field that
/// must decode to zero, so that an id this key did not make (an older, random one) is recognised.
const TIME_BITS: u32 = 56;
const RANDOM_BITS: u32 = 42;
const CHECK_BITS: u32 = 24;
const FREE_BITS: u32 = TIME_BITS + RANDOM_BITS + CHECK_BITS;

/// A step of the walk lands in the v4 set once in 64 on average, so a walk takes 64 steps on
/// average; one of more than 4096 steps has a chance of about e^-64. An id whose walk would be longer
/// is never made (new random bits are drawn), so decoding may give up at the same bound.
const MAX_WALK: usize = 4096;

/// The permutation under one account's id key (the key schedule is zeroed when dropped).
#[derive(Clone)]
pub struct TokenIds {
    cipher: Aes256,
}

impl TokenIds {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256::new(GenericArray::from_slice(key)),
        }
    }

    /// A new token id for a token created at `created_at`; `None` for a time outside the id's range
    /// (before 1970), which takes a random id instead.
    pub fn make(&self, created_at: Ts) -> Option<Uuid> {
        let micros = u128::try_from(created_at.micros()).ok()?;
        if micros >> TIME_BITS != 0 {
            return None;
        }
        loop {
            let random = u128::from(rand::thread_rng().next_u64()) & ((1 << RANDOM_BITS) - 1);
            let plain = (micros << (RANDOM_BITS + CHECK_BITS)) | (random << CHECK_BITS);
            if let Some(block) = self.walk(spread(plain), |c, b| c.encrypt_block(b)) {
                return Some(Uuid::from_u128(block));
            }
        }
    }

    /// The creation time `id` was made with, if this key made it (the check field is zero); `None`
    /// for any other id, which (but for a chance of 2^-24 per id) is one this key did not make.
    pub fn created_at(&self, id: Uuid) -> Option<Ts> {
        let block = id.as_u128();
        if !in_v4_set(block) {
            return None;
        }
        let plain = gather(self.walk(block, |c, b| c.decrypt_block(b))?);
        if plain & ((1 << CHECK_BITS) - 1) != 0 {
            return None;
        }
        let micros = i64::try_from(plain >> (RANDOM_BITS + CHECK_BITS)).ok()?;
        Ts::from_micros(micros)
    }

    /// Applies `step` from `block` until the result is a v4 UUID again (cycle walking: the walk
    /// stays within the cipher's cycle through `block`, so it is a permutation of the v4 set).
    fn walk(
        &self,
        block: u128,
        step: impl Fn(&Aes256, &mut GenericArray<u8, aes::cipher::consts::U16>),
    ) -> Option<u128> {
        let mut bytes = GenericArray::from(block.to_be_bytes());
        for _ in 0..MAX_WALK {
            step(&self.cipher, &mut bytes);
            let next = u128::from_be_bytes(bytes.into());
            if in_v4_set(next) {
                return Some(next);
            }
        }
        None
    }
}

/// Whether `block` has the version (4) and variant (RFC 9562) bits of a UUIDv4.
fn in_v4_set(block: u128) -> bool {
    (block >> 76) & 0xf == 0x4 && (block >> 62) & 0b11 == 0b10
}

/// The 122 low bits of `plain` laid out in a UUIDv4 around its version and variant bits.
fn spread(plain: u128) -> u128 {
    let high = plain >> 74; // 48 bits
    let mid = (plain >> 62) & 0xfff; // 12 bits
    let low = plain & ((1 << 62) - 1); // 62 bits
    (high << 80) | (0x4 << 76) | (mid << 64) | (0b10 << 62) | low
}

/// The inverse of `spread`.
fn gather(block: u128) -> u128 {
    ((block >> 80) << 74) | (((block >> 64) & 0xfff) << 62) | (block & ((1 << 62) - 1))
}

const _: () = assert!(FREE_BITS == 122);

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(seed: u8) -> TokenIds {
        TokenIds::new(&[seed; 32])
    }

    #[test]
    fn an_id_is_a_v4_uuid_that_gives_back_its_creation_time() {
        let ids = ids(7);
        let at = Ts::now();
        for _ in 0..1000 {
            let id = ids.make(at).unwrap();
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(ids.created_at(id), Some(at));
        }
    }

    #[test]
    fn ids_made_in_the_same_microsecond_differ() {
        let ids = ids(1);
        let at = Ts::now();
        let made: std::collections::HashSet<Uuid> =
            (0..10_000).map(|_| ids.make(at).unwrap()).collect();
        assert_eq!(made.len(), 10_000);
    }

    #[test]
    fn another_keys_ids_and_random_ids_are_not_recognised() {
        let (mine, theirs) = (ids(1), ids(2));
        let at = Ts::now();
        let recognised = (0..2000)
            .filter(|_| mine.created_at(theirs.make(at).unwrap()).is_some())
            .count();
        assert_eq!(recognised, 0);
        let recognised = (0..2000)
            .filter(|_| mine.created_at(Uuid::new_v4()).is_some())
            .count();
        assert_eq!(recognised, 0);
        assert_eq!(mine.created_at(Uuid::nil()), None);
        assert_eq!(mine.created_at(Uuid::now_v7()), None);
    }

    #[test]
    fn ids_made_in_order_are_not_in_order() {
        // The time is inside the permutation: consecutive tokens' ids share no visible prefix.
        let ids = ids(3);
        let at = Ts::now();
        let a = ids.make(at).unwrap().as_u128();
        let b = ids
            .make(at.plus(std::time::Duration::from_micros(1)))
            .unwrap()
            .as_u128();
        assert!((a ^ b).leading_zeros() < 32);
    }

    #[test]
    fn spreading_and_gathering_are_inverse_on_122_bits() {
        for plain in [
            0u128,
            1,
            (1 << 122) - 1,
            0x2aa_aaaa_aaaa_aaaa_aaaa_aaaa_aaaa_aaaa,
        ] {
            let block = spread(plain);
            assert!(in_v4_set(block));
            assert_eq!(gather(block), plain);
        }
    }

    #[test]
    fn a_time_before_1970_takes_no_keyed_id() {
        let before = Ts::from_micros(-1).unwrap();
        assert_eq!(ids(1).make(before), None);
    }
}
