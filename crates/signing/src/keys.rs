//! Ed25519 keys in PEM, and the set of keys a host trusts.

use std::collections::BTreeMap;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes,
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Why a key could not be made, read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The system's random source failed.
    #[error("cannot read random bytes for a key: {0}")]
    Random(String),
    /// Not an Ed25519 private key in PKCS#8 PEM.
    #[error("not an Ed25519 private key (PKCS#8 PEM, `-----BEGIN PRIVATE KEY-----`): {0}")]
    Secret(String),
    /// Not an Ed25519 public key in SPKI PEM.
    #[error("not an Ed25519 public key (`-----BEGIN PUBLIC KEY-----`): {0}")]
    Public(String),
    /// A file of trusted keys holds none.
    #[error("no public key (`-----BEGIN PUBLIC KEY-----`) in the trusted keys")]
    NoKeys,
    /// Encoding failed.
    #[error("cannot encode the key: {0}")]
    Encode(String),
}

/// A signer's private key.
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.public_key().key_id())
    }
}

impl SecretKey {
    /// A new key from the system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(SecretKey(key))
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(text)
            .map(SecretKey)
            .map_err(|e| KeyError::Secret(e.to_string()))
    }

    /// The key as PKCS#8 PEM (a secret: write it to a file only its owner
    /// reads). Version 1, without the public key, as OpenSSL writes it
    /// (OpenSSL 3.0 does not read the version 2 form).
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let bytes = KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    /// Its public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

/// A public key: what a host trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Reads one SPKI PEM public key.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        VerifyingKey::from_public_key_pem(text)
            .map(PublicKey)
            .map_err(|e| KeyError::Public(e.to_string()))
    }

    /// The key as SPKI PEM.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    /// The key's id: the first 8 bytes of the sha256 of its 32 raw bytes,
    /// in hex.
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }

    /// Whether `signature` is this key's over `message` (strict: no
    /// malleable or small-order forms).
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let signature = Signature::from_bytes(signature);
        self.0.verify_strict(message, &signature).is_ok()
    }
}

/// The public keys a host accepts signatures from, by key id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, PublicKey>,
}

impl TrustedKeys {
    /// Reads one or more SPKI PEM public keys (`cat a.pub b.pub`).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let blocks = pem::parse_many(text).map_err(|e| KeyError::Public(e.to_string()))?;
        let mut keys = BTreeMap::new();
        for block in blocks {
            if block.tag() != "PUBLIC KEY" {
                return Err(KeyError::Public(format!(
                    "a `{}` block; only public keys belong in the trusted keys",
                    block.tag()
                )));
            }
            let key = VerifyingKey::from_public_key_der(block.contents())
                .map(PublicKey)
                .map_err(|e| KeyError::Public(e.to_string()))?;
            keys.insert(key.key_id(), key);
        }
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(TrustedKeys { keys })
    }

    /// The trusted keys' ids, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    pub(crate) fn get(&self, key_id: &str) -> Option<&PublicKey> {
        self.keys.get(key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_its_pem_round_trip() {
        let key = SecretKey::generate().unwrap();
        let pem = key.to_pem().unwrap();
        // PKCS#8 version 1 (`02 01 00`) and the Ed25519 OID: what OpenSSL reads.
        assert!(pem.contains("MC4CAQAwBQYDK2VwBCIEI"), "{pem}");
        let again = SecretKey::from_pem(&pem).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let public = PublicKey::from_pem(&key.public_key().to_pem().unwrap()).unwrap();
        assert_eq!(public.key_id(), key.public_key().key_id());
        assert_eq!(public.key_id().len(), 16);
    }

    #[test]
    fn trusted_keys_read_several_blocks_and_refuse_a_private_one() {
        let (a, b) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let text = a.public_key().to_pem().unwrap() + &b.public_key().to_pem().unwrap();
        let trusted = TrustedKeys::from_pem(&text).unwrap();
        assert_eq!(trusted.key_ids().len(), 2);
        assert!(trusted.get(&a.public_key().key_id()).is_some());
        assert!(matches!(
            TrustedKeys::from_pem(&a.to_pem().unwrap()),
            Err(KeyError::Public(_))
        ));
        assert_eq!(TrustedKeys::from_pem(""), Err(KeyError::NoKeys));
    }
}
