//! Giving back the stack pages a finished task touched.
//!
//! A thread's stack costs only the pages it touches, but it keeps them:
//! when the thread ends, glibc returns to the kernel all of its stack
//! except the 16 KiB below where it ended (`PTHREAD_STACK_MIN`), and keeps
//! the stack for the next thread it starts. A TLS handshake touches about
//! 25 KiB of its thread's stack (rustls and aws-lc's key exchange and
//! signatures), so the reader that starts as the handshake's task ends, and
//! that usually gets that very stack, would carry 20 KiB for the
//! connection's life instead of 8 (docs/performance.md, "TLS").

/// Tells the kernel that this thread's stack below the caller's frame is
/// no longer needed: its pages are freed now, and read back as zeros if
/// touched again. For the end of a task, when nothing below lives on.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[inline(never)]
pub(crate) fn release_below_caller() {
    use std::mem::MaybeUninit;

    // Room kept below `frame` for the rest of this function's frame and
    // the return address of the `madvise` call (its libc wrapper is one
    // system call, no stack of its own): every page wholly below this is
    // dead. Small on purpose: a reader blocked in `read` touches the two
    // pages at the top of its stack, and the page this margin reaches into
    // stays resident for the next thread given this stack.
    const MARGIN: usize = 512;
    let frame = std::hint::black_box(0u8);
    let here = std::ptr::from_ref(&frame) as usize;
    // SAFETY: `sysconf` only reads a value.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size > 0 => size as usize,
        _ => return,
    };
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    let (mut low, mut size) = (std::ptr::null_mut(), 0);
    // SAFETY: `pthread_getattr_np` initialises `attr` when it returns 0,
    // and only then is it read and destroyed; `pthread_attr_getstack` writes
    // the two out-parameters.
    let got = unsafe {
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return;
        }
        let got = libc::pthread_attr_getstack(attr.as_ptr(), &mut low, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        got
    };
    let low = low as usize;
    if got != 0 || here < low || here >= low + size {
        return;
    }
    let start = low.next_multiple_of(page);
    let end = (here - MARGIN.min(here - low)) / page * page;
    if end > start {
        // SAFETY: [start, end) lies inside this thread's own stack, below
        // the deepest frame this function or its callees may use: no live
        // value is there, and the stack stays mapped (only its contents go).
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// Elsewhere threads keep what they touched.
#[cfg(not(target_os = "linux"))]
pub(crate) fn release_below_caller() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Resident KiB of the mapping holding `address` (/proc/self/smaps).
    fn resident_kib(address: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split(' ').next().unwrap();
            if let Some((low, high)) = range.split_once('-')
                && let (Ok(low), Ok(high)) = (
                    usize::from_str_radix(low, 16),
                    usize::from_str_radix(high, 16),
                )
            {
                inside = (low..high).contains(&address);
            } else if inside && let Some(rss) = line.strip_prefix("Rss:") {
                return rss.trim().trim_end_matches(" kB").trim().parse().unwrap();
            }
        }
        panic!("no mapping holds {address:#x}");
    }

    /// Touches `depth` bytes of stack below the caller; returns a value
    /// computed from them, so that they are really written.
    #[inline(never)]
    fn touch(depth: usize) -> u64 {
        let mut block = [0u8; 4096];
        for (i, byte) in block.iter_mut().enumerate() {
            *byte = i as u8;
        }
        let block = std::hint::black_box(block);
        let below = if depth > 4096 { touch(depth - 4096) } else { 0 };
        below + block.iter().map(|&b| u64::from(b)).sum::<u64>()
    }

    #[test]
    fn a_deep_stack_is_given_back_and_the_thread_runs_on() {
        let run = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(|| {
                let frame = std::hint::black_box(0u8);
                let here = std::ptr::from_ref(&frame) as usize;
                let sum = touch(200 * 1024);
                let deep = resident_kib(here);
                release_below_caller();
                let released = resident_kib(here);
                // The stack is still usable, and computes the same again.
                assert_eq!(touch(200 * 1024), sum);
                (deep, released)
            });
        let (deep, released) = run.unwrap().join().unwrap();
        assert!(deep >= 200, "touched {deep} KiB");
        assert!(
            released <= 32,
            "{released} KiB resident after release, {deep} before"
        );
    }
}
