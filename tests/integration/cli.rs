//! The command line as a shell user meets it: read-only commands in pipes.

use crate::common::*;
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

/// The README's first command, `./install.sh --try`, on the binary under
/// test (SYMDEPLOY_INSTALL_BIN skips the release build): it installs a
/// stripped binary, deploys examples/php-app to a local root with no server
/// set-up, and production ends on the sample app's commit.
#[test]
fn install_sh_try_deploys_the_sample_app() {
    for prog in ["make", "strip", "git"] {
        let found = run(Command::new("sh").args(["-c", &format!("command -v {prog}")]));
        if !found.status.success() {
            return crate::common::skip(&format!("install.sh --try needs {prog}"));
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("try");
    let prefix = tmp.path().join("prefix");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let out = run(Command::new("bash")
        .arg(&script)
        .arg("--try")
        .arg(&dir)
        .arg("--prefix")
        .arg(&prefix)
        .env("SYMDEPLOY_INSTALL_BIN", bin())
        .env_remove("GIT_DIR")
        .env_remove("SYMDEPLOY_ROOT"));
    let t = text(&out);
    assert!(out.status.success(), "install.sh --try failed:\n{t}");
    let installed = prefix.join("bin/symdeploy");
    let file = run(Command::new("sh").arg("-c").arg(format!(
        "objdump -h '{}' | grep -cE '[.]debug_(info|line)' || true",
        installed.display()
    )));
    assert_eq!(
        String::from_utf8_lossy(&file.stdout).trim(),
        "0",
        "the installed binary still has debug sections"
    );
    let root = dir.join("root");
    let head = run(Command::new("git")
        .arg("-C")
        .arg(dir.join("app"))
        .args(["rev-parse", "HEAD"]));
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let prod = std::fs::read_link(root.join("production")).unwrap();
    assert_eq!(prod, std::path::Path::new("releases").join(&head), "{t}");
    // The sample's steps ran: the asset build and the local config copy.
    let release = root.join("production");
    assert!(release.join("www/assets/app.css").is_file(), "{t}");
    assert!(
        std::fs::read_to_string(release.join("app/config/local.ini"))
            .unwrap()
            .contains("greeting"),
        "{t}"
    );
    assert!(t.contains("success: production -> releases/"), "{t}");
    // The run logs say how each step ended in words.
    let mut logs = String::new();
    for log in std::fs::read_dir(root.join(".symdeploy/logs")).unwrap() {
        logs.push_str(&std::fs::read_to_string(log.unwrap().path()).unwrap());
    }
    assert!(logs.contains("status=exit 0"), "{logs}");
    assert!(!logs.contains("ExitStatus"), "{logs}");
    // A second --try into the same place refuses, changing nothing.
    let again = run(Command::new("bash")
        .arg(&script)
        .arg("--try")
        .arg(&dir)
        .arg("--prefix")
        .arg(&prefix)
        .env("SYMDEPLOY_INSTALL_BIN", bin()));
    assert!(!again.status.success());
    assert!(text(&again).contains("exists"), "{}", text(&again));
    assert_eq!(std::fs::read_link(root.join("production")).unwrap(), prod);
}

/// `check` looks a step's program up the way the step will run it: `bin/x`
/// in the release (with its exec bit), a bare name on PATH; so it gives the
/// same verdict whatever directory it runs from.
#[test]
fn check_finds_step_programs_in_the_release_from_any_directory() {
    let env = Env::with_config(
        r#"
branch = "main"
shared = []
[warmup]
build = ["bin/build --fast"]
links = []
migrate = []
notify = []
[promote]
stop = ["bin/stop-workers"]
after_switch = ["bin/not-executable"]
start = ["bin/missing --now", "no-such-program-anywhere start"]
check = ["sh -c true"]
notify = []
"#,
    );
    env.write("bin/build", "#!/bin/sh\nexit 0\n");
    env.chmod_x("bin/build");
    env.write("bin/stop-workers", "#!/bin/sh\nexit 0\n");
    env.chmod_x("bin/stop-workers");
    env.write("bin/not-executable", "#!/bin/sh\nexit 0\n");
    env.commit("the steps' programs");
    env.push_ok(&["main"]);
    let mut verdicts = Vec::new();
    for dir in [
        std::path::PathBuf::from("/"),
        std::path::PathBuf::from("/tmp"),
        env.root.clone(),
    ] {
        let o = run(env.command(&["check"]).current_dir(&dir));
        assert!(!o.status.success(), "check passed with a missing program");
        // The lines about step programs: the verdict on each command.
        let steps: String = text(&o)
            .lines()
            .filter(|l| l.contains("(in \""))
            .map(|l| format!("{l}\n"))
            .collect();
        verdicts.push((dir, redact(&steps)));
    }
    for (dir, v) in &verdicts[1..] {
        assert_eq!(
            v,
            &verdicts[0].1,
            "check from {} differs from check from /",
            dir.display()
        );
    }
    let _s = crate::common::snapshot_settings(&env).bind_to_scope();
    insta::assert_snapshot!(verdicts[0].1);
}

/// The verdict is the last line: the cleanup after a promote (by hand or by
/// a release tag) prints above `success:`, never below it.
#[test]
fn success_is_the_last_line_after_the_cleanup() {
    let env = Env::with_config(
        "branch = \"main\"\nkeep_releases = 1\nshared = []\n[warmup]\nbuild = []\nlinks = []\nmigrate = []\nnotify = []\n[promote]\nstop = []\nafter_switch = []\nstart = []\nnotify = []\n",
    );
    let last_line = |t: &str, prefix: &str| -> String {
        t.lines()
            .rfind(|l| l.starts_with(prefix))
            .unwrap_or_default()
            .to_string()
    };
    env.push_ok(&["main"]);
    assert!(env.symdeploy(&["promote"]).status.success());
    for n in 2..=3 {
        env.write("www/index.html", &format!("{n}\n"));
        env.commit(&format!("release {n}"));
        env.push_ok(&["main"]);
        let o = env.symdeploy(&["promote"]);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        if n == 3 {
            assert!(t.contains("cleanup: removing"), "no cleanup to test: {t}");
        }
        assert!(
            last_line(&t, "").starts_with("success: production -> releases/"),
            "{t}"
        );
    }
    // A release tag: the hook's cleanup lines come before its verdict too.
    env.write("www/index.html", "4\n");
    env.commit("release 4");
    env.git(&["tag", "release-4"]);
    let t = env.push_ok(&["main", "release-4"]);
    assert!(t.contains("cleanup: removing"), "no cleanup to test: {t}");
    assert!(
        last_line(&t, "remote:").starts_with("remote: success: production -> releases/"),
        "{t}"
    );
}

/// A step that prints nothing for longer than the progress interval (30 s;
/// 1 s here through SYMDEPLOY_PROGRESS_SECS) gets "still running" lines,
/// so a long quiet build does not look like a hang.
#[test]
fn a_quiet_step_says_it_is_still_running() {
    let env = Env::with_config(
        "branch = \"main\"\nshared = []\n[warmup]\nbuild = [\"sleep 2.6\", \"echo built\"]\nlinks = []\nmigrate = []\nnotify = []\n[promote]\nstop = []\nafter_switch = []\nstart = []\nnotify = []\n",
    );
    let o = run(git_cmd(&env.work)
        .args(["push", "deploy", "main"])
        .env("SYMDEPLOY_PROGRESS_SECS", "1"));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let build: Vec<&str> = t
        .lines()
        .skip_while(|l| !l.contains("-----> build"))
        .take_while(|l| !l.contains("build done in"))
        .collect();
    let quiet: Vec<&&str> = build
        .iter()
        .filter(|l| l.contains("still running ("))
        .collect();
    assert!(!quiet.is_empty(), "no still-running line: {t}");
    // At most one a second, and none for a step that prints.
    assert!(quiet.len() <= 3, "{t}");
    let after_echo = build.iter().skip_while(|l| !l.contains("$ echo built"));
    assert!(
        !after_echo.clone().any(|l| l.contains("still running")),
        "{t}"
    );
    // The first lines of the stage, as the pusher sees them (git pads
    // remote lines with spaces).
    let first: Vec<&str> = build.iter().take(3).map(|l| l.trim_end()).collect();
    insta::assert_snapshot!(first.join("\n"));
}

/// A long export says how far it has come under the export stage (counts
/// that only grow), then its one-line summary; a short one stays one line.
#[test]
fn a_long_export_shows_counts_as_it_goes() {
    let env = Env::with_config(
        "branch = \"main\"\nshared = []\n[warmup]\nbuild = []\nlinks = []\nmigrate = []\nnotify = []\n[promote]\nstop = []\nafter_switch = []\nstart = []\nnotify = []\n",
    );
    // Enough files that writing them outlasts many report intervals.
    for i in 0..10000 {
        env.write(&format!("www/many/f{i}.txt"), &format!("{i}\n"));
    }
    env.commit("many files");
    let o = run(git_cmd(&env.work)
        .args(["push", "deploy", "main"])
        .env("SYMDEPLOY_EXPORT_PROGRESS_MS", "2"));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let counts: Vec<u64> = t
        .lines()
        .filter_map(|l| l.split_once(" files so far (").map(|(n, _)| n))
        .filter_map(|n| n.split_whitespace().last()?.parse().ok())
        .collect();
    assert!(!counts.is_empty(), "no progress line: {t}");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(counts.iter().all(|&n| n > 0 && n <= 10004), "{counts:?}");
    // The export's own summary still closes the stage.
    assert!(
        t.lines()
            .any(|l| l.contains("10004 files, ") && l.contains("export done in")),
        "{t}"
    );

    // With the default interval (5 s) a small push shows no such line.
    env.write("www/index.html", "again\n");
    env.commit("one file");
    let t = env.push_ok(&["main"]);
    assert!(!t.contains("so far ("), "{t}");
}

/// Colour: `--color always|never`, and `auto` on a terminal (a pty from
/// `script`) unless NO_COLOR is set; a pipe and a hook get none.
#[test]
fn colour_on_a_terminal_only_and_never_in_a_hook() {
    let red_error = "\u{1b}[1;31merror:";
    let missing = std::env::temp_dir().join("symdeploy-no-such-root");
    let missing = missing.to_str().unwrap();
    let plain = |args: &[&str]| -> String {
        let o = run(Command::new(bin())
            .args(args)
            .args(["--root", missing, "status"])
            .env_remove("NO_COLOR"));
        text(&o)
    };
    assert!(plain(&["--color", "always"]).starts_with(red_error));
    let piped = plain(&[]);
    assert!(
        piped.starts_with("error:") && !piped.contains('\u{1b}'),
        "{piped:?}"
    );
    assert!(!plain(&["--color", "never"]).contains('\u{1b}'));
    // On a terminal: `script` runs the command on a pty.
    if run(Command::new("sh").args(["-c", "command -v script"]))
        .status
        .success()
    {
        let on_tty = |extra_env: Option<(&str, &str)>, flags: &str| -> String {
            let mut c = Command::new("script");
            c.args(["-qec"])
                .arg(format!(
                    "{} {flags} --root {missing} status",
                    bin().display()
                ))
                .arg("/dev/null")
                .env_remove("NO_COLOR")
                .env("TERM", "xterm");
            if let Some((k, v)) = extra_env {
                c.env(k, v);
            }
            String::from_utf8_lossy(&run(&mut c).stdout).to_string()
        };
        assert!(on_tty(None, "").contains(red_error));
        let no_color = on_tty(Some(("NO_COLOR", "1")), "");
        assert!(
            no_color.contains("error:") && !no_color.contains('\u{1b}'),
            "{no_color:?}"
        );
        assert!(!on_tty(None, "--color never").contains('\u{1b}'));
    } else {
        eprintln!(
            "colour_on_a_terminal_only_and_never_in_a_hook: no `script`, the pty cases are not run"
        );
    }
    // A failing push: error lines, and no colour codes from symdeploy.
    let env = Env::with_config(
        "branch = \"main\"\nshared = []\n[warmup]\nbuild = [\"false\"]\nlinks = []\nmigrate = []\nnotify = []\n",
    );
    let t = env.push_ok(&["main"]);
    assert!(
        t.contains("remote: error:") && !t.contains('\u{1b}'),
        "{t:?}"
    );
}
