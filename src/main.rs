//! `dermscreen` command line: classify images, evaluate a labelled folder, train (feature
//! `train`). A thin layer over the library, in `cli/`.

/// Burn's CPU backend allocates and frees every activation each training step; glibc's malloc
/// gave those pages back to the kernel each time, and mimalloc keeps them: about 1.07x the
/// images/s of CPU training (model card, Training). Only with `train`, to keep the default build lean.
#[cfg(all(feature = "train", not(feature = "tch")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// libtorch allocates each activation (~170 MB at batch 64 and 144 px) with C's malloc. glibc
/// serves blocks over 32 MB by mmap and unmaps them on free, so every step faulted in and zeroed fresh
/// pages: 22% of the CPU in the kernel's `clear_page`. jemalloc, exporting malloc itself, keeps
/// freed pages for the next step: 113-115 -> 166-170 images/s (model card, Training).
#[cfg(feature = "tch")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first call: keep every freed page (no decay back to the
/// kernel). The trainer's peak is its steady state, about 4 GB at the recipe's batch.
#[cfg(feature = "tch")]
#[unsafe(no_mangle)]
static malloc_conf: JemallocConf = JemallocConf(c"retain:true,dirty_decay_ms:-1,muzzy_decay_ms:-1".as_ptr());

/// A C string pointer that may be a `static` (it points at a literal).
#[cfg(feature = "tch")]
#[repr(transparent)]
struct JemallocConf(*const std::ffi::c_char);
#[cfg(feature = "tch")]
unsafe impl Sync for JemallocConf {}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

/// The CLI is native only (files, processes); in the browser the library's `web` module is the
/// entry point. This stub lets `cargo test --target wasm32-unknown-unknown` build the bin target.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod cli;
