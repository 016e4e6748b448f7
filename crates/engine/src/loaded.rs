//! A policy with its idle evaluators.

use std::sync::{Arc, Mutex, PoisonError};

use quota_host::{Evaluator, PolicyModule};

/// Evaluators kept for reuse between calls.
const MAX_IDLE_EVALUATORS: usize = 32;

/// A policy with its idle evaluators. Decisions hold an `Arc` to the one
/// that was active when they started, so a swap never mixes versions
/// within a decision and the old evaluators go when the last user does.
pub(crate) struct Loaded {
    pub(crate) module: PolicyModule,
    evaluators: Mutex<Vec<Evaluator>>,
}

impl Loaded {
    pub(crate) fn new(module: PolicyModule) -> Arc<Self> {
        Arc::new(Loaded {
            module,
            evaluators: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn take(&self) -> Result<Evaluator, quota_host::CallError> {
        let idle = self
            .evaluators
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(evaluator) => Ok(evaluator),
            None => self.module.evaluator(),
        }
    }

    pub(crate) fn give_back(&self, evaluator: Evaluator) {
        let mut idle = self
            .evaluators
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_EVALUATORS {
            idle.push(evaluator);
        }
    }
}
