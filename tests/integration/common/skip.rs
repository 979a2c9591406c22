//! Tests that cannot do their real check on this machine (not root, no
//! nginx, no chattr) pass without it. libtest has no way to mark a test
//! skipped once it runs (`#[ignore]` is decided when the binary is built, and
//! a build does not know whether nginx is installed where it runs), so a skip
//! is made visible twice instead:
//!
//! - at once, as a `SKIPPED` line on the real stderr (libtest captures
//!   `eprintln!` and shows a passing test's output to no one);
//! - again after libtest's `test result:` line: the first skip registers an
//!   `atexit` handler that lists every skip of the run with its reason. libtest
//!   ends the process with `exit` (or by returning from `main`), which runs it.
//!
//! In CI a missing part is a failure, not a skip: [`skip`] panics when `CI`
//! is set (every CI service sets `CI=true`; so does `.ci/run`) or
//! `SYMDEPLOY_REQUIRE_STACK=1`. What a machine may not allow even to root
//! (chattr on an overlay filesystem, ptrace in a container) goes through
//! [`cannot_here`], which never fails.
//!
//! Shared by the integration binary and `tests/fleet.rs` (by `#[path]`), so it
//! needs nothing else of `common`.

use std::io::Write;
use std::sync::{Mutex, Once};

static SKIPS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

/// True where a test that misses a real part must fail instead of skipping:
/// `CI` set to anything but `false`/`0`/empty, or `SYMDEPLOY_REQUIRE_STACK=1`.
pub fn required() -> bool {
    let set =
        |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    set("CI") || set("SYMDEPLOY_REQUIRE_STACK")
}

/// The running test's name: libtest runs each test on a thread named after it.
fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "a test".to_string(),
    }
}

/// Skip the calling test because something it needs is missing here
/// (`why` names it and how to get it); the caller returns right after. In CI
/// ([`required`]) this fails the test instead.
pub fn skip(why: &str) {
    let test = current_test();
    assert!(
        !required(),
        "{test}: {why} (CI or SYMDEPLOY_REQUIRE_STACK is set, so a missing part is a failure)"
    );
    record(&test, why);
}

/// Skip the calling test, or a part of it, because this machine does not
/// allow what it needs (a kernel or container limit, not a missing package);
/// recorded and shown like [`skip`], but never a failure, CI included.
pub fn cannot_here(why: &str) {
    record(&current_test(), why);
}

fn record(test: &str, why: &str) {
    let line = format!("{test}: {why}");
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {line}");
    SKIPS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` with no arguments.
        unsafe { nix::libc::atexit(print_skips) };
    });
}

/// Runs at process exit, after libtest printed `test result: ...`.
extern "C" fn print_skips() {
    let skips = SKIPS.lock().unwrap_or_else(|e| e.into_inner());
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "\nSKIPPED: {} test(s) passed without their real check here:",
        skips.len()
    );
    for line in skips.iter() {
        let _ = writeln!(err, "    {line}");
    }
    let _ = writeln!(
        err,
        "(CI=true or SYMDEPLOY_REQUIRE_STACK=1 makes a missing part a failure)\n"
    );
}
