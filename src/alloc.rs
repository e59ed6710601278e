//! The binary's global allocator: mimalloc, called the way the system allocator is.
//!
//! The `mimalloc` crate's allocator asks for every block through `mi_malloc_aligned`, whatever
//! the alignment. A review makes a few dozen small allocations, nearly all of them aligned to 8
//! bytes or less, and for those the aligned entry point is a detour: its checks, then a fallback
//! through the aligned slow path whenever the size class has no free block at hand. mimalloc's
//! own rule (`mi_malloc_is_naturally_aligned`) is that a block is aligned to 16 bytes, and to no
//! more than its size asks for; so a layout whose alignment is at most 16 and at most its size
//! gets a plain `mi_malloc`, as Rust's system allocator does with `malloc`, and any other the
//! aligned call.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block has (`MI_MAX_ALIGN_SIZE`, `sizeof(max_align_t)`).
const PLAIN_ALIGN: usize = 16;

/// mimalloc behind [`GlobalAlloc`]; see the module documentation.
pub struct Mimalloc;

/// Whether a plain allocation of `size` bytes has the alignment `align`.
#[inline(always)]
fn plain(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

/// A new block for `layout`, from `plain_call` where that gives the alignment, else from
/// `aligned_call`: `mi_malloc` and `mi_malloc_aligned`, or their zeroing twins.
#[inline(always)]
fn new_block(
    layout: Layout,
    plain_call: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned_call: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    if plain(layout.size(), layout.align()) {
        // SAFETY: an FFI call with no precondition.
        unsafe { plain_call(layout.size()).cast() }
    } else {
        // SAFETY: `align` is a power of two, as every `Layout`'s is.
        unsafe { aligned_call(layout.size(), layout.align()).cast() }
    }
}

// SAFETY: each method returns a block from mimalloc of at least the layout's size and with its
// alignment (the plain calls only where `plain` holds, by mimalloc's guarantee above), or null;
// `dealloc` and `realloc` take blocks from these same calls, which `mi_free` and the reallocs
// accept whichever call made them.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        new_block(layout, mi::mi_malloc, mi::mi_malloc_aligned)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        new_block(layout, mi::mi_zalloc, mi::mi_zalloc_aligned)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract), so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(new_size, layout.align()) {
            // SAFETY: `ptr` came from mimalloc (the caller's contract); the new block is plain
            // and so has the alignment.
            unsafe { mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast() }
        } else {
            // SAFETY: as above, with the alignment asked for.
            unsafe { mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes around the small size classes and past the medium ones, with every alignment up to
    /// a page: each block has its alignment, holds what is written to it, and keeps it through
    /// growing and shrinking.
    #[test]
    fn blocks_have_their_alignment_and_keep_their_bytes() {
        let sizes = [
            1, 7, 8, 9, 15, 16, 17, 24, 31, 48, 100, 1000, 4097, 70_000, 300_000,
        ];
        let aligns = [1, 2, 4, 8, 16, 32, 64, 128, 4096];
        for &size in &sizes {
            for &align in &aligns {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                let what = format!("size {size}, align {align}");
                // SAFETY: `layout` has a non-zero size; every block is freed by this allocator.
                unsafe {
                    let zeroed = Mimalloc.alloc_zeroed(layout);
                    assert!(!zeroed.is_null(), "{what}");
                    assert_eq!(zeroed as usize % align, 0, "zeroed, {what}");
                    assert!(
                        std::slice::from_raw_parts(zeroed, size)
                            .iter()
                            .all(|&b| b == 0),
                        "zeroed, {what}"
                    );
                    Mimalloc.dealloc(zeroed, layout);

                    let block = Mimalloc.alloc(layout);
                    assert!(!block.is_null(), "{what}");
                    assert_eq!(block as usize % align, 0, "{what}");
                    for i in 0..size {
                        block.add(i).write(i as u8);
                    }
                    let (mut block, mut current, mut kept) = (block, layout, size);
                    for new_size in [size * 3, size / 2 + 1, size] {
                        block = Mimalloc.realloc(block, current, new_size);
                        current = Layout::from_size_align(new_size, align).expect("a layout");
                        assert!(!block.is_null(), "{what} to {new_size}");
                        assert_eq!(block as usize % align, 0, "{what} to {new_size}");
                        kept = kept.min(new_size);
                        for i in 0..kept {
                            assert_eq!(block.add(i).read(), i as u8, "{what} to {new_size}");
                        }
                    }
                    Mimalloc.dealloc(block, current);
                }
            }
        }
    }
}
