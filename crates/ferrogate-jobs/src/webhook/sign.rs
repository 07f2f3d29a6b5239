//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{webhook-id}.{webhook-timestamp}.{body}">`, keyed by the base64-decoded part of the
//! endpoint's `whsec_` secret — what OpenAI's `client.webhooks.unwrap()` and the reference
//! `standardwebhooks` libraries verify.
//!
//! Hand-written on `hmac` + `sha2` + `base64` (all already in the tree) rather than the
//! `standardwebhooks` crate, which pins base64 0.21 and pulls in `time` for the few lines this is;
//! the tests check it against the spec's published vectors and against that crate's verifier.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header names.
pub const HEADER_ID: &str = "webhook-id";
/// Unix seconds of this attempt.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// `v1,<base64>`.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// The `webhook-signature` value for one attempt of one message.
pub fn sign(key: &[u8], msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use ferrogate_core::jobs::WebhookSecret;

    use super::*;

    fn key(secret: &str) -> Vec<u8> {
        WebhookSecret::parse(secret).ok().and_then(|s| s.key()).unwrap_or_default()
    }

    /// The Standard Webhooks specification's example (and Svix's documentation).
    #[test]
    fn the_specs_test_vector() {
        let sig = sign(
            &key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    /// The reference Rust library's own vector.
    #[test]
    fn the_reference_librarys_vector() {
        let sig = sign(
            &key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn any_change_changes_the_signature() {
        let k = key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        let base = sign(&k, "msg_1", 10, b"{}");
        assert_ne!(base, sign(&k, "msg_2", 10, b"{}"));
        assert_ne!(base, sign(&k, "msg_1", 11, b"{}"));
        assert_ne!(base, sign(&k, "msg_1", 10, b"{ }"));
        assert_ne!(base, sign(b"other key", "msg_1", 10, b"{}"));
    }
}
