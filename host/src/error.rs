//! The host's errors: loading a component, and calling one.

use std::time::Duration;

/// A component could not become a policy.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The wasmtime engine rejected the sandbox configuration.
    #[error("cannot configure the policy engine: {0}")]
    Engine(String),
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// The component breaks the compile budget: compiling it would take
    /// too long, so it is refused before compiling.
    #[error("the component would take too long to compile: {0}")]
    TooCostly(String),
    /// The component imports something; a policy must import nothing.
    #[error("the component imports {}; a policy must import nothing", .0.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))]
    Imports(Vec<String>),
    /// The component does not export the policy interface with the right types.
    #[error("the component does not implement `{world}`: {reason}", world = crate::WORLD)]
    WrongWorld {
        /// What wasmtime found missing or mistyped.
        reason: String,
    },
    /// The component has the right shape but a first instance failed
    /// (its start code trapped, ran out of time or of memory).
    #[error("the component could not be instantiated: {0}")]
    Start(CallError),
}

/// A call into a policy failed. The decision is unknown: fail closed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call ran past its deadline and was interrupted.
    #[error("the policy call exceeded its deadline of {0:?}")]
    Deadline(Duration),
    /// The guest tried to grow its memory beyond the cap.
    #[error("the policy exceeded its memory cap of {0} bytes")]
    MemoryCap(usize),
    /// The guest trapped (or failed in the canonical ABI).
    #[error("the policy trapped: {0}")]
    Trap(String),
    /// A fresh instance could not be created.
    #[error("the policy could not be instantiated: {0}")]
    Instantiate(String),
    /// The policy returned a decision that breaks the contract's invariants.
    #[error("the policy returned an impossible decision: {0}")]
    InvalidDecision(String),
}
