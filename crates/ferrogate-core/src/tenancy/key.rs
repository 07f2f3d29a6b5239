//! API key material: generation, the cheap syntactic parse of a presented key, and its digest.
//!
//! Format: `fg-<id>-<secret>`, 55 characters: `fg-` and an 8-character lowercase base32 id (40
//! random bits; `fg-<id>` is the *visible prefix* shown in lists and logs), `-`, then 43
//! characters of unpadded base64url encoding 32 bytes from the operating system's CSPRNG.
//!
//! Why a plain SHA-256 and no slow KDF (argon2, bcrypt): the secret is 256 random bits, not a
//! password a person chose, so there is no dictionary to try and brute force over 2^256 is out of
//! reach whatever the hash costs. A slow KDF would only add milliseconds to every cache miss on
//! the auth path. A fast, unsalted digest also keeps the lookup O(1): the digest of the presented
//! key *is* the database index key, no per-row salt to try.
//!
//! Invariants: the plaintext lives only in [`PlaintextKey`] (no `Display`, redacting `Debug`, no
//! `Serialize`); digests compare in constant time.

use std::fmt;
use std::hash::{Hash, Hasher};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// Every key starts with this.
pub const KEY_PREFIX: &str = "fg-";
/// Length of the random id in the visible prefix.
pub const ID_LEN: usize = 8;
/// Length of the encoded secret.
pub const SECRET_LEN: usize = 43;
/// Length of a whole key: `fg-` + id + `-` + secret.
pub const KEY_LEN: usize = KEY_PREFIX.len() + ID_LEN + 1 + SECRET_LEN;
/// Length of the visible prefix `fg-<id>`.
pub const VISIBLE_PREFIX_LEN: usize = KEY_PREFIX.len() + ID_LEN;

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A whole API key in plaintext. Shown once, at creation or rotation; never printed or stored.
#[derive(Clone, PartialEq, Eq)]
pub struct PlaintextKey(String);

impl PlaintextKey {
    /// The key itself, for the one response or terminal line that shows it to its owner.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The visible prefix (`fg-<id>`), safe to show anywhere.
    pub fn prefix(&self) -> &str {
        self.0.get(..VISIBLE_PREFIX_LEN).unwrap_or_default()
    }

    /// The digest stores keep in place of the key.
    pub fn digest(&self) -> KeyDigest {
        KeyDigest::of(&self.0)
    }
}

impl fmt::Debug for PlaintextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlaintextKey({}-…)", self.prefix())
    }
}

/// SHA-256 of a whole key: what stores keep and look keys up by.
///
/// Equality is constant-time; `Hash` hashes the bytes, so a digest can key an in-process cache.
#[derive(Clone, Copy, Eq)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest of a presented key (any string: a malformed key simply matches nothing).
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Lowercase hex, 64 characters: the stored form (portable across SQLite and PostgreSQL).
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        s
    }

    /// Parses the stored form; `None` unless exactly 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            out[i] = u8::try_from(hi << 4 | lo).ok()?;
        }
        Some(Self(out))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for KeyDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Hash for KeyDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not a secret, but long and useless in logs: the first bytes identify it well enough.
        write!(f, "KeyDigest({}…)", &self.to_hex()[..12])
    }
}

/// A new key: the plaintext for its owner, the prefix and digest for the store.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// Shown once, then dropped.
    pub plaintext: PlaintextKey,
    /// `fg-<id>`, stored and shown.
    pub prefix: String,
    /// Stored in place of the plaintext.
    pub digest: KeyDigest,
}

/// Why no key was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyGenError {
    /// The operating system's random source failed.
    #[error("no randomness from the operating system: {0}")]
    Randomness(String),
    /// A rotation was asked to keep a prefix that is not shaped `fg-<8 base32 chars>`.
    #[error("'{0}' is not a key prefix (fg-<8 lowercase base32 characters>)")]
    BadPrefix(String),
}

/// Makes a new key from 40 + 256 bits of OS randomness.
pub fn generate_key() -> Result<GeneratedKey, KeyGenError> {
    let mut id = [0u8; 5];
    getrandom::fill(&mut id).map_err(|e| KeyGenError::Randomness(e.to_string()))?;
    generate_key_with_prefix(&format!("{KEY_PREFIX}{}", base32_40(id)))
}

/// Makes a new secret under an existing visible prefix: what rotation does, so a key keeps the
/// prefix its owners know it by.
pub fn generate_key_with_prefix(prefix: &str) -> Result<GeneratedKey, KeyGenError> {
    let b = prefix.as_bytes();
    let valid = b.len() == VISIBLE_PREFIX_LEN
        && prefix.starts_with(KEY_PREFIX)
        && b[KEY_PREFIX.len()..].iter().all(|c| BASE32.contains(c));
    if !valid {
        return Err(KeyGenError::BadPrefix(prefix.chars().take(VISIBLE_PREFIX_LEN + 4).collect()));
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| KeyGenError::Randomness(e.to_string()))?;
    let plaintext = PlaintextKey(format!("{prefix}-{}", URL_SAFE_NO_PAD.encode(secret)));
    let digest = plaintext.digest();
    Ok(GeneratedKey { plaintext, prefix: prefix.to_owned(), digest })
}

