//! The component's two exports, written against the canonical ABI by hand.
//!
//! The generated export glue works, but it makes the host enter the guest
//! once more after every call: its post-return function frees the strings
//! of the result (the reason sentence, a usage key, an error message). Here
//! a result's text is copied into a buffer of this module that lives until
//! the next call, so there is nothing to free afterwards and no post-return
//! function: one entry into the guest fewer per call (`BENCHMARKS.md`,
//! "Hand-written exports").
//!
//! What it relies on, from the canonical ABI of `quota:policy@0.1.0`
//! (32-bit memory, UTF-8 strings):
//!
//! - `decide` receives one pointer: its argument record has 22 flat values,
//!   more than 16, so the host stores it in memory it got from
//!   `cabi_realloc` (152 bytes, alignment 8; offsets in [`input`]). Each
//!   string is a pointer and a length into memory from `cabi_realloc`
//!   (alignment 1), valid UTF-8.
//! - `usage-key` receives its string as a pointer and a length.
//! - Both return a pointer to their result in memory the guest owns: for
//!   `decide` a `result<decision, policy-error>` (96 bytes, offsets in
//!   [`output`]), for `usage-key` a `usage-key-info` (12 bytes).
//! - The host reads the result, strings included, before it calls into the
//!   instance again, and calls one export at a time.
//!
//! Arguments are taken over as they are (strings become `String`s without a
//! copy) and freed the way the generated glue frees them, through the global
//! allocator that `cabi_realloc` (from `wit-bindgen`) allocates with.
//! Layout and encoding are plain safe functions over byte slices, tested
//! natively below; `unsafe` is confined to turning the host's pointers into
//! slices and strings. The conformance corpus and the differential test in
//! `tests/` compare every field of this component's decisions and errors
//! with the native `quota-policy-core`.

use std::cell::RefCell;
use std::thread::LocalKey;

use quota_policy_core as core;

/// The world's type information, exports included, for `wit-component`.
/// The crate's `bindings` carry only its imports (their exports travel with
/// the `export!` macro, which this component does not use); this second
/// expansion carries the whole world, under a section name of its own.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, dead_code, missing_debug_implementations, missing_docs)]
mod world {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        type_section_suffix: "-hand-written-exports",
    });
}

/// Offsets of `decision-input` in memory.
mod input {
    pub const SIZE: usize = 152;
    pub const ALIGN: usize = 8;
    pub const USER_ID: usize = 0;
    pub const PLAN_ID: usize = 8;
    pub const ENTITLEMENT_KEY: usize = 16;
    pub const REQUESTED: usize = 24;
    pub const NOW_MS: usize = 32;
    pub const USAGE: usize = 40;
    /// `option<override-info>`: tag, then `value`, then `option<s64>`.
    pub const OVERRIDE: usize = 48;
    pub const OVERRIDE_VALUE: usize = 56;
    pub const OVERRIDE_EXPIRES: usize = 64;
    /// `option<plan-info>`: tag, then `option<s64>`, bool, s64, s64.
    pub const PLAN: usize = 80;
    pub const PLAN_LIMIT: usize = 88;
    pub const PLAN_ENFORCEMENT: usize = 104;
    pub const PLAN_GRACE_COUNT: usize = 112;
    pub const PLAN_ROLLOUT: usize = 120;
    pub const DEFAULT_LIMIT: usize = 128;
    pub const GRACE_USED: usize = 144;
}

/// Offsets of `result<decision, policy-error>` (and of `usage-key-info`,
/// which shares the buffer) in memory.
mod output {
    pub const SIZE: usize = 96;
    /// The result's tag: 0 a decision, 1 an error.
    pub const TAG: usize = 0;
    pub const STATUS: usize = 8;
    pub const LIMIT: usize = 16;
    pub const LIMIT_SOURCE: usize = 24;
    pub const OVERRIDE_APPLIED: usize = 25;
    pub const OVERRIDE_EXPIRED: usize = 26;
    pub const USAGE: usize = 32;
    pub const REQUESTED: usize = 40;
    pub const PROJECTED_USAGE: usize = 48;
    pub const OVERAGE: usize = 56;
    pub const ENFORCED: usize = 64;
    pub const GRACE_TO_CONSUME: usize = 72;
    pub const GRACE_REMAINING: usize = 80;
    pub const REASON: usize = 88;
    /// `policy-error`: its code, then its message.
    pub const ERROR_CODE: usize = 8;
    pub const ERROR_MESSAGE: usize = 12;
    /// `usage-key-info`: the key, then `fallback`.
    pub const USAGE_KEY: usize = 0;
    pub const FALLBACK: usize = 8;
}

