//! Which usage counter an entitlement reads (docs/contract.md §3.1): one table, one place.

use crate::UsageKeyInfo;

/// The explicit mapping from entitlement key to usage counter.
pub const USAGE_KEY_TABLE: &[(&str, &str)] = &[
    ("drafts.max", "drafts.created"),
    ("segments.max", "segments.appended"),
    ("collaborators.max", "collaborators.accepted"),
];

/// The usage counter for `entitlement_key`.
///
/// Keys in [`USAGE_KEY_TABLE`] map as listed. Any other `X.max` reads `X.used`
/// and a key without the `.max` suffix reads itself; both are flagged as
/// fallbacks so the host can log a warning.
pub fn usage_key(entitlement_key: &str) -> UsageKeyInfo {
    if let Some((_, usage)) = USAGE_KEY_TABLE
        .iter()
        .find(|(key, _)| *key == entitlement_key)
    {
        return UsageKeyInfo {
            usage_key: (*usage).to_owned(),
            fallback: false,
        };
    }
    let usage_key = match entitlement_key.strip_suffix(".max") {
        Some(stem) => {
            let mut key = String::with_capacity(stem.len() + 5);
            key.push_str(stem);
            key.push_str(".used");
            key
        }
        None => entitlement_key.to_owned(),
    };
    UsageKeyInfo {
        usage_key,
        fallback: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(key: &str) -> (String, bool) {
        let info = usage_key(key);
        (info.usage_key, info.fallback)
    }

    #[test]
    fn table_keys_map_explicitly() {
        assert_eq!(mapped("drafts.max"), ("drafts.created".into(), false));
        assert_eq!(mapped("segments.max"), ("segments.appended".into(), false));
        assert_eq!(
            mapped("collaborators.max"),
            ("collaborators.accepted".into(), false)
        );
    }

    #[test]
    fn other_max_keys_fall_back_to_used() {
        assert_eq!(mapped("exports.max"), ("exports.used".into(), true));
        assert_eq!(mapped("a.b.max"), ("a.b.used".into(), true));
    }

    #[test]
    fn keys_without_max_map_to_themselves() {
        assert_eq!(mapped("seats"), ("seats".into(), true));
        assert_eq!(mapped("drafts.maximum"), ("drafts.maximum".into(), true));
        assert_eq!(mapped(""), ("".into(), true));
    }
}
