//! `quota policy ...`: evaluate, test and inspect policy components;
//! activate, roll back and shadow them on a running service; replay
//! logged decisions with a candidate.

mod build;
mod compare;
mod diff;
mod eval;
mod inspect;
mod new;
mod remote;
mod replay;
mod sign;
mod test;

pub use sign::signature_beside;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use quota_host::{Limits, PolicyModule, Runtime};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create a policy project in DIR: the contract, the reference's rules in plain Rust, cases, pinned dependencies.
    New(new::NewArgs),
    /// Build a policy project into DIR/target/policy.wasm: wasm32-unknown-unknown, a component with zero imports.
    Build(build::BuildArgs),
    /// Compare policy A with B (default: the built-in reference) over the conformance corpus and generated inputs; report the differences by status transition.
    Diff(diff::DiffArgs),
    /// Evaluate decision inputs: one JSON object, or JSON Lines, in; one JSON line out per input.
    Eval(eval::EvalArgs),
    /// Run case files against a policy; prints failing cases and `N passed, M failed`.
    Test(test::TestArgs),
    /// Describe a component: sha256, size, package, exports and imports, as JSON.
    Inspect(inspect::InspectArgs),
    /// Make an Ed25519 key pair for signing policies: NAME.key (private, mode 0600) and NAME.pub.
    Keygen(sign::KeygenArgs),
    /// Sign a component: write FILE.sig, a detached signature over its sha256, a name, a version, the key id and the time.
    Sign(sign::SignArgs),
    /// Check FILE.sig against trusted public keys, as a host started with them would; print the signed manifest.
    Verify(sign::VerifyArgs),
    /// Upload a component (with FILE.sig when it exists) to a running service and activate it (signature, compile, type-check, self-test, swap); exit 1 if rejected.
    Activate(remote::ActivateArgs),
    /// Make the service's previous policy active again.
    Rollback(remote::ServerArgs),
    /// Set (or `--clear`) the service's shadow policy (with FILE.sig when it exists): evaluated beside the active one, never obeyed.
    Shadow(remote::ShadowArgs),
    /// Show the service's active, previous and shadow policies and the last load error.
    Status(remote::ServerArgs),
    /// Re-decide logged decisions with a candidate policy; report how many would change, by status transition.
    Replay(replay::ReplayArgs),
}

/// Which policy component to use.
#[derive(Debug, Args)]
pub struct ModuleArg {
    /// A policy component file; default: the reference policy built into this binary.
    #[arg(long, value_name = "FILE")]
    module: Option<PathBuf>,
}

impl ModuleArg {
    /// The component's bytes.
    fn bytes(&self) -> anyhow::Result<Vec<u8>> {
        component_bytes(self.module.as_deref())
    }

    /// The component, loaded as a policy.
    fn load(&self) -> anyhow::Result<PolicyModule> {
        load_policy(self.module.as_deref())
    }
}

/// The bytes of the component at `path`, or of the built-in reference policy.
pub fn component_bytes(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        Some(path) => read(path),
        None => Ok(quota_reference_policy::COMPONENT.to_vec()),
    }
}

/// The component at `path` (or the built-in reference policy), loaded as a
/// policy with the default sandbox limits.
pub fn load_policy(path: Option<&Path>) -> anyhow::Result<PolicyModule> {
    let bytes = component_bytes(path)?;
    load_bytes(&bytes).with_context(|| match path {
        Some(path) => format!("cannot load `{}` as a policy", path.display()),
        None => "cannot load the built-in reference policy".to_owned(),
    })
}

/// `bytes` loaded as a policy with the default sandbox limits: the checks
/// the service runs at upload.
pub fn load_bytes(bytes: &[u8]) -> anyhow::Result<PolicyModule> {
    let runtime = Runtime::new(Limits::default())?;
    Ok(runtime.load(bytes)?)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::New(args) => new::run(&args),
        PolicyCommand::Build(args) => build::run(&args),
        PolicyCommand::Diff(args) => diff::run(&args),
        PolicyCommand::Eval(args) => eval::run(args),
        PolicyCommand::Test(args) => test::run(args),
        PolicyCommand::Inspect(args) => inspect::run(args),
        PolicyCommand::Keygen(args) => sign::keygen(&args),
        PolicyCommand::Sign(args) => sign::sign(&args),
        PolicyCommand::Verify(args) => sign::verify(&args),
        PolicyCommand::Activate(args) => remote::activate(&args),
        PolicyCommand::Rollback(args) => remote::rollback(&args),
        PolicyCommand::Shadow(args) => remote::shadow(&args),
        PolicyCommand::Status(args) => remote::status(&args),
        PolicyCommand::Replay(args) => replay::run(&args),
    }
}
