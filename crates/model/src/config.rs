//! The `[model]` section: which model, on which device, how it is run, and what is suggested.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::device::{DeviceChoice, PrecisionChoice};

/// The model and how it is run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Directory holding `model.pt`, `model.json` and `tags.json`
    /// (written by `tools/export_model.py`).
    pub dir: PathBuf,
    /// `auto`, `cpu` or `cuda`.
    pub device: DeviceChoice,
    /// `auto`, `fp32`, `fp16` or `bf16`. Anything but fp32 casts the module's
    /// parameters, so the export must keep them (the default export does; a
    /// frozen one runs fp32 with a warning). Measured: fp16 is 1.3-1.5x fp32 on
    /// an H100 at batch >= 32; bf16 is ~1.75x fp32 on an AMX Xeon
    /// (docs/benchmarks*.md). Scores move by at most a few hundredths.
    pub precision: PrecisionChoice,
    /// libtorch intra-op threads on CPU. 0 = libtorch's default (all cores).
    /// On small machines leave room for GIF decoding: the two fight for cores.
    pub threads: usize,
    /// Model instance threads sharing the loaded model, each running its own
    /// forward passes (CPU: `threads` each; use instances × threads ≤ cores).
    /// On small CPUs several single-threaded instances keep the cores busier
    /// than one multi-threaded forward, which stalls whenever another thread
    /// (decode, I/O) takes a core.
    pub instances: usize,
    /// Verify the sha256 of `model.pt` against `model.json` at load.
    pub verify_sha256: bool,
    /// When the model runs on CPU, keep freed memory for reuse (glibc only;
    /// process-wide): serve allocations
    /// below 32 MiB from the heap and trim it only past 512 MiB free. A forward
    /// pass allocates activation buffers of several MiB; by default glibc maps
    /// and unmaps them each time, so every pass page-faults them in again. On
    /// this 2-core Xeon that cost 25-30% of a batch-4 forward. Not applied on
    /// CUDA (activations live on the GPU there), nor when
    /// `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` is set.
    pub reuse_freed_memory: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(".local/models/efficientnet-lite0"),
            device: DeviceChoice::Auto,
            precision: PrecisionChoice::Auto,
            threads: 1,
            instances: 2,
            verify_sha256: true,
            reuse_freed_memory: true,
        }
    }
}

/// Frame sampling (`[frames]`): how many of a GIF's frames the model sees. Read by the worker
/// and by `autotag tag` / `autotag eval`, so both tag a GIF the same way.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FramesConfig {
    /// Frames sampled per GIF, spread evenly over the animation.
    pub per_gif: usize,
}

impl Default for FramesConfig {
    fn default() -> Self {
        Self { per_gif: 8 }
    }
}
