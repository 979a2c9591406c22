//! The fault-tolerance suite (quick cases; scripts/faults has the long
//! runs). Every fault is followed by the deploy invariants: production
//! and warmup resolve to complete ready releases matching their commits,
//! common/ is unchanged, the daemons are not left stopped, no stale lock, and
//! the next deploy succeeds and removes the leftovers. Real binary, real git.

use crate::common::*;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

// ----------------------------------------------------------------------------- invariants

/// The shared paths of TEST_CONFIG: links into common/ in every release.
const SHARED: &[&str] = &["log", "www/data/images"];

fn under_shared(path: &str, shared: &[&str]) -> bool {
    shared
        .iter()
        .any(|s| path == *s || path.starts_with(&format!("{s}/")))
}

/// `name` (production or warmup), if it exists, points at a complete, ready
/// release whose files are exactly its commit's (shared paths aside).
fn assert_link_sound(env: &Env, name: &str, shared: &[&str]) -> Option<String> {
    let link = env.root.join(name);
    std::fs::symlink_metadata(&link).ok()?;
    let commit = env
        .pointed(name)
        .unwrap_or_else(|| panic!("{name} is not a link to releases/<commit>"));
    let release = env.release(&commit);
    assert!(
        release.is_dir(),
        "{name} -> releases/{commit}, which does not exist"
    );
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.root.join(format!(".symdeploy/releases/{commit}.json")))
            .unwrap_or_else(|e| panic!("{name} -> {commit} has no state record: {e}")),
    )
    .unwrap();
    assert_eq!(record["state"], "ready", "{name} -> {commit}: {record}");
    let expected_dir = env
        .tmp
        .path()
        .join(format!("expect-{name}-{commit}-{}", unique()));
    git_archive(&env.root.join("repository"), &commit, &expected_dir);
    let mut got = snapshot(&release);
    assert_eq!(
        got.remove("REVISION"),
        Some(format!("file exec=false {commit}\n")),
        "{name}: REVISION"
    );
    got.retain(|k, _| !under_shared(k, shared));
    let mut want = snapshot(&expected_dir);
    want.retain(|k, _| !under_shared(k, shared));
    assert_eq!(
        got, want,
        "{name} -> {commit}: files differ from the commit"
    );
    let _ = std::fs::remove_dir_all(&expected_dir);
    for s in shared {
        let l = std::fs::read_link(release.join(s))
            .unwrap_or_else(|e| panic!("{name}: shared path {s} is not a link: {e}"));
        assert!(
            l.to_string_lossy().ends_with(&format!("common/{s}")),
            "{l:?}"
        );
    }
    Some(commit)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Nobody holds the deploy lock.
fn assert_lock_free(env: &Env) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(env.root.join(".symdeploy/lock"))
        .expect("lock file");
    if let Err((_, e)) = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        panic!("the deploy lock is still held after the fault: {e}");
    }
}

/// Temporary export directories and temporary links in the root.
fn leftovers(env: &Env) -> Vec<String> {
    let mut out = Vec::new();
    for (dir, prefix) in [
        (env.root.join("releases"), ".tmp-"),
        (env.root.clone(), ".symdeploy-link-"),
        (env.root.join(".symdeploy/releases"), ".tmp"),
        (env.root.join(".symdeploy"), "quarantine-view-"),
    ] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) {
                out.push(dir.join(name).display().to_string());
            }
        }
    }
    out
}

/// The journal's readable entries (a torn line, as a crash leaves it, is skipped
/// like symdeploy skips it).
fn journal(env: &Env) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.root.join(".symdeploy/journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn common_snapshot(env: &Env) -> BTreeMap<String, String> {
    snapshot(&env.root.join("common"))
}

