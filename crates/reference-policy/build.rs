//! Builds the guest crate `policy/` for `wasm32-unknown-unknown` with the
//! `guest` profile and encodes the core module as a component.
//!
//! The guest is built by a child cargo with its own target directory (the
//! outer build holds the lock on the shared one) and without the outer
//! build's flags, which are meant for the host target.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    if let Err(message) = run() {
        println!("cargo::error={message}");
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .ok_or("cannot find the workspace root")?
        .to_path_buf();
    for watched in [
        "policy/src",
        "policy/Cargo.toml",
        "crates/policy-core/src",
        "crates/policy-core/Cargo.toml",
        "wit",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
        .unwrap_or_else(|| root.join("target"))
        .join("guest");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--package",
            "quota-policy",
            "--lib",
            "--profile",
            "guest",
        ])
        .args(["--target", GUEST_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .status()
        .map_err(|e| format!("cannot run cargo for the policy guest: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the policy guest failed ({status}); is the target installed? \
             run `rustup target add {GUEST_TARGET}` (`make` does this)"
        ));
    }

    let core_path = target_dir
        .join(GUEST_TARGET)
        .join("guest")
        .join("quota_policy.wasm");
    let component = encode(&core_path)?;
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?)
        .join("reference_policy.wasm");
    std::fs::write(&out, component).map_err(|e| format!("cannot write {}: {e}", out.display()))
}

fn encode(core_path: &Path) -> Result<Vec<u8>, String> {
    let module = std::fs::read(core_path)
        .map_err(|e| format!("cannot read {}: {e}", core_path.display()))?;
    wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| format!("cannot encode the policy guest as a component: {e:#}"))
}
