//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): an
//! HMAC-SHA256 over `{id}.{timestamp}.{body}` with the endpoint's secret,
//! sent as `webhook-signature: v1,<base64>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a Standard Webhooks secret.
pub const PREFIX: &str = "whsec_";

/// A secret that is not `whsec_` followed by base64 of 24 to 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is `whsec_` followed by base64 of 24 to 64 random bytes")]
pub struct BadSecret;

/// An endpoint's signing key.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Reads a `whsec_…` secret.
    pub fn parse(text: &str) -> Result<Secret, BadSecret> {
        let key = text.strip_prefix(PREFIX).ok_or(BadSecret)?;
        let bytes = STANDARD.decode(key).map_err(|_| BadSecret)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(BadSecret);
        }
        Ok(Secret(bytes))
    }

    /// A new random secret, as text (`whsec_` and base64 of 32 bytes).
    pub fn generate() -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(format!("{PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// The `webhook-signature` header for message `id` sent at
    /// `timestamp` (Unix seconds) with `body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        // HMAC takes a key of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            unreachable!("HMAC accepts keys of every length")
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_the_hmac_of_id_timestamp_and_body() {
        // Computed with another implementation: printf 'msg_1.1700000000.{"a":1}' |
        //   openssl dgst -sha256 -mac HMAC -macopt hexkey:0101…01 (32 bytes) -binary | base64
        let secret = Secret::parse(&format!("{PREFIX}{}", STANDARD.encode([1u8; 32]))).unwrap();
        let sig = secret.sign("msg_1", 1_700_000_000, r#"{"a":1}"#);
        assert_eq!(sig, "v1,3tN+SMwreJINGaFSPFdhMpE4XGSVaCkC9ee+KquMGGQ=");
        assert_ne!(sig, secret.sign("msg_2", 1_700_000_000, r#"{"a":1}"#));
        assert_ne!(sig, secret.sign("msg_1", 1_700_000_001, r#"{"a":1}"#));
    }

    #[test]
    fn secrets_are_whsec_and_base64_of_enough_bytes() {
        let made = Secret::generate().unwrap();
        assert!(Secret::parse(&made).is_ok(), "{made}");
        for bad in [
            "",
            "whsec_",
            "sk_abc",
            "whsec_!!!!",
            &format!("whsec_{}", STANDARD.encode([0u8; 8])),
        ] {
            assert!(Secret::parse(bad).is_err(), "{bad}");
        }
    }
}
