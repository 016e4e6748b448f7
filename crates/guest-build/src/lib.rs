//! Builds policy guests from build scripts.
//!
//! A guest crate is compiled for `wasm32-unknown-unknown` with the
//! workspace's `guest` profile by a child cargo, then its core module is
//! encoded as a component with `wit-component`. Built this way a guest
//! imports nothing (a `wasm32-wasip2` build would import WASI as soon as it
//! can panic or format).
//!
//! The child cargo gets its own target directory (`target/guest`: the outer
//! build holds the lock on the shared one) and none of the outer build's
//! flags, which are meant for the host target.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target guests are compiled for.
pub const GUEST_TARGET: &str = "wasm32-unknown-unknown";

/// What a build script builds: one guest crate into one component file.
#[derive(Debug, Clone, Copy)]
pub struct Guest<'a> {
    /// The guest's package name, e.g. `quota-policy`.
    pub package: &'a str,
    /// Its library's file stem, e.g. `quota_policy`.
    pub lib_name: &'a str,
    /// The component's file name in `$OUT_DIR` (and in `target/guest` when
    /// `copy_to_target` is set).
    pub out_file: &'a str,
    /// Paths, relative to the workspace root, whose change rebuilds it.
    pub watch: &'a [&'a str],
    /// Also write the component to `target/guest/<out_file>` for other hosts.
    pub copy_to_target: bool,
}

/// Builds `guest` from a build script; a failure becomes a `cargo::error`.
pub fn build(guest: Guest<'_>) {
    if let Err(message) = try_build(guest) {
        println!("cargo::error={message}");
    }
}

fn try_build(guest: Guest<'_>) -> Result<(), String> {
    let root = workspace_root()?;
    rerun_if_changed(&root, guest.watch);
    let component = build_component(&root, guest.package, guest.lib_name)?;
    write(&out_path(guest.out_file)?, &component)?;
    if guest.copy_to_target {
        write(&guest_target_dir(&root).join(guest.out_file), &component)?;
    }
    Ok(())
}

/// The workspace root: the nearest folder above the calling crate with
/// `wit/` and `Cargo.lock`.
pub fn workspace_root() -> Result<PathBuf, String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    manifest_dir
        .ancestors()
        .find(|dir| dir.join("wit").is_dir() && dir.join("Cargo.lock").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            "cannot find the workspace root (a folder with wit/ and Cargo.lock)".to_owned()
        })
}

/// Prints `rerun-if-changed` for each path, relative to the workspace root.
fn rerun_if_changed(root: &Path, paths: &[&str]) {
    for path in paths {
        println!("cargo::rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_DIR");
}

/// The child build's target directory: `<target>/guest`.
pub fn guest_target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
        .unwrap_or_else(|| root.join("target"))
        .join("guest")
}

/// `cargo` (`CARGO` when run by cargo) without the caller's flags and
/// target settings, which are meant for the host target and would break a
/// guest's build.
pub fn cargo() -> Command {
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        cargo.env_remove(var);
    }
    cargo
}

/// Compiles `package` (a cdylib named `lib_name`) as a guest and returns the
/// encoded component's bytes.
fn build_component(root: &Path, package: &str, lib_name: &str) -> Result<Vec<u8>, String> {
    let target_dir = guest_target_dir(root);
    let status = cargo()
        .current_dir(root)
        .args([
            "build",
            "--locked",
            "--package",
            package,
            "--lib",
            "--profile",
            "guest",
        ])
        .args(["--target", GUEST_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .map_err(|e| format!("cannot run cargo for the guest `{package}`: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the guest `{package}` failed ({status}); is the target installed? \
             run `rustup target add {GUEST_TARGET}` (`make` does this)"
        ));
    }
    let core_path = target_dir
        .join(GUEST_TARGET)
        .join("guest")
        .join(format!("{lib_name}.wasm"));
    let module = std::fs::read(&core_path)
        .map_err(|e| format!("cannot read {}: {e}", core_path.display()))?;
    encode(&module).map_err(|e| format!("cannot encode the guest `{package}` as a component: {e}"))
}

/// Encodes a guest's core module (built for [`GUEST_TARGET`] with
/// `wit-bindgen`, which embeds the world it implements) as a component.
pub fn encode(module: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| format!("{e:#}"))
}

/// Writes `bytes` to `path`.
fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `$OUT_DIR/name`.
fn out_path(name: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?).join(name))
}
