//! When a failed delivery is tried again: a growing schedule, from a
//! second to hours, each delay ±20% at random so that endpoints that failed
//! together are not retried together. The retries last more than a day
//! (jitter included), so an endpoint down for a day is marked failing
//! before its deliveries give up.

/// The delays before each retry, ms: 1 s, 5 s, 30 s, 2 min, 10 min, 30 min,
/// 1 h, 2 h, 4 h, 8 h, 8 h and 8 h (about 31.7 h in all; at least 25.3 h
/// with the jitter).
pub const DELAYS_MS: [i64; 12] = [
    1_000, 5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000,
    28_800_000, 28_800_000, 28_800_000,
];

/// An endpoint is marked failing once its deliveries have failed for this
/// long without one success: a day.
pub const FAILING_AFTER_MS: i64 = 86_400_000;

/// The retry after the `attempts`th failed attempt (1 for the first), at
/// `now_ms`; `None` when none is left. `jitter` is in [0, 1).
pub fn retry_at(attempts: i64, now_ms: i64, jitter: f64) -> Option<i64> {
    let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
    let delay = *DELAYS_MS.get(index)?;
    // ±20%, in whole ms.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_precision_loss,
        reason = "delays are at most hours in ms: far inside f64's exact integers"
    )]
    let spread = (delay as f64 * 0.4 * (jitter - 0.5)) as i64;
    Some(now_ms.saturating_add(delay + spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_grow_from_a_second_to_hours_with_jitter() {
        assert_eq!(retry_at(1, 0, 0.5), Some(1_000));
        assert_eq!(retry_at(1, 0, 0.0), Some(800));
        assert!(retry_at(1, 0, 0.999_999).unwrap() < 1_200);
        let mut last = 0;
        for n in 1..=12 {
            let at = retry_at(n, 0, 0.5).unwrap();
            assert!(at >= last, "{n}");
            last = at;
        }
        assert_eq!(retry_at(13, 0, 0.5), None);
        assert_eq!(retry_at(0, 0, 0.5), None);
        // Even with every delay 20% short, the retries outlast a day.
        let total: i64 = DELAYS_MS.iter().sum();
        assert!(total * 8 / 10 > FAILING_AFTER_MS, "{total}");
    }
}
