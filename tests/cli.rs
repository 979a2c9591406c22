//! The command line as a shell user meets it: read-only commands in pipes.

mod common;

use common::*;
use std::process::Command;

/// `symdeploy status | head -1` (and the other read-only commands) end
/// quietly when the reader goes away, like any Unix filter: no panic, no
/// "Broken pipe" error, killed by SIGPIPE (status 141 in the shell).
#[test]
fn read_only_commands_end_quietly_when_the_pipe_closes() {
    let env = Env::new();
    env.push_ok(&["main"]);
    for args in [
        "status",
        "status --json",
        "releases",
        "log -n 50",
        "log --all",
    ] {
        // Enough output to outlast the pipe buffer is not needed: `true`
        // closes the pipe before symdeploy writes anything.
        let script = format!(
            "{} --root '{}' {args} | true; echo \"status=${{PIPESTATUS[0]}}\"",
            bin().display(),
            env.root.display()
        );
        let out = run(Command::new("bash").arg("-c").arg(&script));
        let t = text(&out);
        assert!(!t.contains("panicked"), "{args}: {t}");
        assert!(!t.contains("Broken pipe"), "{args}: {t}");
        assert!(
            t.contains("status=141") || t.contains("status=0"),
            "{args}: {t}"
        );
    }
}
