//! What runs is what was built: every release gets a manifest at the end of
//! its warm-up, `symdeploy verify` names each change since (through real
//! pushes), `status --check`/`--prometheus` report drift, and promote and
//! rollback refuse a changed release before anything is stopped.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use crate::common::{text, Env};

/// A refused promote or rollback changed nothing: production still on
/// `production`, and no `stop` ran. `context`: output to show on failure.
fn assert_refused_untouched(env: &Env, production: &str, context: &str) {
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(production),
        "{context}"
    );
    assert!(env.trace().is_empty(), "no stop ran: {:?}", env.trace());
}

/// Shared `log`, the web user's `temp`, a build step that adds a file, and
/// daemons that write `stop`/`start` into the trace.
fn config() -> String {
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into());
    format!(
        r#"
branch = "main"
shared = ["log"]
min_free = "off"
lock_timeout = 120
web_user = "{me}"
writable = ["temp"]
verify_ignore = ["var/log"]
[warmup]
build = ["mkdir -p vendor && echo '<?php // built' > vendor/autoload.php"]
links = []
notify = []
[promote]
stop = ["echo \"stop $PWD\" >> \"$SYMDEPLOY_ROOT/trace.log\""]
after_switch = []
start = ["echo \"start $PWD\" >> \"$SYMDEPLOY_ROOT/trace.log\""]
notify = []
"#
    )
}

fn env() -> Env {
    let env = Env::with_config(&config());
    env.write("www/index.php", "<?php echo 'hello';\n");
    env.write("www/robots.txt", "User-agent: *\n");
    env.write("temp/.gitignore", "*\n!.gitignore\n");
    env.write("var/log/.gitignore", "*\n!.gitignore\n");
    env.commit("php app");
    env
}

