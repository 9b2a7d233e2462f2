//! Allocator tuning for a CPU model (`model.reuse_freed_memory`).

use tracing::{info, warn};

/// Make glibc keep freed memory for reuse instead of returning it to the kernel (see
/// `model.reuse_freed_memory`). A forward pass allocates activation buffers of several MiB. By
/// default glibc serves them with mmap, and it unmaps them and trims the heap when they are
/// freed, so every pass page-faults and zeroes them again. Here allocations below 32 MiB
/// (glibc's largest mmap threshold) come from the heap, and the heap is trimmed only past
/// 512 MiB free. Process-wide and applied once; the operator's own `MALLOC_*` variables win.
pub fn reuse_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() || std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
        {
            info!("MALLOC_* set in the environment: leaving glibc's thresholds to it");
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: mallopt only changes allocator parameters; it takes glibc's own locks.
            let ok = unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                    && libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20) == 1
            };
            if !ok {
                warn!("mallopt refused the thresholds: freed memory is returned to the kernel as usual");
            }
        }
    });
}