/// Everything a no-op must leave alone: links, releases, records, journal, common/.
fn state_fingerprint(env: &Env) -> String {
    let mut s = String::new();
    for name in ["production", "warmup", "www", "www_warmup", "app"] {
        s += &format!(
            "{name}={:?}\n",
            std::fs::read_link(env.root.join(name)).ok()
        );
    }
    for dir in ["releases", ".symdeploy/releases"] {
        let mut names: Vec<String> = std::fs::read_dir(env.root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        s += &format!("{dir}: {names:?}\n");
    }
    s += &format!("journal: {} lines\n", journal(env).len());
    s += &format!("common: {:?}\n", common_snapshot(env));
    s
}

/// All the deploy invariants at one instant.
fn assert_invariants(env: &Env, common_before: &BTreeMap<String, String>, context: &str) {
    assert_link_sound(env, "production", SHARED);
    assert_link_sound(env, "warmup", SHARED);
    assert_eq!(
        &common_snapshot(env),
        common_before,
        "{context}: common/ changed"
    );
    assert_ready_have_manifests(env, context);
}

/// Every release recorded ready has a complete manifest its files match:
/// `verify --all` exits 2 for a missing one, 1 for a damaged one or a
/// difference.
fn assert_ready_have_manifests(env: &Env, context: &str) {
    let o = env.symdeploy(&["verify", "--all"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{context}: a ready release without a complete, matching manifest: {}",
        text(&o)
    );
}

// ----------------------------------------------------------------------------- helpers

fn symdeploy_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut c = env.command(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    run(&mut c)
}

fn killed(out: &Output) -> bool {
    out.status.signal() == Some(9)
}

/// A root with production on a first commit (A), user data in common/, and a
/// second commit (B) made but not pushed.
struct Scene {
    env: Env,
    a: String,
    b: String,
    common: BTreeMap<String, String>,
}

fn scene() -> Scene {
    scene_with(TEST_CONFIG)
}

fn scene_with(config: &str) -> Scene {
    let env = Env::with_config(config);
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    ok(&env.symdeploy(&["promote"]));
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    std::fs::write(
        env.root.join("common/www/data/images/upload.jpg"),
        "user data",
    )
    .unwrap();
    std::fs::write(env.root.join("common/log/app.log"), "log line\n").unwrap();
    let common = common_snapshot(&env);
    env.write("www/index.html", "second\n");
    let b = env.commit("second");
    Scene { env, a, b, common }
}

/// After recovery: the next deploy (a new commit, pushed, then promoted)
/// succeeds, cleans the leftovers, and every invariant holds.
fn assert_next_deploy_works(s: &Scene, context: &str) {
    let env = &s.env;
    assert_lock_free(env);
    env.write("www/index.html", &format!("next after {context}\n"));
    let c = env.commit("next deploy");
    let t = env.push_ok(&["-f", "main"]);
    assert!(
        // (no `remote:` before it in strict mode: the flip runs in the
        // reference-transaction hook, whose lines git passes through as they are)
        t.contains(&format!("success: warmup -> releases/{}", &c[..12])),
        "{context}: next push: {t}"
    );
    assert!(
        leftovers(env).is_empty(),
        "{context}: left over after the next deploy: {:?}",
        leftovers(env)
    );
    ok(&env.symdeploy(&["promote"]));
    assert_eq!(env.pointed("production").as_deref(), Some(c.as_str()));
    assert_invariants(env, &s.common, context);
    assert_daemons_running(env, context);
    assert!(
        journal(env).iter().all(|e| e["phase"] == "end"
            || journal(env)
                .iter()
                .any(|x| x["run"] == e["run"] && x["phase"] == "end")),
        "{context}: a run is still open in the journal"
    );
}

// ----------------------------------------------------------------------------- 1. SIGKILL at every point

const WARMUP_POINTS: &[&str] = &[
    "export",
    "before-rename-release",
    "build",
    "links",
    "migrate",
    // Inside the manifest's write: after its data, before its sync and rename.
    "manifest-written",
    "before-flip-warmup",
    "before-rename-warmup",
    "after-flip-warmup",
];

const PROMOTE_POINTS: &[&str] = &[
    "stop",
    "before-flip-production",
    "before-rename-production",
    "after-flip-production",
    "after_switch",
    "start",
];

#[test]
fn sigkill_during_a_pushed_warmup_at_every_point() {
    for point in WARMUP_POINTS {
        let s = scene();
        let env = &s.env;
        let out = env.push_with(&["main"], &[("SYMDEPLOY_FAULT", point)]);
        // post-receive: the ref update landed; the hook died.
        assert!(out.status.success(), "{point}: {}", text(&out));
        assert!(
            !text(&out).contains("success: warmup"),
            "{point}: the fault did not fire: {}",
            text(&out)
        );
        assert_invariants(env, &s.common, point);
        assert_eq!(env.pointed("production").as_deref(), Some(s.a.as_str()));
        assert_lock_free(env);
        // What a kill inside release::save leaves: a temporary record.
        std::fs::write(env.root.join(".symdeploy/releases/.tmpKILLED"), "{\"sta").unwrap();

        let rec = env.symdeploy(&["recover"]);
        let t = ok(&rec);
        assert!(
            t.contains(&format!(
                "recovering an interrupted warmup of {}",
                short(&s.b)
            )),
            "{point}: {t}"
        );
        // The commit's steps all ran when the kill came after them: finishing the
        // flip is then what the pusher asked for; otherwise warmup stays.
        let warm = env.pointed("warmup");
        if [
            "before-flip-warmup",
            "before-rename-warmup",
            "after-flip-warmup",
        ]
        .contains(point)
        {
            assert_eq!(warm.as_deref(), Some(s.b.as_str()), "{point}: {t}");
        } else {
            assert_eq!(warm.as_deref(), Some(s.a.as_str()), "{point}: {t}");
            let record: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(
                    env.root.join(format!(".symdeploy/releases/{}.json", s.b)),
                )
                .unwrap(),
            )
            .unwrap();
            assert_eq!(record["state"], "failed", "{point}: {record}");
        }
        assert_invariants(env, &s.common, point);
        let again = ok(&env.symdeploy(&["recover"]));
        assert!(again.contains("nothing to recover"), "{point}: {again}");
        assert_next_deploy_works(&s, point);
    }
}

#[test]
fn sigkill_during_a_warmup_is_repaired_by_the_next_push_itself() {
    for point in ["export", "build", "before-flip-warmup"] {
        let s = scene();
        let env = &s.env;
        let out = env.push_with(&["main"], &[("SYMDEPLOY_FAULT", point)]);
        assert!(!text(&out).contains("success: warmup"), "{point}");
        env.write("www/index.html", "third\n");
        let c = env.commit("third");
        let t = env.push_ok(&["main"]);
        assert!(
            t.contains(&format!(
                "remote: -----> recovering an interrupted warmup of {}",
                short(&s.b)
            )) && t.contains(&format!("success: warmup -> releases/{}", &c[..12])),
            "{point}: {t}"
        );
        assert!(leftovers(env).is_empty(), "{point}: {:?}", leftovers(env));
        assert_invariants(env, &s.common, point);
        assert_next_deploy_works(&s, point);
    }
}

#[test]
fn sigkill_during_promote_at_every_point_then_recover() {
    for point in PROMOTE_POINTS {
        let s = scene();
        let env = &s.env;
        env.push_ok(&["main"]);
        let out = symdeploy_with(env, &["promote"], &[("SYMDEPLOY_FAULT", point)]);
        assert!(killed(&out), "{point}: {}", text(&out));
        assert_invariants(env, &s.common, point);
        assert_lock_free(env);
        let t = ok(&env.symdeploy(&["recover"]));
        assert!(
            t.contains(&format!(
                "recovering an interrupted promote of {}",
                short(&s.b)
            )),
            "{point}: {t}"
        );
        let flipped = ["after-flip-production", "after_switch", "start"].contains(point);
        let want = if flipped { &s.b } else { &s.a };
        assert_eq!(
            env.pointed("production").as_ref(),
            Some(want),
            "{point}: {t}"
        );
        if flipped {
            assert!(t.contains("finishing"), "{point}: {t}");
        } else {
            assert!(t.contains("starting the daemons"), "{point}: {t}");
        }
        assert_daemons_running(env, point);
        assert_invariants(env, &s.common, point);
        let last = journal(env).pop().unwrap();
        assert_eq!(last["phase"], "end", "{point}");
        assert_next_deploy_works(&s, point);
    }
}

#[test]
fn sigkill_during_promote_is_repaired_by_the_next_deploy_itself() {
    for point in ["after-flip-production", "stop", "start"] {
        let s = scene();
        let env = &s.env;
        env.push_ok(&["main"]);
        let out = symdeploy_with(env, &["promote"], &[("SYMDEPLOY_FAULT", point)]);
        assert!(killed(&out), "{point}: {}", text(&out));
        // No `symdeploy recover`: the next push notices and repairs.
        env.write("www/index.html", "third\n");
        env.commit("third");
        let t = env.push_ok(&["main"]);
        assert!(
            t.contains(&format!(
                "remote: -----> recovering an interrupted promote of {}",
                short(&s.b)
            )),
            "{point}: {t}"
        );
        assert_daemons_running(env, point);
        assert_invariants(env, &s.common, point);
        assert_next_deploy_works(&s, point);
    }
}

#[test]
fn sigkill_during_a_tag_promote_and_a_rollback() {
    let s = scene();
    let env = &s.env;
    env.push_ok(&["main"]);
    env.git(&["tag", "release-1"]);
    let out = env.push_with(
        &["release-1"],
        &[("SYMDEPLOY_FAULT", "after-flip-production")],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.pointed("production").as_deref(), Some(s.b.as_str()));
    let t = ok(&env.symdeploy(&["status"]));
    assert!(t.contains("interrupted promote"), "{t}");
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(t.contains("finished after the interruption"), "{t}");
    assert_daemons_running(env, "tag promote");

    // A rollback killed right after its flip is finished by recover.
    let out = symdeploy_with(env, &["rollback"], &[("SYMDEPLOY_FAULT", "after_switch")]);
    assert!(killed(&out), "{}", text(&out));
    assert_eq!(env.pointed("production").as_deref(), Some(s.a.as_str()));
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(
        t.contains(&format!(
            "recovering an interrupted rollback of {}",
            short(&s.a)
        )),
        "{t}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(s.a.as_str()));
    assert_daemons_running(env, "rollback");
    assert_invariants(env, &s.common, "rollback");
    assert_next_deploy_works(&s, "rollback");
}

// ----------------------------------------------------------------------------- 2. pusher disconnect

/// The text of the per-run logs whose names carry `commit`.
fn logs_text(env: &Env, commit: &str) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(env.root.join(".symdeploy/logs")).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().contains(short(commit)) {
            out += &std::fs::read_to_string(e.path()).unwrap_or_default();
        }
    }
    out
}

