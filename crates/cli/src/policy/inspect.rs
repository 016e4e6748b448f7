//! `quota policy inspect`.

use std::process::ExitCode;

use clap::Args;
use quota_host::{Limits, Runtime};
use serde_json::json;

use super::ModuleArg;

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    module: ModuleArg,
}

/// Prints one JSON object. A component that compiles but is not a policy is
/// still described, with `is_policy: false` and the reason in `load_error`.
pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(Limits::default())?;
    let bytes = args.module.bytes()?;
    let info = runtime.inspect(&bytes)?;
    let load_error = runtime.load(&bytes).err().map(|e| e.to_string());
    let out = json!({
        "sha256": info.sha256,
        "size_bytes": info.size_bytes,
        "package": info.package,
        "exports": info.exports,
        "imports": info.imports,
        "is_policy": load_error.is_none(),
        "load_error": load_error,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
