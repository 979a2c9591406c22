//! `git push deploy main` warms up a release. Real binary, real git.

use crate::common::*;
use std::time::{Duration, Instant};

#[test]
fn push_warms_up_a_release_identical_to_git_archive() {
    let env = Env::with_config("shared = []\n[warmup]\nbuild = []\nlinks = []\nnotify = []\n");
    env.write("bin/console", "#!/bin/sh\necho console\n");
    env.chmod_x("bin/console");
    env.write("tests/SmokeTest.php", "<?php // not deployed\n");
    env.write(
        ".gitattributes",
        "/tests export-ignore\n*.md export-ignore\n",
    );
    env.write("README.md", "not deployed either\n");
    env.write("docs/keep.txt", "deployed\n");
    std::os::unix::fs::symlink("../www/index.html", env.work.join("app/index-link")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", env.work.join("abs-link")).unwrap();
    let commit = env.commit("tree with modes, links and export-ignore");

    let out = env.push_ok(&["main"]);
    assert!(
        out.contains("remote: success: warmup -> releases/"),
        "{out}"
    );
    assert_eq!(env.pointed("warmup").as_deref(), Some(commit.as_str()));

    let release = env.release(&commit);
    let expected_dir = env.tmp.path().join("archive");
    git_archive(&env.root.join("repository"), &commit, &expected_dir);
    let mut got = snapshot(&release);
    assert_eq!(
        got.remove("REVISION"),
        Some(format!("file exec=false {commit}\n"))
    );
    let expected = snapshot(&expected_dir);
    assert_eq!(got, expected);
    assert!(!got.contains_key("tests/SmokeTest.php") && !got.contains_key("README.md"));
    assert!(got["bin/console"].starts_with("file exec=true"));
    assert_eq!(got["app/index-link"], "link ../www/index.html");
    assert!(!release.join(".git").exists());
}

#[test]
fn steps_run_in_order_inside_the_release_and_shared_paths_link_to_common() {
    let env = Env::new();
    let commit = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    let release = env.release(&commit);
    let dir = release.display().to_string();
    assert_eq!(
        env.trace(),
        vec![
            format!("composer build {dir}"),
            format!("assets build {dir}"),
            format!("links links {dir}"),
            format!("migrate migrate {dir}"),
            format!("notify-warmup notify {dir}"),
        ]
    );
    // www/data/images was seeded from the release's copy; log was created empty.
    let images = std::fs::read_link(release.join("www/data/images")).unwrap();
    assert_eq!(images.to_str(), Some("../../../../common/www/data/images"));
    assert_eq!(
        std::fs::read_to_string(release.join("www/data/images/logo.svg")).unwrap(),
        "<svg/>\n"
    );
    assert_eq!(
        std::fs::read_link(release.join("log")).unwrap().to_str(),
        Some("../../common/log")
    );
    assert!(env.root.join("common/log").is_dir());
    // Static links and the warmup chain resolve.
    assert_eq!(
        std::fs::read_to_string(env.root.join("www_warmup/index.html")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_link(env.root.join("www")).unwrap().to_str(),
        Some("production/www")
    );
    assert_eq!(
        std::fs::read_link(env.root.join("app")).unwrap().to_str(),
        Some("production/app")
    );
}

#[test]
fn second_push_flips_warmup_and_keeps_the_first_release() {
    let env = Env::new();
    let first = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    std::fs::write(
        env.root.join("common/www/data/images/upload.jpg"),
        "user data",
    )
    .unwrap();
    env.write("www/index.html", "second\n");
    let second = env.commit("second");
    let out = env.push_ok(&["main"]);
    assert!(
        out.contains(&format!("warmup -> releases/{}", &second[..12])),
        "{out}"
    );
    assert_eq!(env.pointed("warmup").as_deref(), Some(second.as_str()));
    assert!(env.release(&first).join("www/index.html").is_file());
    assert_eq!(
        std::fs::read_to_string(env.root.join("www_warmup/index.html")).unwrap(),
        "second\n"
    );
    // Data in common/ survives and is visible from the new release.
    assert_eq!(
        std::fs::read_to_string(env.release(&second).join("www/data/images/upload.jpg")).unwrap(),
        "user data"
    );
    let journal = env.journal();
    let ends: Vec<_> = journal.iter().filter(|e| e["phase"] == "end").collect();
    assert_eq!(ends.len(), 2);
    for e in ends {
        assert_eq!(e["event"], "warmup");
        assert_eq!(e["result"], "ok");
        assert_eq!(e["ref"], "refs/heads/main");
        assert!(e["durations"]["export"].is_number(), "{e}");
        assert!(!e["user"].as_str().unwrap().is_empty());
    }
    let logs = std::fs::read_dir(env.root.join(".symdeploy/logs"))
        .unwrap()
        .count();
    assert_eq!(logs, 2);
}

#[test]
fn a_failing_step_leaves_warmup_where_it_was() {
    let env = Env::new();
    let good = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    env.write(
        "Makefile",
        &MAKEFILE.replace(
            "production-assets:\n",
            "production-assets:\n\t@echo assets are broken; exit 3\n",
        ),
    );
    let bad = env.commit("broken assets");
    let out = env.push(&["main"]);
    let t = text(&out);
    // post-receive: the push itself lands, the deploy reports the failure.
    assert!(t.contains("remote:        assets are broken"), "{t}");
    assert!(
        t.contains(&format!(
            "remote: error: warm-up of {} failed: build step `make production-assets` failed: exit status 2",
            &bad[..12]
        )),
        "{t}"
    );
    // Exactly one error line, then where production and warmup point, then
    // advice that fits a fault of the commit; the last line says git took
    // the push all the same.
    assert_eq!(t.matches("error: ").count(), 2, "{t}");
    assert!(
        t.lines()
            .rfind(|l| l.starts_with("remote:"))
            .is_some_and(|l| l.starts_with("remote: error: the push was accepted")),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "remote:        warmup     -> releases/{}",
            &good[..12]
        )),
        "{t}"
    );
    assert!(t.contains("fix the commit and push it again"), "{t}");
    assert!(t.contains(".symdeploy/logs/"), "log path missing: {t}");
    assert_eq!(env.pointed("warmup").as_deref(), Some(good.as_str()));
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.root.join(format!(".symdeploy/releases/{bad}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(state["state"], "failed");
    let last = env.journal().pop().unwrap();
    assert_eq!(
        (last["result"].as_str(), last["commit"].as_str()),
        (Some("failed"), Some(bad.as_str()))
    );
    // links and migrate never ran for the broken commit.
    assert!(!env
        .trace()
        .iter()
        .any(|l| l.starts_with("links") && l.contains(&bad)));
    let releases = env.symdeploy(&["releases"]);
    assert!(text(&releases).contains("failed"), "{}", text(&releases));
}

#[test]
fn a_fixed_push_after_a_failure_rebuilds_the_failed_release() {
    let env = Env::new();
    env.write(
        "Makefile",
        &MAKEFILE.replace(
            "production-links:\n",
            "production-links:\n\ttest -f $(SYMDEPLOY_ROOT)/ok\n",
        ),
    );
    let commit = env.commit("needs ok");
    assert!(!env.push(&["main"]).status.success() || env.pointed("warmup").is_none());
    assert_eq!(env.pointed("warmup"), None);
    std::fs::write(env.root.join("ok"), "").unwrap();
    let out = env.symdeploy(&["warmup"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("removing the earlier failed build"),
        "{}",
        text(&out)
    );
    assert_eq!(env.pointed("warmup").as_deref(), Some(commit.as_str()));
}

#[test]
fn bad_config_is_rejected_naming_its_line() {
    let env = Env::new();
    env.set_config("branch = \"main\"\nkeep_releases = 5\nshared = [\"log\"]\nsteps = 1\n");
    let t = text(&env.push(&["main"]));
    assert!(
        t.contains("remote: error: ") && t.contains("deploy.toml:4:"),
        "{t}"
    );
    assert!(t.contains("steps"), "{t}");
    assert_eq!(env.pointed("warmup"), None);
    env.set_config("keep_releases = \"many\"\n");
    let out = env.symdeploy(&["warmup"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("deploy.toml:1:"), "{}", text(&out));
}

#[test]
fn deletions_and_other_branches_are_ignored_with_a_message() {
    let env = Env::new();
    env.git(&["checkout", "-q", "-b", "feature"]);
    env.write("feature.txt", "x");
    env.commit("feature work");
    let t = env.push_ok(&["feature"]);
    assert!(
        t.contains("remote: -----> ignored: branch feature is not the deploy branch (main)"),
        "{t}"
    );
    let t = env.push_ok(&[":feature"]);
    assert!(
        t.contains("remote: -----> ignored: refs/heads/feature deleted"),
        "{t}"
    );
    env.git(&["tag", "v1.0"]);
    let t = env.push_ok(&["v1.0"]);
    assert!(t.contains("does not match promote.tags"), "{t}");
    assert_eq!(env.pointed("warmup"), None);
    assert!(std::fs::read_dir(env.root.join("releases"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn a_commit_with_a_ready_release_only_repoints_warmup() {
    let env = Env::new();
    let first = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    env.write("x", "2");
    env.commit("second");
    env.push_ok(&["main"]);
    env.clear_trace();
    let out = env.symdeploy(&["warmup", &first]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("already warmed up; not rebuilding"),
        "{}",
        text(&out)
    );
    assert_eq!(env.pointed("warmup").as_deref(), Some(first.as_str()));
    assert!(env.trace().is_empty(), "steps ran again: {:?}", env.trace());
}

#[test]
fn rebuild_refuses_a_release_in_use_and_redoes_others() {
    let env = Env::new();
    let first = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    let out = env.symdeploy(&["warmup", "--rebuild", &first]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is what warmup points at"),
        "{}",
        text(&out)
    );
    env.write("x", "2");
    env.commit("second");
    env.push_ok(&["main"]);
    env.clear_trace();
    let out = env.symdeploy(&["warmup", "--rebuild", &first]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.trace().len(), 5, "{:?}", env.trace());
}

#[test]
fn annotated_tags_are_peeled_to_their_commit() {
    let env = Env::new();
    let commit = env.git(&["rev-parse", "HEAD"]);
    env.git(&["tag", "-a", "-m", "annotated", "v2"]);
    env.push_ok(&["v2"]);
    let out = env.symdeploy(&["warmup", "v2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.pointed("warmup").as_deref(), Some(commit.as_str()));
}

#[test]
fn steps_get_a_clean_environment() {
    let env = Env::with_config(
        "shared = []\n[warmup]\nbuild = [\"env | grep -E '^(GIT_|SYMDEPLOY_)' | sort > $SYMDEPLOY_ROOT/env.txt\"]\nlinks = []\nnotify = []\n",
    );
    let commit = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["-o", "x=1", "main"]);
    let vars = std::fs::read_to_string(env.root.join("env.txt")).unwrap();
    assert!(!vars.contains("GIT_"), "{vars}");
    let root = std::fs::canonicalize(&env.root).unwrap();
    for want in [
        format!("SYMDEPLOY_COMMIT={commit}"),
        "SYMDEPLOY_REF=refs/heads/main".to_string(),
        "SYMDEPLOY_STAGE=build".to_string(),
        "SYMDEPLOY_PREVIOUS=".to_string(),
        format!("SYMDEPLOY_RELEASE={}/releases/{commit}", root.display()),
    ] {
        assert!(vars.lines().any(|l| l == want), "missing {want} in {vars}");
    }
}

#[test]
fn a_step_that_leaves_a_daemon_does_not_hang_the_push() {
    // The daemon records its pid, so the test ends exactly the process it started.
    let env = Env::with_config("shared = []\n[warmup]\nbuild = [\"sleep 300 & echo $! > \\\"$SYMDEPLOY_ROOT/daemon.pid\\\"\", \"echo after\"]\nlinks = []\nnotify = []\n");
    let started = Instant::now();
    let t = env.push_ok(&["main"]);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "push hung for {:?}",
        started.elapsed()
    );
    assert!(t.contains("remote:        after"), "{t}");
    let pid = std::fs::read_to_string(env.root.join("daemon.pid")).unwrap();
    let _ = std::process::Command::new("kill").arg(pid.trim()).status();
}

#[test]
fn submodules_become_empty_directories_with_a_warning() {
    let env = Env::new();
    let head = env.git(&["rev-parse", "HEAD"]);
    env.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{head},vendor/lib"),
    ]);
    env.git(&["commit", "-q", "-m", "with a submodule"]);
    let commit = env.git(&["rev-parse", "HEAD"]);
    // The receiving repository checks objects; a gitlink to a commit it has is fine.
    let t = env.push_ok(&["main"]);
    assert!(
        t.contains("remote: warning: submodule vendor/lib is exported as an empty directory"),
        "{t}"
    );
    let dir = env.release(&commit).join("vendor/lib");
    assert!(dir.is_dir() && std::fs::read_dir(dir).unwrap().next().is_none());
}

#[test]
fn concurrent_deploys_are_serialised_by_the_lock() {
    let env = Env::with_config("shared = []\nlock_timeout = 120\n[warmup]\nbuild = [\"echo start $SYMDEPLOY_COMMIT >> $SYMDEPLOY_ROOT/order; sleep 2; echo end $SYMDEPLOY_COMMIT >> $SYMDEPLOY_ROOT/order\"]\nlinks = []\nnotify = []\n");
    let first = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    env.write("y", "1");
    let second = env.commit("second");
    env.git(&["push", "-q", "deploy", "main:refs/heads/other"]);
    std::fs::remove_file(env.root.join("order")).unwrap();
    // A push of main (hook) and a hand warm-up of another commit, at once.
    let push = git_cmd(&env.work)
        .args(["push", "deploy", "main"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let by_hand = env.symdeploy(&["warmup", "--rebuild", &first]);
    let push_out = push.wait_with_output().unwrap();
    assert!(push_out.status.success());
    assert!(by_hand.status.success(), "{}", text(&by_hand));
    assert!(
        text(&by_hand).contains("waiting for the deploy lock, held by pid"),
        "{}",
        text(&by_hand)
    );
    let order = std::fs::read_to_string(env.root.join("order")).unwrap();
    let lines: Vec<&str> = order.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("start {second}").as_str(),
            format!("end {second}").as_str(),
            format!("start {first}").as_str(),
            format!("end {first}").as_str(),
        ]
    );
    assert_eq!(env.pointed("warmup").as_deref(), Some(first.as_str()));
}

#[test]
fn init_keeps_existing_files_and_says_what_to_do_next() {
    let env = Env::new();
    let hook = env.root.join("repository/hooks/post-receive");
    let before = std::fs::read_to_string(&hook).unwrap();
    assert!(
        before.contains(&format!(
            "'{}' hook post-receive",
            std::fs::canonicalize(bin()).unwrap().display()
        )),
        "{before}"
    );
    std::fs::write(env.root.join("deploy.toml"), "# mine\n").unwrap();
    std::fs::write(&hook, "#!/bin/sh\n# custom\n").unwrap();
    let out = env.symdeploy_raw(&["init", env.root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(env.root.join("deploy.toml")).unwrap(),
        "# mine\n"
    );
    assert_eq!(
        std::fs::read_to_string(&hook).unwrap(),
        "#!/bin/sh\n# custom\n"
    );
    let t = text(&out);
    assert!(
        t.contains("warning:") && t.contains("git remote add deploy"),
        "{t}"
    );
    let cfg =
        run(git_cmd(&env.root.join("repository")).args(["config", "--get", "receive.fsckObjects"]));
    assert_eq!(String::from_utf8_lossy(&cfg.stdout).trim(), "true");
    let cfg = run(git_cmd(&env.root.join("repository")).args([
        "config",
        "--get",
        "receive.advertisePushOptions",
    ]));
    assert_eq!(String::from_utf8_lossy(&cfg.stdout).trim(), "true");
}

#[test]
fn init_writes_a_config_that_sets_every_key() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("fresh");
    let out = run(std::process::Command::new(bin()).args(["init", root.to_str().unwrap()]));
    assert!(out.status.success(), "{}", text(&out));
    let toml = std::fs::read_to_string(root.join("deploy.toml")).unwrap();
    for key in [
        "branch =",
        "keep_releases =",
        "shared =",
        "[links]",
        "www_warmup =",
        "[warmup]",
        "build =",
        "migrate =",
        "[promote]",
        "tags =",
        "after_switch =",
    ] {
        assert!(toml.contains(key), "{key} missing from {toml}");
    }
    let check =
        run(std::process::Command::new(bin()).args(["--root", root.to_str().unwrap(), "check"]));
    assert!(text(&check).contains("is valid"), "{}", text(&check));
}
