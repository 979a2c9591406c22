//! Strict mode flips only what git accepted, recovery decides by what
//! git kept, and the holes an adversarial run found (deploy.toml types, user
//! input in path components, control characters in output). Real binary,
//! real git pushes.

use crate::common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

// ----------------------------------------------------------------------------- helpers

/// Run symdeploy, killing it (and failing) if it has not finished after a
/// generous deadline: a hang is the bug some of these tests look for.
fn symdeploy_bounded(env: &Env, args: &[&str]) -> Output {
    let mut child = env
        .command(args)
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

// ----------------------------------------------------------------------------- strict mode: flip only what git accepted

/// Is `commit` contained in some ref of the deploy repository?
fn kept_by_a_ref(env: &Env, commit: &str) -> bool {
    let out = run(git_cmd(&env.root.join("repository")).args([
        "for-each-ref",
        "--contains",
        commit,
        "--format=%(refname)",
    ]));
    out.status.success() && !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// warmup and production each point at a ready release of a commit some ref keeps.
fn assert_pointers_kept(env: &Env, context: &str) {
    for name in ["production", "warmup"] {
        if let Some(c) = env.pointed(name) {
            assert!(
                kept_by_a_ref(env, &c),
                "{context}: {name} -> {c}, which no ref keeps"
            );
            assert_eq!(env.record_state(&c), "ready", "{context}: {name} -> {c}");
        }
    }
}

/// Every run in the journal has ended.
fn assert_no_open_runs(env: &Env, context: &str) {
    let j = env.journal();
    for e in j.iter().filter(|e| e["phase"] == "start") {
        assert!(
            j.iter()
                .any(|x| x["run"] == e["run"] && x["phase"] == "end"),
            "{context}: run still open: {e}"
        );
    }
}

/// A strict root with production and warmup on a first commit A.
fn strict_scene(extra: &str) -> (Env, String) {
    let env = Env::with_config(&format!("{}{extra}", strict_config()));
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    ok(&env.symdeploy(&["promote"]));
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    (env, a)
}

fn push_env(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut c = git_cmd(&env.work);
    c.arg("push").args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    run(&mut c)
}

#[test]
fn a_forced_promote_push_git_refuses_as_non_fast_forward_moves_nothing() {
    let (env, a) = strict_scene("");
    let git_dir = env.root.join("repository");
    let cfg = run(git_cmd(&git_dir).args(["config", "receive.denyNonFastForwards", "true"]));
    assert!(cfg.status.success());
    // Rewrite history, as a new user would, and force it with a promote.
    env.write("www/index.html", "rewritten\n");
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "--amend", "-m", "rewritten"]);
    let b = env.git(&["rev-parse", "HEAD"]);
    env.clear_trace();
    let out = env.push(&["-f", "-o", "promote", "HEAD:main"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("non-fast-forward"), "{t}");
    assert!(!t.contains(&format!("production -> releases/{b}")), "{t}");
    assert_eq!(env.repo_ref("refs/heads/main").as_deref(), Some(a.as_str()));
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()));
    assert!(
        !env.trace().iter().any(|l| l.starts_with("stop ")),
        "the daemons were touched: {:?}",
        env.trace()
    );
    // The next locked command records what git did; nothing is open.
    ok(&env.symdeploy(&["recover"]));
    let j = env.journal();
    assert!(
        j.iter().any(|e| e["commit"] == b.as_str()
            && e["phase"] == "end"
            && e["result"] == "rejected"
            && e["error"]
                .as_str()
                .unwrap_or_default()
                .contains("refs/heads/main")),
        "{j:#?}"
    );
    assert!(
        !j.iter()
            .any(|e| e["commit"] == b.as_str() && e["result"] == "ok"),
        "{j:#?}"
    );
    assert_no_open_runs(&env, "non-fast-forward");
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()));
}

#[test]
fn a_failing_check_still_refuses_a_strict_promote_push() {
    let (env, a) = strict_scene("");
    env.set_config(&format!(
        "{}check = [\"false\"]\ncheck_timeout = 1\n",
        strict_config()
    ));
    env.write("www/index.html", "second\n");
    let b = env.commit("second");
    let out = env.push(&["-o", "promote", "main"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("rolled back: check step `false` failed"), "{t}");
    assert!(t.contains("ref updates aborted by hook"), "{t}");
    assert_eq!(env.repo_ref("refs/heads/main").as_deref(), Some(a.as_str()));
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()));
    assert_eq!(env.record_state(&b), "bad");
    assert_daemons_running(&env, "failing check");
    ok(&env.symdeploy(&["recover"]));
    assert_no_open_runs(&env, "failing check");
    assert_pointers_kept(&env, "failing check");
}

