//! Issue 14: strict mode flips only what git accepted, recovery decides by what
//! git kept, and the holes an adversarial run found (deploy.toml types, user
//! input in path components, control characters in output). Real binary,
//! real git pushes.

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

// ----------------------------------------------------------------------------- helpers

fn ok(out: &Output) -> String {
    let t = text(out);
    assert!(out.status.success(), "command failed: {t}");
    t
}

fn short(c: &str) -> &str {
    &c[..12]
}

/// Run symdeploy, killing it (and failing) if it has not finished after a
/// generous deadline: a hang is the bug some of these tests look for.
fn symdeploy_bounded(env: &Env, args: &[&str]) -> Output {
    let mut child = Command::new(bin())
        .arg("--root")
        .arg(&env.root)
        .args(args)
        .current_dir(env.tmp.path())
        .env_remove("SYMDEPLOY_ROOT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn symdeploy");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("symdeploy {args:?} hung: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[allow(dead_code)]
/// What the deploy repository's ref points at (peeled), if it exists.
fn repo_ref(env: &Env, name: &str) -> Option<String> {
    let out = run(git_cmd(&env.root.join("repository")).args([
        "rev-parse",
        "--verify",
        "-q",
        &format!("{name}^{{commit}}"),
    ]));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn strict_config() -> String {
    format!("hook = \"pre-receive\"\n{TEST_CONFIG}")
}

// ----------------------------------------------------------------------------- deploy.toml

/// Each way deploy.toml can be something other than a file is an error that
/// names the path and what it is, from every command, and changes nothing.
#[test]
fn a_config_that_is_not_a_regular_file_is_an_error_naming_it() {
    let env = Env::new();
    let config = env.root.join("deploy.toml");
    type Make = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Make, &str)> = vec![
        (
            "dangling symlink",
            Box::new(|p: &Path| std::os::unix::fs::symlink("/nonexistent/deploy.toml", p).unwrap()),
            "symlink to /nonexistent/deploy.toml",
        ),
        (
            "directory",
            Box::new(|p: &Path| std::fs::create_dir(p).unwrap()),
            "is a directory",
        ),
        (
            "fifo",
            Box::new(|p: &Path| {
                nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap()
            }),
            "is a FIFO",
        ),
        (
            "/dev/zero",
            Box::new(|p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap()),
            "is a character device",
        ),
        (
            "2 MiB file",
            Box::new(|p: &Path| {
                let mut big = String::from("branch = \"main\"\n");
                while big.len() < 2 * 1024 * 1024 {
                    big.push_str("# padding padding padding padding padding padding\n");
                }
                std::fs::write(p, big).unwrap()
            }),
            "more than the 1 MiB",
        ),
    ];
    for (what, make, expect) in cases {
        let meta = std::fs::symlink_metadata(&config).unwrap();
        if meta.is_dir() {
            std::fs::remove_dir(&config).unwrap();
        } else {
            std::fs::remove_file(&config).unwrap();
        }
        make(&config);
        for args in [&["status"][..], &["check"], &["warmup"], &["releases"]] {
            let out = symdeploy_bounded(&env, args);
            let t = text(&out);
            assert!(!out.status.success(), "{what}: {args:?} accepted it: {t}");
            assert!(
                t.contains(config.to_str().unwrap()) && t.contains(expect),
                "{what}: {args:?}: {t}"
            );
        }
        // The hook refuses it too: the push deploys nothing.
        env.commit(what);
        let out = env.push(&["-f", "main"]);
        assert!(text(&out).contains(expect), "{what}: push: {}", text(&out));
        assert_eq!(env.pointed("warmup"), None, "{what}");
    }
    // A config that does not exist at all still means the defaults.
    std::fs::remove_file(&config).unwrap();
    let t = ok(&symdeploy_bounded(&env, &["status"]));
    assert!(t.contains("production"), "{t}");
}

/// `init` on a root whose deploy.toml is a dangling symlink neither writes
/// through it nor goes on with the defaults.
#[test]
fn init_does_not_write_through_a_dangling_config_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let target = tmp.path().join("mount/deploy.toml");
    std::os::unix::fs::symlink(&target, root.join("deploy.toml")).unwrap();
    let out = run(Command::new(bin()).arg("init").arg(&root));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("symlink"), "{}", text(&out));
    assert!(!target.exists());
}

// ----------------------------------------------------------------------------- user input and paths

#[test]
fn rollback_to_releases_slash_commit_writes_its_run_log() {
    let env = Env::new();
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    ok(&env.symdeploy(&["promote"]));
    env.write("www/index.html", "second\n");
    let b = env.commit("second");
    env.push_ok(&["main"]);
    ok(&env.symdeploy(&["promote"]));
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
    let t = ok(&env.symdeploy(&["rollback", &format!("releases/{a}")]));
    assert!(!t.contains("cannot write the deploy log"), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    let logs: Vec<String> = std::fs::read_dir(env.root.join(".symdeploy/logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-rollback-"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(
        logs[0].contains(&format!("-rollback-{}-", short(&a))),
        "{logs:?}"
    );
    let log = std::fs::read_to_string(env.root.join(".symdeploy/logs").join(&logs[0])).unwrap();
    assert!(log.contains("production -> releases/"), "{log}");
}

// ----------------------------------------------------------------------------- control characters

const HOSTILE: &str = "evil \u{1b}[2J\u{1b}[31mred\u{7} \u{202e}txt.exe";

fn assert_neutralised(what: &str, t: &str) {
    for bad in ['\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(!t.contains(bad), "{what} printed {bad:?} raw: {t:?}");
    }
    assert!(
        t.contains("evil ^[[2J^[[31mred^G <U+202E>txt.exe"),
        "{what}: {t:?}"
    );
}

#[test]
fn a_hostile_commit_subject_is_neutralised_in_every_output() {
    let env = Env::new();
    env.write("www/index.html", "hostile\n");
    env.commit(HOSTILE);
    let t = env.push_ok(&["main"]);
    assert_neutralised("push", &t);
    ok(&env.symdeploy(&["promote"]));
    assert_neutralised("releases", &ok(&env.symdeploy(&["releases"])));
    assert_neutralised("status", &ok(&env.symdeploy(&["status"])));
    // The same commit pushed to a strict root.
    let strict = Env::with_config(&strict_config());
    strict.write("www/index.html", "hostile\n");
    strict.commit(HOSTILE);
    let t = strict.push_ok(&["main"]);
    assert_neutralised("strict push", &t);
}

#[allow(dead_code)]
fn killed(out: &Output) -> bool {
    out.status.signal() == Some(9)
}
