//! The manifest a signature covers, and the one-line detached signature.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use semver::Version;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::keys::{KeyError, SecretKey};
use crate::{TrustedKeys, VerifyError, sha256_hex};

/// The manifest's `format`: what the signed bytes are, so that a
/// signature by the same key over anything else never passes for one.
pub const FORMAT: &str = "quota-policy-manifest/1";

/// The largest signature line read (a manifest is a few hundred bytes).
const MAX_SIGNATURE: usize = 4096;

/// What a signature says about a component. The signature covers the
/// manifest's exact bytes, as carried in the signature line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The component's sha256, lowercase hex.
    pub sha256: String,
    /// The policy's name: versions rise per name.
    pub name: String,
    /// Its version (semver).
    pub version: String,
    /// The signing key's id ([`crate::PublicKey::key_id`]).
    pub key_id: String,
    /// When it was signed, RFC 3339 (UTC).
    pub signed_at: String,
}

impl Manifest {
    /// The version, parsed (checked when the manifest was read).
    pub fn semver(&self) -> Version {
        Version::parse(&self.version).unwrap_or_else(|_| Version::new(0, 0, 0))
    }
}

/// Why a signature line or a manifest is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not `<base64url manifest>.<base64url signature>`.
    #[error("a signature is one line `<manifest>.<signature>`, both base64url: {0}")]
    Shape(String),
    /// The manifest is not the JSON this format defines.
    #[error("the signed manifest is not valid: {0}")]
    Manifest(String),
    /// A name breaks its rule.
    #[error("a policy name is 1 to 64 of `A-Z a-z 0-9 . _ -`, not `{0}`")]
    Name(String),
    /// Not a semver version.
    #[error("`{0}` is not a version (semver, e.g. `1.4.0`)")]
    Version(String),
    /// The key could not sign.
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn check_name(name: &str) -> Result<(), ManifestError> {
    let fits = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if fits {
        Ok(())
    } else {
        Err(ManifestError::Name(name.to_owned()))
    }
}

/// Signs `component` as version `version` of the policy `name`, at `now`:
/// the signature line (without a line break).
pub fn sign(
    key: &SecretKey,
    component: &[u8],
    name: &str,
    version: &Version,
    now: OffsetDateTime,
) -> Result<String, ManifestError> {
    check_name(name)?;
    let signed_at = now
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .ok_or_else(|| ManifestError::Manifest("the time cannot be written".into()))?;
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        sha256: sha256_hex(component),
        name: name.to_owned(),
        version: version.to_string(),
        key_id: key.public_key().key_id(),
        signed_at,
    };
    let bytes =
        serde_json::to_vec(&manifest).map_err(|e| ManifestError::Manifest(e.to_string()))?;
    let signature = key.sign(&bytes);
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&bytes),
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// A signature line taken apart: the manifest, its exact bytes, the signature.
struct Parts {
    manifest: Manifest,
    bytes: Vec<u8>,
    signature: [u8; 64],
}