/// Text up to this long is returned from a fixed buffer; longer text (an
/// entitlement key of kilobytes) stays in its own `String` until the next
/// call.
const TEXT_INLINE: usize = 4096;

/// What a call returns, kept until the next call: the result's bytes and
/// its text. All zeros at first and nothing to drop, so it takes no space in
/// the component's data.
#[repr(C, align(8))]
struct Returned {
    result: [u8; output::SIZE],
    text: [u8; TEXT_INLINE],
}

thread_local! {
    static RETURNED: RefCell<Returned> = const {
        RefCell::new(Returned {
            result: [0; output::SIZE],
            text: [0; TEXT_INLINE],
        })
    };
    /// Text too long for [`Returned::text`], kept until the next call.
    static LONG_TEXT: RefCell<Option<String>> = const { RefCell::new(None) };
}

// The readers and writers below never panic: every offset is a constant
// inside the buffer (tested below), and an out-of-range one would read zero
// or write nothing rather than pull panic formatting into the component.

fn i64_at(bytes: &[u8], offset: usize) -> i64 {
    bytes
        .get(offset..offset + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i64::from_le_bytes)
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    bytes
        .get(offset..offset + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn flag_at(bytes: &[u8], offset: usize) -> bool {
    bytes.get(offset).is_some_and(|&b| b != 0)
}

/// An `option<s64>` whose tag is at `offset`.
fn option_at(bytes: &[u8], offset: usize) -> Option<i64> {
    flag_at(bytes, offset).then(|| i64_at(bytes, offset + 8))
}

fn put_i64(bytes: &mut [u8], offset: usize, value: i64) {
    if let Some(b) = bytes.get_mut(offset..offset + 8) {
        b.copy_from_slice(&value.to_le_bytes());
    }
}

fn put_u32(bytes: &mut [u8], offset: usize, value: u32) {
    if let Some(b) = bytes.get_mut(offset..offset + 4) {
        b.copy_from_slice(&value.to_le_bytes());
    }
}

fn put_u8(bytes: &mut [u8], offset: usize, value: u8) {
    if let Some(b) = bytes.get_mut(offset) {
        *b = value;
    }
}

/// The (pointer, length) of each of the input's three strings.
fn input_strings(record: &[u8]) -> [(usize, usize); 3] {
    [input::USER_ID, input::PLAN_ID, input::ENTITLEMENT_KEY]
        .map(|at| (u32_at(record, at) as usize, u32_at(record, at + 4) as usize))
}

/// The decision input in `record`, with its three strings.
fn decode_input(
    record: &[u8],
    [user_id, plan_id, entitlement_key]: [String; 3],
) -> core::DecisionInput {
    let r#override = flag_at(record, input::OVERRIDE).then(|| core::Override {
        value: i64_at(record, input::OVERRIDE_VALUE),
        expires_at_ms: option_at(record, input::OVERRIDE_EXPIRES),
    });
    let plan = flag_at(record, input::PLAN).then(|| core::PlanInfo {
        limit: option_at(record, input::PLAN_LIMIT),
        enforcement_enabled: flag_at(record, input::PLAN_ENFORCEMENT),
        grace_count: i64_at(record, input::PLAN_GRACE_COUNT),
        rollout_percent: i64_at(record, input::PLAN_ROLLOUT),
    });
    core::DecisionInput {
        user_id,
        plan_id,
        entitlement_key,
        requested: i64_at(record, input::REQUESTED),
        now_ms: i64_at(record, input::NOW_MS),
        usage: i64_at(record, input::USAGE),
        r#override,
        plan,
        default_limit: option_at(record, input::DEFAULT_LIMIT),
        grace_used: i64_at(record, input::GRACE_USED),
    }
}