#[test]
fn the_pusher_hanging_up_does_not_stop_the_deploy() {
    let config = TEST_CONFIG.replace(
        "build = [\"make production-composer\", \"make production-assets\"]",
        "build = [\"echo build-begins\", \"sleep 2; for i in $(seq 1 2000); do echo output line $i; done\", \"echo build-ends\", \"make production-composer\"]",
    );
    let s = scene_with(&config);
    let env = &s.env;
    let mut push = git_cmd(&env.work)
        .args(["push", "deploy", "main"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_within("the build to start", Duration::from_secs(60), || {
        logs_text(env, &s.b).contains("build-begins")
    });
    // The pusher goes away (a dropped SSH connection, ^C): git and its pipes die.
    push.kill().unwrap();
    drop(push.stderr.take());
    drop(push.stdout.take());
    let _ = push.wait();
    wait_for_within("the deploy to end", Duration::from_secs(120), || {
        journal(env)
            .iter()
            .any(|e| e["phase"] == "end" && e["commit"] == s.b.as_str())
    });
    // The success line follows the journal's end entry.
    wait_for_within(
        "the success line in the log",
        Duration::from_secs(60),
        || logs_text(env, &s.b).contains("success: warmup"),
    );
    let end = journal(env)
        .into_iter()
        .find(|e| e["phase"] == "end" && e["commit"] == s.b.as_str())
        .unwrap();
    assert_eq!(end["result"], "ok", "{end}");
    assert_eq!(env.pointed("warmup").as_deref(), Some(s.b.as_str()));
    let log = logs_text(env, &s.b);
    for want in [
        "output line 2000",
        "build-ends",
        &format!("success: warmup -> releases/{}", &s.b[..12]),
    ] {
        assert!(log.contains(want), "{want} missing from the log: {log}");
    }
    assert!(env.trace().iter().any(|l| l.starts_with("notify-warmup")));
    assert_invariants(env, &s.common, "pusher hung up");
    assert_next_deploy_works(&s, "pusher hung up");
}

// ----------------------------------------------------------------------------- 3. disk full

/// A mount made for one test, undone when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str], dir: &Path) -> Result<Mounted, String> {
    let out = run(Command::new("mount").args(args).arg(dir));
    if out.status.success() {
        Ok(Mounted(dir.to_path_buf()))
    } else {
        Err(text(&out))
    }
}

#[test]
fn a_full_disk_during_export_fails_cleanly() {
    // The disk preflight would refuse this before the export even starts
    // (tests/integration/history.rs); here the disk fills up during the export itself.
    let env = Env::with_config(&format!("min_free = \"off\"\n{TEST_CONFIG}"));
    let releases = env.root.join("releases");
    let _tmpfs = match mount(&["-t", "tmpfs", "-o", "size=2m", "tmpfs"], &releases) {
        Ok(m) => m,
        Err(e) => return cannot_here(&format!("disk-full case: cannot mount a tmpfs: {e}")),
    };
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    ok(&env.symdeploy(&["promote"]));
    std::fs::write(env.root.join("common/log/app.log"), "kept\n").unwrap();
    let common = common_snapshot(&env);
    // 3 MiB of data that does not fit in the 2 MiB filesystem.
    let big: String = (0..3 * 1024 * 1024 / 64)
        .map(|i| format!("{i:063}\n"))
        .collect();
    env.write("www/big.txt", &big);
    let b = env.commit("too big for the disk");
    let t = text(&env.push(&["main"]));
    assert!(
        t.contains("No space left on device") && t.contains("releases/.tmp-"),
        "the error must name the path: {t}"
    );
    assert!(
        t.contains("failed: the disk is full")
            && t.contains(&format!(
                "the filesystem holding {} has ",
                releases.display()
            ))
            && t.contains(&format!("free, and {} needs about 3.", short(&b))),
        "the error must name the free space: {t}"
    );
    assert!(leftovers(&env).is_empty(), "{:?}", leftovers(&env));
    assert!(!env.release(&b).exists());
    let used = nix::sys::statvfs::statvfs(&releases).unwrap();
    assert!(
        used.blocks_free() * used.fragment_size() > 1024 * 1024,
        "the partial release was not removed"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()));
    assert_eq!(journal(&env).last().unwrap()["result"], "failed");
    assert_invariants(&env, &common, "disk full");
    // Once the commit fits, the next deploy goes through.
    env.git(&["rm", "-q", "www/big.txt"]);
    let c = env.commit("smaller");
    env.push_ok(&["main"]);
    ok(&env.symdeploy(&["promote"]));
    assert_eq!(env.pointed("production").as_deref(), Some(c.as_str()));
    assert_invariants(&env, &common, "disk full, then fixed");
}

// ----------------------------------------------------------------------------- 4. concurrency

/// start/end markers of a build step must never interleave.
const MARKED_CONFIG: &str = r#"
shared = []
lock_timeout = 300
[warmup]
build = ["echo \"begin $SYMDEPLOY_COMMIT\" >> \"$SYMDEPLOY_ROOT/order\"; sleep 0.2; echo \"end $SYMDEPLOY_COMMIT\" >> \"$SYMDEPLOY_ROOT/order\""]
links = []
notify = []
[promote]
stop = ["echo \"stop $SYMDEPLOY_COMMIT\" >> \"$SYMDEPLOY_ROOT/trace.log\"; sleep 0.3"]
after_switch = []
start = ["echo \"start $SYMDEPLOY_COMMIT\" >> \"$SYMDEPLOY_ROOT/trace.log\""]
notify = []
"#;

fn assert_serialised(env: &Env) -> Vec<String> {
    let order = std::fs::read_to_string(env.root.join("order")).unwrap();
    let lines: Vec<&str> = order.lines().collect();
    let mut commits = Vec::new();
    for pair in lines.chunks(2) {
        let (b, e) = (pair[0], pair.get(1).copied().unwrap_or("(none)"));
        let c = b.strip_prefix("begin ").expect(b);
        assert_eq!(e, format!("end {c}"), "builds overlapped: {order}");
        commits.push(c.to_string());
    }
    commits
}

