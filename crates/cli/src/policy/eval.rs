//! `quota policy eval`.

use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use quota_policy_core::json::{INVALID_JSON, error_value};
use serde_json::Value;

use super::{ModuleArg, read};

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    module: ModuleArg,
    /// Read inputs from FILE, or `-` for standard input (the default). The text is one
    /// JSON decision input, or JSON Lines: one input per line, blank lines skipped.
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    input: PathBuf,
}

/// The inputs in `bytes`: the whole text as one JSON value if it is one,
/// else one value per non-blank line, with a parse error per bad line (a
/// line that is not UTF-8 is one of those; the others still run).
pub fn split_inputs(bytes: &[u8]) -> Vec<Result<Value, String>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Vec::new();
    }
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        return vec![Ok(value)];
    }
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(index, line)| {
            let text = std::str::from_utf8(line)
                .map_err(|e| format!("line {}: not UTF-8 text: {e}", index + 1))?;
            serde_json::from_str::<Value>(text).map_err(|e| format!("line {}: {e}", index + 1))
        })
        .collect()
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let module = args.module.load()?;
    let bytes = if args.input.as_os_str() == "-" {
        let mut bytes = Vec::new();
        io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        bytes
    } else {
        read(&args.input)?
    };
    let mut evaluator = module.evaluator()?;
    let mut out = BufWriter::new(io::stdout().lock());
    for item in split_inputs(&bytes) {
        let output = match item {
            Ok(value) => evaluator.evaluate_json(&value),
            Err(message) => error_value(INVALID_JSON, &message),
        };
        serde_json::to_writer(&mut out, &output)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::split_inputs;

    #[test]
    fn a_pretty_printed_object_is_one_input() {
        let inputs = split_inputs(b"{\n  \"a\": 1\n}\n");
        assert_eq!(inputs.len(), 1);
        assert!(inputs[0].is_ok());
    }

    #[test]
    fn json_lines_keep_going_past_a_bad_line() {
        let inputs = split_inputs(b"{\"a\":1}\n\nnot json\n{\"b\":2}\n\xff\xfe\n{}");
        assert_eq!(inputs.len(), 5);
        assert!(inputs[0].is_ok() && inputs[2].is_ok() && inputs[4].is_ok());
        assert!(inputs[1].as_ref().unwrap_err().starts_with("line 3:"));
        assert!(
            inputs[3]
                .as_ref()
                .unwrap_err()
                .starts_with("line 5: not UTF-8")
        );
    }

    #[test]
    fn empty_input_gives_no_lines() {
        assert!(split_inputs(b" \n").is_empty());
    }
}
