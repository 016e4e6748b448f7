//! Signed policy components (docs/signing.md).
//!
//! A signer holds an Ed25519 key ([`SecretKey`], PKCS#8 PEM as
//! `openssl genpkey -algorithm ed25519` writes it). Signing a component
//! writes a small JSON [`Manifest`] (the component's sha256, a name, a
//! version, the key id and the time) and signs its exact bytes. The
//! detached signature is one line of ASCII, `<manifest>.<signature>`, both
//! base64url without padding: the content of a `.sig` file and of the
//! `Quota-Policy-Signature` header.
//!
//! A host holds [`TrustedKeys`] (SPKI PEM public keys) and asks
//! [`TrustedKeys::verify`] whether a signature is valid for a component.
//!
//! ```
//! use quota_signing::{SecretKey, TrustedKeys, sign};
//!
//! let key = SecretKey::generate()?;
//! let trusted = TrustedKeys::from_pem(&key.public_key().to_pem()?)?;
//! let component = b"\0asm...";
//! let version = "1.2.0".parse()?;
//! let signature = sign(&key, component, "drafts", &version, time::OffsetDateTime::UNIX_EPOCH)?;
//! let manifest = trusted.verify(&signature, component)?;
//! assert_eq!(manifest.name, "drafts");
//! assert!(trusted.verify(&signature, b"\0asm...!").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod keys;
mod manifest;

pub use keys::{KeyError, PublicKey, SecretKey, TrustedKeys};
pub use manifest::{FORMAT, Manifest, ManifestError, read_manifest, read_manifest_for, sign};
pub use semver::Version;

use sha2::{Digest, Sha256};

/// The HTTP header an upload's signature travels in.
pub const HEADER: &str = "quota-policy-signature";

/// Why a signature does not admit a component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No signature came with the component.
    #[error("the component is not signed: trusted keys are required on this host")]
    Missing,
    /// The signature is not `<manifest>.<signature>` or the manifest is not ours.
    #[error(transparent)]
    Malformed(#[from] ManifestError),
    /// Signed by a key this host does not trust.
    #[error("signed by key `{0}`, which this host does not trust")]
    UntrustedKey(String),
    /// The signature does not match the manifest and the key.
    #[error(
        "the signature does not verify with key `{0}`: the manifest or the signature was changed"
    )]
    BadSignature(String),
    /// A valid manifest, but for other bytes.
    #[error("the signature is for the component {signed}, not for this one ({got})")]
    OtherComponent {
        /// The sha256 the manifest names.
        signed: String,
        /// The uploaded component's.
        got: String,
    },
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
