//! CPU priority of the backfill lane's threads (issue 15).
//!
//! Backfill GIFs are decoded and run through the model on threads of their own whose scheduling
//! priority is lowered (`lanes.backfill_nice`, a Linux nice value, 19 by default). The kernel's
//! scheduler then gives the CPU to live work first: under CFS a nice-19 thread weighs 15 against
//! a nice-0 thread's 1024 (`sched_prio_to_weight`, kernel/sched/core.c), so while a live decode
//! or forward pass wants a core, backfill gets about 1.5 % of it, and all of the cores the live
//! lane leaves idle. Lowering a priority needs no privilege; raising it back does, which is why
//! the lanes have their own threads instead of changing a thread's priority per task.
//!
//! **Limits**: it orders CPU time only. On CUDA the GPU runs both lanes' kernels without
//! priority; other processes on the machine (the broker, the S3 server) are not affected.

/// Lower the calling thread's scheduling priority to `nice` (0 = unchanged, up to 19).
///
/// Linux applies `setpriority(PRIO_PROCESS, tid)` to the one thread (`man 2 setpriority`,
/// "Bugs": a Linux thread has its own nice value). Errors: the system call's, or
/// `Unsupported` on other systems.
pub fn lower_current_thread(nice: i32) -> std::io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's id; no memory is shared.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS as _, libc::gettid() as libc::id_t, nice) };
        if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "per-thread priority is Linux only"))
    }
}

/// The calling thread's nice value (Linux), for tests and logs.
#[cfg(target_os = "linux")]
pub fn current_nice() -> i32 {
    // SAFETY: as above. getpriority may return -1 as a value; errors cannot happen for our own id.
    unsafe { libc::getpriority(libc::PRIO_PROCESS as _, libc::gettid() as libc::id_t) }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The priority is the thread's own: a lowered thread does not lower its process.
    #[test]
    fn lowers_only_the_calling_thread() {
        let before = current_nice();
        let inside = std::thread::spawn(|| {
            lower_current_thread(19).expect("lowering is unprivileged");
            current_nice()
        })
        .join()
        .expect("thread");
        assert_eq!(inside, 19);
        assert_eq!(current_nice(), before, "the spawning thread keeps its priority");
        lower_current_thread(0).expect("0 changes nothing");
        assert_eq!(current_nice(), before);
    }
}
