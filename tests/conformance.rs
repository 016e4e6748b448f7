//! The conformance corpus (`tests/conformance/*.json`), one test per case,
//! run twice: natively against policy-core and through the reference
//! component in wasmtime. The two outputs must also be identical.

use std::cell::RefCell;

use libtest_mimic::{Arguments, Failed, Trial};
use quota_host::Evaluator;
use quota_policy_core::json::{CaseFile, evaluate_native, mismatches};
use serde_json::{Map, Value};

thread_local! {
    static EVALUATOR: RefCell<Option<Evaluator>> = const { RefCell::new(None) };
}

fn evaluate_wasm(input: &Value) -> Result<Value, Failed> {
    EVALUATOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(
                quota_tests::reference()
                    .evaluator()
                    .map_err(|e| e.to_string())?,
            );
        }
        match slot.as_mut() {
            Some(evaluator) => Ok(evaluator.evaluate_json(input)),
            None => Err("no evaluator".into()),
        }
    })
}

fn check(expect: &Map<String, Value>, output: &Value) -> Result<(), Failed> {
    let found = mismatches(expect, output);
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\noutput: {output}", found.join("\n")).into())
    }
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    let files = quota_tests::conformance_files();
    let mut total = 0;
    for path in &files {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| CaseFile::parse(&text));
        let file = match parsed {
            Ok(file) => file,
            Err(e) => {
                trials.push(Trial::test(format!("{stem}::parse"), move || Err(e.into())));
                continue;
            }
        };
        total += file.cases.len();
        for case in file.cases {
            let (input, expect) = (case.input.clone(), case.expect.clone());
            trials.push(Trial::test(
                format!("native::{stem}::{}", case.name),
                move || check(&expect, &evaluate_native(&input).to_value()),
            ));
            trials.push(Trial::test(
                format!("wasm::{stem}::{}", case.name),
                move || {
                    let output = evaluate_wasm(&case.input)?;
                    check(&case.expect, &output)?;
                    let native = evaluate_native(&case.input).to_value();
                    if output != native {
                        return Err(format!(
                            "wasm and native differ\nwasm:   {output}\nnative: {native}"
                        )
                        .into());
                    }
                    Ok(())
                },
            ));
        }
    }
    trials.push(Trial::test("corpus::has_at_least_80_cases", move || {
        if total >= 80 {
            Ok(())
        } else {
            Err(format!("only {total} cases in {} files", files.len()).into())
        }
    }));
    libtest_mimic::run(&args, trials).exit();
}
