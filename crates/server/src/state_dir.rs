//! The service's own folder: what only this process may read and write.
//!
//! It holds the admin token (`admin-token`) and the key that tags
//! precompiled policies (`cache-key`), both 0600 files, and the artifact
//! cache (`policy-cache/`) beside them, so the key never sits in the folder
//! it protects. All of it is per process: hosts that share a database each
//! have their own state folder (they share the token only by configuring
//! the same one, e.g. through `QUOTA_ADMIN_TOKEN`).
//!
//! A state or cache folder that group or others can write, or that another
//! (non-root) user owns, is refused: whoever can write there could plant a
//! token or a key. So is a token file that others can write, a key file
//! that others can read or write, and an admin token shorter than
//! [`AdminToken::MIN_CHARS`]. New files are created exclusively, without
//! following links, mode 0600.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use quota_host::{ArtifactCache, CacheKey};

use crate::extract::AdminToken;

/// The admin token's file in the state folder.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// The cache key's file in the state folder.
pub const CACHE_KEY_FILE: &str = "cache-key";
/// The artifact cache's folder in the state folder.
pub const CACHE_DIR: &str = "policy-cache";

/// Why the state folder cannot be used; the service does not start.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Group or others may write the folder or file.
    #[error(
        "`{0}` can be written by group or others, who could plant a token, a key or code there; \
         run `chmod go-w` on it or choose another state folder (--state-dir)"
    )]
    Writable(PathBuf),
    /// Others may read a secret.
    #[error("`{0}` can be read by group or others; it must be private (`chmod 600`)")]
    Readable(PathBuf),
    /// Another user owns it.
    #[error("`{0}` belongs to another user (uid {1}); it must be this user's or root's")]
    Owner(PathBuf, u32),
    /// It is not the kind of file expected (a link, a folder, ...).
    #[error("`{0}` is not a regular {1}")]
    Kind(PathBuf, &'static str),
    /// The key file does not hold a key.
    #[error("`{0}` does not hold a 32-byte key")]
    BadKey(PathBuf),
    /// The admin token is too short.
    #[error("the admin token from {0} is too short: {1}")]
    BadToken(String, String),
    /// The file system failed.
    #[error("cannot use `{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The service's state folder, checked.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

/// Where the admin token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The `QUOTA_ADMIN_TOKEN` environment variable (or the caller's own).
    Environment,
    /// The state folder's file, read.
    File(PathBuf),
    /// The state folder's file, just written with a new random token.
    NewFile(PathBuf),
}

impl StateDir {
    /// Opens the state folder at `path`, creating it (mode 0700) if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let path = path.as_ref().to_path_buf();
        private_dir(&path)?;
        Ok(StateDir { path })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The admin token: `from_env` if given (e.g. `QUOTA_ADMIN_TOKEN`),
    /// else the one in `admin-token`, else a new random one written there.
    pub fn admin_token(
        &self,
        from_env: Option<&str>,
    ) -> Result<(AdminToken, TokenSource), StateError> {
        let check = |token: &str, source: String| {
            AdminToken::new(token).map_err(|e| StateError::BadToken(source, e.to_string()))
        };
        if let Some(token) = from_env.map(str::trim).filter(|t| !t.is_empty()) {
            return Ok((
                check(token, "QUOTA_ADMIN_TOKEN".to_owned())?,
                TokenSource::Environment,
            ));
        }
        let path = self.path.join(ADMIN_TOKEN_FILE);
        if let Some(bytes) = read_private(&path, false)? {
            let text = String::from_utf8_lossy(&bytes);
            let token = check(text.trim(), format!("`{}`", path.display()))?;
            return Ok((token, TokenSource::File(path)));
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| io(&path)(std::io::Error::other(e)))?;
        let token = format!("qa_{}", hex::encode(bytes));
        write_new_private(&path, format!("{token}\n").as_bytes())?;
        Ok((
            check(&token, "a new token".to_owned())?,
            TokenSource::NewFile(path),
        ))
    }

    /// The key that tags precompiled policies, from `cache-key` (made at
    /// first use).
    pub fn cache_key(&self) -> Result<CacheKey, StateError> {
        let path = self.path.join(CACHE_KEY_FILE);
        if let Some(bytes) = read_private(&path, true)? {
            let key = <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| StateError::BadKey(path.clone()))?;
            return Ok(CacheKey::from_bytes(key));
        }
        let key = CacheKey::random().map_err(io(&path))?;
        write_new_private(&path, &key.to_bytes())?;
        Ok(key)
    }

    /// The artifact cache in `policy-cache/`, tagged with [`Self::cache_key`].
    pub fn artifact_cache(&self) -> Result<ArtifactCache, StateError> {
        let dir = self.path.join(CACHE_DIR);
        private_dir(&dir)?;
        let key = self.cache_key()?;
        ArtifactCache::open(&dir, key).map_err(io(&dir))
    }
}

/// Creates `dir` (mode 0700) if needed; refuses one that group or others
/// can write or another user owns.
fn private_dir(dir: &Path) -> Result<(), StateError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io(dir))?;
    let meta = std::fs::metadata(dir).map_err(io(dir))?;
    if !meta.is_dir() {
        return Err(StateError::Kind(dir.to_path_buf(), "folder"));
    }
    check_owner_and_mode(dir, &meta, 0o022, StateError::Writable)
}

