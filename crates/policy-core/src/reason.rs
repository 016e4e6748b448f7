//! The human sentence of a decision, and a tiny string builder.
//!
//! Built by hand rather than with `format!` so the guest carries no
//! formatting machinery and stays small.

use crate::{Decision, LimitSource, Status, UNLIMITED};

/// A string builder that appends text and integers.
#[derive(Debug, Default)]
pub(crate) struct Text(String);

impl Text {
    pub(crate) fn new() -> Self {
        Text(String::with_capacity(96))
    }

    pub(crate) fn push(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }

    pub(crate) fn num(&mut self, n: i64) -> &mut Self {
        if n < 0 {
            self.0.push('-');
        }
        let mut digits = [0u8; 20];
        let mut len = 0;
        let mut rest = n.unsigned_abs();
        loop {
            digits[len] = b'0' + (rest % 10) as u8;
            len += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for &d in digits[..len].iter().rev() {
            self.0.push(char::from(d));
        }
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

/// One sentence naming the key and the numbers of `d`.
pub(crate) fn sentence(key: &str, d: &Decision) -> String {
    let mut t = Text::new();
    t.push(key).push(": usage ").num(d.usage).push(" + ");
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
    use super::Text;

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