fn verify(env: &Env, args: &[&str]) -> (Option<i32>, String, String) {
    let o = env.symdeploy(&[&["verify"], args].concat());
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Push main and promote it; returns the commit.
fn deploy(env: &Env) -> String {
    let c = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    let o = env.symdeploy(&["promote"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(env.pointed("production").as_deref(), Some(c.as_str()));
    c
}

#[test]
fn each_change_to_production_shows_with_its_kind_and_data_never_does() {
    let env = env();
    let c = deploy(&env);
    let rel = env.release(&c);
    assert!(
        env.root
            .join(format!(".symdeploy/manifests/{c}.gz"))
            .is_file(),
        "the warm-up wrote a manifest"
    );
    let (code, out, err) = verify(&env, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out, "", "nothing on stdout when clean");
    assert!(
        err.contains("(production, warmup) matches its manifest"),
        "{err}"
    );

    // What the web user and the shared data get never counts.
    std::fs::write(rel.join("temp/cache.php"), "<?php // cache").unwrap();
    std::fs::create_dir_all(rel.join("var/log")).unwrap();
    std::fs::write(rel.join("var/log/app.log"), "line\n").unwrap();
    std::fs::write(env.root.join("common/log/error.log"), "boom\n").unwrap();
    std::fs::write(rel.join("log/more.log"), "through the link\n").unwrap();
    let (code, out, err) = verify(&env, &[]);
    assert_eq!(
        code,
        Some(0),
        "writable, ignored and shared paths: {out}{err}"
    );

    // Each change, one at a time, with its kind.
    let mut expected: Vec<String> = Vec::new();
    let mut step = |what: &dyn Fn(), line: &str| {
        what();
        expected.push(line.to_string());
        expected.sort();
        let (code, out, err) = verify(&env, &[]);
        assert_eq!(code, Some(1), "after `{line}`: {out}{err}");
        let mut got: Vec<String> = out.lines().map(str::to_string).collect();
        got.sort();
        assert_eq!(got, expected, "{err}");
        assert!(err.contains("has changed since its warm-up"), "{err}");
    };
    let p = |s: &str| rel.join(s);
    step(
        &|| {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(p("www/index.php"))
                .unwrap();
            f.write_all(b"eval($_GET['x']);\n").unwrap();
        },
        "modified: www/index.php",
    );
    step(
        &|| std::fs::write(p("www/x.php"), "<?php system($_GET[1]);").unwrap(),
        "added: www/x.php",
    );
    step(
        &|| std::fs::remove_file(p("REVISION")).unwrap(),
        "removed: REVISION",
    );
    step(
        &|| {
            std::fs::set_permissions(
                p("vendor/autoload.php"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap()
        },
        "mode: vendor/autoload.php",
    );
    step(
        &|| {
            std::fs::remove_file(p("www/robots.txt")).unwrap();
            std::os::unix::fs::symlink("/etc/passwd", p("www/robots.txt")).unwrap();
        },
        "type: www/robots.txt",
    );
    // The shared link itself is part of the release.
    step(
        &|| {
            std::fs::remove_file(p("log")).unwrap();
            std::os::unix::fs::symlink("/var/log", p("log")).unwrap();
        },
        "modified: log",
    );

    // --json carries the same, with details.
    let (code, out, _) = verify(&env, &["--json"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v["releases"][0];
    assert_eq!(r["result"], "drifted");
    assert_eq!(r["roles"][0], "production");
    assert_eq!(r["counts"]["modified"], 2);
    assert_eq!(r["counts"]["type"], 1);
    let robots = r["drift"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == "www/robots.txt")
        .unwrap();
    assert_eq!(robots["detail"], "file -> symlink to /etc/passwd");
}

#[test]
fn a_hostile_name_is_printed_escaped() {
    let env = env();
    let c = deploy(&env);
    std::fs::write(env.release(&c).join("www/\x1b[2Jx\nmodified: fake"), "x").unwrap();
    let (code, out, _) = verify(&env, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(out.lines().count(), 1, "one line, not two: {out:?}");
    assert!(!out.contains('\x1b'), "{out:?}");
    assert!(out.starts_with("added: www/"), "{out:?}");
}

#[test]
fn promote_refuses_a_release_changed_after_its_warmup_before_any_stop() {
    let env = env();
    let first = deploy(&env);
    env.write("www/index.php", "<?php echo 'v2';\n");
    let second = env.commit("v2");
    env.push_ok(&["main"]);
    env.clear_trace();
    std::fs::write(env.release(&second).join("www/shell.php"), "<?php").unwrap();

    let o = env.symdeploy(&["promote"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "error: releases/{} has changed since its warm-up (1 difference): added: www/shell.php; not promoting it",
            &second[..12]
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!("symdeploy warmup --rebuild {}", &second[..12])),
        "{t}"
    );
    assert_refused_untouched(&env, &first, "");

    // The same through a release tag.
    env.git(&["tag", "release-1", &second]);
    let t = text(&env.push(&["release-1"]));
    assert!(t.contains("not promoting it"), "{t}");
    assert_refused_untouched(&env, &first, "");

    // The advice works: rebuilt from its commit (warmup stands on
    // production meanwhile), it verifies and goes.
    let o = env.symdeploy(&["warmup", "--rebuild", &second[..12]]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("(production's) while releases/"), "{t}");
    assert!(!env.release(&second).join("www/shell.php").exists());
    assert_eq!(env.pointed("warmup").as_deref(), Some(second.as_str()));
    let (code, out, err) = verify(&env, &["warmup"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let o = env.symdeploy(&["promote"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(env.pointed("production").as_deref(), Some(second.as_str()));
}

/// `git push -o promote` does not hash again a release its own warm-up
/// has just built; a release that was ready before the push is still
/// checked, and refused when it changed.
#[test]
fn push_o_promote_checks_a_release_that_was_ready_before_the_push() {
    let env = env();
    let first = deploy(&env);
    env.write("www/index.php", "<?php echo 'v2';\n");
    let second = env.commit("v2");
    // The commit reaches the server on another branch (not deployed) and is
    // warmed up by hand: ready before the push that promotes it.
    env.push_ok(&["HEAD:refs/heads/elsewhere"]);
    let o = env.symdeploy(&["warmup", &second]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(env.release(&second).join("www/shell.php"), "<?php").unwrap();
    env.clear_trace();

    let t = text(&env.push(&["-o", "promote", "HEAD:main"]));
    assert!(
        t.contains(&format!(
            "releases/{} has changed since its warm-up (1 difference): added: www/shell.php; not promoting it",
            &second[..12]
        )),
        "{t}"
    );
    assert_refused_untouched(&env, &first, "");

    // A commit the push itself warms up is promoted without a second hash.
    env.write("www/index.php", "<?php echo 'v3';\n");
    let third = env.commit("v3");
    env.push_ok(&["-o", "promote", "HEAD:main"]);
    assert_eq!(env.pointed("production").as_deref(), Some(third.as_str()));
    let logs = std::fs::read_dir(env.root.join(".symdeploy/logs")).unwrap();
    let skipped = logs.flatten().any(|l| {
        std::fs::read_to_string(l.path())
            .is_ok_and(|t| t.contains("verify: skipped, its manifest was made from these files"))
    });
    assert!(
        skipped,
        "the promote's run log says why it did not hash again"
    );
}

#[test]
fn promote_verify_off_skips_the_check() {
    let env = env();
    deploy(&env);
    env.write("www/index.php", "<?php echo 'v2';\n");
    let second = env.commit("v2");
    env.push_ok(&["main"]);
    std::fs::write(env.release(&second).join("www/shell.php"), "<?php").unwrap();
    env.set_config(&config().replace("[promote]\n", "[promote]\nverify = \"off\"\n"));
    let o = env.symdeploy(&["promote"]);
    assert!(o.status.success(), "{}", text(&o));
    // The metadata check finds what the full one finds.
    env.set_config(&config().replace("[promote]\n", "[promote]\nverify = \"metadata\"\n"));
    let o = env.symdeploy(&["status", "--check"]);
    assert!(text(&o).contains("added: www/shell.php"), "{}", text(&o));
}

#[test]
fn rollback_refuses_a_changed_target_unless_forced() {
    let env = env();
    let first = deploy(&env);
    env.write("www/index.php", "<?php echo 'v2';\n");
    env.commit("v2");
    let second = deploy(&env);
    env.clear_trace();
    std::fs::write(env.release(&first).join("www/index.php"), "<?php hacked").unwrap();

    let o = env.symdeploy(&["rollback"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("modified: www/index.php; not rolling back"),
        "{t}"
    );
    assert!(t.contains("symdeploy rollback --force"), "{t}");
    assert_refused_untouched(&env, &second, "");

    let o = env.symdeploy(&["rollback", "--force"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("warning: releases/"), "{t}");
    assert!(t.contains("rolling back to it anyway (--force)"), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(first.as_str()));
}

#[test]
fn status_check_and_prometheus_report_drift() {
    let env = env();
    let c = deploy(&env);
    let o = env.symdeploy(&["status", "--check"]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(env.release(&c).join("www/x.php"), "<?php").unwrap();
    let o = env.symdeploy(&["status", "--check"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "- production and warmup (releases/{}) has changed since its warm-up: 1 difference: added: www/x.php",
            &c[..12]
        )),
        "{t}"
    );

    let o = env.symdeploy(&["status", "--prometheus"]);
    assert!(o.status.success(), "{}", text(&o));
    let Some(samples) = crate::common::parse_prometheus(&o.stdout) else {
        return;
    };
    let line = samples
        .lines()
        .find(|l| l.starts_with("symdeploy_drift_files ") && l.contains("\"kind\": \"added\""))
        .unwrap_or_else(|| panic!("no drift metric: {samples}"));
    assert!(line.contains(&format!("\"release\": \"{c}\"")), "{line}");
    assert!(line.ends_with(" 1.0"), "{line}");
    let modified = samples
        .lines()
        .find(|l| l.starts_with("symdeploy_drift_files ") && l.contains("\"kind\": \"modified\""))
        .unwrap();
    assert!(modified.ends_with(" 0.0"), "{modified}");
}

#[test]
fn a_release_without_a_manifest_is_said_so_and_still_promotes() {
    let env = env();
    let c = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    // As a release warmed up by an older symdeploy.
    std::fs::remove_file(env.root.join(format!(".symdeploy/manifests/{c}.gz"))).unwrap();
    let (code, out, err) = verify(&env, &["warmup"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("has no manifest"), "{err}");
    let o = env.symdeploy(&["promote"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("has no manifest"), "{t}");
    // status --check does not call an old release a problem.
    let o = env.symdeploy(&["status", "--check"]);
    assert!(o.status.success(), "{}", text(&o));

    // One from the commit: the exported files are checked, the build's
    // vendor/ is not taken for an addition, the shared link is left alone.
    let o = env.symdeploy(&["verify", "--from-commit"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("wrote a manifest of releases/"), "{t}");
    assert!(t.contains("the exported files only"), "{t}");
    let o = env.symdeploy(&["verify", "--from-commit"]);
    assert!(text(&o).contains("has a manifest already"), "{}", text(&o));
    std::fs::write(env.release(&c).join("www/index.php"), "<?php hacked").unwrap();
    std::fs::write(env.release(&c).join("www/x.php"), "<?php").unwrap();
    let (code, out, err) = verify(&env, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(out, "modified: www/index.php\n", "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(env.root.join("releases"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn all_covers_every_ready_release_and_a_removed_release_takes_its_manifest() {
    let env = env();
    let first = deploy(&env);
    env.write("www/index.php", "<?php echo 'v2';\n");
    let second = env.commit("v2");
    env.push_ok(&["main"]);
    std::fs::write(env.release(&first).join("www/x.php"), "<?php").unwrap();
    let (code, out, err) = verify(&env, &["--all"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(out, format!("added: releases/{first}/www/x.php\n"));
    assert!(
        err.contains(&format!("releases/{} (warmup) matches", &second[..12])),
        "{err}"
    );
    let (code, _, err) = verify(&env, &[&second[..8]]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = verify(&env, &["nope"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no release matches `nope`"), "{err}");

    // Cleanup removes a release's manifest with it.
    let o = env.symdeploy(&["cleanup", "--keep", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let left: Vec<String> = std::fs::read_dir(env.root.join(".symdeploy/manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for c in [&first, &second] {
        assert_eq!(
            left.contains(&format!("{c}.gz")),
            env.release(c).exists(),
            "{left:?}"
        );
    }
}

#[test]
fn a_kill_while_the_manifest_is_written_leaves_no_ready_release_and_the_next_push_sweeps_it() {
    let env = env();
    let c = env.git(&["rev-parse", "HEAD"]);
    let mut push = crate::common::git_cmd(&env.work);
    push.args(["push", "deploy", "main"])
        .env("SYMDEPLOY_FAULT", "manifest-written");
    let o = crate::common::run(&mut push);
    assert!(!text(&o).contains("success: warmup"), "{}", text(&o));
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.root.join(format!(".symdeploy/releases/{c}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["state"], "building", "{record}");
    let manifests = |env: &Env| -> Vec<String> {
        std::fs::read_dir(env.root.join(".symdeploy/manifests"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let left = manifests(&env);
    assert!(!left.contains(&format!("{c}.gz")), "{left:?}");
    assert!(
        left.iter().any(|n| n.starts_with(".tmp-manifest-")),
        "the kill came inside the write: {left:?}"
    );
    assert_eq!(env.pointed("warmup"), None);

    env.write("www/index.php", "<?php echo 'again';\n");
    let next = env.commit("again");
    env.push_ok(&["main"]);
    assert_eq!(env.pointed("warmup").as_deref(), Some(next.as_str()));
    let left = manifests(&env);
    assert!(
        !left.iter().any(|n| n.starts_with(".tmp-manifest-")),
        "swept: {left:?}"
    );
    let (code, out, err) = verify(&env, &["warmup"]);
    assert_eq!(code, Some(0), "{out}{err}");
}

#[test]
fn a_strict_tag_push_of_a_changed_release_is_refused_before_any_stop() {
    let env = Env::with_init_args(
        &format!("hook = \"pre-receive\"\n{}", config()),
        &["--strict"],
    );
    env.write("www/index.php", "<?php echo 'hello';\n");
    let first = env.commit("php app");
    env.push_ok(&["main"]);
    assert!(env.symdeploy(&["promote"]).status.success());
    env.write("www/index.php", "<?php echo 'v2';\n");
    let second = env.commit("v2");
    env.push_ok(&["main"]);
    assert_eq!(env.pointed("warmup").as_deref(), Some(second.as_str()));
    std::fs::write(env.release(&second).join("www/shell.php"), "<?php").unwrap();
    env.clear_trace();

    env.git(&["tag", "release-1", &second]);
    let o = env.push(&["release-1"]);
    let t = text(&o);
    assert!(t.contains("added: www/shell.php; not promoting it"), "{t}");
    assert_refused_untouched(&env, &first, &t);
}

/// What people see: a clean check, a changed release, promote's refusal and
/// status --check, pinned.
#[test]
fn transcript_of_a_changed_release() {
    let env = env();
    deploy(&env);
    env.write("www/index.php", "<?php echo 'v2';\n");
    let second = env.commit("v2");
    env.push_ok(&["main"]);
    let mut t = String::new();
    let mut show = |args: &[&str]| {
        let o = env.symdeploy(args);
        t.push_str(&format!(
            "$ symdeploy {} (exit {})\n{}{}",
            args.join(" "),
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    };
    show(&["verify", "warmup"]);
    let rel = env.release(&second);
    std::fs::write(rel.join("www/shell.php"), "<?php").unwrap();
    std::fs::write(
        rel.join("www/index.php"),
        "<?php echo 'v2'; eval($_GET[1]);\n",
    )
    .unwrap();
    std::fs::remove_file(rel.join("www/robots.txt")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", rel.join("www/robots.txt")).unwrap();
    show(&["verify", "warmup"]);
    show(&["promote"]);
    show(&["status", "--check"]);
    let _s = crate::common::snapshot_settings(&env).bind_to_scope();
    insta::assert_snapshot!(crate::common::redact(&t));
}

/// The warm-up takes the export's own hashes for files nothing touched
/// since and reads again only what the build made or changed, down to a
/// file rewritten in place with its size and mtime kept (only the ctime
/// and, for a file replaced by a rename, the inode tell): the manifest
/// vouches for what the build left, so `verify` finds the release clean.
#[test]
fn the_manifest_catches_files_the_build_rewrote_in_place_keeping_size_and_mtime() {
    let step = "true \
        && touch -r www/index.php ref.tmp \
        && printf X | dd of=www/index.php bs=1 count=1 conv=notrunc 2>/dev/null \
        && touch -r ref.tmp www/index.php && rm ref.tmp \
        && sed s/agent/AGENT/ www/robots.txt > robots.new \
        && touch -r www/robots.txt robots.new && mv robots.new www/robots.txt";
    let cfg = config().replace(
        "build = [\"mkdir -p vendor && echo '<?php // built' > vendor/autoload.php\"]",
        &format!("build = [\"{step}\"]"),
    );
    assert_ne!(cfg, config(), "the build step was replaced");
    let env = Env::with_config(&cfg);
    env.write("www/index.php", "<?php echo 'hello';\n");
    env.write("www/robots.txt", "User-agent: *\n");
    // Exported after www/: the stamps of the files the step rewrites are
    // older than the end of the export by far more than a clock tick, so
    // the export's hashes for them would be taken if the stamps matched.
    for i in 0..3000 {
        env.write(&format!("zz/f{i}.php"), &format!("<?php // {i}\n"));
    }
    let c = env.commit("php app");
    env.push_ok(&["main"]);
    let release = env.release(&c);
    assert_eq!(
        std::fs::read_to_string(release.join("www/index.php")).unwrap(),
        "X?php echo 'hello';\n"
    );
    assert_eq!(
        std::fs::read_to_string(release.join("www/robots.txt")).unwrap(),
        "User-AGENT: *\n"
    );
    let (code, out, err) = verify(&env, &["warmup"]);
    assert_eq!(code, Some(0), "{out}{err}");
    // The export's hashes stood in for most files: only the rewritten
    // ones, REVISION and the last few written were read again.
    let logs = env.root.join(".symdeploy/logs");
    let log = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().contains("-warmup-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .expect("the warm-up's run log");
    let scanned = log
        .lines()
        .find(|l| l.contains("scanned") && l.contains("hashed="))
        .unwrap_or_else(|| panic!("no scan line in the log:\n{log}"));
    let hashed: usize = scanned
        .split(" hashed=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{scanned}"));
    assert!((3..1500).contains(&hashed), "{scanned}");
}