fn journal_ends(env: &Env, event: &str) -> Vec<(String, String)> {
    journal(env)
        .iter()
        .filter(|e| e["phase"] == "end" && e["event"] == event)
        .map(|e| {
            (
                e["commit"].as_str().unwrap().to_string(),
                e["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn last_started(env: &Env, event: &str) -> String {
    journal(env)
        .iter()
        .rev()
        .find(|e| e["phase"] == "start" && e["event"] == event)
        .unwrap()["commit"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn eight_pushes_at_once_are_serialised() {
    let env = Env::with_config(MARKED_CONFIG);
    env.push_ok(&["main"]);
    let _ = std::fs::remove_file(env.root.join("order"));
    let base_journal = journal(&env).len();
    let mut clones = Vec::new();
    for i in 0..8 {
        let dir = env.tmp.path().join(format!("clone{i}"));
        let out = run(git_cmd(env.tmp.path()).args([
            "clone",
            "-q",
            env.work.to_str().unwrap(),
            dir.to_str().unwrap(),
        ]));
        assert!(out.status.success(), "{}", text(&out));
        std::fs::write(dir.join(format!("file{i}")), format!("{i}\n")).unwrap();
        for args in [
            vec!["add", "-A"],
            vec!["commit", "-q", "-m", "concurrent"],
            vec![
                "remote",
                "add",
                "deploy",
                env.root.join("repository").to_str().unwrap(),
            ],
        ] {
            assert!(run(git_cmd(&dir).args(&args)).status.success());
        }
        let c = String::from_utf8(run(git_cmd(&dir).args(["rev-parse", "HEAD"])).stdout).unwrap();
        clones.push((dir, c.trim().to_string()));
    }
    let children: Vec<_> = clones
        .iter()
        .map(|(dir, _)| {
            git_cmd(dir)
                .args(["push", "-f", "deploy", "main"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let ends = journal_ends(&env, "warmup");
    let mut landed = 0;
    for ((_, commit), out) in clones.iter().zip(&outs) {
        let t = text(out);
        if out.status.success() {
            // The ref landed: the deploy ran to its end, warmed up.
            landed += 1;
            assert!(
                ends.contains(&(commit.clone(), "ok".into())),
                "{commit} pushed but not warmed: {t}"
            );
            assert!(
                t.contains(&format!("success: warmup -> releases/{}", &commit[..12])),
                "{t}"
            );
        } else {
            // git itself refused the racing ref update and said so.
            assert!(t.contains("main -> main") && t.contains("error"), "{t}");
            assert!(!ends.iter().any(|(c, _)| c == commit), "{t}");
        }
    }
    assert!(landed >= 1);
    let built = assert_serialised(&env);
    assert_eq!(built.len(), landed);
    let journal = journal(&env);
    assert_eq!(
        journal.len(),
        base_journal + 2 * landed,
        "start and end of each"
    );
    assert_eq!(
        env.pointed("warmup").unwrap(),
        last_started(&env, "warmup"),
        "the final warmup is the last one that took the lock"
    );
    assert_link_sound(&env, "warmup", &[]);
    assert_lock_free(&env);

    // Racing the branch lets git refuse all but the first; release tags are
    // different refs, so 8 tag pushes all land and 8 hooks race for the lock:
    // each warms its commit up, then promotes it.
    let _ = std::fs::remove_file(env.root.join("order"));
    env.clear_trace();
    let children: Vec<_> = clones
        .iter()
        .enumerate()
        .map(|(i, (dir, _))| {
            let tag = format!("release-{i}");
            assert!(run(git_cmd(dir).args(["tag", &tag])).status.success());
            git_cmd(dir)
                .args(["push", "deploy", &tag])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let promotes = journal_ends(&env, "promote");
    for ((_, commit), out) in clones.iter().zip(&outs) {
        let t = ok(out);
        assert!(
            promotes.contains(&(commit.clone(), "ok".into())),
            "{commit} not in the journal: {t}"
        );
        assert!(
            t.contains(&format!(
                "success: production -> releases/{}",
                &commit[..12]
            )),
            "{t}"
        );
    }
    let mut built = assert_serialised(&env);
    // What had landed on main was ready already (unless a cleanup removed it
    // since); every other commit was built once.
    assert!(built.len() >= 8 - landed, "{built:?}");
    built.sort();
    built.dedup();
    assert!(built.len() >= 8 - landed, "a commit was built twice");
    assert!(built.iter().all(|b| clones.iter().any(|(_, c)| c == b)));
    let trace = env.trace();
    assert_eq!(trace.len(), 16, "{trace:?}");
    for pair in trace.chunks(2) {
        let c = pair[0].strip_prefix("stop ").expect(&pair[0]);
        assert_eq!(
            pair[1],
            format!("start {c}"),
            "promotes overlapped: {trace:?}"
        );
    }
    assert_eq!(
        env.pointed("production").unwrap(),
        last_started(&env, "promote")
    );
    assert_link_sound(&env, "production", &[]);
    // Promotes leave the deletion of old releases to a background cleanup,
    // which holds the lock while it deletes.
    for out in &outs {
        wait_all(&text(out));
    }
    assert_lock_free(&env);
}

#[test]
fn eight_warmups_and_two_promotes_at_once_are_serialised() {
    let env = Env::with_config(MARKED_CONFIG);
    env.push_ok(&["main"]);
    ok(&env.symdeploy(&["promote"]));
    let mut commits = Vec::new();
    for i in 0..8 {
        env.write(&format!("file{i}"), "x");
        commits.push(env.commit(&format!("commit {i}")));
    }
    env.push_ok(&["main:refs/heads/other"]);
    let _ = std::fs::remove_file(env.root.join("order"));
    let children: Vec<_> = commits
        .iter()
        .map(|c| {
            Command::new(bin())
                .args(["--root", env.root.to_str().unwrap(), "warmup", c])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (c, child) in commits.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        let t = ok(&out);
        assert!(
            t.contains(&format!("success: warmup -> releases/{}", &c[..12])),
            "{t}"
        );
    }
    let mut built = assert_serialised(&env);
    built.sort();
    let mut want = commits.clone();
    want.sort();
    assert_eq!(built, want, "each warmed once");
    let ends = journal_ends(&env, "warmup");
    for c in &commits {
        assert!(
            ends.contains(&(c.clone(), "ok".into())),
            "{c} not in the journal"
        );
    }
    assert_eq!(env.pointed("warmup").unwrap(), last_started(&env, "warmup"));

    // Two promotes of different releases at once.
    env.clear_trace();
    let (x, y) = (&commits[2], &commits[5]);
    let children: Vec<_> = [x, y]
        .iter()
        .map(|c| {
            Command::new(bin())
                .args(["--root", env.root.to_str().unwrap(), "promote", c])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut background = String::new();
    for child in children {
        background.push_str(&ok(&child.wait_with_output().unwrap()));
    }
    let trace = env.trace();
    assert_eq!(trace.len(), 4, "{trace:?}");
    for pair in trace.chunks(2) {
        let c = pair[0].strip_prefix("stop ").expect(&pair[0]);
        assert_eq!(
            pair[1],
            format!("start {c}"),
            "promotes overlapped: {trace:?}"
        );
    }
    let ends = journal_ends(&env, "promote");
    for c in [x, y] {
        assert!(ends.contains(&(c.clone(), "ok".into())), "{c}: {ends:?}");
    }
    assert_eq!(
        env.pointed("production").unwrap(),
        last_started(&env, "promote")
    );
    assert_link_sound(&env, "production", &[]);
    wait_all(&background);
    assert_lock_free(&env);
}

// ----------------------------------------------------------------------------- 5. step failures

/// A root with a warmed-up and promoted first commit; then `config` is set and
/// a second commit pushed. Returns the scene and the push output.
fn failing_step(config: &str) -> (Scene, String, Duration) {
    let s = scene();
    s.env.set_config(config);
    let started = Instant::now();
    let t = text(&s.env.push(&["main"]));
    (s, t, started.elapsed())
}

fn step_config(build: &str, extra: &str) -> String {
    format!(
        "shared = [\"log\", \"www/data/images\"]\n{extra}\n[warmup]\nbuild = [{build:?}]\nlinks = []\nnotify = []\n"
    )
}

fn assert_warmup_failed_cleanly(s: &Scene, t: &str, context: &str) {
    let env = &s.env;
    assert_eq!(
        env.pointed("warmup").as_deref(),
        Some(s.a.as_str()),
        "{context}: {t}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(s.a.as_str()));
    assert!(
        t.contains(&format!("error: warm-up of {} failed: ", short(&s.b))),
        "{context}: {t}"
    );
    // One error line per failure, then where things point now (and, after a
    // push, the last line saying git took the push anyway).
    let accepted = t.matches("error: the push was accepted").count();
    assert_eq!(t.matches("error: ").count() - accepted, 1, "{context}: {t}");
    assert!(
        t.contains(&format!("       warmup     -> releases/{}", short(&s.a))),
        "{context}: {t}"
    );
    let last = journal(env).pop().unwrap();
    assert_eq!(last["result"], "failed", "{context}");
    assert_invariants(env, &s.common, context);
    assert_lock_free(env);
}

fn process_alive(pid: i32) -> bool {
    // A zombie is dead for our purpose.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn step_failures_of_every_kind_leave_warmup_alone() {
    let (s, t, _) = failing_step(&step_config("echo about to fail; exit 3", ""));
    assert!(t.contains("remote:        about to fail"), "{t}");
    assert!(
        t.contains("failed: build step `echo about to fail; exit 3` failed: exit status 3"),
        "{t}"
    );
    assert_warmup_failed_cleanly(&s, &t, "exit 3");

    let (s, t, _) = failing_step(&step_config("kill -TERM $$", ""));
    assert!(t.contains("failed: killed by signal 15 (SIGTERM)"), "{t}");
    assert_warmup_failed_cleanly(&s, &t, "killed by a signal");
}

#[test]
fn a_hanging_step_is_killed_with_its_process_group_at_step_timeout() {
    // The step and a child it left in the background both ignore SIGTERM.
    let (s, t, took) = failing_step(&step_config(
        "trap '' TERM; sleep 120 & echo $! > \"$SYMDEPLOY_ROOT/bg.pid\"; sleep 120",
        "step_timeout = 2",
    ));
    assert!(took < Duration::from_secs(60), "took {took:?}: {t}");
    assert!(
        t.contains("ran longer than step_timeout (2s); killing its process group")
            && t.contains(
                "failed: timed out after 2s (step_timeout); its process group was killed"
            ),
        "{t}"
    );
    let pid: i32 = std::fs::read_to_string(s.env.root.join("bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for_within(
        "the background child to die",
        Duration::from_secs(20),
        || !process_alive(pid),
    );
    assert_warmup_failed_cleanly(&s, &t, "timeout");
}

#[test]
fn a_daemon_started_by_a_step_does_not_hold_the_deploy() {
    // promote.start launches a daemon in its own session that keeps stdout open.
    let config = TEST_CONFIG.replace(
        "start = [",
        "start = [\"setsid sh -c 'echo $$ > \\\"$SYMDEPLOY_ROOT/daemon.pid\\\"; echo daemon up; exec sleep 120' &\", ",
    );
    let s = scene_with(&config);
    let env = &s.env;
    env.push_ok(&["main"]);
    let started = Instant::now();
    let t = ok(&env.symdeploy(&["promote"]));
    assert!(started.elapsed() < Duration::from_secs(60), "{t}");
    assert!(t.contains("success: production -> releases/"), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(s.b.as_str()));
    let pid: i32 = std::fs::read_to_string(env.root.join("daemon.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(process_alive(pid), "the daemon must outlive the deploy");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert_lock_free(env);
    assert_daemons_running(env, "daemon");
}

#[test]
fn a_step_printing_100_mb_completes_with_flat_memory() {
    let env = Env::with_config(&step_config(
        "yes 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' | head -n 1000000; echo printed-all",
        "",
    ));
    env.push_ok(&["main:refs/heads/other"]);
    let err_file = env.tmp.path().join("stderr");
    // /usr/bin/time reports the peak RSS of symdeploy itself.
    let time = Path::new("/usr/bin/time");
    let mut c = if time.exists() {
        let mut c = Command::new(time);
        c.args(["-f", "maxrss-kib=%M"]).arg(bin());
        c
    } else {
        skip("100 MB output: /usr/bin/time missing, peak memory not measured");
        Command::new(bin())
    };
    let status = c
        .args(["--root", env.root.to_str().unwrap(), "warmup", "other"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    let log_dir = env.root.join(".symdeploy/logs");
    let log = std::fs::read_dir(&log_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(size > 100_000_000, "log has {size} bytes");
    let err_size = std::fs::metadata(&err_file).unwrap().len();
    assert!(err_size > 100_000_000, "stderr had {err_size} bytes");
    let tail = {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&err_file).unwrap();
        f.seek(SeekFrom::End(-4000)).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        s
    };
    assert!(
        tail.contains("printed-all") && tail.contains("success: warmup"),
        "{tail}"
    );
    if let Some(kib) = tail
        .lines()
        .find_map(|l| l.strip_prefix("maxrss-kib="))
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        assert!(kib < 100 * 1024, "peak RSS {kib} KiB for 100 MB of output");
    }
}

// ----------------------------------------------------------------------------- 6. bad input

const Z: &str = "0000000000000000000000000000000000000000";

/// Run the installed hook by hand in ROOT/repository with crafted stdin.
fn hook_with_stdin(env: &Env, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(["hook", "post-receive"])
        .current_dir(env.root.join("repository"))
        .env_remove("GIT_DIR")
        .env_remove("SYMDEPLOY_ROOT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn malformed_hook_input_is_refused_and_changes_nothing() {
    let s = scene();
    let env = &s.env;
    let before = state_fingerprint(env);
    let a = &s.a;
    let long = "x".repeat(100_000);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"garbage\n".to_vec(),
            "expected three space-separated fields",
        ),
        (
            format!("{Z} {a}\n").into_bytes(),
            "expected three space-separated fields",
        ),
        (
            format!("{Z} {a} refs/heads/main extra\n").into_bytes(),
            "three space-separated",
        ),
        (
            format!("{Z}  {a} refs/heads/main\n").into_bytes(),
            "three space-separated",
        ),
        (
            format!("{Z} {} refs/heads/main\n", &a[..20]).into_bytes(),
            "not a full hexadecimal object id",
        ),
        (
            format!("{Z} {} refs/heads/main\n", a.to_uppercase()).into_bytes(),
            "not a full hexadecimal object id",
        ),
        (
            format!("{Z} {a} main\n").into_bytes(),
            "not a valid ref name",
        ),
        (
            format!("{Z} {a} refs/heads/../x\n").into_bytes(),
            "not a valid ref name",
        ),
        (
            format!("{Z} {a} refs/heads/a b\n").into_bytes(),
            "three space-separated",
        ),
        (
            format!("{Z} {a} {long}\n").into_bytes(),
            "not a valid ref name",
        ),
        // A good line first: nothing may run before the whole input is checked.
        (
            format!("{Z} {a} refs/heads/main\n{Z} zz refs/heads/main\n").into_bytes(),
            "line 2",
        ),
        // Hook input is bytes (a ref name may be any bytes git accepts), so
        // bytes that are not UTF-8 are judged where they stand.
        (
            b"\xff\xfe refs/heads/main\n".to_vec(),
            "expected three space-separated fields",
        ),
        (
            [
                format!("{Z} ").as_bytes(),
                b"\xff\xfe",
                b" refs/heads/main\n".as_slice(),
            ]
            .concat(),
            "not a full hexadecimal object id",
        ),
    ];
    for (stdin, want) in cases {
        let out = hook_with_stdin(env, &stdin);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("error: ") && t.contains(want), "{want}: {t}");
        assert!(t.contains("help: "), "{t}");
        assert!(
            t.len() < 2000,
            "the error echoes too much: {} bytes",
            t.len()
        );
        assert_eq!(state_fingerprint(env), before, "{want}");
    }
    // Well-formed, but naming an object the repository does not have.
    let missing = "1234567890123456789012345678901234567890";
    let out = hook_with_stdin(env, format!("{a} {missing} refs/heads/main\n").as_bytes());
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "points at object {missing}, which the repository does not have"
        )),
        "{t}"
    );
    // A deletion is reported and ignored.
    let out = hook_with_stdin(env, format!("{a} {Z} refs/heads/main\n").as_bytes());
    assert!(
        text(&out).contains("ignored: refs/heads/main deleted"),
        "{}",
        text(&out)
    );
    assert_eq!(state_fingerprint(env), before);
    assert!(leftovers(env).is_empty());
}

#[test]
fn refused_pushes_deploy_nothing() {
    let s = scene();
    let env = &s.env;
    // Deleting the deploy branch: git refuses (it is the repository's HEAD).
    let before = state_fingerprint(env);
    let out = env.push(&[":main"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(state_fingerprint(env), before);
    // A branch named like a path never leaves the client.
    let out = env.push(&["main:refs/heads/../x"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(state_fingerprint(env), before);
    // A non-fast-forward push is rejected by git; nothing deploys.
    env.push_ok(&["main"]);
    let before = state_fingerprint(env);
    env.git(&["reset", "-q", "--hard", &s.a]);
    env.write("www/index.html", "diverged\n");
    let diverged = env.commit("diverged");
    let out = env.push(&["main"]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("non-fast-forward"),
        "{t}"
    );
    assert!(!t.contains("remote: -----> warming up"), "{t}");
    assert_eq!(state_fingerprint(env), before);
    assert!(!env.release(&diverged).exists());
    // A branch with slashes is just another branch: ignored with a message.
    let t = env.push_ok(&["main:refs/heads/deep/er/x"]);
    assert!(
        t.contains("ignored: branch deep/er/x is not the deploy branch"),
        "{t}"
    );
    assert_eq!(state_fingerprint(env), before);
}

#[test]
fn tags_pointing_at_trees_or_blobs_are_refused() {
    let s = scene();
    let env = &s.env;
    let before = state_fingerprint(env);
    let tree = env.git(&["rev-parse", "HEAD^{tree}"]);
    let blob = env.git(&["rev-parse", "HEAD:www/index.html"]);
    env.git(&["tag", "release-tree", &tree]);
    env.git(&["tag", "-a", "-m", "annotated blob", "release-blob", &blob]);
    let t = text(&env.push(&["release-tree"]));
    assert!(
        t.contains("error: `refs/tags/release-tree` points at a tree")
            && t.contains("not a commit"),
        "{t}"
    );
    let t = text(&env.push(&["release-blob"]));
    assert!(
        t.contains("points at a blob") && t.contains("not a commit"),
        "{t}"
    );
    for args in [
        vec!["promote", "release-tree"],
        vec!["warmup", "release-blob"],
        vec!["promote", "does-not-exist"],
        vec!["warmup", "1234567"],
    ] {
        let out = env.symdeploy(&args);
        let t = text(&out);
        assert!(!out.status.success(), "{args:?}: {t}");
        assert!(
            t.contains("error: ") && t.contains("help: "),
            "{args:?}: {t}"
        );
    }
    assert_eq!(state_fingerprint(env), before);
    assert_lock_free(env);
}

#[test]
fn odd_file_names_are_exported_faithfully() {
    // Like git archive: invalid UTF-8 and newlines are legal in Linux file
    // names, and the project's files are exported as they are.
    let env = Env::with_config("shared = []\n[warmup]\nbuild = []\nlinks = []\nnotify = []\n");
    let names: [&[u8]; 4] = [
        b"bad\xffname.txt",
        b"new\nline.txt",
        b"tab\there",
        b"dir\xc3(/x",
    ];
    for (i, n) in names.iter().enumerate() {
        let p = env.work.join(OsStr::from_bytes(n));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("content {i}\n")).unwrap();
    }
    let c = env.commit("odd names");
    let t = env.push_ok(&["main"]);
    assert!(t.contains("success: warmup"), "{t}");
    for (i, n) in names.iter().enumerate() {
        let p = env.release(&c).join(OsStr::from_bytes(n));
        assert_eq!(
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}")),
            format!("content {i}\n")
        );
    }
    assert_link_sound(&env, "warmup", &[]);
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Write a tree object with exactly these (mode, name, id) entries, unchecked.
/// One raw tree entry: mode, name bytes, object id.
type RawEntry<'a> = (&'a str, &'a [u8], &'a str);

fn raw_tree(env: &Env, entries: &[RawEntry]) -> String {
    let mut bytes = Vec::new();
    for (mode, name, id) in entries {
        bytes.extend_from_slice(mode.as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(name);
        bytes.push(0);
        bytes.extend_from_slice(&unhex(id));
    }
    hash_object(env, &["--literally", "-t", "tree"], &bytes)
}

fn hash_object(env: &Env, args: &[&str], content: &[u8]) -> String {
    use std::io::Write;
    let mut child = git_cmd(&env.work)
        .args(["hash-object", "-w", "--stdin"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(content).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn hostile_trees_are_refused_and_write_nothing_outside_the_release() {
    let s = scene();
    let env = &s.env;
    let repo = env.root.join("repository");
    assert!(
        run(git_cmd(&repo).args(["config", "receive.fsckObjects", "false"]))
            .status
            .success()
    );
    let outside = env.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let abs_probe = format!("/symdeploy-fault-probe-{}", std::process::id());
    let blob = hash_object(env, &[], b"pwned\n");
    let link_target = hash_object(env, &[], outside.to_str().unwrap().as_bytes());
    let inner = raw_tree(env, &[("100644", b"x", &blob)]);
    let git_inner = raw_tree(env, &[("100644", b"config", &blob)]);
    let pwned = raw_tree(env, &[("100644", b"pwned", &blob)]);
    let cases: Vec<(&str, Vec<RawEntry>)> = vec![
        (
            "..",
            vec![("40000", b"..", &inner), ("100644", b"ok", &blob)],
        ),
        (".", vec![("100644", b".", &blob)]),
        (".git", vec![("40000", b".git", &git_inner)]),
        (".GIT", vec![("40000", b".GIT", &git_inner)]),
        ("a/../../x", vec![("100644", b"a/../../x", &blob)]),
        ("absolute", vec![("100644", abs_probe.as_bytes(), &blob)]),
        (
            "symlink then directory of the same name",
            vec![
                ("120000", b"link", &link_target),
                ("40000", b"link", &pwned),
            ],
        ),
        (
            "directory then symlink of the same name",
            vec![
                ("40000", b"link", &pwned),
                ("120000", b"link", &link_target),
            ],
        ),
    ];
    let before = state_fingerprint(env);
    for (what, entries) in cases {
        let tree = raw_tree(env, &entries);
        let commit = env.git(&["commit-tree", &tree, "-p", &s.a, "-m", what]);
        let out = env.push(&["-f", &format!("{commit}:refs/heads/main")]);
        let t = text(&out);
        assert!(
            t.contains("remote: error: warm-up of ")
                && t.contains("failed: refusing to export")
                && t.contains("help: "),
            "{what}: {t}"
        );
        assert!(!env.release(&commit).exists(), "{what}");
        assert_eq!(
            env.pointed("warmup").as_deref(),
            Some(s.a.as_str()),
            "{what}"
        );
        assert!(leftovers(env).is_empty(), "{what}: {:?}", leftovers(env));
        for p in [
            env.root.join("x"),
            env.root.join("releases/x"),
            env.tmp.path().join("x"),
            PathBuf::from(&abs_probe),
        ] {
            assert!(!p.exists(), "{what}: wrote {}", p.display());
        }
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "{what}: wrote through the symlink"
        );
        assert_invariants(env, &s.common, what);
        assert_eq!(
            before
                .lines()
                .filter(|l| l.starts_with("production"))
                .collect::<Vec<_>>(),
            state_fingerprint(env)
                .lines()
                .filter(|l| l.starts_with("production"))
                .collect::<Vec<_>>()
        );
    }
    assert_next_deploy_works(&s, "hostile trees");
}

#[test]
fn a_shared_path_through_a_symlink_to_etc_is_refused() {
    let probe = format!("symdeploy-fault-probe-{}", std::process::id());
    let config = TEST_CONFIG.replace(
        "shared = [\"log\", \"www/data/images\"]",
        &format!("shared = [\"log\", \"www/{probe}\"]"),
    );
    let env = Env::with_config(&config);
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    ok(&env.symdeploy(&["promote"]));
    let common = common_snapshot(&env);
    env.git(&["rm", "-r", "-q", "www"]);
    std::os::unix::fs::symlink("/etc", env.work.join("www")).unwrap();
    let b = env.commit("www -> /etc");
    let t = text(&env.push(&["main"]));
    assert!(
        t.contains(&format!(
            "failed: shared path \"www/{probe}\" goes through a symlink in the release"
        )) && t.contains("-> /etc"),
        "{t}"
    );
    assert!(!Path::new("/etc").join(&probe).exists(), "wrote into /etc");
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()));
    assert_eq!(common_snapshot(&env), common);
    let state =
        std::fs::read_to_string(env.root.join(format!(".symdeploy/releases/{b}.json"))).unwrap();
    assert!(state.contains("\"failed\""), "{state}");

    // `log -> /etc` with `log` shared: the release's symlink is replaced by the
    // link to common/, and /etc is not touched.
    env.git(&["rm", "-q", "www"]);
    std::fs::create_dir_all(env.work.join("www")).unwrap();
    env.write("www/index.html", "back\n");
    std::os::unix::fs::symlink("/etc", env.work.join("log")).unwrap();
    let c = env.commit("log -> /etc");
    env.push_ok(&["main"]);
    assert_eq!(
        std::fs::read_link(env.release(&c).join("log")).unwrap(),
        Path::new("../../common/log")
    );
    assert!(Path::new("/etc/passwd").exists());
    assert_eq!(common_snapshot(&env), common);
}

#[test]
fn broken_or_escaping_config_is_refused_and_changes_nothing() {
    let s = scene();
    let env = &s.env;
    env.push_ok(&["main"]);
    let before = state_fingerprint(env);
    for (config, want) in [
        ("[warmup\nbuild = [\n", "deploy.toml:1:"),
        (
            "shared = [\"../../etc\"]\n",
            "`shared` entry \"../../etc\" contains `.` or `..`",
        ),
        (
            "shared = [\"/etc\"]\n",
            "`shared` entry \"/etc\" is absolute",
        ),
        ("shared = [\"www/../../../x\"]\n", "contains `.` or `..`"),
        ("shared = [\".git/hooks\"]\n", "names a .git directory"),
        ("carry = [\"../vendor\"]\n", "`carry` entry"),
        ("[links]\nwww = \"../../etc\"\n", "`links.www` target"),
        ("branch = \"../x\"\n", "is not a valid branch name"),
        ("step_timeout = 0\n", "`step_timeout` must be"),
    ] {
        env.set_config(config);
        for args in [
            vec!["warmup"],
            vec!["promote"],
            vec!["rollback"],
            vec!["recover"],
        ] {
            let out = env.symdeploy(&args);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(5), "{config} {args:?}: {t}");
            assert!(
                t.contains(want) && t.contains("help: fix "),
                "{config} {args:?}: {t}"
            );
        }
        let journal_before = journal(env).len();
        let out = hook_with_stdin(env, format!("{} {} refs/heads/main\n", s.a, s.b).as_bytes());
        assert!(text(&out).contains(want), "{config}: {}", text(&out));
        // The hook leaves a trace of the refused push: one failed run in the
        // journal (start and end), naming the config error; nothing else changes.
        let entries = journal(env);
        assert_eq!(entries.len(), journal_before + 2, "{config}");
        let end = entries.last().unwrap();
        assert_eq!(end["result"], "failed", "{config}: {end}");
        assert!(
            end["error"].as_str().unwrap_or_default().contains(want),
            "{config}: {end}"
        );
        let without_journal = |f: String| -> String {
            f.lines()
                .filter(|l| !l.starts_with("journal: "))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            without_journal(state_fingerprint(env)),
            without_journal(before.clone()),
            "{config}"
        );
    }
}

/// Make `dir` unwritable even for root: `chattr +i`, else a read-only bind mount.
struct Unwritable(PathBuf, Option<Mounted>);

impl Drop for Unwritable {
    fn drop(&mut self) {
        if self.1.is_none() {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        }
    }
}

fn unwritable(dir: &Path) -> Option<Unwritable> {
    if Command::new("chattr")
        .arg("+i")
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return Some(Unwritable(dir.to_path_buf(), None));
    }
    let m = mount(&["--bind"], dir).ok()?;
    mount(&["-o", "remount,bind,ro"], dir)
        .ok()
        .map(std::mem::forget)?;
    Some(Unwritable(dir.to_path_buf(), Some(m)))
}

#[test]
fn an_unwritable_releases_directory_fails_clearly() {
    let s = scene();
    let env = &s.env;
    let releases = env.root.join("releases");
    let Some(guard) = unwritable(&releases) else {
        return cannot_here(
            "unwritable releases/: neither chattr +i nor a read-only bind mount works here",
        );
    };
    let t = text(&env.push(&["main"]));
    assert!(
        t.contains(&format!(
            "failed: could not create directory {}/.tmp-",
            releases.display()
        )) && (t.contains("Operation not permitted") || t.contains("Read-only file system")),
        "{t}"
    );
    assert!(
        t.contains("help: check the owner and permissions of"),
        "{t}"
    );
    assert_eq!(env.pointed("warmup").as_deref(), Some(s.a.as_str()));
    assert_invariants(env, &s.common, "unwritable releases/");
    drop(guard);
    ok(&env.symdeploy(&["warmup"]));
    assert_eq!(env.pointed("warmup").as_deref(), Some(s.b.as_str()));
    assert_next_deploy_works(&s, "unwritable releases/");
}

// ----------------------------------------------------------------------------- 7. power loss

/// The traced calls of a run, one per line, with `<unfinished ...>` halves
/// joined to their start.
fn strace(env: &Env, args: &[&str]) -> Option<Vec<String>> {
    if run(Command::new("strace").arg("-V")).status.code() != Some(0) {
        skip("power-loss case: strace is not installed");
        return None;
    }
    let file = env.tmp.path().join(format!("strace-{}", unique()));
    let out = run(Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=syncfs,fsync,fdatasync,sync,rename,renameat,renameat2,symlink,symlinkat,unlink,unlinkat,rmdir",
            "-o",
        ])
        .arg(&file)
        .arg(bin())
        .arg("--root")
        .arg(&env.root)
        .args(args));
    if !out.status.success() && text(&out).contains("ptrace") {
        cannot_here(&format!(
            "power-loss case: strace cannot trace here: {}",
            text(&out)
        ));
        return None;
    }
    ok(&out);
    Some(
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .filter(|l| !l.contains("resumed>"))
            .map(str::to_string)
            .collect(),
    )
}

/// Index of the first rename(2) whose destination is `ROOT/<name>`.
fn rename_onto(lines: &[String], dest: &str) -> Option<usize> {
    lines
        .iter()
        .position(|l| call(l).starts_with("rename") && l.contains(&format!("{dest}\"")))
}

/// The system call of an strace line (after the pid).
fn call(line: &str) -> &str {
    line.split_once(' ')
        .map(|(_, c)| c.trim_start())
        .unwrap_or("")
}

#[test]
fn the_release_is_synced_before_each_flip_and_the_flip_is_a_rename() {
    let s = scene();
    let env = &s.env;
    env.push_ok(&["main:refs/heads/other"]);
    let root = env.root.display().to_string();

    // Warm-up: the files are synced before the release is recorded ready and
    // before warmup flips.
    let Some(lines) = strace(env, &["warmup", &s.b]) else {
        return;
    };
    let flip = rename_onto(&lines, &format!("{root}/warmup"))
        .unwrap_or_else(|| panic!("warmup was not flipped with rename(2): {lines:#?}"));
    let ready = lines[..flip]
        .iter()
        .rposition(|l| {
            call(l).starts_with("rename") && l.contains(&format!("releases/{}.json\"", s.b))
        })
        .expect("the ready record is written with a rename");
    let synced = lines[..ready]
        .iter()
        .rposition(|l| l.contains("syncfs(") && l.ends_with("= 0"));
    let exported = rename_onto(&lines, &format!("{root}/releases/{}", s.b))
        .expect("export renamed into place");
    assert!(
        synced.is_some_and(|i| i > exported),
        "no syncfs between the export and the ready record: {lines:#?}"
    );
    assert!(
        lines[flip].contains(".symdeploy-link-warmup-"),
        "{}",
        lines[flip]
    );

    // Promote: syncfs, then one rename of a fresh symlink onto production;
    // production is never unlinked, so it never stops resolving.
    let Some(lines) = strace(env, &["promote"]) else {
        return;
    };
    let prod = format!("{root}/production");
    let flip = rename_onto(&lines, &prod)
        .unwrap_or_else(|| panic!("production was not flipped with rename(2): {lines:#?}"));
    assert!(lines[flip].ends_with("= 0"), "{}", lines[flip]);
    let tmp = lines[flip]
        .split('"')
        .nth(1)
        .expect("rename source")
        .to_string();
    assert!(tmp.contains("/.symdeploy-link-production-"), "{tmp}");
    let made = lines[..flip]
        .iter()
        .rposition(|l| {
            l.contains("symlink")
                && l.contains(&format!("\"releases/{}\"", s.b))
                && l.contains(&tmp)
        })
        .unwrap_or_else(|| panic!("the new link was not made before the rename: {lines:#?}"));
    let synced = lines[..flip]
        .iter()
        .rposition(|l| l.contains("syncfs(") && l.ends_with("= 0"));
    assert!(
        synced.is_some(),
        "no syncfs before the production flip: {lines:#?}"
    );
    assert!(made < flip);
    for l in &lines {
        assert!(
            !(call(l).starts_with("unlink")
                && (l.contains(&format!("{prod}\"")) || l.contains("\"production\""))),
            "production was unlinked: {l}"
        );
    }
    // The directory holding the link is fsynced after the rename (durable flip).
    assert!(
        lines[flip..].iter().any(|l| l.contains("fsync(")),
        "the root directory is not fsynced after the flip: {lines:#?}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(s.b.as_str()));
}

#[test]
fn a_step_left_running_by_a_killed_run_is_ended_by_the_recovery() {
    // `stop` takes a while and says so at its end, like `supervisorctl stop all`.
    let config = TEST_CONFIG.replace(
        "stop = [\"echo \\\"stop $SYMDEPLOY_STAGE $PWD\\\" >> \\\"$SYMDEPLOY_ROOT/trace.log\\\"\"]",
        "stop = [\"echo stopping >> \\\"$SYMDEPLOY_ROOT/stopping\\\"; sleep 4; echo \\\"stop $SYMDEPLOY_STAGE $PWD\\\" >> \\\"$SYMDEPLOY_ROOT/trace.log\\\"\"]",
    );
    assert_ne!(config, TEST_CONFIG);
    let s = scene_with(&config);
    let env = &s.env;
    env.push_ok(&["main"]);
    let _ = std::fs::remove_file(env.root.join("stopping"));
    let mut promote = Command::new(bin())
        .args(["--root", env.root.to_str().unwrap(), "promote"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_within("stop to begin", Duration::from_secs(30), || {
        env.root.join("stopping").exists()
    });
    promote.kill().unwrap();
    promote.wait().unwrap();
    // Recovery right away, while the orphaned `stop` is still sleeping.
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(
        t.contains(
            "ended 2 processes still running from the interrupted step (stop: echo stopping"
        ),
        "{t}"
    );
    assert!(t.contains("starting the daemons that were stopped"), "{t}");
    // Past the moment the orphaned `stop` would have written its line.
    std::thread::sleep(Duration::from_secs(5));
    assert_daemons_running(env, "orphaned stop");
    assert!(!env.root.join(".symdeploy/step").exists());
    assert_eq!(env.pointed("production").as_deref(), Some(s.a.as_str()));
    assert_next_deploy_works(&s, "orphaned stop");
}

#[test]
fn a_torn_journal_line_does_not_swallow_the_next_entry() {
    // A power cut or a full disk can leave half a line at the end of the
    // journal; the next run's start entry must still be readable, or its
    // interruption would go unnoticed.
    let s = scene();
    let env = &s.env;
    env.push_ok(&["main"]);
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(env.root.join(".symdeploy/journal.jsonl"))
        .unwrap()
        .write_all(b"{\"time\":\"2026-")
        .unwrap();
    let out = symdeploy_with(
        env,
        &["promote"],
        &[("SYMDEPLOY_FAULT", "after-flip-production")],
    );
    assert!(killed(&out), "{}", text(&out));
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(
        t.contains(&format!(
            "recovering an interrupted promote of {}",
            short(&s.b)
        )),
        "{t}"
    );
    assert_daemons_running(env, "torn journal");
    assert_next_deploy_works(&s, "torn journal");
}

#[test]
fn sigkill_of_a_strict_pre_receive_hook_rejects_the_push_and_is_repaired() {
    let config = format!("hook = \"pre-receive\"\n{TEST_CONFIG}");
    // `build` kills the pre-receive hook; the others the reference-transaction
    // hook, with git holding the ref: either way git keeps the old ref.
    for point in ["build", "strict-before-flip-warmup", "before-rename-warmup"] {
        let s = scene_with(&config);
        let env = &s.env;
        assert!(env.root.join("repository/hooks/pre-receive").is_file());
        let out = env.push_with(&["main"], &[("SYMDEPLOY_FAULT", point)]);
        let t = text(&out);
        // The hook died: git rejects the push and drops its objects.
        assert!(!out.status.success(), "{point}: {t}");
        let deployed = run(git_cmd(&env.root.join("repository")).args(["rev-parse", "main"]));
        assert_eq!(String::from_utf8_lossy(&deployed.stdout).trim(), s.a);
        let t = ok(&env.symdeploy(&["recover"]));
        assert!(
            t.contains(&format!(
                "recovering an interrupted warmup of {}",
                short(&s.b)
            )),
            "{point}: {t}"
        );
        // Nothing may point at a commit the repository refused.
        assert_eq!(
            env.pointed("warmup").as_deref(),
            Some(s.a.as_str()),
            "{point}: {t}"
        );
        assert_invariants(env, &s.common, point);
        let views: Vec<_> = std::fs::read_dir(env.root.join(".symdeploy"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("quarantine-view-"))
            .collect();
        assert!(views.is_empty(), "{point}: left over: {views:?}");
        assert_next_deploy_works(&s, point);
    }
    // A release tag on a new commit, killed right after production flipped:
    // the tag push is rejected, so production goes back.
    let s = scene_with(&config);
    let env = &s.env;
    env.git(&["tag", "release-1"]);
    let out = env.push_with(
        &["release-1"],
        &[("SYMDEPLOY_FAULT", "after-flip-production")],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(env.pointed("production").as_deref(), Some(s.b.as_str()));
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(t.contains("git did not update refs/tags/release-1"), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(s.a.as_str()));
    assert_daemons_running(env, "strict tag");
    assert_invariants(env, &s.common, "strict tag");
    assert_next_deploy_works(&s, "strict tag");
}
