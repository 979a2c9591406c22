//! Kills in strict mode and two push-path holes, through the real binary
//! and real `git push`: the pushing client's whole process group killed
//! (git's ref locks it leaves), a dead receive-pack no one reaped yet, a
//! `promote` without arguments after a killed push, the order recovery
//! undoes in, a ref name that is not UTF-8, and a preview branch deleted
//! while its first push waits for the lock.

use crate::common::*;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

/// A strict root whose `after_switch` (and `stop`, during an undo) waits
/// while a marker file exists, so a test can kill it there.
fn config() -> String {
    r#"hook = "pre-receive"
branch = "main"
keep_releases = 5
lock_timeout = 120
shared = []
[warmup]
build = []
links = []
migrate = []
notify = []
[promote]
check = []
notify = []
stop = ["echo \"stop $SYMDEPLOY_STAGE\" >> \"$SYMDEPLOY_ROOT/trace.log\"", "if [ -f \"$SYMDEPLOY_ROOT/hold-stop\" ]; then touch \"$SYMDEPLOY_ROOT/in-stop\"; sleep 60; fi"]
after_switch = ["if [ -f \"$SYMDEPLOY_ROOT/hold-after\" ]; then touch \"$SYMDEPLOY_ROOT/in-after\"; sleep 60; fi"]
start = ["echo \"start $SYMDEPLOY_STAGE\" >> \"$SYMDEPLOY_ROOT/trace.log\""]
"#
    .to_string()
}

fn assert_daemons_stopped(env: &Env, context: &str) {
    let trace = env.trace();
    let last = trace
        .iter()
        .rev()
        .find(|l| l.starts_with("stop ") || l.starts_with("start "));
    assert!(
        last.is_some_and(|l| l.starts_with("stop ")),
        "{context}: {trace:#?}"
    );
}