/// Push `commit` to `refspec_dst` from two clients at once; returns whether each succeeded.
fn push_pair(env: &Env, one: &str, two: &str, dst: &str) -> (bool, bool, String) {
    let url = env.root.join("repository");
    let spawn = |c: &str| {
        git_cmd(&env.work)
            .arg("push")
            .arg(&url)
            .arg(format!("{c}:{dst}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn git push")
    };
    let p1 = spawn(one);
    let p2 = spawn(two);
    let o1 = p1.wait_with_output().unwrap();
    let o2 = p2.wait_with_output().unwrap();
    let t = format!("--- first\n{}\n--- second\n{}", text(&o1), text(&o2));
    (o1.status.success(), o2.status.success(), t)
}

/// Two commits on the repository's main, neither an ancestor of the other:
/// only one of them can win a race for the same ref.
fn rivals(env: &Env, label: &str) -> (String, String) {
    let base = env.repo_ref("refs/heads/main").unwrap();
    let mut made = Vec::new();
    for side in ["one", "two"] {
        env.git(&["checkout", "-q", &base]);
        env.write("www/index.html", &format!("{label} {side}\n"));
        made.push(env.commit(&format!("{label} {side}")));
    }
    (made.remove(0), made.remove(0))
}

#[test]
fn concurrent_strict_pushes_of_main_end_where_git_kept_the_ref() {
    let (env, _) = strict_scene("");
    for round in 0..20 {
        let (one, two) = rivals(&env, &format!("round {round}"));
        let (ok1, ok2, t) = push_pair(&env, &one, &two, "refs/heads/main");
        let kept = env.repo_ref("refs/heads/main").unwrap();
        assert!(
            kept == one || kept == two,
            "round {round}: main at {kept}: {t}"
        );
        assert!(ok1 != ok2, "round {round}: exactly one push wins: {t}");
        assert_eq!(ok1, kept == one, "round {round}: {t}");
        assert_eq!(
            env.pointed("warmup").as_deref(),
            Some(kept.as_str()),
            "round {round}: {t}"
        );
        assert_pointers_kept(&env, &format!("round {round}"));
    }
    ok(&env.symdeploy(&["recover"]));
    assert_no_open_runs(&env, "concurrent main");
}

#[test]
fn concurrent_strict_pushes_of_the_same_tag_end_where_git_kept_it() {
    let (env, _) = strict_scene("");
    for round in 0..20 {
        let (one, two) = rivals(&env, &format!("tag round {round}"));
        let tag = format!("refs/tags/release-{round}");
        let (ok1, ok2, t) = push_pair(&env, &one, &two, &tag);
        let kept = env
            .repo_ref(&tag)
            .unwrap_or_else(|| panic!("round {round}: no tag: {t}"));
        assert!(ok1 != ok2, "round {round}: exactly one push wins: {t}");
        assert_eq!(ok1, kept == one, "round {round}: {t}");
        assert_eq!(
            env.pointed("production").as_deref(),
            Some(kept.as_str()),
            "round {round}: {t}"
        );
        assert_eq!(
            env.pointed("warmup").as_deref(),
            Some(kept.as_str()),
            "round {round}: {t}"
        );
        assert_pointers_kept(&env, &format!("tag round {round}"));
        assert_daemons_running(&env, &format!("tag round {round}"));
    }
    ok(&env.symdeploy(&["recover"]));
    assert_no_open_runs(&env, "concurrent tags");
}

#[test]
fn a_killed_strict_tag_push_of_a_new_commit_leaves_nothing_on_it() {
    let (env, a) = strict_scene("");
    env.write("www/index.html", "only behind the tag\n");
    let c = env.commit("tagged, never on main");
    env.git(&["tag", "release-1"]);
    let out = push_env(
        &env,
        &["deploy", "release-1"],
        &[("SYMDEPLOY_FAULT", "stop")],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(env.repo_ref("refs/tags/release-1"), None);
    // The objects are in the repository (git migrated them before the
    // transaction), but no ref keeps the commit: a plain promote refuses it.
    assert!(!kept_by_a_ref(&env, &c));
    // Killed with warmup already flipped to it (a tag of a new commit moves warmup too).
    assert_eq!(env.pointed("warmup").as_deref(), Some(c.as_str()));
    // A plain promote recovers first, so it never promotes the dropped commit.
    let t = ok(&env.symdeploy(&["promote"]));
    assert!(t.contains("recovering an interrupted"), "{t}");
    assert_ne!(env.pointed("production").as_deref(), Some(c.as_str()));
    let t = ok(&env.symdeploy(&["recover"]));
    assert_pointers_kept(&env, &t);
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(a.as_str()),
        "{t}"
    );
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()), "{t}");
    assert_ne!(env.record_state(&c), "ready");
    assert_daemons_running(&env, "killed tag push");
    assert_no_open_runs(&env, "killed tag push");
    let t = ok(&env.symdeploy(&["promote"]));
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(a.as_str()),
        "{t}"
    );
}

