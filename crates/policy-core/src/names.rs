//! What an entitlement key and an id may look like where they enter the
//! service: HTTP, the command line, admin operations. One rule each, so
//! every edge answers the same way.
//!
//! The policy itself accepts any non-empty key (its contract is wider, for
//! tests of odd inputs); a host applies these rules before it stores a key
//! or asks a policy about it, and applies the key rule to the usage key a
//! policy answers as well. Keys and ids end up in metrics labels, log lines
//! and database rows, so both are short and printable.
//!
//! ```
//! use quota_policy_core::names::{check_entitlement_key, check_id};
//!
//! assert!(check_entitlement_key("drafts.max").is_ok());
//! assert!(check_entitlement_key("api/v2:calls.max").is_ok());
//! assert!(check_entitlement_key("drafts max").is_err());
//! assert!(check_entitlement_key(&"k".repeat(129)).is_err());
//! assert!(check_id("user_id", "alice@example.com").is_ok());
//! assert!(check_id("user_id", "al\u{7}ice").is_err());
//! ```

/// The longest entitlement key (and usage key), in bytes.
pub const MAX_KEY_BYTES: usize = 128;

/// The longest user, plan or node id, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// The characters of a key besides ASCII letters and digits.
pub const KEY_PUNCTUATION: &str = "._-:/";

/// Why a key or an id was refused; the message names the field and never
/// repeats a long value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName {
    message: String,
}

impl InvalidName {
    fn new(message: String) -> Self {
        InvalidName { message }
    }
}

impl std::fmt::Display for InvalidName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidName {}

fn length(field: &str, value: &str, max: usize) -> Result<(), InvalidName> {
    if value.is_empty() {
        return Err(InvalidName::new(format!("`{field}` must not be empty")));
    }
    if value.len() > max {
        return Err(InvalidName::new(format!(
            "`{field}` must be at most {max} bytes, got {}",
            value.len()
        )));
    }
    Ok(())
}

/// An entitlement key: 1 to [`MAX_KEY_BYTES`] bytes of ASCII letters,
/// digits and `.` `_` `-` `:` `/` (e.g. `drafts.max`). `field` names the
/// key in the message (`entitlement_key`, `usage_key`, ...).
pub fn check_key(field: &str, key: &str) -> Result<(), InvalidName> {
    length(field, key, MAX_KEY_BYTES)?;
    match key
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || KEY_PUNCTUATION.contains(c)))
    {
        Some((at, c)) => Err(InvalidName::new(format!(
            "`{field}` may hold only ASCII letters, digits and `{KEY_PUNCTUATION}`; found {c:?} at byte {at}"
        ))),
        None => Ok(()),
    }
}

/// [`check_key`] for the field `entitlement_key`.
pub fn check_entitlement_key(key: &str) -> Result<(), InvalidName> {
    check_key("entitlement_key", key)
}

/// A user, plan or node id: 1 to [`MAX_ID_BYTES`] bytes with no control
/// characters (`field` names it in the message).
pub fn check_id(field: &str, id: &str) -> Result<(), InvalidName> {
    length(field, id, MAX_ID_BYTES)?;
    match id.char_indices().find(|&(_, c)| c.is_control()) {
        Some((at, c)) => Err(InvalidName::new(format!(
            "`{field}` must not hold control characters; found {c:?} at byte {at}"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_printable_ascii_words() {
        for key in [
            "drafts.max",
            "a",
            "API_calls-2:v1/max",
            &"k".repeat(MAX_KEY_BYTES),
        ] {
            assert_eq!(check_entitlement_key(key), Ok(()), "{key}");
        }
        for (key, words) in [
            ("", "must not be empty"),
            (
                &*"k".repeat(MAX_KEY_BYTES + 1),
                "at most 128 bytes, got 129",
            ),
            ("drafts max", "found ' ' at byte 6"),
            ("entwürfe.max", "found 'ü' at byte 4"),
            ("a\"b", "found '\"' at byte 1"),
            ("a\nb", "found '\\n' at byte 1"),
        ] {
            let message = check_entitlement_key(key).err().map(|e| e.to_string());
            assert!(
                message
                    .as_deref()
                    .is_some_and(|m| m.contains(words) && m.starts_with("`entitlement_key`")),
                "{key:?}: {message:?}"
            );
        }
    }

    #[test]
    fn ids_refuse_control_characters_and_great_lengths_only() {
        for id in [
            "alice",
            "Zoë Smith",
            "alice@example.com",
            &"u".repeat(MAX_ID_BYTES),
        ] {
            assert_eq!(check_id("user_id", id), Ok(()), "{id}");
        }
        for id in [
            "",
            "a\u{0}b",
            "tab\there",
            "del\u{7f}",
            "\u{9b}csi",
            &"u".repeat(MAX_ID_BYTES + 1),
        ] {
            assert!(check_id("plan_id", id).is_err(), "{id:?}");
        }
        let long = "u".repeat(100_000);
        let message = check_id("user_id", &long)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.len() < 100, "{message}");
    }
}