/// Writes the decision's fields, all but its reason, into `out`.
fn encode_decision(out: &mut [u8], d: &core::Decision) {
    let status = match d.status {
        core::Status::Allow => 0,
        core::Status::AllowGrace => 1,
        core::Status::WarnOnly => 2,
        core::Status::Block => 3,
    };
    let limit_source = match d.limit_source {
        core::LimitSource::Override => 0,
        core::LimitSource::Plan => 1,
        core::LimitSource::Default => 2,
        core::LimitSource::None => 3,
    };
    put_u8(out, output::TAG, 0);
    put_u8(out, output::STATUS, status);
    put_i64(out, output::LIMIT, d.limit);
    put_u8(out, output::LIMIT_SOURCE, limit_source);
    put_u8(out, output::OVERRIDE_APPLIED, u8::from(d.override_applied));
    put_u8(out, output::OVERRIDE_EXPIRED, u8::from(d.override_expired));
    put_i64(out, output::USAGE, d.usage);
    put_i64(out, output::REQUESTED, d.requested);
    put_i64(out, output::PROJECTED_USAGE, d.projected_usage);
    put_i64(out, output::OVERAGE, d.overage);
    put_u8(out, output::ENFORCED, u8::from(d.enforced));
    put_i64(out, output::GRACE_TO_CONSUME, d.grace_to_consume);
    put_i64(out, output::GRACE_REMAINING, d.grace_remaining);
}

/// Writes the error's code into `out`.
fn encode_error(out: &mut [u8], code: core::ErrorCode) {
    let code = match code {
        core::ErrorCode::InvalidInput => 0,
    };
    put_u8(out, output::TAG, 1);
    put_u8(out, output::ERROR_CODE, code);
}

/// Runs `f` on the value of `key`. Exports run one at a time (this is a
/// single-threaded guest and they do not call each other), so the value is
/// never borrowed already, and never destroyed (a wasm32 guest has no thread
/// exit); if it were, the call traps rather than return something wrong.
fn with_mut<T: 'static, R>(key: &'static LocalKey<RefCell<T>>, f: impl FnOnce(&mut T) -> R) -> R {
    key.try_with(|cell| match cell.try_borrow_mut() {
        Ok(mut value) => f(&mut value),
        Err(_) => std::process::abort(),
    })
    .unwrap_or_else(|_| std::process::abort())
}

/// Stores the result and its text (written at `text_at` as a pointer and a
/// length) until the next call, and returns the result's address.
fn keep(fill: impl FnOnce(&mut [u8]), text: String, text_at: usize) -> *mut u8 {
    with_mut(&LONG_TEXT, |long| {
        // The previous call's long text, if any, has been read by now.
        *long = None;
        with_mut(&RETURNED, |r| {
            fill(&mut r.result);
            let (ptr, len) = match r.text.get_mut(..text.len()) {
                Some(inline) => {
                    inline.copy_from_slice(text.as_bytes());
                    (r.text.as_ptr(), text.len())
                }
                None => {
                    let text = long.insert(text);
                    (text.as_ptr(), text.len())
                }
            };
            // Addresses and lengths fit in 32 bits: this is a wasm32 memory.
            put_u32(&mut r.result, text_at, ptr as u32);
            put_u32(&mut r.result, text_at + 4, len as u32);
            r.result.as_mut_ptr()
        })
    })
}

/// The strings the host passed: taken over, not copied.
///
/// # Safety
///
/// Each (pointer, length) must be a UTF-8 string the host placed in memory
/// it got from `cabi_realloc` with alignment 1, owned by this call.
#[allow(unsafe_code)]
#[cfg(target_arch = "wasm32")]
unsafe fn take_string(ptr: usize, len: usize) -> String {
    if len == 0 {
        // Nothing was allocated (`cabi_realloc` returns a dangling pointer
        // for zero bytes), and a host may pass any pointer with no bytes.
        return String::new();
    }
    let ptr = ptr as *mut u8;
    // SAFETY: the caller's contract; `cabi_realloc` allocated exactly `len`
    // (more than zero) bytes with alignment 1 through the global allocator,
    // so the `String` owns and frees them the same way.
    unsafe { String::from_raw_parts(ptr, len, len) }
}

