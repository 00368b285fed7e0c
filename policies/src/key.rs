//! The key string: `<prefix>_<id><secret><checksum>`.
//!
//! | part     | length | content                                                  |
//! |----------|--------|----------------------------------------------------------|
//! | prefix   | 2–12   | deployment prefix: `a-z` then `a-z0-9` (default `kg`)     |
//! | `_`      | 1      | separator                                                |
//! | id       | 11     | 64 random bits, base62, fixed width (public, for lookup)  |
//! | secret   | 43     | 256 random bits, base62, fixed width                      |
//! | checksum | 6      | CRC-32 (IEEE) of everything before it, base62, fixed width |
//!
//! Base62 uses the alphabet `0-9A-Za-z`, most significant digit first, and
//! left-pads with `0` to the fixed width.

use alloc::string::String;
use alloc::vec::Vec;
use sha2::{Digest, Sha256};

/// Length of the public key id, in base62 characters.
pub const ID_LEN: usize = 11;
/// Length of the secret part, in base62 characters.
pub const SECRET_LEN: usize = 43;
/// Length of the checksum, in base62 characters.
pub const CHECKSUM_LEN: usize = 6;
/// Random bytes for the id.
pub const ID_BYTES: usize = 8;
/// Random bytes for the secret (256 bits).
pub const SECRET_BYTES: usize = 32;
/// Random bytes `make_key` needs: id then secret.
pub const RANDOM_BYTES: usize = ID_BYTES + SECRET_BYTES;
/// Shortest allowed prefix.
pub const PREFIX_MIN: usize = 2;
/// Longest allowed prefix.
pub const PREFIX_MAX: usize = 12;
/// The prefix used when a deployment does not choose one.
pub const DEFAULT_PREFIX: &str = "kg";
/// Length of everything after the separator.
const BODY_LEN: usize = ID_LEN + SECRET_LEN + CHECKSUM_LEN;
/// Longest possible key string.
pub const MAX_KEY_LEN: usize = PREFIX_MAX + 1 + BODY_LEN;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a key string could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// See [`valid_prefix`].
    #[error("key prefix must be 2 to 12 lowercase letters or digits, starting with a letter")]
    BadPrefix,
    /// `make_key` needs exactly [`RANDOM_BYTES`] bytes.
    #[error("key generation needs exactly 40 random bytes")]
    BadRandomLength,
}

/// Why a presented string is not a keygate key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Wrong length, separator or alphabet.
    #[error("malformed key")]
    Malformed,
    /// Well-formed but the checksum does not match: a typo or a truncated copy.
    #[error("key checksum does not match")]
    BadChecksum,
}

/// A newly made key. Its `Debug` never shows the key string.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedKey {
    /// The full key string: show it once, never store or log it.
    pub key: String,
    /// The public id embedded in the key.
    pub id: String,
    /// SHA-256 of `key`: the only form that may be stored.
    pub key_hash: [u8; 32],
}

impl core::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("key", &"<redacted>")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Whether `prefix` is a valid deployment prefix: 2 to 12 characters of
/// `a-z0-9`, the first a letter.
pub fn valid_prefix(prefix: &str) -> bool {
    let b = prefix.as_bytes();
    (PREFIX_MIN..=PREFIX_MAX).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Whether `id` has the shape of a key id (11 base62 characters).
pub fn valid_key_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(is_base62)
}

/// Make a key string from `random` (exactly [`RANDOM_BYTES`] bytes from a
/// cryptographic generator: the first 8 make the id, the other 32 the secret).
pub fn make_key(prefix: &str, random: &[u8]) -> Result<IssuedKey, KeyError> {
    if !valid_prefix(prefix) {
        return Err(KeyError::BadPrefix);
    }
    if random.len() != RANDOM_BYTES {
        return Err(KeyError::BadRandomLength);
    }
    let (id_bytes, secret_bytes) = random.split_at(ID_BYTES);
    let mut key = String::with_capacity(prefix.len() + 1 + BODY_LEN);
    key.push_str(prefix);
    key.push('_');
    let id = base62_fixed(id_bytes, ID_LEN);
    key.push_str(&id);
    key.push_str(&base62_fixed(secret_bytes, SECRET_LEN));
    let sum = checksum_digits(crc32(key.as_bytes()));
    key.extend(sum.iter().map(|&c| char::from(c)));
    let key_hash = hash_key(&key);
    Ok(IssuedKey { key, id, key_hash })
}

