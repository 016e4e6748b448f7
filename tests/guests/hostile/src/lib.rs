//! A hostile policy for sandbox tests. It decides like the reference policy
//! except for these entitlement keys:
//!
//! | key | what `decide` does |
//! |---|---|
//! | `hostile.loop` | loops forever (the call deadline must stop it) |
//! | `hostile.grow` | allocates until memory runs out (the memory cap must stop it) |
//! | `hostile.stack` | recurses without end (the stack limit must stop it) |
//! | `hostile.trap` | aborts: a trap |
//! | `hostile.lie-grace` | blocks while claiming grace to consume |
//! | `hostile.lie-allow` | allows beyond the limit with no overage |
//!
//! `usage-key` of `hostile.trap` traps too.

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

impl Guest for Hostile {
    fn usage_key(key: String) -> wit::UsageKeyInfo {
        if key == "hostile.trap" {
            std::process::abort();
        }
        Reference::usage_key(key)
    }

    fn decide(input: wit::DecisionInput) -> Result<wit::Decision, wit::PolicyError> {
        let key = input.entitlement_key.clone();
        let decision = Reference::decide(input)?;
        match key.as_str() {
            "hostile.loop" => spin(),
            "hostile.grow" => {
                black_box(grow());
            }
            "hostile.stack" => {
                black_box(recurse(0));
            }
            "hostile.trap" => std::process::abort(),
            "hostile.lie-grace" => {
                return Ok(wit::Decision {
                    status: wit::Status::Block,
                    grace_to_consume: 1,
                    ..decision
                });
            }
            "hostile.lie-allow" => {
                return Ok(wit::Decision {
                    status: wit::Status::Allow,
                    overage: 0,
                    ..decision
                });
            }
            _ => {}
        }
        Ok(decision)
    }
}
