//! An allocator for policy guests, opt-in with one line: a bump arena that
//! starts over whenever nothing allocated in it is live, over the system
//! allocator (dlmalloc).
//!
//! ```ignore
//! #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
//! #[global_allocator]
//! static ALLOCATOR: quota_guest_arena::Arena = quota_guest_arena::Arena::new();
//! ```
//!
//! Every call into the component follows the same pattern: the host
//! allocates the argument record and its strings (`cabi_realloc`), the export
//! frees the record, decides (the reason sentence is one more allocation) and
//! drops the input strings; the result's strings are freed by the
//! post-return function the generated bindings export. Then nothing is
//! live, so the next call starts from the
//! beginning of the arena again, and each allocation in between is a few
//! instructions instead of a trip through dlmalloc's bins.
//!
//! - An allocation is placed at the first suitably aligned offset at or above
//!   the arena's top, which then moves past it; the top goes back to zero
//!   only when the count of live arena allocations drops to zero. So two live
//!   allocations never overlap, whatever order they are freed in.
//! - A reallocation stays in place when it shrinks, or when it grows the
//!   last allocation and still fits; any other moves.
//! - Anything that does not fit (a large request, a full arena, an arena that
//!   could not be set up) goes to the system allocator, which grows the
//!   linear memory as before, so the host's memory cap applies unchanged.
//!   Frees and reallocations of such blocks go back to it: the arena knows
//!   its own address range.
//! - A block that is never freed only keeps the arena from starting over:
//!   allocations then fall through to the system allocator, which is slower
//!   but just as correct.
//!
//! The arena is one block of [`ARENA_BYTES`] taken from the system allocator
//! at the first allocation and never returned. Its bookkeeping is two
//! counters in atomics, which on `wasm32` without the `atomics` feature are
//! plain loads and stores: the allocator assumes a single thread, and must
//! be installed only where there is one (on `wasm32` without the `atomics`
//! feature, as above).
//!
//! All the bookkeeping is safe code, tested natively below; `unsafe` is
//! confined to the [`GlobalAlloc`] implementation, which touches memory only
//! through the system allocator and one copy when a block moves.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize};

/// Size of the arena. A decision needs a few hundred bytes (the argument
/// record, three ids, the reason sentence); the rest is headroom for long
/// ids.
pub const ARENA_BYTES: usize = 64 << 10;

/// Alignment of the arena block (the largest a decision asks for).
const ARENA_ALIGN: usize = 16;

/// A bump arena over the system allocator, for single-threaded guests.
#[derive(Debug)]
pub struct Arena {
    /// Start of the arena; null until the first allocation sets it up, and
    /// for good if that failed.
    base: AtomicPtr<u8>,
    /// Whether setting up the arena was tried already.
    tried: AtomicBool,
    /// Offset of the first free byte.
    top: AtomicUsize,
    /// Allocations handed out from the arena and not yet freed.
    live: AtomicUsize,
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

impl Arena {
    /// An arena that takes its memory at the first allocation.
    pub const fn new() -> Self {
        Arena {
            base: AtomicPtr::new(ptr::null_mut()),
            tried: AtomicBool::new(false),
            top: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
        }
    }

    /// Places `layout` in the arena starting at `base` (of [`ARENA_BYTES`]),
    /// or `None` when it does not fit. Callers of an allocator never pass a
    /// zero-size layout, so each allocation covers at least one byte of the
    /// arena: every pointer handed out lies inside it, and fewer than
    /// [`ARENA_BYTES`] allocations are live at once.
    fn take(&self, base: *mut u8, layout: Layout) -> Option<*mut u8> {
        // The alignment is a power of two: round up with a mask, not a
        // division.
        let mask = layout.align() - 1;
        let start = base
            .addr()
            .checked_add(self.top.load(Relaxed))?
            .checked_add(mask)?
            & !mask;
        let offset = start - base.addr();
        let end = offset.checked_add(layout.size())?;
        if end > ARENA_BYTES {
            return None;
        }
        self.top.store(end, Relaxed);
        self.live.store(self.live.load(Relaxed) + 1, Relaxed);
        Some(base.wrapping_add(offset))
    }

    /// Whether `p` points into the arena starting at `base`.
    fn owns(base: *mut u8, p: *mut u8) -> bool {
        !base.is_null() && p.addr() >= base.addr() && p.addr() - base.addr() < ARENA_BYTES
    }

    /// Forgets one arena allocation; the arena starts over once none is live.
    fn release(&self) {
        let live = self.live.load(Relaxed).saturating_sub(1);
        self.live.store(live, Relaxed);
        if live == 0 {
            self.top.store(0, Relaxed);
        }
    }