#[allow(unsafe_code)]
#[cfg(target_arch = "wasm32")]
#[unsafe(export_name = "quota:policy/engine@0.1.0#decide")]
unsafe extern "C" fn decide(record: *mut u8) -> *mut u8 {
    wit_bindgen::rt::maybe_link_cabi_realloc();
    // SAFETY: per the canonical ABI the host passes the argument record,
    // `input::SIZE` bytes it allocated for this call with `cabi_realloc`.
    let bytes = unsafe { std::slice::from_raw_parts(record, input::SIZE) };
    // SAFETY: the record's strings follow the canonical ABI (see
    // `take_string`) and are taken once.
    let strings = input_strings(bytes).map(|(ptr, len)| unsafe { take_string(ptr, len) });
    let input = decode_input(bytes, strings);
    if let Ok(layout) = std::alloc::Layout::from_size_align(input::SIZE, input::ALIGN) {
        // SAFETY: `cabi_realloc` allocated the record with this layout
        // through the global allocator, and nothing reads it any more.
        unsafe { std::alloc::dealloc(record, layout) };
    }
    match core::decide(&input) {
        Ok(mut d) => {
            let reason = std::mem::take(&mut d.reason);
            keep(|out| encode_decision(out, &d), reason, output::REASON)
        }
        Err(e) => keep(
            |out| encode_error(out, e.code),
            e.message,
            output::ERROR_MESSAGE,
        ),
    }
}

#[allow(unsafe_code)]
#[cfg(target_arch = "wasm32")]
#[unsafe(export_name = "quota:policy/engine@0.1.0#usage-key")]
unsafe extern "C" fn usage_key(ptr: usize, len: usize) -> *mut u8 {
    wit_bindgen::rt::maybe_link_cabi_realloc();
    // SAFETY: the key follows the canonical ABI (see `take_string`).
    let key = unsafe { take_string(ptr, len) };
    let info = core::usage_key(&key);
    keep(
        |out| put_u8(out, output::FALLBACK, u8::from(info.fallback)),
        info.usage_key,
        output::USAGE_KEY,
    )
}

#[cfg(test)]
mod tests {
    use super::{input, output};

    /// Checks that `fields` (offset, (size, alignment)) are aligned, lie
    /// inside `size` bytes and do not overlap.
    fn disjoint(size: usize, fields: &[(usize, (usize, usize))]) {
        let mut taken = vec![false; size];
        for &(at, (len, align)) in fields {
            assert_eq!(at % align, 0, "field at {at} is misaligned");
            for byte in &mut taken[at..at + len] {
                assert!(!*byte, "field at {at} overlaps another");
                *byte = true;
            }
        }
    }

    #[test]
    fn input_fields_are_aligned_and_disjoint() {
        use input::*;
        let (string, int, flag) = ((8, 4), (8, 8), (1, 1));
        disjoint(
            SIZE,
            &[
                (USER_ID, string),
                (PLAN_ID, string),
                (ENTITLEMENT_KEY, string),
                (REQUESTED, int),
                (NOW_MS, int),
                (USAGE, int),
                (OVERRIDE, flag),
                (OVERRIDE_VALUE, int),
                (OVERRIDE_EXPIRES, flag),
                (OVERRIDE_EXPIRES + 8, int),
                (PLAN, flag),
                (PLAN_LIMIT, flag),
                (PLAN_LIMIT + 8, int),
                (PLAN_ENFORCEMENT, flag),
                (PLAN_GRACE_COUNT, int),
                (PLAN_ROLLOUT, int),
                (DEFAULT_LIMIT, flag),
                (DEFAULT_LIMIT + 8, int),
                (GRACE_USED, int),
            ],
        );
        assert_eq!(GRACE_USED + 8, SIZE);
    }

    #[test]
    fn output_fields_are_aligned_and_disjoint() {
        use output::*;
        let (string, int, flag) = ((8, 4), (8, 8), (1, 1));
        disjoint(
            SIZE,
            &[
                (TAG, flag),
                (STATUS, flag),
                (LIMIT, int),
                (LIMIT_SOURCE, flag),
                (OVERRIDE_APPLIED, flag),
                (OVERRIDE_EXPIRED, flag),
                (USAGE, int),
                (REQUESTED, int),
                (PROJECTED_USAGE, int),
                (OVERAGE, int),
                (ENFORCED, flag),
                (GRACE_TO_CONSUME, int),
                (GRACE_REMAINING, int),
                (REASON, string),
            ],
        );
        assert_eq!(REASON + 8, SIZE);
        // The error shares the payload; the usage key the whole buffer.
        disjoint(
            SIZE,
            &[(TAG, flag), (ERROR_CODE, flag), (ERROR_MESSAGE, string)],
        );
        disjoint(SIZE, &[(USAGE_KEY, string), (FALLBACK, flag)]);
    }
}
