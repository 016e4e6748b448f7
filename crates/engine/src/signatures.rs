//! The signature stage of the policy lifecycle (docs/signing.md): which
//! components a host accepts, and who signed the one it runs.
//!
//! Without trusted keys every component passes, as before signatures
//! existed; a signature that comes along must name the component and is
//! kept (unverified) so that it can be checked once keys are trusted. With
//! trusted keys, a component needs a valid signature by one of them, except
//! the reference policy built into the binary, which is trusted as part of
//! it; and an activation must raise its name's version (or repeat the
//! highest one with the same component).

use std::cmp::Ordering;

use quota_signing::{Manifest, TrustedKeys, VerifyError, Version, read_manifest_for};
use quota_store::{Release, ReleaseChange};

/// Which components this host accepts.
#[derive(Debug, Clone, Default)]
pub struct Signatures {
    trusted: Option<TrustedKeys>,
    builtin_sha256: String,
}

/// Who signed a component, as the policy status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// The reference policy built into this binary: trusted as part of it.
    BuiltIn,
    /// A trusted key's valid signature.
    Verified(Manifest),
    /// A signature this host does not check (it trusts no keys).
    Unverified(Manifest),
    /// No signature, or one that does not verify with the keys trusted now.
    Unsigned(Option<String>),
}

/// What the signature stage found in a component it admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The built-in reference policy, or no keys trusted and nothing signed.
    Unsigned,
    /// No keys trusted: a well-formed signature naming the component, kept
    /// as it came; what it claims.
    Unverified(Manifest),
    /// A trusted key's valid signature.
    Verified(Manifest),
}

impl Signatures {
    /// Nothing required; `builtin_sha256` names the reference policy built
    /// into this binary (for the status).
    pub fn not_required(builtin_sha256: &str) -> Self {
        Signatures {
            trusted: None,
            builtin_sha256: builtin_sha256.to_owned(),
        }
    }

    /// Components signed by one of `trusted`, or the built-in reference
    /// policy (`builtin_sha256`).
    pub fn required(trusted: TrustedKeys, builtin_sha256: &str) -> Self {
        Signatures {
            trusted: Some(trusted),
            builtin_sha256: builtin_sha256.to_owned(),
        }
    }

    /// Whether a signature is required.
    pub fn are_required(&self) -> bool {
        self.trusted.is_some()
    }

    /// The trusted keys' ids (none when signatures are not required).
    pub fn key_ids(&self) -> Vec<String> {
        self.trusted
            .as_ref()
            .map(TrustedKeys::key_ids)
            .unwrap_or_default()
    }

    /// The signature stage for the component `sha256` with `signature`:
    /// what it found, or why the component is refused.
    pub fn check(&self, sha256: &str, signature: Option<&str>) -> Result<Checked, VerifyError> {
        match (&self.trusted, signature) {
            (Some(_), _) if sha256 == self.builtin_sha256 => Ok(Checked::Unsigned),
            (None, None) => Ok(Checked::Unsigned),
            (None, Some(line)) => read_manifest_for(line, sha256).map(Checked::Unverified),
            (Some(_), None) => Err(VerifyError::Missing),
            (Some(keys), Some(line)) => keys.verify_sha256(line, sha256).map(Checked::Verified),
        }
    }

    /// Who signed the component `sha256`, whose stored signature is `signature`.
    pub fn signer(&self, sha256: &str, signature: Option<&str>) -> Signer {
        if sha256 == self.builtin_sha256 {
            return Signer::BuiltIn;
        }
        if signature.is_none() {
            return Signer::Unsigned(None);
        }
        match self.check(sha256, signature) {
            Ok(Checked::Verified(manifest)) => Signer::Verified(manifest),
            Ok(Checked::Unverified(manifest)) => Signer::Unverified(manifest),
            Ok(Checked::Unsigned) => Signer::Unsigned(None),
            Err(e) => Signer::Unsigned(Some(e.to_string())),
        }
    }
}

/// The release an activation of `manifest` records, given the name's
/// highest activated release `current`, or why it may not be activated.
/// Activating the highest release again records it unchanged, so that a
/// host that raised it meanwhile makes this one fail rather than go back.
pub(crate) fn release_change(
    manifest: &Manifest,
    current: Option<Release>,
) -> Result<ReleaseChange, String> {
    let release = Release {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        sha256: manifest.sha256.clone(),
    };
    let Some(current) = current else {
        return Ok(ReleaseChange {
            release,
            replaces: None,
        });
    };
    let highest = Version::parse(&current.version).map_err(|e| {
        format!(
            "the recorded release {} of `{}` is not a version: {e}",
            current.version, current.name
        )
    })?;
    match manifest.semver().cmp(&highest) {
        Ordering::Greater => Ok(ReleaseChange {
            release,
            replaces: Some(current.version),
        }),
        Ordering::Equal if current.sha256 == manifest.sha256 => Ok(ReleaseChange {
            release,
            replaces: Some(current.version),
        }),
        Ordering::Equal => Err(format!(
            "version {} of `{}` is already the component {}: sign this one with a higher version",
            manifest.version, manifest.name, current.sha256
        )),
        Ordering::Less => Err(format!(
            "version {} of `{}` is older than {}, activated already: versions must rise \
             (to go back, roll back to the previous policy)",
            manifest.version, manifest.name, current.version
        )),
    }
}
