//! The global allocator of the gateway's and the loadtest's binaries: mimalloc, asked through
//! its plain entry points (`mi_malloc`, `mi_zalloc`, `mi_realloc`) whenever they give the
//! alignment a layout needs, and through the aligned ones otherwise.
//!
//! The `mimalloc` crate's `GlobalAlloc` sends every request through `mi_malloc_aligned`.
//! mimalloc v3 takes that call's fast path only when the size's free list happens to be
//! non-empty and aligned; otherwise it treats a block size that is not a power of two as not
//! naturally aligned and *over-allocates* (allocates `size + alignment` and offsets into it),
//! even for an alignment of 1 or 8, which the gateway's drawdown path hits on many of its
//! allocations (`BENCHMARKS.md`, "gateway request path"; the same fix is proposed upstream in
//! purpleprotocol/mimalloc_rust#170).
//!
//! Every mimalloc block is aligned to at least a machine word (its smallest size class is
//! one word, and every class is a whole number of words), so a layout whose alignment is at
//! most [`WORD`] is served by the plain calls; larger alignments keep the aligned calls.
//! Freeing is `mi_free` for both: mimalloc finds any block's page from its address.
//!
//! # Layout
//! - [`WORD`]: the alignment every mimalloc block has, whatever its size.
//! - [`MiMalloc`]: mimalloc as a [`GlobalAlloc`] (see the crate docs).

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment every mimalloc block has, whatever its size: one machine word.
pub const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc as a [`GlobalAlloc`] (see the crate docs).
///
/// ```
/// #[global_allocator]
/// static ALLOCATOR: alloc_mimalloc::MiMalloc = alloc_mimalloc::MiMalloc;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MiMalloc;

// SAFETY: every method hands mimalloc a layout `GlobalAlloc`'s contract already made valid
// (non-zero size, power-of-two alignment) and returns what mimalloc returns: a block of at
// least `size` bytes aligned to at least `align` (a plain call only when `align <= WORD`,
// which every mimalloc block meets), or null on failure. Blocks from either kind of call are
// freed and resized by mimalloc alone.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        if align <= WORD {
            // SAFETY: see the impl; mimalloc accepts any size.
            unsafe { mi::mi_malloc(size) }.cast()
        } else {
            // SAFETY: see the impl; `align` is a power of two.
            unsafe { mi::mi_malloc_aligned(size, align) }.cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        if align <= WORD {
            // SAFETY: as in `alloc`.
            unsafe { mi::mi_zalloc(size) }.cast()
        } else {
            // SAFETY: as in `alloc`.
            unsafe { mi::mi_zalloc_aligned(size, align) }.cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned and has not freed.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        if align <= WORD {
            // SAFETY: `ptr` is a live block of this allocator (the caller's contract); the
            // new block is word-aligned like every block.
            unsafe { mi::mi_realloc(ptr.cast::<c_void>(), new_size) }.cast()
        } else {
            // SAFETY: as above, keeping the layout's alignment.
            unsafe { mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, align) }.cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates, writes, reads back and frees every combination of these sizes and
    /// alignments, through each entry point, checking the alignment of every block.
    #[test]
    fn every_block_has_its_alignment_and_holds_its_bytes() {
        let sizes = [
            1, 2, 3, 7, 8, 9, 15, 16, 17, 24, 40, 48, 56, 100, 1000, 1104, 1968, 4096, 100_000,
        ];
        let aligns = [1, 2, 4, 8, 16, 32, 64, 128, 4096];
        let a = MiMalloc;
        for &size in &sizes {
            for &align in &aligns {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero-size layout; every block is checked, written within its
                // size, and freed once with the layout it was allocated with.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "alloc {size} / {align}");
                    for i in 0..size {
                        p.add(i).write(i as u8);
                    }
                    let grown = size * 3 + 1;
                    let q = a.realloc(p, layout, grown);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "realloc {size} / {align}");
                    for i in 0..size {
                        assert_eq!(q.add(i).read(), i as u8, "realloc keeps byte {i}");
                    }
                    a.dealloc(q, Layout::from_size_align(grown, align).unwrap());

                    let z = a.alloc_zeroed(layout);
                    assert!(!z.is_null());
                    assert_eq!(z as usize % align, 0, "alloc_zeroed {size} / {align}");
                    assert!((0..size).all(|i| z.add(i).read() == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }

    /// Many live blocks of one small size class at once, so the plain path also serves
    /// blocks from fresh pages, not only recycled ones.
    #[test]
    fn many_live_small_blocks_stay_word_aligned() {
        let a = MiMalloc;
        for size in [1, 3, 8, 12, 24, 40] {
            let layout = Layout::from_size_align(size, WORD.min(size.next_power_of_two())).unwrap();
            // SAFETY: as in the test above.
            unsafe {
                let blocks: Vec<*mut u8> = (0..10_000).map(|_| a.alloc(layout)).collect();
                for &p in &blocks {
                    assert!(!p.is_null());
                    assert_eq!(p as usize % layout.align(), 0);
                }
                for p in blocks {
                    a.dealloc(p, layout);
                }
            }
        }
    }
}
