//! Precompiled policy artifacts on disk, so loading a known component again
//! skips compilation.
//!
//! An artifact is keyed by the component's sha256 and the engine's
//! compatibility hash (wasmtime version and configuration), so a changed
//! runtime never reads an old artifact. Deserializing native code is only
//! safe for artifacts this host wrote: each one is stored with a tag, the
//! sha256 of a secret key kept in the cache directory (mode 0600), the
//! artifact's name and the artifact's own sha256. An artifact whose tag
//! does not match (corrupt, truncated, or written by anyone else) is
//! ignored and the component is compiled again.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::error::LoadError;
use crate::module::{PolicyModule, sha256_hex};
use crate::runtime::Runtime;

/// The secret key file in the cache directory.
const KEY_FILE: &str = "cache-key";

/// A directory of precompiled artifacts.
#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    key: [u8; 32],
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
    /// Opens (creating if needed) the cache in `dir`, with its key.
    pub fn open(dir: impl AsRef<Path>) -> std::io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let key_path = dir.join(KEY_FILE);
        let key = match std::fs::read(&key_path) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a 32-byte key", key_path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(std::io::Error::other)?;
                write_atomically(&key_path, &key)?;
                key
            }
            Err(e) => return Err(e),
        };
        Ok(ArtifactCache { dir, key })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn name(runtime: &Runtime, sha256: &str) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        runtime
            .engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{sha256}-{:016x}.cwasm", hasher.finish())
    }

    fn tag(&self, name: &str, artifact: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update(name.as_bytes());
        hasher.update(Sha256::digest(artifact));
        sha256_hex(&hasher.finalize())
    }

    /// The artifact for `name`, if present and tagged by this cache.
    fn read(&self, name: &str) -> Option<Vec<u8>> {
        let artifact = std::fs::read(self.dir.join(name)).ok()?;
        let tag = std::fs::read_to_string(self.dir.join(format!("{name}.tag"))).ok()?;
        (tag.trim() == self.tag(name, &artifact)).then_some(artifact)
    }

    fn write(&self, name: &str, artifact: &[u8]) -> std::io::Result<()> {
        write_atomically(&self.dir.join(name), artifact)?;
        write_atomically(
            &self.dir.join(format!("{name}.tag")),
            self.tag(name, artifact).as_bytes(),
        )
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into
/// place: readers see the old file or the whole new one. Mode 0600.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Deserializes an artifact that [`ArtifactCache::read`] has verified.
#[allow(
    unsafe_code,
    reason = "wasmtime can only trust native code it compiled; the tag proves this host wrote the artifact with this engine configuration"
)]
fn deserialize(runtime: &Runtime, artifact: &[u8]) -> Option<Component> {
    // SAFETY: `artifact` was produced by `Component::serialize` on an engine
    // with the same compatibility hash (it is in the artifact's name, which
    // the tag covers) and is byte-for-byte what was written: its sha256 is
    // under a tag keyed with this cache's secret. wasmtime also checks the
    // artifact's header against the engine and refuses a mismatch.
    unsafe { Component::deserialize(&runtime.engine, artifact) }.ok()
}

impl Runtime {
    /// Loads a policy like [`Runtime::load`], from a precompiled artifact in
    /// `cache` when there is a valid one; otherwise compiles it and writes
    /// the artifact (a failure to write is logged, not an error). The
    /// component's bytes are still hashed and fully type-checked.
    pub fn load_cached(
        &self,
        bytes: &[u8],
        cache: &ArtifactCache,
    ) -> Result<(PolicyModule, CacheOutcome), LoadError> {
        let sha256 = sha256_hex(bytes);
        let name = ArtifactCache::name(self, &sha256);
        if let Some(component) = cache.read(&name).and_then(|a| deserialize(self, &a)) {
            let module = PolicyModule::from_component(self, component, bytes, sha256)?;
            return Ok((module, CacheOutcome::Hit));
        }
        let component = crate::inspect::compile_component(self, bytes)?;
        match component.serialize() {
            Ok(artifact) => {
                if let Err(e) = cache.write(&name, &artifact) {
                    tracing::warn!(error = %e, dir = %cache.dir.display(), "cannot write a precompiled policy artifact");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialize a compiled policy"),
        }
        let module = PolicyModule::from_component(self, component, bytes, sha256)?;
        Ok((module, CacheOutcome::Miss))
    }
}
