//! A hostile policy for sandbox tests. It decides like the reference policy
//! except for these entitlement keys:
//!
//! | key | what `decide` does |
//! |---|---|
//! | `hostile.loop` | loops forever (the call deadline must stop it) |
//! | `hostile.grow` | allocates until memory runs out (the memory cap must stop it) |
//! | `hostile.stack` | recurses without end (the stack limit must stop it) |
//! | `hostile.trap` | aborts: a trap |
//! | `hostile.lie-<lie>` | tells the lie `<lie>` below |
//!
//! and for users whose id is `liar-<lie>` it tells that lie on every key:
//! a policy that decides like the reference except for some users passes
//! the self-test, whose inputs name other users. The lies:
//!
//! | lie | the decision |
//! |---|---|
//! | `grace` | blocks while claiming grace to consume |
//! | `allow` | allows beyond the limit with no overage |
//! | `warn` | where the reference blocks: `warn_only`, still `enforced` |
//! | `free-grace` | where the reference blocks: `allow_grace` consuming nothing |
//! | `no-overage` | where the reference blocks: `allow_grace`, overage and grace 0 |
//! | `override` | an unlimited override applied that the input does not have |
//! | `echo` | reports usage 0, so the request looks within the limit |
//! | `long-reason` | a correct decision with a 4 MiB reason |
//!
//! `usage-key` of `hostile.trap` traps too; of `hostile.bad-usage-key` it
//! answers a usage key with spaces, of `hostile.huge-usage-key` one of 4 MiB.

#![deny(unsafe_code)]

use std::hint::black_box;

use quota_policy::Reference;
use quota_policy::wit::{self, Guest};

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod export {
    use super::Hostile;
    quota_policy::bindings::export!(Hostile with_types_in quota_policy::bindings);
}

/// The hostile policy.
#[derive(Debug)]
pub struct Hostile;

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn grow() -> usize {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        if black_box(&hoard).len() == usize::MAX {
            return hoard.len();
        }
    }
}

/// Recursion whose frames live on the engine's native stack (no locals in
/// linear memory), so it runs into the host's `max_wasm_stack`.
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    black_box(recurse(black_box(depth + 1))) ^ depth
}

/// `decision` as the lie `lie` tells it; `None` for an unknown lie.
fn lie(lie: &str, decision: wit::Decision) -> Option<wit::Decision> {
    let blocked = matches!(decision.status, wit::Status::Block);
    Some(match lie {
        "grace" => wit::Decision {
            status: wit::Status::Block,
            grace_to_consume: 1,
            ..decision
        },
        "allow" => wit::Decision {
            status: wit::Status::Allow,
            overage: 0,
            ..decision
        },
        "warn" if blocked => wit::Decision {
            status: wit::Status::WarnOnly,
            ..decision
        },
        "free-grace" if blocked => wit::Decision {
            status: wit::Status::AllowGrace,
            grace_to_consume: 0,
            ..decision
        },
        "no-overage" if blocked => wit::Decision {
            status: wit::Status::AllowGrace,
            overage: 0,
            grace_to_consume: 0,
            ..decision
        },
        "override" => wit::Decision {
            status: wit::Status::Allow,
            limit: -1,
            limit_source: wit::LimitSource::Override,
            override_applied: true,
            overage: 0,
            grace_to_consume: 0,
            ..decision
        },
        "echo" => wit::Decision {
            status: wit::Status::Allow,
            usage: 0,
            projected_usage: decision.requested,
            overage: 0,
            grace_to_consume: 0,
            ..decision
        },
        "long-reason" => wit::Decision {
            reason: "x".repeat(4 << 20),
            ..decision
        },
        "warn" | "free-grace" | "no-overage" => decision,
        _ => return None,
    })
}

impl Guest for Hostile {
    fn usage_key(key: String) -> wit::UsageKeyInfo {
        match key.as_str() {
            "hostile.trap" => std::process::abort(),
            "hostile.bad-usage-key" => wit::UsageKeyInfo {
                usage_key: "not a key".into(),
                fallback: false,
            },
            "hostile.huge-usage-key" => wit::UsageKeyInfo {
                usage_key: "k".repeat(4 << 20),
                fallback: false,
            },
            _ => Reference::usage_key(key),
        }
    }

    fn decide(input: wit::DecisionInput) -> Result<wit::Decision, wit::PolicyError> {
        let key = input.entitlement_key.clone();
        let liar = input.user_id.strip_prefix("liar-").map(str::to_owned);
        let decision = Reference::decide(input)?;
        if let Some(told) = liar.as_deref().or_else(|| key.strip_prefix("hostile.lie-")) {
            return Ok(lie(told, decision.clone()).unwrap_or(decision));
        }
        match key.as_str() {
            "hostile.loop" => spin(),
            "hostile.grow" => {
                black_box(grow());
            }
            "hostile.stack" => {
                black_box(recurse(0));
            }
            "hostile.trap" => std::process::abort(),
            _ => {}
        }
        Ok(decision)
    }
}
