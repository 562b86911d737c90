//! Handing memory the process no longer uses back to the operating system.
//!
//! mimalloc (the allocator of the `webhook-service` binary) keeps freed
//! pages for reuse and returns them only after a delay, and only when it is
//! next called on that thread: whether a service at rest kept the peak of
//! loading every webhook resident depended on which threads happened to
//! allocate next, and so changed from build to build of the same code.
//! [`release_freed`] returns them at once.

// Declared here rather than through `libmimalloc-sys`'s optional bindings:
// the library is linked already (the `mimalloc` crate builds it), and this
// is its one function the service calls.
#[cfg(not(feature = "system-allocator"))]
unsafe extern "C" {
    /// `void mi_collect(bool force)` (mimalloc.h): frees the calling
    /// thread's empty pages and, when `force`, decommits every free page
    /// now instead of after the purge delay.
    fn mi_collect(force: bool);
}

// Links mimalloc into every binary of this library (its tests too), which
// `mi_collect` needs even where the global allocator is the system's.
#[cfg(not(feature = "system-allocator"))]
use mimalloc as _;

/// Returns the pages freed so far to the operating system. A few
/// milliseconds: for after a large, rare burst of allocations (loading
/// every webhook), not for a hot path.
pub fn release_freed() {
    #[cfg(not(feature = "system-allocator"))]
    // SAFETY: mi_collect takes no pointers and may be called from any thread
    // at any time; with the system allocator as the global one it only
    // tidies mimalloc's own (unused) heap.
    unsafe {
        mi_collect(true);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_release_leaves_live_memory_and_the_allocator_working() {
        let kept: Vec<Vec<u8>> = (0..1000u32).map(|i| vec![i as u8; 4096]).collect();
        let freed: Vec<Vec<u8>> = (0..1000).map(|_| vec![7u8; 4096]).collect();
        drop(freed);
        super::release_freed();
        assert!(
            kept.iter()
                .enumerate()
                .all(|(i, v)| v.iter().all(|b| *b == i as u8))
        );
        // The allocator still serves after a release.
        let again = vec![1u8; 1 << 20];
        assert_eq!(
            again.iter().map(|b| usize::from(*b)).sum::<usize>(),
            1 << 20
        );
    }
}
