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

/// The inputs in `text`: the whole text as one JSON value if it is one,
/// else one value per non-blank line, with a parse error per bad line.
pub fn split_inputs(text: &str) -> Vec<Result<Value, String>> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return vec![Ok(value)];
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str::<Value>(line).map_err(|e| format!("line {}: {e}", index + 1))
        })
        .collect()
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let module = args.module.load()?;
    let text = if args.input.as_os_str() == "-" {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        text
    } else {
        String::from_utf8(read(&args.input)?)
            .with_context(|| format!("`{}` is not UTF-8 text", args.input.display()))?
    };
    let mut evaluator = module.evaluator()?;
    let mut out = BufWriter::new(io::stdout().lock());
    for item in split_inputs(&text) {
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
        let inputs = split_inputs("{\n  \"a\": 1\n}\n");
        assert_eq!(inputs.len(), 1);
        assert!(inputs[0].is_ok());
    }

    #[test]
    fn json_lines_keep_going_past_a_bad_line() {
        let inputs = split_inputs("{\"a\":1}\n\nnot json\n{\"b\":2}\n");
        assert_eq!(inputs.len(), 3);
        assert!(inputs[0].is_ok() && inputs[2].is_ok());
        assert!(inputs[1].as_ref().unwrap_err().starts_with("line 3:"));
    }

    #[test]
    fn empty_input_gives_no_lines() {
        assert!(split_inputs(" \n").is_empty());
    }
}