#[test]
fn a_killed_strict_tag_push_of_an_existing_commit_is_undone() {
    for point in ["stop", "after-flip-production", "start"] {
        let (env, a) = strict_scene("");
        env.write("www/index.html", "second\n");
        let b = env.commit("second");
        env.push_ok(&["main"]);
        assert_eq!(env.pointed("warmup").as_deref(), Some(b.as_str()));
        env.git(&["tag", "release-1"]);
        let out = push_env(
            &env,
            &["deploy", "release-1"],
            &[("SYMDEPLOY_FAULT", point)],
        );
        assert!(!out.status.success(), "{point}: {}", text(&out));
        assert_eq!(env.repo_ref("refs/tags/release-1"), None, "{point}");
        let t = ok(&env.symdeploy(&["recover"]));
        assert!(
            t.contains("git did not update refs/tags/release-1"),
            "{point}: {t}"
        );
        assert_eq!(
            env.pointed("production").as_deref(),
            Some(a.as_str()),
            "{point}: {t}"
        );
        assert_eq!(
            env.pointed("warmup").as_deref(),
            Some(b.as_str()),
            "{point}: {t}"
        );
        // B stays ready: main keeps it.
        assert_eq!(env.record_state(&b), "ready", "{point}");
        assert_daemons_running(&env, point);
        assert_no_open_runs(&env, point);
        // Pushing the tag again promotes it.
        env.push_ok(&["release-1"]);
        assert_eq!(
            env.pointed("production").as_deref(),
            Some(b.as_str()),
            "{point}"
        );
    }
}

