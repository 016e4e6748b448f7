//! Deterministic enforcement rollout (docs/contract.md §3.3).

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64-bit, over the concatenation of `parts`.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    hash
}

/// The user's rollout bucket on a plan: `fnv1a64(plan_id + ":" + user_id) mod 100`.
///
/// Enforcement applies when the bucket is below the plan's rollout percent, so
/// the same user on the same plan is always in or always out.
pub fn rollout_bucket(plan_id: &str, user_id: &str) -> u8 {
    let hash = fnv1a64(&[plan_id.as_bytes(), b":", user_id.as_bytes()]);
    // The remainder is below 100, so it always fits.
    (hash % 100) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(&[b"foobar"]), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn bucket_hashes_plan_colon_user_as_one_string() {
        let joined = fnv1a64(&["pro:alice".as_bytes()]) % 100;
        assert_eq!(u64::from(rollout_bucket("pro", "alice")), joined);
    }

    #[test]
    fn bucket_is_below_one_hundred_for_non_ascii_ids() {
        assert!(rollout_bucket("plän", "ユーザー") < 100);
    }
}