/// Encodes 40 bits as 8 lowercase base32 characters.
fn base32_40(bytes: [u8; 5]) -> String {
    let n = bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
    (0..ID_LEN).rev().map(|i| char::from(BASE32[((n >> (i * 5)) & 31) as usize])).collect()
}

/// A presented key that has the right shape; says nothing about whether it exists.
#[derive(Clone, Copy)]
pub struct ParsedKey<'a> {
    key: &'a str,
}

impl<'a> ParsedKey<'a> {
    /// The visible prefix `fg-<id>`: safe to log.
    pub fn prefix(&self) -> &'a str {
        &self.key[..VISIBLE_PREFIX_LEN]
    }

    /// The digest to look the key up by.
    pub fn digest(&self) -> KeyDigest {
        KeyDigest::of(self.key)
    }
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParsedKey({}-…)", self.prefix())
    }
}

/// The presented string is not shaped like a ferrogate key (rejected before any hashing or lookup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a ferrogate API key (expected fg-<8 chars>-<43 chars>)")]
pub struct MalformedKey;

/// Checks a presented key's shape in O(length), without allocating.
pub fn parse_key(presented: &str) -> Result<ParsedKey<'_>, MalformedKey> {
    let b = presented.as_bytes();
    let well_formed = b.len() == KEY_LEN
        && presented.starts_with(KEY_PREFIX)
        && b[KEY_PREFIX.len()..VISIBLE_PREFIX_LEN].iter().all(|c| BASE32.contains(c))
        && b[VISIBLE_PREFIX_LEN] == b'-'
        && b[VISIBLE_PREFIX_LEN + 1..].iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if well_formed { Ok(ParsedKey { key: presented }) } else { Err(MalformedKey) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let k = generate_key().unwrap();
        let s = k.plaintext.expose_secret();
        assert_eq!(s.len(), KEY_LEN);
        assert_eq!(KEY_LEN, 55);
        assert!(s.starts_with("fg-"));
        assert_eq!(&s[..11], k.prefix);
        assert_eq!(k.plaintext.prefix(), k.prefix);
        let parsed = parse_key(s).unwrap();
        assert_eq!(parsed.prefix(), k.prefix);
        assert_eq!(parsed.digest(), k.digest);
        assert_eq!(k.digest, KeyDigest::of(s));
    }

    #[test]
    fn keys_are_unique() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a.plaintext, b.plaintext);
        assert_ne!(a.prefix, b.prefix);
        assert_ne!(a.digest, b.digest);
    }

    #[test]
    fn the_secret_never_prints() {
        let k = generate_key().unwrap();
        let secret = &k.plaintext.expose_secret()[12..];
        for shown in [
            format!("{k:?}"),
            format!("{:?}", k.plaintext),
            format!("{:?}", parse_key(k.plaintext.expose_secret()).unwrap()),
        ] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.contains(&k.prefix), "{shown}");
        }
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let good = generate_key().unwrap().plaintext.expose_secret().to_owned();
        let cases = [
            String::new(),
            "fg-".to_owned(),
            good[..KEY_LEN - 1].to_owned(),
            format!("{good}x"),
            good.replacen("fg-", "sk-", 1),
            format!("fg-ABCDEFGH{}", &good[11..]), // uppercase id
            format!("fg-abcd1234{}", &good[11..]), // 1 is not base32
            format!("{}_{}", &good[..11], &good[12..]),
            format!("{}!", &good[..KEY_LEN - 1]),
            format!("{}é", &good[..KEY_LEN - 2]), // right byte length, not ASCII
        ];
        for c in cases {
            assert_eq!(parse_key(&c).err(), Some(MalformedKey), "{c:?}");
        }
        // A secret may contain '-' and '_' (base64url): only the position after the id is fixed.
        let dashy = format!("{}-{}", &good[..11], "-_".repeat(21) + "A");
        assert!(parse_key(&dashy).is_ok());
    }

    #[test]
    fn a_rotated_secret_keeps_the_prefix() {
        let a = generate_key().unwrap();
        let b = generate_key_with_prefix(&a.prefix).unwrap();
        assert_eq!(b.prefix, a.prefix);
        assert_eq!(parse_key(b.plaintext.expose_secret()).unwrap().prefix(), a.prefix);
        assert_ne!(a.digest, b.digest);
        for bad in ["fg-", "fg-ABCDEFGH", "sk-abcdefgh", "fg-abcdefgh-"] {
            assert!(matches!(generate_key_with_prefix(bad), Err(KeyGenError::BadPrefix(_))), "{bad}");
        }
    }

    #[test]
    fn base32_encodes_40_bits() {
        assert_eq!(base32_40([0; 5]), "aaaaaaaa");
        assert_eq!(base32_40([0xff; 5]), "77777777");
        assert_eq!(base32_40([0, 0, 0, 0, 1]), "aaaaaaab");
    }

    #[test]
    fn digest_hex_round_trips_and_compares() {
        let d = KeyDigest::of("fg-x");
        let hex = d.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(KeyDigest::from_hex(&hex), Some(d));
        assert_eq!(KeyDigest::from_hex(&hex[1..]), None);
        assert_eq!(KeyDigest::from_hex(&hex.replace(|_| true, "g")), None);
        assert_ne!(KeyDigest::of("fg-y"), d);
        // Known vector: SHA-256("abc").
        assert_eq!(KeyDigest::of("abc").to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