    /// Resizes the arena allocation at `p` (of `old_size` bytes) in place if
    /// it is the last one and `new_size` fits; false otherwise.
    fn resize_in_place(&self, base: *mut u8, p: *mut u8, old_size: usize, new_size: usize) -> bool {
        let offset = p.addr() - base.addr();
        let last = offset.checked_add(old_size) == Some(self.top.load(Relaxed));
        match offset.checked_add(new_size) {
            Some(end) if last && end <= ARENA_BYTES => {
                self.top.store(end, Relaxed);
                true
            }
            _ => false,
        }
    }
}

// SAFETY: arena allocations are disjoint: each starts at or above the top,
// which then moves past its end, and the top goes back to zero only when no
// arena allocation is live; only the last allocation grows in place. They
// lie inside the arena block, which nothing else uses, and respect the
// layout's alignment (the start is rounded up to it). Everything else is the
// system allocator's, called with the caller's own arguments. The bookkeeping
// assumes one thread (see the module documentation).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut base = self.base.load(Relaxed);
        if base.is_null() && !self.tried.load(Relaxed) {
            self.tried.store(true, Relaxed);
            if let Ok(arena) = Layout::from_size_align(ARENA_BYTES, ARENA_ALIGN) {
                // SAFETY: the layout has a non-zero size. The block is never
                // freed, so it stays valid, and is never handed out again by
                // the system allocator, for the life of the instance.
                base = unsafe { System.alloc(arena) };
                self.base.store(base, Relaxed);
            }
        }
        if !base.is_null()
            && let Some(p) = self.take(base, layout)
        {
            return p;
        }
        // SAFETY: forwarded from the caller (a non-zero-size layout).
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if Self::owns(self.base.load(Relaxed), p) {
            self.release();
        } else {
            // SAFETY: `p` is not in the arena, so the system allocator gave
            // it out with this layout (the caller's guarantee).
            unsafe { System.dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let base = self.base.load(Relaxed);
        if !Self::owns(base, p) {
            // SAFETY: `p` came from the system allocator with `layout`; the
            // rest is the caller's guarantee.
            return unsafe { System.realloc(p, layout, new_size) };
        }
        // A smaller block stays where it is: `dealloc` needs only the address.
        if new_size <= layout.size() || self.resize_in_place(base, p, layout.size(), new_size) {
            return p;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: `new_size` is non-zero (the caller's guarantee).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live and disjoint, the old one valid
            // for `layout.size()` bytes, fewer than `new_size`; the old one
            // is freed exactly once, here.
            unsafe {
                ptr::copy_nonoverlapping(p, new, layout.size());
                self.dealloc(p, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A base address for the bookkeeping: it is only compared and offset,
    /// never read or written.
    fn base(buffer: &mut [u8]) -> *mut u8 {
        let p = buffer.as_mut_ptr();
        p.wrapping_add(p.addr().next_multiple_of(ARENA_ALIGN) - p.addr())
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    fn range(base: *mut u8, p: *mut u8, size: usize) -> (usize, usize) {
        let start = p.addr() - base.addr();
        (start, start + size)
    }

    #[test]
    fn allocations_are_aligned_disjoint_and_inside() {
        let mut buffer = vec![0u8; ARENA_BYTES + ARENA_ALIGN];
        let base = base(&mut buffer);
        let arena = Arena::new();
        let mut ranges = Vec::new();
        for (size, align) in [(3, 1), (8, 8), (1, 1), (40, 16), (5, 4), (100, 2)] {
            let p = arena.take(base, layout(size, align)).unwrap();
            assert_eq!(p.addr() % align, 0);
            assert!(Arena::owns(base, p));
            let (start, end) = range(base, p, size);
            assert!(end <= ARENA_BYTES);
            assert!(ranges.iter().all(|&(s, e)| end <= s || start >= e));
            ranges.push((start, end));
        }
    }

    #[test]
    fn it_starts_over_only_when_nothing_is_live() {
        let mut buffer = vec![0u8; ARENA_BYTES + ARENA_ALIGN];
        let base = base(&mut buffer);
        let arena = Arena::new();
        let a = arena.take(base, layout(16, 1)).unwrap();
        let b = arena.take(base, layout(16, 1)).unwrap();
        arena.release();
        let c = arena.take(base, layout(16, 1)).unwrap();
        assert_eq!(range(base, c, 16).0, 32, "one still live: no reuse");
        assert_ne!(c, a);
        assert_ne!(c, b);
        arena.release();
        arena.release();
        assert_eq!(arena.take(base, layout(16, 1)).unwrap(), base);
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        let mut buffer = vec![0u8; ARENA_BYTES + ARENA_ALIGN];
        let base = base(&mut buffer);
        let arena = Arena::new();
        assert!(arena.take(base, layout(ARENA_BYTES + 1, 1)).is_none());
        assert!(arena.take(base, layout(ARENA_BYTES - 8, 1)).is_some());
        assert!(arena.take(base, layout(16, 1)).is_none());
        assert!(arena.take(base, layout(8, 1)).is_some());
        assert!(!Arena::owns(base, base.wrapping_add(ARENA_BYTES)));
        assert!(!Arena::owns(ptr::null_mut(), base));
    }

    #[test]
    fn only_the_last_allocation_resizes_in_place() {
        let mut buffer = vec![0u8; ARENA_BYTES + ARENA_ALIGN];
        let base = base(&mut buffer);
        let arena = Arena::new();
        let a = arena.take(base, layout(10, 1)).unwrap();
        let b = arena.take(base, layout(10, 1)).unwrap();
        assert!(!arena.resize_in_place(base, a, 10, 20));
        assert!(arena.resize_in_place(base, b, 10, 200));
        assert!(!arena.resize_in_place(base, b, 200, ARENA_BYTES));
        let c = arena.take(base, layout(1, 1)).unwrap();
        assert_eq!(range(base, c, 1).0, 210);
    }
}
