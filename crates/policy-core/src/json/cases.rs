//! Case files: named inputs with the output fields they must give.
//!
//! ```json
//! {"cases": [{"name": "...", "input": {...}, "expect": {"status": "allow", "limit": 3}}]}
//! ```
//!
//! `expect` is a subset of the output: every field it names must be present
//! with exactly that value. `{"error": "invalid_input"}` expects an error
//! with that code; `{"error": {...}}` compares a subset of the error object.

use serde_json::{Map, Value};

/// One named case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The case's name (its index when the file gives none).
    pub name: String,
    /// The decision input, as JSON (it may be deliberately invalid).
    pub input: Value,
    /// The subset of the output the case expects.
    pub expect: Map<String, Value>,
}

/// A parsed case file.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseFile {
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

impl CaseFile {
    /// Reads a case file from its JSON text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let cases = value
            .get("cases")
            .and_then(Value::as_array)
            .ok_or("a case file is an object with a `cases` array")?;
        let mut parsed = Vec::with_capacity(cases.len());
        for (index, case) in cases.iter().enumerate() {
            let name = match case.get("name") {
                Some(Value::String(name)) => name.clone(),
                None => format!("#{}", index + 1),
                Some(_) => return Err(format!("case #{}: `name` must be a string", index + 1)),
            };
            let input = case
                .get("input")
                .cloned()
                .ok_or_else(|| format!("case `{name}` has no `input`"))?;
            let expect = case
                .get("expect")
                .and_then(Value::as_object)
                .cloned()
                .ok_or_else(|| format!("case `{name}` has no `expect` object"))?;
            parsed.push(Case {
                name,
                input,
                expect,
            });
        }
        Ok(CaseFile { cases: parsed })
    }
}

/// How `output` differs from what `expect` asks; empty when the case passes.
pub fn mismatches(expect: &Map<String, Value>, output: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let error = output.get("error");
    for (field, want) in expect {
        if field == "error" {
            match (want, error) {
                (_, None) => found.push(format!("expected error {want}, got a decision")),
                (Value::String(code), Some(got)) => {
                    let got_code = got.get("code").unwrap_or(&Value::Null);
                    if got_code.as_str() != Some(code) {
                        found.push(format!("`error.code`: expected \"{code}\", got {got_code}"));
                    }
                }
                (Value::Object(want), Some(got)) => {
                    for m in mismatches(want, got) {
                        found.push(format!("error {m}"));
                    }
                }
                (other, Some(_)) => found.push(format!(
                    "`error`: expected a code or an object, the case says {other}"
                )),
            }
            continue;
        }
        if let Some(err) = error {
            found.push(format!("expected a decision, got error {err}"));
            break;
        }
        match output.get(field) {
            None => found.push(format!(
                "`{field}`: expected {want}, the output has no such field"
            )),
            Some(got) if got != want => {
                found.push(format!("`{field}`: expected {want}, got {got}"))
            }
            Some(_) => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_subset_that_matches_passes() {
        let out = json!({"status": "allow", "limit": 3, "reason": "x"});
        assert!(mismatches(&expect(json!({"status": "allow", "limit": 3})), &out).is_empty());
    }

    #[test]
    fn wrong_and_missing_fields_are_reported() {
        let out = json!({"status": "allow", "limit": 3});
        let found = mismatches(&expect(json!({"limit": 4, "limt": 3})), &out);
        assert_eq!(
            found,
            [
                "`limit`: expected 4, got 3",
                "`limt`: expected 3, the output has no such field",
            ]
        );
    }

    #[test]
    fn error_codes_match_by_string_or_subset() {
        let out = json!({"error": {"code": "invalid_input", "message": "`requested` must be at least 1, got 0"}});
        assert!(mismatches(&expect(json!({"error": "invalid_input"})), &out).is_empty());
        assert!(mismatches(&expect(json!({"error": {"code": "invalid_input"}})), &out).is_empty());
        assert_eq!(
            mismatches(&expect(json!({"error": "invalid_json"})), &out).len(),
            1
        );
        assert_eq!(
            mismatches(&expect(json!({"status": "allow"})), &out).len(),
            1
        );
        assert_eq!(
            mismatches(
                &expect(json!({"error": "invalid_input"})),
                &json!({"status": "allow"})
            )
            .len(),
            1
        );
    }

    #[test]
    fn case_files_need_cases_with_input_and_expect() {
        assert!(CaseFile::parse("{}").is_err());
        assert!(CaseFile::parse(r#"{"cases":[{"name":"a","input":{}}]}"#).is_err());
        let file = CaseFile::parse(r#"{"cases":[{"input":{},"expect":{}}]}"#).unwrap();
        assert_eq!(file.cases[0].name, "#1");
    }
}
