//! A log line that may repeat on every request is written at most once per
//! interval, saying how many were held back since the last one.

use std::sync::{Mutex, PoisonError};

/// At most one permit per interval of the engine's clock.
#[derive(Debug)]
pub(crate) struct Throttle {
    interval_ms: i64,
    /// When the last permit was given (`None`: never), and how many were
    /// refused since.
    state: Mutex<(Option<i64>, u64)>,
}

impl Throttle {
    pub(crate) fn new(interval_ms: i64) -> Self {
        Throttle {
            interval_ms,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(refused since the last permit)` when a line may be written at
    /// `now_ms`; `None` (and one more refused) otherwise.
    pub(crate) fn permit(&self, now_ms: i64) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, refused) = &mut *state;
        match last {
            Some(at) if now_ms.saturating_sub(*at) < self.interval_ms => {
                *refused += 1;
                None
            }
            _ => {
                *last = Some(now_ms);
                Some(std::mem::take(refused))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;

    #[test]
    fn one_permit_per_interval_counting_the_refused() {
        let throttle = Throttle::new(10_000);
        assert_eq!(throttle.permit(0), Some(0));
        assert_eq!(throttle.permit(1), None);
        assert_eq!(throttle.permit(9_999), None);
        assert_eq!(throttle.permit(10_000), Some(2));
        assert_eq!(throttle.permit(10_001), None);
        assert_eq!(throttle.permit(50_000), Some(1));
    }
}
