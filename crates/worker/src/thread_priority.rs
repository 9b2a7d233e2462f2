//! CPU priority of the backfill lane's threads (issue 15).
//!
//! Backfill GIFs are decoded and run through the model on threads of their own whose scheduling
//! priority is lowered (`lanes.backfill_priority`), so the kernel gives the CPU to live work
//! first:
//! - `idle` ([`ThreadPriority::Idle`], the default): the `SCHED_IDLE` policy (`man 7 sched`): the thread
//!   runs on what no normal thread wants (CFS weight 3 against a nice-0 thread's 1024), and the
//!   kernel places a waking normal thread on a CPU that only runs such threads as if it were
//!   idle (`sched_idle_cpu`, Linux ≥ 5.4);
//! - `low` ([`ThreadPriority::Low`]): nice 19 (weight 15);
//! - `normal` ([`ThreadPriority::Normal`]): unchanged.
//!
//! On 2 cores, idle kept live p99 at 1.15× its value without backfill with two backfill model
//! threads, nice 19 at 1.36× (1.16–1.20× with one thread, which leaves backfill half the
//! machine when there is no live work): `cargo bench --bench priority`, docs/benchmarks.md.
//! Lowering a priority needs no privilege; raising it back does, which is why the lanes have
//! their own threads instead of changing a thread's priority per task.
//!
//! **Limits**: it orders CPU time only. On CUDA the GPU runs both lanes' kernels without
//! priority; other processes on the machine (the broker, the S3 server) are not affected.
//! Other systems than Linux: not supported (an error the caller logs; the thread keeps its
//! priority).

use serde::{Deserialize, Serialize};

/// How much CPU a thread may take from others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadPriority {
    /// Unchanged.
    Normal,
    /// Nice 19.
    Low,
    /// `SCHED_IDLE`.
    Idle,
}

/// Set the calling thread's scheduling priority (Linux: its own, not its process's; the
/// `sched_*` and `setpriority` calls act on a thread id, `man 2 setpriority` "Bugs").
///
/// # Errors
/// The system call's, or `Unsupported` on other systems.
pub fn set_current_thread(priority: ThreadPriority) -> std::io::Result<()> {
    if priority == ThreadPriority::Normal {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread (id 0 / gettid); the parameter
        // lives across the call.
        let rc = unsafe {
            match priority {
                ThreadPriority::Low => libc::setpriority(libc::PRIO_PROCESS as _, libc::gettid() as libc::id_t, 19),
                _ => libc::sched_setscheduler(0, libc::SCHED_IDLE, &libc::sched_param { sched_priority: 0 }),
            }
        };
        if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "per-thread priority is Linux only"))
    }
}

/// The calling thread's priority as the kernel has it (Linux), for tests and logs.
#[cfg(target_os = "linux")]
pub fn current() -> ThreadPriority {
    // SAFETY: as above; both calls only read the calling thread's attributes.
    let (policy, nice) = unsafe {
        (libc::sched_getscheduler(0), libc::getpriority(libc::PRIO_PROCESS as _, libc::gettid() as libc::id_t))
    };
    match (policy, nice) {
        (libc::SCHED_IDLE, _) => ThreadPriority::Idle,
        (_, 19) => ThreadPriority::Low,
        _ => ThreadPriority::Normal,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The priority is the thread's own: a lowered thread does not lower its process.
    #[test]
    fn lowers_only_the_calling_thread() {
        let before = current();
        for p in [ThreadPriority::Low, ThreadPriority::Idle] {
            let inside = std::thread::spawn(move || {
                set_current_thread(p).expect("lowering is unprivileged");
                current()
            })
            .join()
            .expect("thread");
            assert_eq!(inside, p);
        }
        assert_eq!(current(), before, "the spawning thread keeps its priority");
        set_current_thread(ThreadPriority::Normal).expect("normal changes nothing");
        assert_eq!(current(), before);
    }
}