fn split(line: &str) -> Result<Parts, ManifestError> {
    let line = line.trim();
    if line.len() > MAX_SIGNATURE {
        return Err(ManifestError::Shape(format!(
            "longer than {MAX_SIGNATURE} bytes"
        )));
    }
    let (manifest, signature) = line
        .split_once('.')
        .ok_or_else(|| ManifestError::Shape("no `.`".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(manifest)
        .map_err(|e| ManifestError::Shape(format!("the manifest: {e}")))?;
    let signature: [u8; 64] = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| ManifestError::Shape(format!("the signature: {e}")))?
        .try_into()
        .map_err(|_| ManifestError::Shape("an Ed25519 signature has 64 bytes".into()))?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| ManifestError::Manifest(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(ManifestError::Manifest(format!(
            "`format` is `{}`, not `{FORMAT}`",
            manifest.format
        )));
    }
    check_name(&manifest.name)?;
    Version::parse(&manifest.version)
        .map_err(|_| ManifestError::Version(manifest.version.clone()))?;
    Ok(Parts {
        manifest,
        bytes,
        signature,
    })
}

/// What a signature line claims, not verified: for showing a stored
/// signature.
pub fn read_manifest(line: &str) -> Result<Manifest, ManifestError> {
    split(line).map(|parts| parts.manifest)
}

/// What a signature line claims about the component `sha256`, not
/// verified: a well-formed manifest naming that component.
pub fn read_manifest_for(line: &str, sha256: &str) -> Result<Manifest, VerifyError> {
    let manifest = read_manifest(line)?;
    if manifest.sha256 != sha256 {
        return Err(VerifyError::OtherComponent {
            signed: manifest.sha256,
            got: sha256.to_owned(),
        });
    }
    Ok(manifest)
}

impl TrustedKeys {
    /// The manifest of `line` when it is a trusted key's valid signature
    /// for exactly `component`.
    pub fn verify(&self, line: &str, component: &[u8]) -> Result<Manifest, VerifyError> {
        self.verify_sha256(line, &sha256_hex(component))
    }

    /// The manifest of `line` when it is a trusted key's valid signature
    /// for the component whose sha256 is `sha256` (lowercase hex).
    pub fn verify_sha256(&self, line: &str, sha256: &str) -> Result<Manifest, VerifyError> {
        let parts = split(line)?;
        let key_id = &parts.manifest.key_id;
        let key = self
            .get(key_id)
            .ok_or_else(|| VerifyError::UntrustedKey(key_id.clone()))?;
        if !key.verifies(&parts.bytes, &parts.signature) {
            return Err(VerifyError::BadSignature(key_id.clone()));
        }
        if parts.manifest.sha256 != sha256 {
            return Err(VerifyError::OtherComponent {
                signed: parts.manifest.sha256,
                got: sha256.to_owned(),
            });
        }
        Ok(parts.manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(component: &[u8]) -> (SecretKey, TrustedKeys, String) {
        let key = SecretKey::generate().unwrap();
        let trusted = TrustedKeys::from_pem(&key.public_key().to_pem().unwrap()).unwrap();
        let line = sign(
            &key,
            component,
            "drafts",
            &Version::new(1, 2, 0),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        (key, trusted, line)
    }

    #[test]
    fn a_signature_verifies_for_its_component_only() {
        let (key, trusted, line) = signed(b"component");
        let manifest = trusted.verify(&line, b"component").unwrap();
        assert_eq!(manifest.version, "1.2.0");
        assert_eq!(manifest.key_id, key.public_key().key_id());
        assert_eq!(manifest.signed_at, "1970-01-01T00:00:00Z");
        assert!(matches!(
            trusted.verify(&line, b"componenT"),
            Err(VerifyError::OtherComponent { .. })
        ));
    }

    #[test]
    fn a_changed_manifest_or_signature_does_not_verify() {
        let (_, trusted, line) = signed(b"component");
        let (manifest, signature) = line.split_once('.').unwrap();
        let mut json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(manifest).unwrap()).unwrap();
        json["version"] = "9.0.0".into();
        let forged = format!(
            "{}.{signature}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap())
        );
        assert!(matches!(
            trusted.verify(&forged, b"component"),
            Err(VerifyError::BadSignature(_))
        ));
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[10] ^= 1;
        let flipped = format!("{manifest}.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert!(matches!(
            trusted.verify(&flipped, b"component"),
            Err(VerifyError::BadSignature(_))
        ));
    }

    #[test]
    fn another_key_is_not_trusted() {
        let (_, _, line) = signed(b"component");
        let (_, other, _) = signed(b"component");
        assert!(matches!(
            other.verify(&line, b"component"),
            Err(VerifyError::UntrustedKey(_))
        ));
    }

    #[test]
    fn malformed_lines_and_names_are_refused() {
        let (_, trusted, _) = signed(b"c");
        for line in ["", "abc", "a.b", "e30.AAAA", &"x".repeat(5000)] {
            assert!(
                matches!(trusted.verify(line, b"c"), Err(VerifyError::Malformed(_))),
                "{line:.20}"
            );
        }
        let key = SecretKey::generate().unwrap();
        for name in ["", "a b", "ä", &"n".repeat(65)] {
            assert!(matches!(
                sign(
                    &key,
                    b"c",
                    name,
                    &Version::new(1, 0, 0),
                    OffsetDateTime::UNIX_EPOCH
                ),
                Err(ManifestError::Name(_))
            ));
        }
    }

    /// A key made and a manifest signed with OpenSSL, as docs/signing.md
    /// shows for other clients (`openssl genpkey -algorithm ed25519`,
    /// `openssl pkeyutl -sign -rawin`, base64url without padding).
    #[test]
    fn a_signature_made_with_openssl_verifies() {
        let public = "-----BEGIN PUBLIC KEY-----\n\
                      MCowBQYDK2VwAyEAUa69BAzab2QuaWRPQp7Iawpj5o3q3nDUS0KrqP19uUY=\n\
                      -----END PUBLIC KEY-----\n";
        let line = "eyJmb3JtYXQiOiJxdW90YS1wb2xpY3ktbWFuaWZlc3QvMSIsInNoYTI1NiI6IjY5ODVjYTFmNGRhYTVhNTg0YTI4ZWFlMDQzYTIzOWNiOTY2ODlhZjEzMzdlYTEzYWZiNjNlMDBjMmJmNTEyZmEiLCJuYW1lIjoiZHJhZnRzIiwidmVyc2lvbiI6IjIuMC4wIiwia2V5X2lkIjoiYzgyOWJmOTRhOTExZWMwNyIsInNpZ25lZF9hdCI6IjIwMjYtMTItMDFUMDA6MDA6MDBaIn0\
                    .JfBr9mjhVcRW2WKjWA5kkyp4PBjaoMP-ZaO5k6rUoUdGukMKJNSqBE-RtHug0Ogfz8S4GHg88zGr5qX5MW-SAA";
        let trusted = TrustedKeys::from_pem(public).unwrap();
        assert_eq!(trusted.key_ids(), ["c829bf94a911ec07"]);
        let manifest = trusted.verify(line, b"component").unwrap();
        assert_eq!(
            (manifest.name.as_str(), manifest.version.as_str()),
            ("drafts", "2.0.0")
        );
    }
}