/// Every `*.lock` file of the deploy repository (relative paths).
fn ref_locks(env: &Env) -> Vec<String> {
    let git = env.root.join("repository");
    let mut out = Vec::new();
    let mut stack = vec![git.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".lock") {
                out.push(p.strip_prefix(&git).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// `git push deploy ARGS` in a process group of its own, as a terminal or
/// a CI runner starts it.
fn spawn_push(env: &Env, args: &[&str]) -> Child {
    git_cmd(&env.work)
        .arg("push")
        .arg("deploy")
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn git push")
}

/// A strict root on commit A (production and warmup), and a second commit
/// B on the clone's main, not pushed.
fn scene() -> (Env, String, String) {
    let env = Env::with_config(&config());
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    ok(&env.symdeploy(&["promote"]));
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    env.write("www/index.html", "second\n");
    let b = env.commit("second");
    (env, a, b)
}

/// Push `args` and SIGKILL the pushing client's whole process group while
/// the promote in the reference-transaction hook runs `after_switch`
/// (production flipped, daemons stopped, git holding the ref locks).
fn kill_push_in_after_switch(env: &Env, args: &[&str]) {
    std::fs::write(env.root.join("hold-after"), "").unwrap();
    let mut push = spawn_push(env, args);
    let marker = env.root.join("in-after");
    wait_for("after_switch", || {
        marker.exists() || push.try_wait().unwrap().is_some()
    });
    assert!(marker.exists(), "the push ended first");
    killpg(Pid::from_raw(push.id() as i32), Signal::SIGKILL).unwrap();
    let _ = push.wait();
    std::fs::remove_file(env.root.join("hold-after")).unwrap();
    std::fs::remove_file(marker).unwrap();
}

/// A killed strict promote push leaves git's ref locks; `status --check`
/// and `check` name them with the command to run; `recover` removes them,
/// and the next push of the same ref works.
#[test]
fn a_killed_strict_promote_push_leaves_no_ref_lock_after_recover() {
    for (args, locked) in [
        (&["release-1"][..], &["refs/tags/release-1.lock"][..]),
        (
            &["-o", "promote", "main"][..],
            &["HEAD.lock", "refs/heads/main.lock"][..],
        ),
    ] {
        let (env, a, b) = scene();
        if args[0] == "release-1" {
            env.push_ok(&["main"]);
            env.git(&["tag", "release-1"]);
        }
        kill_push_in_after_switch(&env, args);
        assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
        assert_daemons_stopped(&env, "killed in after_switch");
        // What git left: the push's ref locks.
        assert_eq!(ref_locks(&env), locked, "{args:?}");
        let rp = receive_pack(&env);
        let out = env.symdeploy(&["status", "--check"]);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        let said = |t: &str| {
            let lines: Vec<&str> = t.lines().filter(|l| l.contains(".lock")).collect();
            redact(&lines.join("\n")).replace(&format!("pid {rp}"), "pid [rp]")
        };
        let name = if args[0] == "release-1" {
            "tag"
        } else {
            "branch"
        };
        let _s = crate::common::snapshot_settings(&env).bind_to_scope();
        insta::assert_snapshot!(format!("status_check_{name}"), said(&t));
        for l in locked {
            assert!(
                t.contains(&format!("repository/{l} was left by a killed strict push"))
                    && t.contains("`symdeploy recover` removes it"),
                "{args:?}: {t}"
            );
        }
        let out = env.symdeploy(&["check"]);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("was left by a killed strict push"), "{t}");

        let t = ok(&env.symdeploy(&["recover"]));
        assert!(t.contains("pushes of that ref work again"), "{t}");
        insta::assert_snapshot!(format!("recover_{name}"), said(&t));
        assert_eq!(ref_locks(&env), Vec::<String>::new(), "{args:?}: {t}");
        assert_eq!(
            env.pointed("production").as_deref(),
            Some(a.as_str()),
            "{t}"
        );
        assert_daemons_running(&env, "after recover");
        let t = ok(&env.symdeploy(&["status", "--check"]));
        assert!(t.contains("no problems"), "{t}");
        // The same push again goes through and promotes B.
        env.push_ok(args);
        assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
        assert_daemons_running(&env, "after the next push");
    }
}

/// Killed after git locked the ref but before the reference-transaction
/// hook could record anything (held in the hook script, before symdeploy
/// starts): the lock is still recognised as the dead push's and removed.
#[test]
fn a_lock_taken_before_the_hook_could_record_it_is_removed_too() {
    let (env, a, b) = scene();
    env.push_ok(&["main"]);
    env.git(&["tag", "release-1"]);
    let hook = env.root.join("repository/hooks/reference-transaction");
    let script = std::fs::read_to_string(&hook).unwrap();
    let held = script.replace(
        "\nexec ",
        "\n[ \"$1\" = prepared ] && [ -f ../hold-rt ] && { touch ../in-rt; sleep 60; }\nexec ",
    );
    assert_ne!(held, script);
    std::fs::write(&hook, held).unwrap();
    std::fs::write(env.root.join("hold-rt"), "").unwrap();
    let mut push = spawn_push(&env, &["release-1"]);
    let marker = env.root.join("in-rt");
    wait_for("the reference-transaction hook", || {
        marker.exists() || push.try_wait().unwrap().is_some()
    });
    assert!(marker.exists(), "the push ended first");
    killpg(Pid::from_raw(push.id() as i32), Signal::SIGKILL).unwrap();
    let _ = push.wait();
    std::fs::write(&hook, script).unwrap();
    assert_eq!(ref_locks(&env), ["refs/tags/release-1.lock"]);
    let out = env.symdeploy(&["status", "--check"]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("was left by a killed strict push"),
        "{t}"
    );
    let t = ok(&env.symdeploy(&["recover"]));
    assert_eq!(ref_locks(&env), Vec::<String>::new(), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    env.push_ok(&["release-1"]);
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
    assert_daemons_running(&env, "after the tag push");
}

/// A lock file no push of ours recorded (another git process's) is never
/// removed, and reported only once it is old, with `rm` as the command.
#[test]
fn a_lock_no_push_of_ours_holds_is_left_alone() {
    let (env, _, _) = scene();
    let lock = env.root.join("repository/refs/heads/other.lock");
    std::fs::write(&lock, "0000000000000000000000000000000000000000\n").unwrap();
    ok(&env.symdeploy(&["recover"]));
    assert!(lock.exists());
    // Fresh: a git process may be using it.
    ok(&env.symdeploy(&["status", "--check"]));
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = env.symdeploy(&["status", "--check"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("no symdeploy push holds") && t.contains(&format!("`rm {}`", lock.display())),
        "{t}"
    );
    ok(&env.symdeploy(&["recover"]));
    assert!(lock.exists());
}

fn stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(n).map(str::to_string)
}

/// The pids whose parent is `pid`.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| stat_field(p, 1).as_deref() == Some(&pid.to_string()))
        .collect()
}

/// The receive-pack of the strict push in progress (its pending file's name).
fn receive_pack(env: &Env) -> i32 {
    let dir = env.root.join(".symdeploy/strict");
    let names: Vec<i32> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names[0]
}

/// A receive-pack that has exited but is not reaped yet (its parent is
/// stopped) is dead: recovery right after the kill repairs the push.
#[test]
fn a_zombie_receive_pack_is_not_taken_for_a_live_one() {
    let (env, a, b) = scene();
    std::fs::write(env.root.join("hold-after"), "").unwrap();
    let mut push = spawn_push(&env, &["-o", "promote", "main"]);
    let marker = env.root.join("in-after");
    wait_for("after_switch", || {
        marker.exists() || push.try_wait().unwrap().is_some()
    });
    if !marker.exists() {
        let out = push.wait_with_output().unwrap();
        panic!("the push ended first: {}", text(&out));
    }
    let rp = receive_pack(&env);
    let parent: i32 = stat_field(rp, 1).unwrap().parse().unwrap();
    // Every process here is one this test started (the push's group).
    let pgid = push.id() as i32;
    assert_eq!(stat_field(parent, 2).as_deref(), Some(&*pgid.to_string()));
    kill(Pid::from_raw(parent), Signal::SIGSTOP).unwrap();
    // Stopped for real before its child dies: a parent still on its way to
    // the stop could reap it first.
    wait_for("the receive-pack's parent to stop", || {
        stat_field(parent, 0).as_deref() == Some("T")
    });
    for hook in children(rp) {
        let _ = kill(Pid::from_raw(hook), Signal::SIGKILL);
    }
    kill(Pid::from_raw(rp), Signal::SIGKILL).unwrap();
    wait_for(&format!("receive-pack {rp} to be a zombie"), || {
        stat_field(rp, 0).as_deref() == Some("Z")
    });
    std::fs::remove_file(env.root.join("hold-after")).unwrap();
    let out = env.symdeploy(&["recover"]);
    // Let the push's group go before any assertion can fail.
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGCONT);
    let _ = push.wait();
    let t = ok(&out);
    assert!(!t.contains("nothing to recover"), "{t}");
    assert!(t.contains("recovering an interrupted"), "{t}");
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(a.as_str()),
        "{t}"
    );
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()), "{t}");
    assert_ne!(env.record_state(&b), "ready");
    assert_daemons_running(&env, "after recover");
    assert_eq!(ref_locks(&env), Vec::<String>::new());
}

