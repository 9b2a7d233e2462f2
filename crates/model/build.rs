//! Link libtorch so that CUDA is usable and no LD_LIBRARY_PATH is needed.
//!
//! Built against the PyPI torch wheel (`LIBTORCH_USE_PYTORCH=1`), the linker
//! keeps only `libtorch_cpu.so` and `libc10.so` and drops `libtorch_cuda.so` as
//! unused, so `tch::Cuda::is_available()` is false even on a GPU machine
//! (tch-rs issues #907, #980). Linking `libtorch.so` with `--no-as-needed` pulls
//! in the CUDA backend; the rpath lets the binary find the libraries it was
//! built against. On another machine (the GPU hosts), LD_LIBRARY_PATH pointing
//! at that machine's torch/lib takes precedence over nothing: the rpath is only
//! a fallback because it is a DT_RUNPATH.
//!
//! Shared by the crates whose binaries run the model (model tests, the `autotag` CLI at the
//! repository root, the benchmarks): each names this file as its `build` script.
fn main() {
    // Re-run only when libtorch moves. A path here would be resolved against each package's own
    // root, where this shared file does not lie, and make cargo re-run the script on every build;
    // a change to this file itself rebuilds and re-runs it anyway. (Without any `rerun-if`
    // line cargo would re-run it whenever any file of the package changed: for the root package
    // that is the whole repository.)
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath={lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