/// The id of a presented key, after checking its shape and checksum.
/// Accepts any input; never panics; reads at most [`MAX_KEY_LEN`] bytes' worth.
pub fn parse_key(presented: &str) -> Result<&str, ParseError> {
    let bytes = presented.as_bytes();
    if bytes.len() > MAX_KEY_LEN || bytes.len() < PREFIX_MIN + 1 + BODY_LEN {
        return Err(ParseError::Malformed);
    }
    let sep = bytes.len() - BODY_LEN - 1;
    if bytes[sep] != b'_' || !valid_prefix(&presented[..sep]) {
        return Err(ParseError::Malformed);
    }
    let body = &bytes[sep + 1..];
    if !body.iter().copied().all(is_base62) {
        return Err(ParseError::Malformed);
    }
    let (signed, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if checksum_digits(crc32(signed)) != checksum {
        return Err(ParseError::BadChecksum);
    }
    Ok(&presented[sep + 1..sep + 1 + ID_LEN])
}

/// Whether `text` holds something that looks like a key, so that it must
/// never be printed back or stored (in an error message, a log line, a name):
///
/// - a whole key (right shape and checksum);
/// - a word that starts with `prefix` and `_` (the deployment's own prefix,
///   when known);
/// - 32 or more characters of `A-Za-z0-9` with both upper- and lower-case
///   letters, where runs of at least 8 such characters separated by one
///   other character (a space, a dash, an invisible character pasted from a
///   chat) count as one: a key's body, with or without its prefix, cut short,
///   mistyped or broken up. 32 characters of a key leave at most 11 of its 43
///   secret characters unknown. Hex digests, numbers and lower-case slugs
///   never match (no mixed case); a random base62 run of 32 lacks one of the
///   two cases with probability below 10^-7.
///
/// Words are the runs of `A-Za-z0-9_`; any input is accepted.
pub fn looks_like_key(text: &str, prefix: Option<&str>) -> bool {
    const MIN_RUN: usize = 32;
    const MIN_PIECE: usize = 8;
    // Join alphanumeric runs separated by exactly one other character when
    // both sides are long enough to be pieces of a key.
    let mut joined = String::new();
    let mut last_piece_len = 0usize;
    let mut found = false;
    let mut flush = |joined: &mut String| {
        let upper = joined.bytes().any(|b| b.is_ascii_uppercase());
        let lower = joined.bytes().any(|b| b.is_ascii_lowercase());
        if joined.len() >= MIN_RUN && upper && lower {
            found = true;
        }
        joined.clear();
    };
    for run in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        // An empty run is two separators in a row (or an end): the chain
        // breaks. Otherwise the chain goes on only between two long pieces.
        let continues = last_piece_len >= MIN_PIECE && run.len() >= MIN_PIECE;
        if !continues {
            flush(&mut joined);
        }
        joined.push_str(run);
        last_piece_len = run.len();
    }
    flush(&mut joined);
    found
        || text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| {
                parse_key(word).is_ok()
                    || prefix.is_some_and(|p| {
                        word.len() > p.len()
                            && word.starts_with(p)
                            && word.as_bytes()[p.len()] == b'_'
                    })
            })
}

/// SHA-256 of a key string: what the store keeps instead of the key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The checksum's six base62 digits, without allocating (the hot path).
fn checksum_digits(mut crc: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for d in out.iter_mut().rev() {
        *d = ALPHABET[(crc % 62) as usize];
        crc /= 62;
    }
    out
}

fn is_base62(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

/// Big-endian bytes as base62, left-padded with '0' to `width` digits.
/// `width` is always enough for the byte count used here (8→11, 32→43, 4→6).
fn base62_fixed(bytes: &[u8], width: usize) -> String {
    let mut num: Vec<u8> = bytes.to_vec();
    let mut digits: Vec<u8> = Vec::with_capacity(width);
    while digits.len() < width {
        let mut rem: u32 = 0;
        for b in num.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            // cur < 62 * 256, so the quotient fits in a byte.
            *b = (cur / 62) as u8;
            rem = cur % 62;
        }
        digits.push(ALPHABET[rem as usize]);
    }
    digits.reverse();
    digits.into_iter().map(char::from).collect()
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as used by zlib.
/// Slice-by-8: eight bytes per step (this runs on every validation).
pub fn crc32(data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xff) as usize];
    }
    !crc
}

/// `CRC_TABLES[0]` is the classic byte table; `CRC_TABLES[k][i]` is the CRC
/// of byte `i` followed by `k` zero bytes.
const CRC_TABLES: [[u32; 256]; 8] = {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
};