/// `promote` without arguments after a killed `-o promote` push recovers
/// first instead of refusing with production on the unrecorded commit.
#[test]
fn promote_without_arguments_recovers_first() {
    let (env, a, b) = scene();
    kill_push_in_after_switch(&env, &["-o", "promote", "main"]);
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
    let t = ok(&env.symdeploy(&["promote"]));
    assert!(t.contains("recovering an interrupted"), "{t}");
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(a.as_str()),
        "{t}"
    );
    assert_daemons_running(&env, "after promote");
    assert_eq!(ref_locks(&env), Vec::<String>::new());
    // The same for `warmup REV` and `promote REV` with a revision that
    // does not resolve: they recover before they refuse it.
    let (env, a, _) = scene();
    kill_push_in_after_switch(&env, &["-o", "promote", "main"]);
    for args in [&["promote", "no-such-rev"][..], &["warmup", "no-such-rev"]] {
        let out = env.symdeploy(args);
        assert!(!out.status.success(), "{}", text(&out));
    }
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_daemons_running(&env, "after a refused promote");
}

/// Recovery of a killed strict promote undoes the promote before the
/// warm-up under it: killed again in between (in the undo's `stop`),
/// production is never on a release recorded failed.
#[test]
fn recovery_undoes_the_promote_before_the_warmup() {
    let (env, a, b) = scene();
    kill_push_in_after_switch(&env, &["-o", "promote", "main"]);
    std::fs::write(env.root.join("hold-stop"), "").unwrap();
    let log = std::fs::File::create(env.tmp.path().join("recover.out")).unwrap();
    let mut recover = env
        .command(&["recover"])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let marker = env.root.join("in-stop");
    wait_for("the undo's stop", || {
        marker.exists() || recover.try_wait().unwrap().is_some()
    });
    let _ = killpg(Pid::from_raw(recover.id() as i32), Signal::SIGKILL);
    let _ = recover.wait();
    let said = std::fs::read_to_string(env.tmp.path().join("recover.out")).unwrap_or_default();
    assert!(marker.exists(), "recover did not stop the daemons: {said}");
    std::fs::remove_file(env.root.join("hold-stop")).unwrap();
    let prod = env.pointed("production").unwrap();
    assert_ne!(
        env.record_state(&prod),
        "failed",
        "production on {prod}: {said}"
    );
    let t = ok(&env.symdeploy(&["recover"]));
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(a.as_str()),
        "{t}"
    );
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()), "{t}");
    assert_ne!(env.record_state(&b), "ready", "{t}");
    assert_daemons_running(&env, "after the second recover");
}

