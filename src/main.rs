//! The `vigilo` binary: a thin shell over the library (see `vigilo::cli`).

fn main() -> std::process::ExitCode {
    vigilo::cli::main()
}
