use clap::Parser;

/// The process's allocator. Every row is a handful of short-lived strings made on one thread
/// and freed on another; under glibc's malloc that churn was about 40 % of the client's CPU and
/// its freed memory stayed scattered over its arenas. jemalloc with one arena (thread caches in
/// front of it) and dirty pages given back by a background thread within a second: on the
/// clinic project at 200k patients (SQLite) 73 s and 112 MB became 60 s and 95 MB, the bench's
/// realistic step into SQLite 19-21 s became 9-10 s (README, Benchmark).
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads this when it starts; `_RJEM_MALLOC_CONF` in the environment adds to it.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_CONF: &[u8; 70] = b"narenas:1,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() {
    // Piped into `head`, a CLI should stop quietly, not panic on a closed stdout.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    bound_heap_growth();
    #[cfg(all(target_os = "linux", not(target_env = "msvc")))]
    sqlite_allocates_through_jemalloc();
    install_error_hooks();
    let cli = cutover::cli::Cli::parse();
    bound_sqlite_page_caches(&cli);
    let code = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(cutover::cli::run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// glibc's malloc is left with what C code allocates outside SQLite (and SQLite itself, should
/// `sqlite3_config` refuse jemalloc). It gives each thread that contends for the heap an arena
/// of its own, up to eight per core, and memory freed in one arena is never reused by another:
/// two arenas bound that. (When glibc served the rows, the clinic project at 200k patients
/// peaked at 171 MB with one arena per thread and 116 MB with two.) `MALLOC_ARENA_MAX` in the
/// environment still wins.
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

/// SQLite's own allocations (page caches, statements, sorters) through jemalloc as well, so
/// the process has one heap, not two. Must run before the first connection opens.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
fn sqlite_allocates_through_jemalloc() {
    use rusqlite::ffi;
    use std::ffi::{c_int, c_void};
    use tikv_jemalloc_sys as je;
    unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
        // SAFETY: jemalloc's malloc takes any size; SQLite never asks for a negative one.
        unsafe { je::malloc(n.max(0) as usize) }
    }
    unsafe extern "C" fn x_free(p: *mut c_void) {
        // SAFETY: `p` came from x_malloc or x_realloc (SQLite frees only what it allocated).
        unsafe { je::free(p) }
    }
    unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
        // SAFETY: as x_free; jemalloc's realloc keeps the old block when it fails.
        unsafe { je::realloc(p, n.max(0) as usize) }
    }
    unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
        if p.is_null() {
            return 0;
        }
        // SAFETY: a live block of ours; SQLite's allocations are far below 2 GiB.
        unsafe { je::malloc_usable_size(p) as c_int }
    }
    unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
        if n <= 0 {
            return n;
        }
        // SAFETY: nallocx only computes a size class.
        let r = unsafe { je::nallocx(n as usize, 0) };
        if r == 0 || r > c_int::MAX as usize {
            n
        } else {
            r as c_int
        }
    }
    unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
        0
    }
    unsafe extern "C" fn x_shutdown(_: *mut c_void) {}
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(x_malloc),
        xFree: Some(x_free),
        xRealloc: Some(x_realloc),
        xSize: Some(x_size),
        xRoundup: Some(x_roundup),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: before any SQLite call (SQLite copies the struct); a refusal leaves SQLite on
    // its default allocator, which works the same, only slower.
    let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const ffi::sqlite3_mem_methods) };
    if rc != ffi::SQLITE_OK {
        eprintln!("note: SQLite keeps its own allocator (sqlite3_config returned {rc})");
    }
}

/// Bound SQLite's page caches for the whole process: [`SQLITE_PAGE_CACHE_BUDGET`], or
/// [`VERIFY_PAGE_CACHE_BUDGET`] for `verify`.
fn bound_sqlite_page_caches(cli: &cutover::cli::Cli) {
    let budget = match cli.command {
        Some(cutover::cli::Verb::Verify) => VERIFY_PAGE_CACHE_BUDGET,
        _ => SQLITE_PAGE_CACHE_BUDGET,
    };
    // SAFETY: after sqlite3_config (which must come before SQLite initializes, as this call
    // does, and parsing the command line touches no SQLite); it only sets a threshold.
    unsafe { rusqlite::ffi::sqlite3_soft_heap_limit64(budget) };
}

/// `verify` holds no batches, pages read ahead or ID-map entries (it peaked at 38-40 MB with a
/// run's budget); its foreign-key check probes parents' key indexes of 6-12 MB each at 200k
/// patients through a cache of its own (`PROBING_CACHE_KIB`), which this lets grow.
const VERIFY_PAGE_CACHE_BUDGET: i64 = 20 << 20;

/// What SQLite may hold before its page caches stop growing and reuse their least recently
/// used pages instead (a soft limit: statements and sorters still get what they ask for).
/// Each connection's cache would otherwise grow to 2 MB and stay there while the connection
/// lives, and a run holds several (the source's and the target's pools, each page stream's
/// own): on the clinic project at 200k patients into SQLite they held 33 MB of its 91 MB
/// peak. Each cache is its own (README, Benchmark), so one that grew keeps its pages: with
/// 12 MB that project peaked at 68-72 MB, with 8 MB at 65-70 MB in the same time (four runs
/// each, 50-58 s).
const SQLITE_PAGE_CACHE_BUDGET: i64 = 8 << 20;
