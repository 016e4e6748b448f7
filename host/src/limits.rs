//! The sandbox limits every policy call runs under.

use std::time::Duration;

use crate::budget::CompileBudget;

/// Sandbox limits for every policy call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call, enforced by epoch interruption with a
    /// resolution of [`Limits::tick`].
    pub call_deadline: Duration,
    /// How often the engine's epoch advances.
    pub tick: Duration,
    /// Largest linear memory a guest may have, over all the memories of an
    /// instance, in bytes.
    pub memory_bytes: usize,
    /// Native stack a guest may use, in bytes.
    pub stack_bytes: usize,
    /// Calls after which an instance is discarded for a fresh one, so that
    /// guest heap growth cannot accumulate.
    pub calls_per_instance: u64,
    /// What a component may hold to be compiled at all.
    pub compile: CompileBudget,
}

impl Default for Limits {
    /// 50 ms per call (a decision takes about a microsecond), 1 ms
    /// ticks, 16 MiB of memory over all of an instance's memories, 512 KiB
    /// of stack, 100 000 calls per instance, the default compile budget.
    fn default() -> Self {
        Limits {
            call_deadline: Duration::from_millis(50),
            tick: Duration::from_millis(1),
            memory_bytes: 16 << 20,
            stack_bytes: 512 << 10,
            calls_per_instance: 100_000,
            compile: CompileBudget::default(),
        }
    }
}

impl Limits {
    /// The deadline in epoch ticks, rounded up, plus one for the partial
    /// tick in progress when the call starts.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = self.tick.as_nanos().max(1);
        let ticks = self.call_deadline.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_ticks_round_up_and_add_the_partial_tick() {
        let limits = Limits {
            call_deadline: Duration::from_micros(2_500),
            tick: Duration::from_millis(1),
            ..Limits::default()
        };
        assert_eq!(limits.deadline_ticks(), 4);
    }
}
