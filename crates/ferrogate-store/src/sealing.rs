//! Sealing secrets the gateway must be able to read back (webhook signing secrets: HMAC needs
//! the key itself, so a digest will not do) before they reach the database: ChaCha20-Poly1305
//! under a server key, a random nonce per value, the row's id as associated data (a sealed value
//! copied to another row does not open).
//!
//! Stored form: `v1:` + base64(nonce ‖ ciphertext ‖ tag).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferrogate_core::tenancy::StoreError;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::corrupt;

const PREFIX: &str = "v1:";

/// The server key sealing stored secrets: 32 bytes, configured as base64 (`[webhooks]
/// secret_key`, or a key file in the data directory). Losing it makes stored secrets unreadable
/// (endpoints must then be registered again); it never prints.
pub struct SealingKey(LessSafeKey);

/// Why a sealing key was refused.
#[derive(Debug, thiserror::Error)]
pub enum SealingKeyError {
    /// Not base64 of exactly 32 bytes.
    #[error("the secret key must be base64 of exactly 32 bytes")]
    Malformed,
    /// The OS gave no randomness.
    #[error("no randomness available to generate a key")]
    Random,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(…)")
    }
}

impl SealingKey {
    /// A key from its base64 text.
    pub fn from_base64(text: &str) -> Result<Self, SealingKeyError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| SealingKeyError::Malformed)?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| SealingKeyError::Malformed)?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// A fresh random key and its base64 text (to store in the key file).
    pub fn generate() -> Result<(Self, String), SealingKeyError> {
        let mut bytes = [0_u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| SealingKeyError::Random)?;
        let text = STANDARD.encode(bytes);
        Ok((Self::from_base64(&text)?, text))
    }

    /// Seals `plaintext` for the row `aad`.
    pub(crate) fn seal(&self, plaintext: &str, aad: &str) -> Result<String, StoreError> {
        let mut nonce = [0_u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StoreError::Unavailable("no randomness for a nonce".into()))?;
        let mut data = plaintext.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut data)
            .map_err(|_| StoreError::Database("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend(data);
        Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    /// Opens a value sealed for the row `aad`; [`StoreError::Corrupt`] under another key or row.
    pub(crate) fn open(&self, sealed: &str, aad: &str) -> Result<String, StoreError> {
        let bad = |why: &str| corrupt("sealed secret", why);
        let raw = STANDARD
            .decode(sealed.strip_prefix(PREFIX).ok_or_else(|| bad("unknown format"))?)
            .map_err(|_| bad("not base64"))?;
        if raw.len() < NONCE_LEN {
            return Err(bad("too short"));
        }
        let (nonce, data) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad("bad nonce"))?;
        let mut data = data.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut data)
            .map_err(|_| bad("does not open with this key (was the secret key changed?)"))?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad("not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_row() {
        let (key, text) = SealingKey::generate().unwrap();
        let sealed = key.seal("whsec_abc", "we_1").unwrap();
        assert!(sealed.starts_with("v1:") && !sealed.contains("whsec_abc"));
        assert_ne!(sealed, key.seal("whsec_abc", "we_1").unwrap(), "a fresh nonce each time");
        assert_eq!(key.open(&sealed, "we_1").unwrap(), "whsec_abc");
        assert_eq!(SealingKey::from_base64(&text).unwrap().open(&sealed, "we_1").unwrap(), "whsec_abc");
        assert!(key.open(&sealed, "we_2").is_err(), "bound to its row");
        let (other, _) = SealingKey::generate().unwrap();
        assert!(other.open(&sealed, "we_1").is_err());
        assert!(key.open("whsec_abc", "we_1").is_err());
        assert!(SealingKey::from_base64("c2hvcnQ=").is_err());
        assert_eq!(format!("{key:?}"), "SealingKey(…)");
    }
}
