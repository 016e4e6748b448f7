//! Precompiled policy artifacts on disk, so loading a known component again
//! skips compilation.
//!
//! An artifact is keyed by the component's sha256 and the engine's
//! compatibility hash (wasmtime version and configuration), so a changed
//! runtime never reads an old artifact. Deserializing native code is only
//! safe for artifacts this host wrote: each one is stored with a tag, an
//! HMAC-SHA256 over the artifact's name and bytes under a secret key that
//! the caller keeps **outside** the cache directory (whoever can write the
//! cache must not be able to read or replace the key). An artifact whose
//! tag does not match (corrupt, truncated, renamed, or written by anyone
//! else) is ignored and the component is compiled again; tags are compared
//! in constant time.
//!
//! Files are written to a new temporary file (created exclusively, never
//! through a symbolic link, mode 0600) and renamed into place; artifacts
//! are never read through a symbolic link.

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The file where older versions kept the key, inside the cache: removed
/// at open, so no key is left beside the artifacts it protects.
const OLD_KEY_FILE: &str = "cache-key";

/// The secret key that tags artifacts: 32 random bytes, kept by the caller
/// outside the cache directory.
#[derive(Clone)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        CacheKey(bytes)
    }

    /// A new random key.
    pub fn random() -> std::io::Result<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(std::io::Error::other)?;
        Ok(CacheKey(key))
    }

    /// The key's bytes, to store it.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

/// A directory of precompiled artifacts.
#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    key: CacheKey,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Whether a load used a cached artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A valid artifact was found and deserialized; nothing was compiled.
    Hit,
    /// The component was compiled and its artifact written for next time.
    Miss,
}

impl ArtifactCache {
    /// Opens (creating if needed, mode 0700) the cache in `dir`, whose
    /// artifacts are tagged with `key`. A key file an older version left in
    /// `dir` is removed.
    pub fn open(dir: impl AsRef<Path>, key: CacheKey) -> std::io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        match std::fs::remove_file(dir.join(OLD_KEY_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(ArtifactCache { dir, key })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The artifact's file name for the component `sha256` on `engine`.
    fn name(engine: &Engine, sha256: &str) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{sha256}-{:016x}.cwasm", hasher.finish())
    }

    /// The component `sha256` compiled for `engine`, from a valid artifact.
    pub(crate) fn get(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let artifact = self.read(&Self::name(engine, sha256))?;
        deserialize(engine, &artifact)
    }

    /// Keeps `component` (the component `sha256`) for next time; a failure
    /// is logged, not an error: the cache only saves time.
    pub(crate) fn put(&self, engine: &Engine, sha256: &str, component: &Component) {
        let written = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
            .and_then(|artifact| self.write(&Self::name(engine, sha256), &artifact));
        if let Err(e) = written {
            tracing::warn!(error = %e, dir = %self.dir.display(), "cannot write a precompiled policy artifact");
        }
    }

    fn mac(&self, name: &str, artifact: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(artifact);
        mac
    }

    /// The artifact for `name`, if present and tagged by this cache's key.
    fn read(&self, name: &str) -> Option<Vec<u8>> {
        let artifact = read_no_follow(&self.dir.join(name)).ok()?;
        let tag = read_no_follow(&self.dir.join(format!("{name}.tag"))).ok()?;
        let tag = hex::decode(String::from_utf8(tag).ok()?.trim()).ok()?;
        self.mac(name, &artifact)
            .verify_slice(&tag)
            .ok()
            .map(|()| artifact)
    }

    fn write(&self, name: &str, artifact: &[u8]) -> std::io::Result<()> {
        write_atomically(&self.dir.join(name), artifact)?;
        let tag = hex::encode(self.mac(name, artifact).finalize().into_bytes());
        write_atomically(&self.dir.join(format!("{name}.tag")), tag.as_bytes())
    }
}

/// Reads a file, refusing to follow a symbolic link at its name.
fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    let mut bytes = Vec::new();
    options.open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes `bytes` to a new temporary file beside `path` (a random name,
/// created exclusively, never through a link, mode 0600), then renames it
/// into place: readers see the old file or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", hex::encode(suffix)));
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Deserializes an artifact that [`ArtifactCache::read`] has verified.
#[allow(
    unsafe_code,
    reason = "wasmtime can only trust native code it compiled; the tag proves this host wrote the artifact with this engine configuration"
)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> Option<Component> {
    // SAFETY: `artifact` was produced by `Component::serialize` on an engine
    // with the same compatibility hash (it is in the artifact's name, which
    // the tag covers) and is byte-for-byte what was written: its HMAC under
    // this cache's secret key, which is kept outside the cache directory,
    // matched. wasmtime also checks the artifact's header against the
    // engine and refuses a mismatch.
    unsafe { Component::deserialize(engine, artifact) }.ok()
}