#[test]
fn an_existing_strict_root_without_the_new_hook_keeps_working() {
    let (env, a) = strict_scene("");
    let hook = env.root.join("repository/hooks/reference-transaction");
    std::fs::remove_file(&hook).unwrap();
    // `check` names the missing hook.
    let out = env.symdeploy(&["check"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("reference-transaction is missing"),
        "{}",
        text(&out)
    );
    // A push to a root made by an older init installs it and is two-phase.
    env.write("www/index.html", "second\n");
    let b = env.commit("second");
    let t = env.push_ok(&["main"]);
    assert!(
        t.contains("installed") && t.contains("reference-transaction"),
        "{t}"
    );
    assert!(hook.is_file());
    assert_eq!(env.pointed("warmup").as_deref(), Some(b.as_str()));
    let t = text(&env.symdeploy(&["check"]));
    assert!(
        t.contains("reference-transaction flips strict pushes"),
        "{t}"
    );
    // Someone else's hook of that name is never replaced: the push is refused.
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    env.write("www/index.html", "third\n");
    env.commit("third");
    let out = env.push(&["main"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("another hook of that name"), "{t}");
    assert_eq!(env.pointed("warmup").as_deref(), Some(b.as_str()));
    assert_eq!(
        std::fs::read_to_string(&hook).unwrap(),
        "#!/bin/sh\nexit 0\n"
    );
    let _ = a;
}

#[test]
fn a_branch_and_a_tag_in_one_push_flip_together_or_not_at_all() {
    let (env, _) = strict_scene("");
    // Non-atomic: each ref is its own transaction; both are kept.
    env.write("www/index.html", "second\n");
    let b = env.commit("second");
    env.git(&["tag", "release-1"]);
    env.push_ok(&["main", "release-1"]);
    assert_eq!(env.pointed("warmup").as_deref(), Some(b.as_str()));
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
    // Atomic, with a failing check: one transaction, git keeps neither ref,
    // and the warmup flip of the branch is undone with the promote.
    env.set_config(&format!(
        "{}check = [\"false\"]\ncheck_timeout = 1\n",
        strict_config()
    ));
    env.write("www/index.html", "third\n");
    let c = env.commit("third");
    env.git(&["tag", "release-2"]);
    let out = env.push(&["--atomic", "main", "release-2"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(env.repo_ref("refs/heads/main").as_deref(), Some(b.as_str()));
    assert_eq!(env.repo_ref("refs/tags/release-2"), None);
    assert_eq!(
        env.pointed("warmup").as_deref(),
        Some(b.as_str()),
        "{}",
        text(&out)
    );
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
    assert_ne!(env.record_state(&c), "ready");
    assert_daemons_running(&env, "atomic");
    ok(&env.symdeploy(&["recover"]));
    assert_no_open_runs(&env, "atomic");
    assert_pointers_kept(&env, "atomic");
}

// ----------------------------------------------------------------------------- the rollback is one step

#[test]
fn a_kill_between_mark_bad_and_move_warmup_is_finished_by_recovery() {
    let env = Env::with_config(&format!(
        "{TEST_CONFIG}check = [\"false\"]\ncheck_timeout = 1\n"
    ));
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    // The first promote has nothing to check against yet: no check.
    env.set_config(TEST_CONFIG);
    ok(&env.symdeploy(&["promote"]));
    env.set_config(&format!(
        "{TEST_CONFIG}check = [\"false\"]\ncheck_timeout = 1\n"
    ));
    env.write("www/index.html", "second\n");
    let b = env.commit("second");
    env.push_ok(&["main"]);
    assert_eq!(env.pointed("warmup").as_deref(), Some(b.as_str()));
    let mut c = Command::new(bin());
    c.arg("--root")
        .arg(&env.root)
        .arg("promote")
        .env("SYMDEPLOY_FAULT", "after-mark-bad");
    let out = run(&mut c);
    assert_eq!(out.status.signal_kill(), Some(9), "{}", text(&out));
    // Killed with b marked bad and warmup still on it.
    assert_eq!(env.record_state(&b), "bad");
    assert_eq!(env.pointed("warmup").as_deref(), Some(b.as_str()));
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(t.contains("finishing the rollback"), "{t}");
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()), "{t}");
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(a.as_str()),
        "{t}"
    );
    assert_eq!(env.record_state(&b), "bad");
    assert_daemons_running(&env, "after-mark-bad");
    assert_no_open_runs(&env, "after-mark-bad");
    // A plain promote now does not trip over a bad warmup.
    let t = ok(&env.symdeploy(&["promote"]));
    assert!(t.contains("already production"), "{t}");

    // The same kill in a strict `-o promote` push: the push fails, git keeps
    // the old ref, and recovery leaves warmup on a ready, kept release.
    let (env, a) = strict_scene("");
    env.set_config(&format!(
        "{}check = [\"false\"]\ncheck_timeout = 1\n",
        strict_config()
    ));
    env.write("www/index.html", "second\n");
    let b = env.commit("second");
    let out = push_env(
        &env,
        &["deploy", "-o", "promote", "main"],
        &[("SYMDEPLOY_FAULT", "after-mark-bad")],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(env.repo_ref("refs/heads/main").as_deref(), Some(a.as_str()));
    let t = ok(&env.symdeploy(&["recover"]));
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()), "{t}");
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(a.as_str()),
        "{t}"
    );
    assert_eq!(env.record_state(&b), "bad");
    assert_pointers_kept(&env, "strict after-mark-bad");
    assert_daemons_running(&env, "strict after-mark-bad");
    assert_no_open_runs(&env, "strict after-mark-bad");
}

trait SignalKill {
    fn signal_kill(&self) -> Option<i32>;
}

impl SignalKill for std::process::ExitStatus {
    fn signal_kill(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(self)
    }
}
