//! The range of ids a search prefix covers (`UserStore::search_users`),
//! shared by both backends.

/// Which ids a search prefix covers, as a range of the users' primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PrefixRange {
    /// None: ids hold no control characters, and this prefix does.
    Empty,
    /// Ids from the prefix on, below `end` when there is one (else up to
    /// the last id).
    From {
        /// The least string after every string that starts with the prefix.
        end: Option<String>,
    },
}

/// The ids that start with `prefix`, as a range in code point order (UTF-8's
/// byte order: SQLite's BINARY collation, PostgreSQL's C): every character
/// is plain, `%`, `_` and `\` included.
pub(crate) fn prefix_range(prefix: &str) -> PrefixRange {
    if prefix.chars().any(char::is_control) {
        return PrefixRange::Empty;
    }
    PrefixRange::From {
        end: prefix_end(prefix),
    }
}

/// The prefix with its last character made the next one, dropping
/// trailing `char::MAX`es first; `None` when nothing is left (an empty
/// prefix, or one of `char::MAX` alone): then no string comes after all
/// those that start with it.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut end = prefix.to_owned();
    while let Some(last) = end.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            end.push(next);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(prefix: &str) -> Option<String> {
        match prefix_range(prefix) {
            PrefixRange::From { end } => end,
            PrefixRange::Empty => panic!("{prefix:?} covers nothing"),
        }
    }

    #[test]
    fn the_end_is_the_next_string_after_the_prefix() {
        assert_eq!(end("ab").as_deref(), Some("ac"));
        assert_eq!(end("a%").as_deref(), Some("a&"));
        assert_eq!(end("a_").as_deref(), Some("a`"));
        assert_eq!(end("a\\").as_deref(), Some("a]"));
        assert_eq!(end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(end("a\u{10FFFF}\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(end("\u{10FFFF}"), None);
        assert_eq!(end(""), None);
        assert_eq!(prefix_range("a\0"), PrefixRange::Empty);
        assert_eq!(prefix_range("a\nb"), PrefixRange::Empty);
    }

    #[test]
    fn the_range_holds_exactly_the_ids_that_start_with_the_prefix() {
        let ids = [
            "a",
            "a%",
            "a%b",
            "a&",
            "a_b",
            "a`",
            "aa",
            "aab",
            "ab",
            "axb",
            "b",
            "é",
            "éa",
            "\u{D7FF}",
            "\u{E000}",
            "a\u{10FFFF}",
            "a\u{10FFFF}z",
            "b\u{10FFFF}",
        ];
        for prefix in [
            "",
            "a",
            "a%",
            "a_",
            "aa",
            "é",
            "\u{D7FF}",
            "a\u{10FFFF}",
            "b",
        ] {
            let end = end(prefix);
            for id in ids {
                let in_range = id.as_bytes() >= prefix.as_bytes()
                    && end
                        .as_ref()
                        .is_none_or(|end| id.as_bytes() < end.as_bytes());
                assert_eq!(in_range, id.starts_with(prefix), "{prefix:?} {id:?}");
            }
        }
    }
}
