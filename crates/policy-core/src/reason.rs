//! The human sentence of a decision, and a tiny string builder.
//!
//! Built by hand rather than with `format!` so the guest carries no
//! formatting machinery and stays small.

use crate::{Decision, LimitSource, Status, UNLIMITED};

/// A string builder that appends text and integers.
#[derive(Debug, Default)]
pub(crate) struct Text(String);

/// The longest text [`sentence`] adds to the key: five 20-character
/// numbers and the longest wording (a warning on a limit with nothing
/// configured would be shorter). Room for it up front means the sentence is
/// built in one allocation.
const SENTENCE_ROOM: usize = 224;

impl Text {
    pub(crate) fn new() -> Self {
        Text::with_capacity(96)
    }

    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Text(String::with_capacity(capacity))
    }

    pub(crate) fn push(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }

    /// Appends `n` in decimal: the digits are written back to front into a
    /// buffer and appended in one piece.
    pub(crate) fn num(&mut self, n: i64) -> &mut Self {
        let mut buf = [b'-'; 20];
        let mut start = buf.len();
        let mut rest = n.unsigned_abs();
        loop {
            start -= 1;
            buf[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if n < 0 {
            self.0.push('-');
        }
        // ASCII digits only, so this never takes the empty default.
        self.0
            .push_str(std::str::from_utf8(&buf[start..]).unwrap_or_default());
        self
    }

    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.0)
    }
}

fn source_words(source: LimitSource) -> &'static str {
    match source {
        LimitSource::Override => "override",
        LimitSource::Plan => "plan",
        LimitSource::Default => "default",
        LimitSource::None => "nothing configured",
    }
}

/// The most of the key a sentence names; a longer key is cut at a
/// character boundary and marked with `…`, so that every sentence stays
/// within [`crate::MAX_REASON_BYTES`] whatever the key.
const KEY_ROOM: usize = 256;

/// `key`, or its first [`KEY_ROOM`] bytes (at a character boundary) and `…`.
fn key_words(key: &str) -> (&str, &'static str) {
    if key.len() <= KEY_ROOM {
        return (key, "");
    }
    let mut end = KEY_ROOM;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    (&key[..end], "…")
}

/// One sentence naming the key and the numbers of `d`.
pub(crate) fn sentence(key: &str, d: &Decision) -> String {
    let (key, cut) = key_words(key);
    let mut t = Text::with_capacity(key.len() + cut.len() + SENTENCE_ROOM);
    t.push(key)
        .push(cut)
        .push(": usage ")
        .num(d.usage)
        .push(" + ");
    t.num(d.requested)
        .push(" requested = ")
        .num(d.projected_usage);
    if d.limit == UNLIMITED {
        t.push(", unlimited (").push(source_words(d.limit_source));
        t.push("); allowed.");
        return t.finish();
    }
    t.push(", limit ").num(d.limit).push(" (");
    t.push(source_words(d.limit_source)).push(")");
    match d.status {
        Status::Allow => {
            t.push("; allowed.");
        }
        Status::AllowGrace => {
            t.push("; ")
                .num(d.overage)
                .push(" over, allowed on grace, ");
            t.num(d.grace_remaining).push(" grace left.");
        }
        Status::WarnOnly => {
            t.push("; ")
                .num(d.overage)
                .push(" over, allowed with a warning");
            t.push(" because enforcement does not apply.");
        }
        Status::Block => {
            t.push("; ").num(d.overage).push(" over with ");
            t.num(d.grace_remaining).push(" grace left; blocked.");
        }
    }
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::{KEY_ROOM, SENTENCE_ROOM, Text, sentence};
    use crate::{Decision, LimitSource, MAX_REASON_BYTES, Status};

    fn decision(status: Status, limit_source: LimitSource, n: i64) -> Decision {
        Decision {
            status,
            limit: n,
            limit_source,
            override_applied: false,
            override_expired: false,
            usage: n,
            requested: n,
            projected_usage: n,
            overage: n,
            enforced: true,
            grace_to_consume: 0,
            grace_remaining: n,
            reason: String::new(),
        }
    }

    /// The longest numbers in every wording still fit the room reserved up
    /// front, so building a sentence never reallocates.
    #[test]
    fn the_longest_sentences_fit_the_room_reserved() {
        let key = "k";
        for status in [
            Status::Allow,
            Status::AllowGrace,
            Status::WarnOnly,
            Status::Block,
        ] {
            for limit_source in [
                LimitSource::Override,
                LimitSource::Plan,
                LimitSource::Default,
                LimitSource::None,
            ] {
                let s = sentence(key, &decision(status, limit_source, i64::MIN));
                assert!(
                    s.len() <= key.len() + SENTENCE_ROOM,
                    "{} bytes: {s}",
                    s.len()
                );
            }
        }
    }

    /// A key of any length gives a sentence within the bound a host
    /// enforces: a long key is cut at a character boundary.
    #[test]
    fn a_long_key_is_cut_and_the_sentence_stays_bounded() {
        let d = decision(Status::Block, LimitSource::Plan, i64::MIN);
        let exact = "k".repeat(KEY_ROOM);
        assert!(sentence(&exact, &d).starts_with(&format!("{exact}: usage")));
        for key in [
            "k".repeat(300_000),
            "ü".repeat(200),
            format!("k{}", "ü".repeat(200)),
        ] {
            let s = sentence(&key, &d);
            assert!(s.len() <= MAX_REASON_BYTES, "{} bytes", s.len());
            let (head, _) = s
                .split_once("…: usage")
                .unwrap_or_else(|| unreachable!("{s}"));
            assert!(key.starts_with(head) && head.len() > KEY_ROOM - 4, "{s}");
        }
    }

    #[test]
    fn num_writes_extremes_and_zero() {
        let mut t = Text::new();
        t.num(0)
            .push(" ")
            .num(-1)
            .push(" ")
            .num(i64::MAX)
            .push(" ")
            .num(i64::MIN);
        assert_eq!(t.finish(), "0 -1 9223372036854775807 -9223372036854775808");
    }
}
