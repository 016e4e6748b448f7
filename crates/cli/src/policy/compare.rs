//! What `replay` and `diff` print: how two policies' outputs for the same
//! inputs differ, counted per status transition with a few examples.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The comparison so far.
#[derive(Debug)]
pub struct Comparison {
    examples: usize,
    compared: usize,
    changed: usize,
    transitions: BTreeMap<(String, String), (usize, Vec<Value>)>,
}

fn status(output: &Value) -> String {
    match output.get("status").and_then(Value::as_str) {
        Some(status) => status.to_owned(),
        None => "error".to_owned(),
    }
}

fn without_reason(output: &Value) -> Value {
    let mut output = output.clone();
    if let Some(map) = output.as_object_mut() {
        map.remove("reason");
    }
    output
}

impl Comparison {
    /// Keeps up to `examples` examples per transition.
    pub fn new(examples: usize) -> Self {
        Comparison {
            examples,
            compared: 0,
            changed: 0,
            transitions: BTreeMap::new(),
        }
    }

    /// Compares the two outputs (`from`, then `to`) for `input`; the
    /// reason sentence is not compared. `names` are the examples' keys for
    /// the two outputs.
    pub fn add(&mut self, input: &Value, from: &Value, to: &Value, names: [&str; 2]) {
        self.compared += 1;
        if without_reason(from) == without_reason(to) {
            return;
        }
        self.changed += 1;
        let slot = self
            .transitions
            .entry((status(from), status(to)))
            .or_insert_with(|| (0, Vec::new()));
        slot.0 += 1;
        if slot.1.len() < self.examples {
            slot.1
                .push(json!({ "input": input, names[0]: from, names[1]: to }));
        }
    }

    /// The report: `head`'s fields, then the counts and the transitions.
    pub fn report(self, head: Map<String, Value>) -> Value {
        let mut report = head;
        report.insert("compared".into(), self.compared.into());
        report.insert("unchanged".into(), (self.compared - self.changed).into());
        report.insert("changed".into(), self.changed.into());
        report.insert(
            "transitions".into(),
            self.transitions
                .into_iter()
                .map(|((from, to), (count, examples))| {
                    json!({ "from": from, "to": to, "count": count, "examples": examples })
                })
                .collect(),
        );
        Value::Object(report)
    }
}
