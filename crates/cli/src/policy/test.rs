//! `quota policy test`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use quota_policy_core::json::{CaseFile, mismatches};

use super::{ModuleArg, read};

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    module: ModuleArg,
    /// Also print a line for every passing case.
    #[arg(long, short)]
    verbose: bool,
    /// Case files: `{"cases":[{"name":..,"input":{..},"expect":{..}}]}`.
    #[arg(required = true, value_name = "CASES")]
    cases: Vec<PathBuf>,
}

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let module = args.module.load()?;
    let mut evaluator = module.evaluator()?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in &args.cases {
        let file = read(path).and_then(|bytes| {
            let text = String::from_utf8(bytes).map_err(|e| anyhow::anyhow!("not UTF-8: {e}"))?;
            CaseFile::parse(&text).map_err(anyhow::Error::msg)
        });
        let file = match file {
            Ok(file) => file,
            Err(e) => {
                println!("FAIL {}: not a case file: {e:#}", path.display());
                failed += 1;
                continue;
            }
        };
        for case in &file.cases {
            let output = evaluator.evaluate_json(&case.input);
            let found = mismatches(&case.expect, &output);
            if found.is_empty() {
                passed += 1;
                if args.verbose {
                    println!("ok   {}: {}", path.display(), case.name);
                }
            } else {
                failed += 1;
                println!(
                    "FAIL {}: {}: {}",
                    path.display(),
                    case.name,
                    found.join("; ")
                );
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
