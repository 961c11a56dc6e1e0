//! The `vigilo` binary: a thin shell over the library (see `vigilo::cli`).

/// mimalloc: a scan allocates and frees a few values for every row it reads, and glibc's
/// malloc and free were 8% of a churn run's CPU samples; user CPU of a steady scan
/// went down by a fifth (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    vigilo::cli::main()
}
