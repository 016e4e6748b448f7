//! `quota policy build`: a policy project into a component the service
//! accepts.
//!
//! cargo builds the project's library for `wasm32-unknown-unknown` (a
//! `wasm32-wasip2` build would import WASI as soon as the code can panic or
//! format), `wit-component` encodes the core module as a component, and the
//! result must pass the checks the service runs at upload (it compiles,
//! imports nothing, exports the contract, and passes the self-test) before
//! it is written to `DIR/target/policy.wasm`. The previous build's file is
//! removed first: after a failed build there is none to upload by mistake.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::Args;
use quota_guest_build::{GUEST_TARGET, cargo};
use serde_json::Value;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The project's folder (with its Cargo.toml); default: the current one.
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// Adds the guest target with rustup when rustup is there and lacks it.
fn ensure_target() {
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return; // no rustup: cargo says what is missing
    };
    if !String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == GUEST_TARGET)
    {
        let _ = Command::new("rustup")
            .args(["target", "add", GUEST_TARGET])
            .status();
    }
}

/// The library's file stem (the cdylib's name) of the project at `manifest`.
fn lib_name(manifest: &Path) -> anyhow::Result<String> {
    let out = cargo()
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!(
            "cargo cannot read `{}`:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("cargo metadata")?;
    let targets = meta["packages"][0]["targets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    targets
        .iter()
        .find(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .and_then(|t| t["name"].as_str())
        .map(|name| name.replace('-', "_"))
        .with_context(|| {
            format!(
                "`{}` has no cdylib library: add `[lib] crate-type = [\"cdylib\"]`",
                manifest.display()
            )
        })
}

/// What the core module imports, as `module::name`.
fn core_imports(module: &[u8]) -> anyhow::Result<Vec<String>> {
    let mut imports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::ImportSection(section) = payload? {
            for import in section.into_imports() {
                let import = import?;
                imports.push(format!("{}::{}", import.module, import.name));
            }
        }
    }
    Ok(imports)
}

/// Why a module that imports `imports` is no policy, said plainly.
fn explain(imports: &[String]) -> String {
    let wasi = imports.iter().any(|i| i.starts_with("wasi"));
    let mut text = format!(
        "the module imports {}; a policy imports nothing: these are what the code asks its host for. ",
        imports
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    text.push_str(if wasi {
        "WASI comes from building for a wasi target or from a dependency that uses the OS (files, clock, randomness, environment)."
    } else {
        "An `extern \"C\"` block, or a dependency that expects a JavaScript or C environment, adds such imports."
    });
    text
}

pub fn run(args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let manifest = args.dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "no Cargo.toml in `{}` (make a project with `quota policy new DIR`)",
            args.dir.display()
        );
    }
    let lib = lib_name(&manifest)?;
    ensure_target();
    let target_dir = args.dir.join("target");
    let out = target_dir.join("policy.wasm");
    match std::fs::remove_file(&out) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove `{}`", out.display())),
    }
    let status = cargo()
        .args([
            "build",
            "--release",
            "--lib",
            "--target",
            GUEST_TARGET,
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo could not build the project ({status})");
    }
    let core = target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join(format!("{lib}.wasm"));
    let module =
        std::fs::read(&core).with_context(|| format!("cannot read `{}`", core.display()))?;
    let imports = core_imports(&module)
        .with_context(|| format!("`{}` is not a wasm module", core.display()))?;
    if !imports.is_empty() {
        bail!(explain(&imports));
    }
    let component = quota_guest_build::encode(&module)
        .map_err(|e| anyhow::anyhow!("the module cannot be encoded as a policy component: {e}"))?;
    let out = target_dir.join("policy.wasm");
    super::load_bytes(&component).with_context(|| {
        format!(
            "the component built from `{}` is not a policy the service accepts",
            args.dir.display()
        )
    })?;
    std::fs::write(&out, &component)
        .with_context(|| format!("cannot write `{}`", out.display()))?;
    println!(
        "{} ({} bytes, zero imports)",
        out.display(),
        component.len()
    );
    Ok(ExitCode::SUCCESS)
}
