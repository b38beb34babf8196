//! How the process takes memory from the kernel. The binary allocates with mimalloc, which
//! commits its arena up front; with transparent huge pages the kernel then backs each first
//! touch with a 2 MB page it zeroes whole, and a run touches, frees (mimalloc gives it back) and
//! touches again far more than it keeps. Without huge pages a 1M-record dry run took 7-9% less
//! time and 35 MB less peak memory (docs/PERFORMANCE.md); the pipeline's memory is many small
//! strings and buffers, which gain nothing from large pages.

/// Stops the kernel from backing this process's memory with transparent huge pages, from now
/// on (pages already faulted stay as they are). Returns whether the kernel took the setting;
/// elsewhere than on Linux, there is nothing to do and the answer is `false`.
pub fn avoid_huge_pages() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes one integer flag (the other arguments must be 0) and
        // touches no memory of ours.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_takes_the_setting() {
        assert!(super::avoid_huge_pages());
        // SAFETY: PR_GET_THP_DISABLE takes no arguments and returns the flag.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) },
            1
        );
    }
}
