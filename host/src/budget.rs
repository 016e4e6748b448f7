//! What a component may hold to be compiled at all.
//!
//! Cranelift's compile time grows faster than the size of a function: a
//! function with thousands of blocks, or thousands of locals live across
//! them, takes seconds to minutes, and a compile cannot be cancelled. So
//! before compiling, every function body of every core module in the
//! component is read (a linear pass with `wasmparser`) and the component
//! is refused when it breaks a [`CompileBudget`]: too many functions, a
//! body or its locals too large, or more estimated work than the budget.
//!
//! The estimate, in core-microseconds of compile work on the machines we
//! measure on (`BENCHMARKS.md`, "Compile budget"), for a function of
//! `bytes` bytes with `blocks` control blocks (and `br_table` targets) and
//! `locals` locals: `3·bytes + blocks²/64 + 0.7·locals·blocks`. It is an
//! upper bound on what the compile of synthetic worst cases took: code in
//! the wild, whose locals are not all live across every block, compiles
//! several times faster than its estimate.

use wasmparser::{Operator, Parser, Payload};

/// The bounds a component must keep to be compiled. The default admits
/// nothing that takes more than about 4 s to compile on 2 cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileBudget {
    /// Function bodies over all core modules.
    pub max_functions: usize,
    /// Bytes of one function body.
    pub max_function_bytes: usize,
    /// Locals one function declares.
    pub max_locals: u64,
    /// Estimated compile work of one function, in core-microseconds.
    pub max_function_work_us: u64,
    /// Estimated compile work of the whole component, in core-microseconds
    /// (functions compile in parallel, one per core).
    pub max_work_us: u64,
}

impl Default for CompileBudget {
    /// 50,000 functions, 256 KiB and 10,000 locals per function, 4 s of
    /// estimated work per function and 8 s (4 s on 2 cores) in all.
    fn default() -> Self {
        CompileBudget {
            max_functions: 50_000,
            max_function_bytes: 256 << 10,
            max_locals: 10_000,
            max_function_work_us: 4_000_000,
            max_work_us: 8_000_000,
        }
    }
}

impl CompileBudget {
    /// The estimated compile work of a component, in core-microseconds (0
    /// for bytes that do not parse), as [`CompileBudget`] adds it up: for
    /// calibrating the budget against measured compiles.
    pub fn estimate_us(bytes: &[u8]) -> u64 {
        let mut work = 0u64;
        for payload in Parser::new(0).parse_all(bytes) {
            if let Ok(Payload::CodeSectionEntry(body)) = payload
                && let Ok((locals, blocks)) = shape(&body)
            {
                work = work.saturating_add(function_work_us(body.range().len(), blocks, locals));
            }
        }
        work
    }
}

/// The estimated compile work of one function, in core-microseconds.
fn function_work_us(bytes: usize, blocks: u64, locals: u64) -> u64 {
    let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
    bytes
        .saturating_mul(3)
        .saturating_add(blocks.saturating_mul(blocks) / 64)
        .saturating_add(locals.saturating_mul(blocks).saturating_mul(7) / 10)
}

fn seconds(us: u64) -> String {
    #[allow(
        clippy::cast_precision_loss,
        reason = "a message, to a tenth of a second"
    )]
    let s = us as f64 / 1e6;
    format!("{s:.1} s")
}

/// Checks `bytes` against `budget`; the error says which bound broke.
/// Bytes that do not parse pass: the compiler's validation says what is
/// wrong with them, before it compiles anything.
pub(crate) fn check(bytes: &[u8], budget: &CompileBudget) -> Result<(), String> {
    let mut functions = 0usize;
    let mut work = 0u64;
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(Payload::CodeSectionEntry(body)) = payload else {
            if payload.is_err() {
                return Ok(());
            }
            continue;
        };
        functions += 1;
        if functions > budget.max_functions {
            return Err(format!("more than {} functions", budget.max_functions));
        }
        let size = body.range().len();
        if size > budget.max_function_bytes {
            return Err(format!(
                "function {functions} has {size} bytes of code (at most {})",
                budget.max_function_bytes
            ));
        }
        let Ok((locals, blocks)) = shape(&body) else {
            return Ok(());
        };
        if locals > budget.max_locals {
            return Err(format!(
                "function {functions} declares {locals} locals (at most {})",
                budget.max_locals
            ));
        }
        let function_work = function_work_us(size, blocks, locals);
        if function_work > budget.max_function_work_us {
            return Err(format!(
                "function {functions} ({size} bytes, {blocks} blocks, {locals} locals) would take about {} to compile (at most {})",
                seconds(function_work),
                seconds(budget.max_function_work_us)
            ));
        }
        work = work.saturating_add(function_work);
        if work > budget.max_work_us {
            return Err(format!(
                "its {functions} functions so far would take about {} of compile work (at most {})",
                seconds(work),
                seconds(budget.max_work_us)
            ));
        }
    }
    Ok(())
}

/// The locals a body declares and its control blocks (`block`, `loop`,
/// `if`, `else`, `try_table`, and each `br_table` target).
fn shape(body: &wasmparser::FunctionBody<'_>) -> wasmparser::Result<(u64, u64)> {
    let mut locals = 0u64;
    for entry in body.get_locals_reader()? {
        let (count, _) = entry?;
        locals = locals.saturating_add(u64::from(count));
    }
    let mut blocks = 0u64;
    let mut operators = body.get_operators_reader()?;
    while !operators.eof() {
        blocks = blocks.saturating_add(match operators.read()? {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Else
            | Operator::TryTable { .. } => 1,
            Operator::BrTable { targets } => u64::from(targets.len()) + 1,
            _ => 0,
        });
    }
    Ok((locals, blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component holding one core module whose one function declares
    /// `locals` locals and has `blocks` empty blocks.
    fn component(locals: usize, blocks: usize) -> Vec<u8> {
        let text = format!(
            "(component (core module (func (local {}) {})))",
            "i64 ".repeat(locals),
            "(block) ".repeat(blocks)
        );
        wat::parse_str(text).unwrap_or_default()
    }

    #[test]
    fn small_functions_pass() {
        assert_eq!(check(&component(10, 10), &CompileBudget::default()), Ok(()));
        assert_eq!(
            check(quota_reference_policy::COMPONENT, &CompileBudget::default()),
            Ok(())
        );
    }

    #[test]
    fn each_bound_is_named_when_broken() {
        let budget = CompileBudget::default();
        let cases = [
            (
                component(10_001, 1),
                "declares 10001 locals (at most 10000)",
            ),
            (component(2, 20_000), "would take about"),
            (component(2_000, 3_000), "would take about"),
        ];
        for (bytes, words) in cases {
            let err = check(&bytes, &budget).err().unwrap_or_default();
            assert!(err.contains(words), "{err}");
        }
        let tight = CompileBudget {
            max_functions: 0,
            ..budget
        };
        assert_eq!(
            check(&component(1, 1), &tight),
            Err("more than 0 functions".to_owned())
        );
        let tight = CompileBudget {
            max_work_us: 10,
            ..budget
        };
        let err = check(&component(1, 100), &tight).err().unwrap_or_default();
        assert!(err.contains("compile work"), "{err}");
    }

    #[test]
    fn unparsable_bytes_are_left_to_the_compiler() {
        assert_eq!(check(b"not wasm", &CompileBudget::default()), Ok(()));
    }
}