/// Compare two SHA-256 hashes in constant time: no branch or early exit
/// depends on where they differ.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    let mut diff = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let x = u64::from_ne_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]);
        let y = u64::from_ne_bytes([y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]]);
        diff |= x ^ y;
    }
    bool::from(diff.ct_eq(&0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use proptest::prelude::*;

    fn random(seed: u8) -> [u8; RANDOM_BYTES] {
        core::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The CRC-32 check value from the catalogue of parametrised CRCs.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    fn crc32_bytewise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc = (crc >> 8) ^ CRC_TABLES[0][((crc ^ u32::from(b)) & 0xff) as usize];
        }
        !crc
    }

    #[test]
    fn hashes_equal_finds_every_single_byte_difference() {
        let a = [7u8; 32];
        assert!(hashes_equal(&a, &a));
        for i in 0..32 {
            for bit in 0..8 {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!hashes_equal(&a, &b));
            }
        }
    }

    #[test]
    fn base62_pads_and_orders_digits() {
        assert_eq!(base62_fixed(&[0, 0, 0, 0], 6), "000000");
        assert_eq!(base62_fixed(&[0, 0, 0, 61], 6), "00000z");
        assert_eq!(base62_fixed(&[0, 0, 0, 62], 6), "000010");
        assert_eq!(base62_fixed(&[0xff; 4], 6), "4gfFC3");
        assert_eq!(base62_fixed(&[0xff; 8], 11), "LygHa16AHYF");
    }

    #[test]
    fn checksum_digits_match_the_general_encoder() {
        for crc in [0u32, 1, 61, 62, 0xDEAD_BEEF, u32::MAX] {
            assert_eq!(
                &checksum_digits(crc)[..],
                base62_fixed(&crc.to_be_bytes(), CHECKSUM_LEN).as_bytes()
            );
        }
    }

    #[test]
    fn key_has_the_documented_layout() {
        let k = make_key("kg", &random(1)).unwrap();
        assert_eq!(k.key.len(), 2 + 1 + 11 + 43 + 6);
        assert!(k.key.starts_with("kg_"));
        assert_eq!(&k.key[3..14], k.id);
        assert_eq!(k.key_hash, hash_key(&k.key));
        assert_eq!(parse_key(&k.key), Ok(k.id.as_str()));
        let long = make_key("abcdefghij12", &random(2)).unwrap();
        assert_eq!(long.key.len(), MAX_KEY_LEN);
        assert_eq!(parse_key(&long.key), Ok(long.id.as_str()));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = make_key("kg", &random(3)).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains(&k.key));
        assert!(!shown.contains(&k.key[14..57]));
    }

    #[test]
    fn bad_prefixes_and_random_lengths_are_refused() {
        for p in ["", "k", "Kg", "1kg", "k_g", "abcdefghijklm", "kg-x", "ké"] {
            assert_eq!(make_key(p, &random(0)), Err(KeyError::BadPrefix), "{p:?}");
        }
        assert_eq!(make_key("kg", &[0; 39]), Err(KeyError::BadRandomLength));
        assert_eq!(make_key("kg", &[0; 41]), Err(KeyError::BadRandomLength));
    }

    #[test]
    fn malformed_inputs_are_named() {
        let k = make_key("kg", &random(4)).unwrap().key;
        let cases = [
            String::new(),
            String::from("kg_"),
            format!("{}x", k),
            String::from(&k[1..]),
            k.replacen('_', "-", 1),
            format!("KG{}", &k[2..]),
            format!("{}!{}", &k[..20], &k[21..]),
            format!("{}é{}", &k[..20], &k[22..]),
            "x".repeat(10_000),
        ];
        for c in cases {
            assert_eq!(parse_key(&c), Err(ParseError::Malformed), "{c:?}");
        }
    }

    proptest! {
        #[test]
        fn generated_keys_parse_back_to_their_id(r in proptest::array::uniform32(any::<u8>()),
                                                  id in proptest::array::uniform8(any::<u8>())) {
            let mut random = [0u8; RANDOM_BYTES];
            random[..8].copy_from_slice(&id);
            random[8..].copy_from_slice(&r);
            let k = make_key("kg", &random).unwrap();
            prop_assert_eq!(parse_key(&k.key), Ok(k.id.as_str()));
            prop_assert!(valid_key_id(&k.id));
        }

        #[test]
        fn every_single_character_change_is_rejected(seed in any::<u8>(), pos in 0usize..63, c in any::<char>()) {
            let k = make_key("kg", &random(seed)).unwrap().key;
            let mut chars: Vec<char> = k.chars().collect();
            let pos = pos % chars.len();
            prop_assume!(chars[pos] != c);
            chars[pos] = c;
            let changed: String = chars.into_iter().collect();
            prop_assert!(parse_key(&changed).is_err(), "{} accepted", changed);
        }

        #[test]
        fn slice_by_8_crc_equals_the_bytewise_crc(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(crc32(&data), crc32_bytewise(&data));
        }

        #[test]
        fn any_input_is_answered_without_panic(s in ".{0,200}") {
            let _ = parse_key(&s);
        }
    }

    #[test]
    fn every_single_character_substitution_at_every_position_is_rejected() {
        // Exhaustive over the base62 alphabet and the separator, for one key.
        let k = make_key("kg", &random(9)).unwrap().key;
        let mut checked = 0;
        for pos in 0..k.len() {
            for &c in ALPHABET.iter().chain(b"_-") {
                if k.as_bytes()[pos] == c {
                    continue;
                }
                let mut b = k.clone().into_bytes();
                b[pos] = c;
                let changed = String::from_utf8(b).unwrap();
                assert!(parse_key(&changed).is_err(), "{changed} accepted");
                checked += 1;
            }
        }
        assert!(checked > 3000);
    }
}
