use clap::Parser;

fn main() {
    // Piped into `head`, a CLI should stop quietly, not panic on a closed stdout.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    bound_heap_growth();
    install_error_hooks();
    let cli = cutover::cli::Cli::parse();
    let code = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(cutover::cli::run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// glibc gives each thread that contends for the heap an arena of its own, up to eight per
/// core, and memory freed in one arena is never reused by another. With the runtime's workers,
/// the SQLite workers and the blocking pool all allocating pages of rows, the clinic project
/// at 200k patients peaked at 171 MB for a live heap of about 55 MB; with two arenas, 116 MB,
/// and the time stayed within run-to-run noise. (A thread calling `malloc_trim` twice a second
/// brought the RSS between steps down to about 60 MB but cost about a tenth of the run's time,
/// and left the peak where it was.) `MALLOC_ARENA_MAX` in the environment still wins.
fn bound_heap_growth() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in main, before any other thread exists or allocates.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// color-eyre's panic and error report hooks; plain (no colour codes) when stderr is not a
/// terminal or NO_COLOR is set, so redirected logs stay readable. The console's own hook
/// (restore the terminal first) chains onto this one.
fn install_error_hooks() {
    use std::io::IsTerminal;
    // color-eyre captures a resolved backtrace with every error report when RUST_BACKTRACE is
    // set, which loads the debug info (about 180 MB and most of a second) the first time an
    // error is built, even one that is handled. Operators' errors say what and where without
    // it; panics keep their backtraces. RUST_LIB_BACKTRACE=1 still asks for them explicitly.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let hooks = color_eyre::config::HookBuilder::default().display_env_section(false);
    let hooks = if colour {
        hooks
    } else {
        hooks.theme(color_eyre::config::Theme::new())
    };
    if let Err(e) = hooks.install() {
        eprintln!("warning: cannot install the error report hooks: {e}");
    }
}