// ----------------------------------------------------------------------------- push paths

/// `git push deploy ARGS`, where ARGS may be bytes that are not UTF-8.
fn push_bytes(env: &Env, args: &[&[u8]]) -> Output {
    let mut c = git_cmd(&env.work);
    c.arg("push").arg("deploy");
    for a in args {
        c.arg(std::ffi::OsStr::from_bytes(a));
    }
    run(&mut c)
}

/// A branch whose name is not UTF-8, pushed with main: main deploys, the
/// other is named as skipped and why, in both modes.
#[test]
fn a_ref_name_that_is_not_utf8_does_not_drop_the_push() {
    for strict in [false, true] {
        let env = Env::with_config(&if strict {
            format!("hook = \"pre-receive\"\n{TEST_CONFIG}")
        } else {
            TEST_CONFIG.to_string()
        });
        let c = env.git(&["rev-parse", "HEAD"]);
        let out = push_bytes(&env, &[b"main", b"HEAD:refs/heads/caf\xe9"]);
        let t = text(&out);
        assert!(out.status.success(), "strict {strict}: {t}");
        assert_eq!(env.pointed("warmup").as_deref(), Some(c.as_str()), "{t}");
        assert!(
            t.contains("refs/heads/caf\\xE9 is not deployed: its name is not UTF-8"),
            "strict {strict}: {t}"
        );
        let warning: Vec<&str> = t.lines().filter(|l| l.contains("not UTF-8")).collect();
        insta::assert_snapshot!("not_utf8_warning", warning.join("\n"));
        let j = env.journal();
        assert!(
            j.iter()
                .any(|e| e["commit"] == c.as_str() && e["result"] == "ok"),
            "{j:#?}"
        );
        ok(&env.symdeploy(&["status", "--check"]));
    }
}

/// A new preview branch's push waits for the lock; the branch is deleted
/// meanwhile. Whichever goes first, no preview is left for it.
#[test]
fn deleting_a_preview_branch_while_its_first_push_waits_leaves_no_preview() {
    let env = Env::with_config(&format!(
        "{TEST_CONFIG}[previews]\nbranches = \"feature/*\"\n"
    ));
    env.push_ok(&["main"]);
    env.git(&["checkout", "-q", "-b", "feature/x"]);
    env.write("www/index.html", "feature\n");
    env.commit("feature");
    // Another deploy holds the lock.
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .open(env.root.join(".symdeploy/lock"))
        .unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let logs = env.root.join(".symdeploy/logs");
    let count = |p: &Path| std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0);
    let before = count(&logs);
    let first = spawn_push(&env, &["feature/x"]);
    wait_for("the first push to wait for the lock", || {
        count(&logs) > before
    });
    let mut delete = spawn_push(&env, &[":feature/x"]);
    // The deletion either ends (the old way: no lock taken) or waits too.
    wait_for("the deletion to end or wait", || {
        delete.try_wait().unwrap().is_some() || count(&logs) > before + 1
    });
    drop(held);
    let first = first.wait_with_output().unwrap();
    let delete = delete.wait_with_output().unwrap();
    let t = format!("--- push\n{}\n--- delete\n{}", text(&first), text(&delete));
    assert!(first.status.success() && delete.status.success(), "{t}");
    assert_eq!(env.repo_ref("refs/heads/feature/x"), None);
    let previews: Vec<PathBuf> = std::fs::read_dir(env.root.join("previews"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(previews.is_empty(), "{previews:?}\n{t}");
    let records: Vec<PathBuf> = std::fs::read_dir(env.root.join(".symdeploy/previews"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    assert!(records.is_empty(), "{records:?}\n{t}");
}