/// The file at `path`, if there is one, read without following a link and
/// checked: a regular file of this user (or root) that others cannot write
/// (`secret`: nor read).
fn read_private(path: &Path, secret: bool) -> Result<Option<Vec<u8>>, StateError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let meta = file.metadata().map_err(io(path))?;
    if !meta.is_file() {
        return Err(StateError::Kind(path.to_path_buf(), "file"));
    }
    check_owner_and_mode(path, &meta, 0o022, StateError::Writable)?;
    if secret {
        check_owner_and_mode(path, &meta, 0o077, StateError::Readable)?;
    } else {
        warn_if_readable(path, &meta);
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io(path))?;
    Ok(Some(bytes))
}

/// Creates `path` exclusively (never through a link), mode 0600, with `bytes`.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(path))
}

#[cfg(unix)]
fn check_owner_and_mode(
    path: &Path,
    meta: &std::fs::Metadata,
    forbidden: u32,
    error: fn(PathBuf) -> StateError,
) -> Result<(), StateError> {
    use std::os::unix::fs::MetadataExt;
    let owner = meta.uid();
    if owner != 0 && owner != effective_uid() {
        return Err(StateError::Owner(path.to_path_buf(), owner));
    }
    if meta.mode() & forbidden != 0 {
        return Err(error(path.to_path_buf()));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_and_mode(
    _: &Path,
    _: &std::fs::Metadata,
    _: u32,
    _: fn(PathBuf) -> StateError,
) -> Result<(), StateError> {
    Ok(())
}

#[cfg(unix)]
fn warn_if_readable(path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    if meta.mode() & 0o044 != 0 {
        tracing::warn!(path = %path.display(), "the admin token file can be read by group or others");
    }
}

#[cfg(not(unix))]
fn warn_if_readable(_: &Path, _: &std::fs::Metadata) {}

#[cfg(unix)]
#[allow(
    unsafe_code,
    reason = "geteuid(2) takes no arguments, cannot fail and touches no memory; std has no safe form"
)]
fn effective_uid() -> u32 {
    // SAFETY: `geteuid` has no preconditions and no side effects.
    unsafe { libc::geteuid() }
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used, reason = "test helpers fail loudly")]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_new_state_folder_is_private_and_keeps_its_token_and_key() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("state");
        let state = StateDir::open(&path).unwrap();
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .ok()
        };
        assert_eq!(mode(&path), Some(0o700));
        let Ok((token, TokenSource::NewFile(file))) = state.admin_token(None) else {
            unreachable!("a new token")
        };
        assert_eq!(mode(&file), Some(0o600));
        let again = state.admin_token(None).map(|(t, _)| t.sha256());
        assert_eq!(again.ok(), Some(token.sha256()));
        let key = state.cache_key().map(|k| k.to_bytes()).ok();
        assert_eq!(mode(&path.join(CACHE_KEY_FILE)), Some(0o600));
        assert_eq!(state.cache_key().map(|k| k.to_bytes()).ok(), key);
        let cache = state.artifact_cache().unwrap();
        assert_eq!(mode(cache.dir()), Some(0o700));
        assert!(!cache.dir().join(CACHE_KEY_FILE).exists());
    }

    #[test]
    fn folders_and_files_others_can_write_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("state");
        std::fs::create_dir(&path).unwrap();
        chmod(&path, 0o777);
        assert!(matches!(
            StateDir::open(&path),
            Err(StateError::Writable(_))
        ));
        chmod(&path, 0o775);
        assert!(matches!(
            StateDir::open(&path),
            Err(StateError::Writable(_))
        ));
        chmod(&path, 0o755);
        let state = StateDir::open(&path).unwrap();

        // A planted, world-writable token file.
        let token_file = path.join(ADMIN_TOKEN_FILE);
        std::fs::write(&token_file, "planted-token-planted-token-planted-token").unwrap();
        chmod(&token_file, 0o666);
        assert!(matches!(
            state.admin_token(None),
            Err(StateError::Writable(_))
        ));
        chmod(&token_file, 0o600);
        assert!(state.admin_token(None).is_ok());

        // A short token, from the file or the environment.
        std::fs::write(&token_file, "short").unwrap();
        assert!(matches!(
            state.admin_token(None),
            Err(StateError::BadToken(..))
        ));
        assert!(matches!(
            state.admin_token(Some("also-short")),
            Err(StateError::BadToken(..))
        ));

        // A key others can read; a link where the key should be.
        let key_file = path.join(CACHE_KEY_FILE);
        std::fs::write(&key_file, [7u8; 32]).unwrap();
        chmod(&key_file, 0o644);
        assert!(matches!(state.cache_key(), Err(StateError::Readable(_))));
        std::fs::remove_file(&key_file).unwrap();
        let elsewhere = root.path().join("elsewhere");
        std::fs::write(&elsewhere, [7u8; 32]).unwrap();
        chmod(&elsewhere, 0o600);
        std::os::unix::fs::symlink(&elsewhere, &key_file).unwrap();
        assert!(state.cache_key().is_err());

        // A cache folder others can write.
        std::fs::remove_file(&key_file).unwrap();
        let cache = path.join(CACHE_DIR);
        std::fs::create_dir(&cache).unwrap();
        chmod(&cache, 0o757);
        assert!(matches!(
            state.artifact_cache(),
            Err(StateError::Writable(_))
        ));
    }
}
