//! A counting global allocator: live bytes and their peak, so the driver can check that no
//! single input makes a decoder allocate more than the target's cap.
//!
//! Install it in a binary with `#[global_allocator] static A: Counting = Counting;`. The
//! counters are process-wide: [`reset_peak`] before an input and [`peak_since`] after it
//! measure that input only when one thread runs inputs (the driver's case).
//!
//! Allocations that would take the live total past [`set_hard_limit`] fail (the process
//! aborts with "memory allocation failed", leaving the input in the driver's crash file)
//! rather than pushing a shared machine into swap or the OOM killer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static HARD_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The system allocator, counting.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counting;

impl Counting {
    /// Counts `size` more live bytes; false (nothing counted) past the hard limit.
    fn grow(size: usize) -> bool {
        let before = CURRENT.fetch_add(size, Ordering::Relaxed);
        let now = before.saturating_add(size);
        if now > HARD_LIMIT.load(Ordering::Relaxed) {
            CURRENT.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        PEAK.fetch_max(now, Ordering::Relaxed);
        true
    }

    fn shrink(size: usize) {
        CURRENT.fetch_sub(size, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's layout and only adds counting;
// a refused allocation returns null, which the trait allows.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Counting::grow(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            Counting::shrink(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Counting::grow(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            Counting::shrink(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        Counting::shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !Counting::grow(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                Counting::shrink(new_size - old);
            }
        } else if new_size < old {
            Counting::shrink(old - new_size);
        }
        p
    }
}

/// Bytes live now (0 unless [`Counting`] is the global allocator).
pub fn current() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Starts a new peak measurement at the current live total, which it returns.
pub fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// The highest live total since [`reset_peak`] returned `base`, less `base`.
pub fn peak_since(base: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

/// Refuses allocations that would take the live total past `bytes`.
pub fn set_hard_limit(bytes: usize) {
    HARD_LIMIT.store(bytes, Ordering::Relaxed);
}
