//! Promote, rollback and the release lifecycle. Real binary, real git.
//!
//! The daemons are simulated: `stop` and `start` append a line to
//! ROOT/trace.log saying where they ran and what `production` pointed at, so
//! the order of stop → flip → after_switch → start → notify is visible.
//! Flag files in ROOT make a stage fail on demand (`fail-stop`,
//! `fail-after-switch`).

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

/// TEST_CONFIG with promote stages that trace where they ran and what
/// production pointed at, and fail when a flag file exists.
const PROMOTE_CONFIG: &str = r#"
branch = "main"
keep_releases = 5
shared = ["log", "www/data/images"]
lock_timeout = 120
@TOP@
[warmup]
build = ["make production-composer", "make production-assets"]
links = ["make production-links"]
migrate = ["make production-migrate"]
notify = ["make deploy-notify-warmup"]
[promote]
stop = ['echo "stop $PWD prev=$SYMDEPLOY_PREVIOUS prod=$(readlink "$SYMDEPLOY_ROOT/production")" >> "$SYMDEPLOY_ROOT/trace.log"; test ! -e "$SYMDEPLOY_ROOT/fail-stop"']
after_switch = ["make production-supervisor", 'test ! -e "$SYMDEPLOY_ROOT/fail-after-switch"']
start = ['echo "start $PWD prod=$(readlink "$SYMDEPLOY_ROOT/production")" >> "$SYMDEPLOY_ROOT/trace.log"']
notify = ["make deploy-notify"]
@PROMOTE@
"#;

/// The text of the newest run log whose name holds `event` (`promote-<hash>`).
fn newest_log(env: &Env, event: &str) -> String {
    let mut logs: Vec<_> = std::fs::read_dir(env.root.join(".symdeploy/logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(&format!("-{event}-")))
        .collect();
    logs.sort();
    std::fs::read_to_string(logs.pop().expect("no run log")).unwrap()
}

fn config(top: &str, promote: &str) -> String {
    PROMOTE_CONFIG
        .replace("@TOP@", top)
        .replace("@PROMOTE@", promote)
}

fn env() -> Env {
    Env::with_config(&config("", ""))
}

/// Push main with a new commit; returns the commit.
fn push_commit(env: &Env, name: &str) -> String {
    env.write("www/index.html", &format!("{name}\n"));
    let c = env.commit(name);
    env.push_ok(&["main"]);
    c
}

fn fails(out: &Output) -> String {
    let t = text(out);
    assert!(!out.status.success(), "expected a failure: {t}");
    t
}

fn dir(env: &Env, c: &str) -> String {
    env.release(c).display().to_string()
}

fn stop_line(env: &Env, release: &str, prev: Option<&str>, prod: Option<&str>) -> String {
    format!(
        "stop {} prev={} prod={}",
        dir(env, release),
        prev.map(|p| dir(env, p)).unwrap_or_default(),
        prod.map(|p| format!("releases/{p}")).unwrap_or_default()
    )
}

fn start_line(env: &Env, release: &str, prod: &str) -> String {
    format!("start {} prod=releases/{prod}", dir(env, release))
}

/// The journal's end entries of one event.
fn ends(env: &Env, event: &str) -> Vec<Value> {
    env.journal()
        .into_iter()
        .filter(|e| e["phase"] == "end" && e["event"] == event)
        .collect()
}

fn json(out: &Output) -> Value {
    let t = ok(out);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
}

fn release_state(env: &Env, c: &str) -> String {
    let rows = json(&env.symdeploy(&["releases", "--json"]));
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["commit"] == c)
        .map(|r| r["state"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{c} not listed: {rows}"))
}

fn flag(env: &Env, name: &str, on: bool) {
    let p = env.root.join(name);
    if on {
        std::fs::write(p, "").unwrap();
    } else {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn tag_push_promotes_stop_flip_after_switch_start_notify_in_order() {
    let env = env();
    let a = push_commit(&env, "first");
    env.clear_trace();
    env.git(&["tag", "release-1"]);
    let t = env.push_ok(&["release-1"]);
    assert!(
        t.contains(&format!(
            "remote: success: production -> releases/{}",
            &a[..12]
        )),
        "{t}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    // The first promote: no production before it; the flip happened between
    // stop (production absent) and start (production on the release).
    assert_eq!(
        env.trace(),
        vec![
            stop_line(&env, &a, None, None),
            format!("supervisor after_switch {}", dir(&env, &a)),
            start_line(&env, &a, &a),
            format!("notify notify ok {}", dir(&env, &a)),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(env.root.join("www/index.html")).unwrap(),
        "first\n"
    );

    // The second promote: stop sees the old production and SYMDEPLOY_PREVIOUS.
    let b = push_commit(&env, "second");
    env.clear_trace();
    env.git(&["tag", "release-2"]);
    let t = env.push_ok(&["release-2"]);
    // The cleanup ran after the promote; with nothing to remove it shows
    // nothing, and its decisions are in the run log.
    assert!(!t.contains("remote: -----> cleanup"), "{t}");
    let log = newest_log(&env, &format!("promote-{}", &b[..12]));
    assert!(
        log.contains(&format!("keep   {} (production)", &b[..12])),
        "{log}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
    assert_eq!(
        env.trace(),
        vec![
            stop_line(&env, &b, Some(&a), Some(&a)),
            format!("supervisor after_switch {}", dir(&env, &b)),
            start_line(&env, &b, &b),
            format!("notify notify ok {}", dir(&env, &b)),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(env.root.join("www/index.html")).unwrap(),
        "second\n"
    );
    let promotes = ends(&env, "promote");
    assert_eq!(promotes.len(), 2);
    let last = &promotes[1];
    assert_eq!(last["result"], "ok");
    assert_eq!(last["commit"], b.as_str());
    assert_eq!(last["previous"], a.as_str());
    assert_eq!(last["ref"], "refs/tags/release-2");
}

#[test]
fn an_annotated_tag_on_an_unpushed_commit_is_warmed_up_then_promoted() {
    let env = env();
    push_commit(&env, "first");
    env.write("www/index.html", "tagged only\n");
    let c = env.commit("never pushed to main");
    env.git(&["tag", "-a", "-m", "release 7", "release-7"]);
    env.clear_trace();
    let t = env.push_ok(&["release-7"]);
    assert!(
        t.contains("it has no ready release yet, so it is warmed up first"),
        "{t}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(c.as_str()));
    assert_eq!(env.pointed("warmup").as_deref(), Some(c.as_str()));
    let trace = env.trace();
    assert_eq!(trace.len(), 9, "{trace:?}");
    assert_eq!(trace[0], format!("composer build {}", dir(&env, &c)));
    assert_eq!(trace[5], stop_line(&env, &c, None, None));
    assert_eq!(trace[8], format!("notify notify ok {}", dir(&env, &c)));
    assert_eq!(release_state(&env, &c), "ready");
}

#[test]
fn push_option_promote_warms_up_and_promotes_in_one_push() {
    let env = env();
    let a = push_commit(&env, "first");
    env.write("www/index.html", "both\n");
    let b = env.commit("warm and promote");
    env.clear_trace();
    let t = env.push_ok(&["-o", "promote", "main"]);
    assert!(
        t.contains(&format!("remote: success: warmup -> releases/{}", &b[..12])),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "remote: success: production -> releases/{}",
            &b[..12]
        )),
        "{t}"
    );
    assert_eq!(env.pointed("warmup").as_deref(), Some(b.as_str()));
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
    let trace = env.trace();
    let d = dir(&env, &b);
    assert_eq!(
        trace,
        vec![
            format!("composer build {d}"),
            format!("assets build {d}"),
            format!("links links {d}"),
            format!("migrate migrate {d}"),
            format!("notify-warmup notify {d}"),
            stop_line(&env, &b, None, None),
            format!("supervisor after_switch {d}"),
            start_line(&env, &b, &b),
            format!("notify notify ok {d}"),
        ]
    );
    // A later plain push does not promote.
    let _ = a;
    let c = push_commit(&env, "third");
    assert_eq!(env.pointed("warmup").as_deref(), Some(c.as_str()));
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
}

#[test]
fn a_failing_after_switch_rolls_back_to_the_previous_release_and_starts_the_daemons() {
    let env = env();
    let a = push_commit(&env, "good");
    ok(&env.symdeploy(&["promote"]));
    let b = push_commit(&env, "breaks after the switch");
    flag(&env, "fail-after-switch", true);
    env.clear_trace();
    env.git(&["tag", "release-2"]);
    // post-receive: the tag lands, the promote reports its failure.
    let t = env.push_ok(&["release-2"]);
    assert!(
        t.contains(&format!(
            "remote: error: promote of {} rolled back: after_switch step `test ! -e \"$SYMDEPLOY_ROOT/fail-after-switch\"` failed: exit status 1",
            &b[..12]
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "remote:        production -> releases/{}",
            &a[..12]
        )),
        "{t}"
    );
    // The failure's one error, and the push's last line: git took the tag anyway.
    assert_eq!(t.matches("error: ").count(), 2, "{t}");
    assert!(
        t.lines().rfind(|l| l.starts_with("remote:")).is_some_and(
            |l| l.starts_with("remote: error: the push was accepted, but its deploy failed")
        ),
        "{t}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_eq!(
        std::fs::read_to_string(env.root.join("www/index.html")).unwrap(),
        "good\n"
    );
    assert_eq!(
        env.trace(),
        vec![
            stop_line(&env, &b, Some(&a), Some(&a)),
            format!("supervisor after_switch {}", dir(&env, &b)),
            // rollback: stop, flip back, start in the previous release
            stop_line(&env, &b, Some(&a), Some(&b)),
            start_line(&env, &a, &a),
            format!("notify notify rolled-back {}", dir(&env, &b)),
        ]
    );
    assert_eq!(release_state(&env, &b), "bad");
    // warmup pointed at b (the push warmed it); it must not stay on a bad release.
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()));
    assert!(
        t.contains(&format!(
            "warmup -> releases/{} (off the bad release)",
            &a[..12]
        )),
        "{t}"
    );
    let last = ends(&env, "promote").pop().unwrap();
    assert_eq!(last["result"], "rolled-back");
    assert_eq!(last["commit"], b.as_str());
    assert!(
        last["error"].as_str().unwrap().starts_with("after_switch:"),
        "{last}"
    );
    // The bad release is not what status offers to roll back to, and it is kept
    // (not cleaned up) for inspection.
    assert!(env.release(&b).is_dir());
    let s = json(&env.symdeploy(&["status", "--json"]));
    assert_eq!(s["production"]["commit"], a.as_str());
    assert!(s["previous"].is_null(), "{s}");
}

#[test]
fn a_failing_check_is_retried_until_check_timeout_then_rolled_back() {
    let check = r#"check = ['n=$(cat "$SYMDEPLOY_ROOT/attempts" 2>/dev/null || echo 0); echo $((n+1)) > "$SYMDEPLOY_ROOT/attempts"; test -e "$SYMDEPLOY_ROOT/healthy"']
check_timeout = 2"#;
    let env = Env::with_config(&config("", check));
    let a = push_commit(&env, "first");
    flag(&env, "healthy", true);
    ok(&env.symdeploy(&["promote"]));
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_eq!(
        std::fs::read_to_string(env.root.join("attempts")).unwrap(),
        "1\n"
    );

    let b = push_commit(&env, "never healthy");
    flag(&env, "healthy", false);
    flag(&env, "attempts", false);
    env.clear_trace();
    let started = Instant::now();
    let t = fails(&env.symdeploy(&["promote"]));
    let took = started.elapsed();
    assert!(t.contains("check failed; retrying for up to 2s"), "{t}");
    assert!(t.contains("last attempt:"), "{t}");
    assert!(t.contains("rolled back: check step"), "{t}");
    assert!(
        t.contains(&format!("       production -> releases/{}", &a[..12])),
        "{t}"
    );
    let attempts: u32 = std::fs::read_to_string(env.root.join("attempts"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(attempts >= 2, "the check was not retried: {attempts}");
    // Retried until check_timeout (2s) had passed, not given up earlier.
    assert!(took >= Duration::from_secs(2), "gave up after {took:?}");
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    let trace = env.trace();
    assert_eq!(
        trace.last().unwrap(),
        &format!("notify notify rolled-back {}", dir(&env, &b))
    );
    assert_eq!(
        trace[trace.len() - 2],
        start_line(&env, &a, &a),
        "{trace:?}"
    );
    assert_eq!(release_state(&env, &b), "bad");
}

#[test]
fn a_check_that_passes_on_a_later_attempt_keeps_the_new_release() {
    let check = r#"check = ['n=$(cat "$SYMDEPLOY_ROOT/attempts" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$SYMDEPLOY_ROOT/attempts"; test $n -ge 3']
check_timeout = 60"#;
    let env = Env::with_config(&config("", check));
    let a = push_commit(&env, "slow to come up");
    let t = ok(&env.symdeploy(&["promote"]));
    assert!(t.contains("attempt 3"), "{t}");
    assert_eq!(
        std::fs::read_to_string(env.root.join("attempts")).unwrap(),
        "3\n"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_eq!(ends(&env, "promote").pop().unwrap()["result"], "ok");
}

#[test]
fn a_hanging_check_is_cut_off_at_check_timeout() {
    let env = Env::with_config(&config("", "check = [\"sleep 120\"]\ncheck_timeout = 2"));
    let a = push_commit(&env, "first");
    let b = push_commit(&env, "hangs");
    // The very first promote has nothing to go back to; make one first.
    env.set_config(&config("", ""));
    ok(&env.symdeploy(&["promote", &a]));
    env.set_config(&config("", "check = [\"sleep 120\"]\ncheck_timeout = 2"));
    let started = Instant::now();
    let t = fails(&env.symdeploy(&["promote", &b]));
    // A bound to detect the hang, far below the check's own 120s.
    assert!(started.elapsed() < Duration::from_secs(60), "{t}");
    assert!(t.contains("rolled back: check step"), "{t}");
    assert!(t.contains("timed out"), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
}

#[test]
fn a_root_link_that_cannot_be_made_after_the_flip_rolls_back_and_starts() {
    let env = env();
    let a = push_commit(&env, "first");
    ok(&env.symdeploy(&["promote"]));
    let b = push_commit(&env, "second");
    // Someone replaced the `www` link with a real directory.
    std::fs::remove_file(env.root.join("www")).unwrap();
    std::fs::create_dir(env.root.join("www")).unwrap();
    std::fs::write(env.root.join("www/hand-made.html"), "mine\n").unwrap();
    env.clear_trace();
    let t = fails(&env.symdeploy(&["promote"]));
    assert!(t.contains("is a real directory"), "{t}");
    assert!(t.contains("rolled back: the root links failed"), "{t}");
    assert!(
        t.contains(&format!("       production -> releases/{}", &a[..12])),
        "{t}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_eq!(
        env.trace(),
        vec![
            stop_line(&env, &b, Some(&a), Some(&a)),
            stop_line(&env, &b, Some(&a), Some(&b)),
            start_line(&env, &a, &a),
            format!("notify notify rolled-back {}", dir(&env, &b)),
        ]
    );
    // symdeploy never deletes it.
    assert_eq!(
        std::fs::read_to_string(env.root.join("www/hand-made.html")).unwrap(),
        "mine\n"
    );
    assert_eq!(
        ends(&env, "promote").pop().unwrap()["result"],
        "rolled-back"
    );
}

#[test]
fn the_release_is_synced_to_disk_before_production_flips() {
    // strace shows the order of the syscalls: syncfs on the release must come
    // before the rename(2) that makes production point at it.
    let env = env();
    let a = push_commit(&env, "first");
    let trace_file = env.tmp.path().join("strace.txt");
    let out = run(std::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=syncfs,fsync,rename,renameat,renameat2",
            "-o",
        ])
        .arg(&trace_file)
        .arg(bin())
        .arg("--root")
        .arg(&env.root)
        .arg("promote"));
    ok(&out);
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    let calls = std::fs::read_to_string(&trace_file).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    let flip = lines
        .iter()
        .position(|l| {
            l.contains("rename") && l.contains(&format!("{}/production\"", env.root.display()))
        })
        .unwrap_or_else(|| panic!("no rename onto production: {calls}"));
    let sync = lines
        .iter()
        .position(|l| l.contains("syncfs(") && l.contains("= 0"))
        .unwrap_or_else(|| panic!("no successful syncfs: {calls}"));
    assert!(sync < flip, "syncfs came after the flip: {calls}");
}

#[test]
fn a_failing_stop_leaves_production_untouched_and_runs_start() {
    let env = env();
    let a = push_commit(&env, "first");
    ok(&env.symdeploy(&["promote"]));
    let b = push_commit(&env, "second");
    flag(&env, "fail-stop", true);
    env.clear_trace();
    let t = fails(&env.symdeploy(&["promote"]));
    assert!(
        t.contains(&format!("error: promote of {} failed: stop step", &b[..12])),
        "{t}"
    );
    assert!(t.contains("(production was not switched)"), "{t}");
    assert!(
        t.contains(&format!("       production -> releases/{}", &a[..12])),
        "{t}"
    );
    assert_eq!(t.matches("error: ").count(), 1, "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_eq!(
        env.trace(),
        vec![
            stop_line(&env, &b, Some(&a), Some(&a)),
            start_line(&env, &a, &a),
            // Nothing was switched: notify hears `failed`.
            format!("notify notify failed {}", dir(&env, &b)),
        ]
    );
    // Not the release's fault: it stays ready and can be promoted later.
    assert_eq!(release_state(&env, &b), "ready");
    assert_eq!(ends(&env, "promote").pop().unwrap()["result"], "failed");
    flag(&env, "fail-stop", false);
    ok(&env.symdeploy(&["promote"]));
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
}

#[test]
fn rollback_walks_back_through_production_history() {
    let env = env();
    let mut c = Vec::new();
    for name in ["a", "b", "c"] {
        c.push(push_commit(&env, name));
        ok(&env.symdeploy(&["promote"]));
    }
    env.clear_trace();
    let t = ok(&env.symdeploy(&["rollback"]));
    assert!(
        t.contains(&format!("success: production -> releases/{}", &c[1][..12])),
        "{t}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(c[1].as_str()));
    assert_eq!(
        env.trace(),
        vec![
            stop_line(&env, &c[1], Some(&c[2]), Some(&c[2])),
            format!("supervisor after_switch {}", dir(&env, &c[1])),
            start_line(&env, &c[1], &c[1]),
            format!("notify notify ok {}", dir(&env, &c[1])),
        ]
    );
    ok(&env.symdeploy(&["rollback"]));
    assert_eq!(env.pointed("production").as_deref(), Some(c[0].as_str()));
    let t = fails(&env.symdeploy(&["rollback"]));
    assert!(t.contains("nothing to roll back to"), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(c[0].as_str()));
    let rollbacks = ends(&env, "rollback");
    assert_eq!(rollbacks.len(), 2);
    assert!(rollbacks.iter().all(|e| e["result"] == "ok"));
    // By hand, forward again to a named release.
    ok(&env.symdeploy(&["rollback", &c[2][..10]]));
    assert_eq!(env.pointed("production").as_deref(), Some(c[2].as_str()));
}

#[test]
fn rollback_skips_bad_releases() {
    let env = env();
    let mut c = Vec::new();
    for name in ["a", "b", "c"] {
        c.push(push_commit(&env, name));
        ok(&env.symdeploy(&["promote"]));
    }
    // b goes bad when promoted again.
    flag(&env, "fail-after-switch", true);
    fails(&env.symdeploy(&["promote", &c[1]]));
    flag(&env, "fail-after-switch", false);
    assert_eq!(release_state(&env, &c[1]), "bad");
    assert_eq!(env.pointed("production").as_deref(), Some(c[2].as_str()));
    let s = json(&env.symdeploy(&["status", "--json"]));
    assert_eq!(s["previous"]["commit"], c[0].as_str(), "{s}");

    env.clear_trace();
    ok(&env.symdeploy(&["rollback"]));
    assert_eq!(env.pointed("production").as_deref(), Some(c[0].as_str()));
    assert_eq!(env.trace()[2], start_line(&env, &c[0], &c[0]));
    // Naming the bad one by hand is refused.
    let t = fails(&env.symdeploy(&["rollback", &c[1]]));
    assert!(t.contains("is bad, not ready"), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(c[0].as_str()));
}

#[test]
fn rollback_with_no_earlier_release_says_so() {
    let env = env();
    let t = fails(&env.symdeploy(&["rollback"]));
    assert!(t.contains("error: nothing to roll back to"), "{t}");
    push_commit(&env, "a");
    ok(&env.symdeploy(&["promote"]));
    let t = fails(&env.symdeploy(&["rollback"]));
    assert!(t.contains("error: nothing to roll back to"), "{t}");
    assert!(t.contains("help: "), "{t}");
}

/// Rewrite a release's state record.
fn edit_record(env: &Env, c: &str, f: impl FnOnce(&mut Value)) {
    let p = env.root.join(format!(".symdeploy/releases/{c}.json"));
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn release_set(env: &Env) -> BTreeSet<String> {
    std::fs::read_dir(env.root.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn cleanup_keeps_exactly_what_it_must_among_12_releases_of_mixed_states() {
    // keep_releases is large so that the cleanup after each promote keeps all.
    let env =
        Env::with_config(&config("", "").replace("keep_releases = 5", "keep_releases = 1000"));
    let mut r = vec![String::new()]; // 1-based: r[1]..r[12]
    for i in 1..=12 {
        r.push(push_commit(&env, &format!("release {i}")));
    }
    ok(&env.symdeploy(&["promote", &r[1]]));
    ok(&env.symdeploy(&["promote", &r[3]]));
    ok(&env.symdeploy(&["warmup", &r[5]]));
    // Distinct, known times: r[i] was made at second i.
    for (i, c) in r.iter().enumerate().skip(1) {
        let t = format!("2024-01-01T00:00:{i:02}Z");
        edit_record(&env, c, |v| {
            v["created"] = t.clone().into();
            v["ready_at"] = t.into();
        });
    }
    for (i, state) in [(2, "failed"), (4, "bad"), (6, "building"), (12, "failed")] {
        edit_record(&env, &r[i], |v| v["state"] = state.into());
    }
    // r8: no record at all (an export that never got one), made at second 8.
    std::fs::remove_file(env.root.join(format!(".symdeploy/releases/{}.json", r[8]))).unwrap();
    let touched = run(std::process::Command::new("touch")
        .args(["-m", "-d", "@1704067208"])
        .arg(env.release(&r[8])));
    assert!(touched.status.success(), "{}", text(&touched));
    std::fs::write(env.root.join("common/log/app.log"), "keep me\n").unwrap();

    // What `releases` says before anything is removed.
    let rows = json(&env.symdeploy(&["releases", "--json"]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 12);
    let row = |c: &str| rows.iter().find(|x| x["commit"] == c).unwrap().clone();
    for (i, want) in [
        (1, "ready"),
        (2, "failed"),
        (3, "ready"),
        (4, "bad"),
        (6, "incomplete"),
        (8, "incomplete"),
        (12, "failed"),
    ] {
        assert_eq!(row(&r[i])["state"], want, "r{i}");
    }
    assert_eq!(row(&r[3])["markers"], serde_json::json!(["production"]));
    assert_eq!(row(&r[5])["markers"], serde_json::json!(["warmup"]));
    assert_eq!(row(&r[1])["markers"], serde_json::json!(["previous"]));
    assert_eq!(rows[0]["commit"], r[12].as_str(), "newest first");

    // Ready, newest first: r11, r10, r9, r7, r5 (warmup), r3 (production),
    // r1 (previous). With --keep 3: r11, r10, r9, plus warmup, production and
    // previous, which are kept although older than the 3 newest.
    // Failed, bad and incomplete older than r11 go; r12 (failed, newer than any
    // ready release) stays for inspection.
    let expected_kept: BTreeSet<String> = [1, 3, 5, 9, 10, 11, 12]
        .iter()
        .map(|&i| r[i].clone())
        .collect();
    let expected_removed: BTreeSet<String> =
        [2, 4, 6, 7, 8].iter().map(|&i| r[i].clone()).collect();

    let before = snapshot(&env.root);
    let t = ok(&env.symdeploy(&["cleanup", "--keep", "3", "--dry-run"]));
    assert_eq!(snapshot(&env.root), before, "a dry run changed the root");
    for c in &expected_removed {
        assert!(
            t.contains(&format!("would remove {}", &c[..12])),
            "{c}: {t}"
        );
    }
    for c in &expected_kept {
        assert!(t.contains(&format!("keep   {}", &c[..12])), "{c}: {t}");
    }

    let common_before = snapshot(&env.root.join("common"));
    ok(&env.symdeploy(&["cleanup", "--keep", "3"]));
    assert_eq!(release_set(&env), expected_kept);
    assert_eq!(snapshot(&env.root.join("common")), common_before);
    for c in &expected_removed {
        assert!(
            !env.root
                .join(format!(".symdeploy/releases/{c}.json"))
                .exists(),
            "record of {c} left behind"
        );
    }
    assert_eq!(env.pointed("production").as_deref(), Some(r[3].as_str()));
    assert_eq!(env.pointed("warmup").as_deref(), Some(r[5].as_str()));
    assert_eq!(
        std::fs::read_to_string(env.root.join("www/index.html")).unwrap(),
        "release 3\n"
    );
    // Nothing is left to do: a second cleanup removes nothing.
    let t = ok(&env.symdeploy(&["cleanup", "--keep", "3"]));
    assert!(t.contains("removing 0"), "{t}");
    assert_eq!(release_set(&env), expected_kept);
}

#[test]
fn cleanup_runs_after_a_successful_promote_with_keep_releases() {
    let env = Env::with_config(&config("", "").replace("keep_releases = 5", "keep_releases = 2"));
    // Pushed in quick succession: several releases share a second, and the
    // newest must still be told apart from the older ones.
    let c: Vec<String> = (0..3)
        .map(|i| push_commit(&env, &format!("r{i}")))
        .collect();
    let t = ok(&env.symdeploy(&["promote", &c[1]]));
    assert!(t.contains("-----> cleanup"), "{t}");
    // Ready, newest first: c2 (warmup), c1 (production), c0: two are kept.
    let set = |v: &[&String]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };
    assert_eq!(release_set(&env), set(&[&c[1], &c[2]]));
    let c3 = push_commit(&env, "r3");
    let c4 = push_commit(&env, "r4");
    ok(&env.symdeploy(&["promote", &c4]));
    // c4 (production) and c3 are the two newest; c1 stays as the previous
    // production release; c2 goes.
    assert_eq!(release_set(&env), set(&[&c[1], &c3, &c4]));
    // A failed promote does not clean up.
    let c5 = push_commit(&env, "r5");
    flag(&env, "fail-after-switch", true);
    fails(&env.symdeploy(&["promote", &c5]));
    assert_eq!(release_set(&env), set(&[&c[1], &c3, &c4, &c5]));
}

#[test]
fn status_releases_and_log_json_carry_the_documented_fields() {
    let env = env();
    let s = json(&env.symdeploy(&["status", "--json"]));
    assert!(s["production"].is_null() && s["warmup"].is_null() && s["previous"].is_null());
    assert!(s["lock"].is_null(), "{s}");
    assert_eq!(s["interrupted"], serde_json::json!([]));
    assert_eq!(
        json(&env.symdeploy(&["releases", "--json"])),
        serde_json::json!([])
    );
    assert_eq!(
        json(&env.symdeploy(&["log", "--json"])),
        serde_json::json!([])
    );

    let a = push_commit(&env, "first release");
    ok(&env.symdeploy(&["promote"]));
    let b = push_commit(&env, "second release");
    ok(&env.symdeploy(&["promote"]));
    let c = push_commit(&env, "third, warm only");

    let s = json(&env.symdeploy(&["status", "--json"]));
    assert_eq!(
        s["root"].as_str().map(std::path::Path::new),
        Some(env.root.as_path())
    );
    for (slot, commit, subject) in [
        ("production", &b, "second release"),
        ("warmup", &c, "third, warm only"),
        ("previous", &a, "first release"),
    ] {
        let x = &s[slot];
        assert_eq!(x["commit"], commit.as_str(), "{slot}: {s}");
        assert_eq!(x["release"], format!("releases/{commit}"), "{slot}");
        assert_eq!(x["state"], "ready", "{slot}");
        assert_eq!(x["subject"], subject, "{slot}");
        assert!(
            x["since"].as_str().unwrap().starts_with("20"),
            "{slot}: {x}"
        );
        assert!(!x["by"].as_str().unwrap().is_empty(), "{slot}: {x}");
    }
    assert!(s["lock"].is_null());

    let rows = json(&env.symdeploy(&["releases", "--json"]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        for key in ["commit", "state", "subject", "size", "created", "markers"] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        assert!(r["size"].as_u64().unwrap() > 0, "{r}");
        assert!(r.get("error").is_some(), "{r}");
    }
    let markers = |c: &str| rows.iter().find(|r| r["commit"] == c).unwrap()["markers"].clone();
    assert_eq!(markers(&a), serde_json::json!(["previous"]));
    assert_eq!(markers(&b), serde_json::json!(["production"]));
    assert_eq!(markers(&c), serde_json::json!(["warmup"]));

    let log = json(&env.symdeploy(&["log", "--json"]));
    let log = log.as_array().unwrap();
    // 3 warm-ups and 2 promotes, oldest first.
    let events: Vec<&str> = log.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["warmup", "promote", "warmup", "promote", "warmup"]);
    for e in log {
        for key in [
            "time", "run", "event", "phase", "commit", "ref", "user", "host", "pid", "result",
        ] {
            assert!(!e[key].is_null(), "{key} missing in {e}");
        }
    }
    assert_eq!(log[3]["previous"], a.as_str());
    let last2 = json(&env.symdeploy(&["log", "--json", "-n", "2"]));
    assert_eq!(last2.as_array().unwrap().as_slice(), &log[3..]);

    let t = ok(&env.symdeploy(&["log"]));
    assert!(t.contains("promote") && t.contains(&b[..12]), "{t}");
    let t = ok(&env.symdeploy(&["status"]));
    assert!(
        t.contains(&format!("production  {} ready", &b[..12])),
        "{t}"
    );
    assert!(t.contains("lock        free"), "{t}");
    let t = ok(&env.symdeploy(&["releases"]));
    assert!(
        t.contains("[production]") && t.contains("[previous]"),
        "{t}"
    );
}

#[test]
fn strict_mode_rejects_a_push_whose_build_fails_and_keeps_the_ref() {
    let env = Env::with_config(&config("hook = \"pre-receive\"", ""));
    assert!(env.root.join("repository/hooks/pre-receive").is_file());
    assert!(!env.root.join("repository/hooks/post-receive").exists());
    ok(&env.symdeploy(&["check"]));
    // Steps never see the quarantine.
    env.write(
        "Makefile",
        &MAKEFILE.replace(
            "production-composer:\n",
            "production-composer:\n\techo \"gitvars $$(env | grep -c '^GIT_')\" >> $(TRACE)\n",
        ),
    );
    let good = env.commit("good");
    env.push_ok(&["main"]);
    assert_eq!(env.pointed("warmup").as_deref(), Some(good.as_str()));
    assert_eq!(env.trace()[0], "gitvars 0");
    let deployed_ref = |env: &Env| {
        let o = run(git_cmd(&env.root.join("repository")).args(["rev-parse", "refs/heads/main"]));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(deployed_ref(&env), good);

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
    assert!(!out.status.success(), "strict push should be rejected: {t}");
    assert!(t.contains("pre-receive hook declined"), "{t}");
    assert!(
        t.contains("failed: build step `make production-assets` failed"),
        "{t}"
    );
    assert!(!t.contains("(reported above)"), "{t}");
    assert_eq!(deployed_ref(&env), good);
    assert_eq!(env.pointed("warmup").as_deref(), Some(good.as_str()));
    assert_eq!(release_state(&env, &bad), "failed");
    // The quarantine views are gone.
    let leftovers: Vec<_> = std::fs::read_dir(env.root.join(".symdeploy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("quarantine-view-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn strict_mode_promotes_a_tag_whose_objects_are_still_in_quarantine() {
    let env = Env::with_config(&config("hook = \"pre-receive\"", ""));
    let a = push_commit(&env, "first");
    env.write("www/index.html", "only behind the tag\n");
    let c = env.commit("tagged, never on main");
    env.git(&["tag", "-a", "-m", "release 9", "release-9"]);
    env.clear_trace();
    let t = env.push_ok(&["release-9"]);
    // The flips run in the reference-transaction hook, whose lines git does
    // not prefix with `remote:`.
    assert!(
        t.contains(&format!("success: production -> releases/{}", &c[..12])),
        "{t}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(c.as_str()));
    assert_eq!(
        std::fs::read_to_string(env.root.join("www/index.html")).unwrap(),
        "only behind the tag\n"
    );
    assert_eq!(env.trace().len(), 9, "{:?}", env.trace());
    // A promote that rolls back rejects the tag push in strict mode.
    flag(&env, "fail-after-switch", true);
    env.git(&["tag", "release-10", &a]);
    let out = env.push(&["release-10"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(env.pointed("production").as_deref(), Some(c.as_str()));
    let tags = run(git_cmd(&env.root.join("repository")).args(["tag", "-l"]));
    assert_eq!(String::from_utf8_lossy(&tags.stdout).trim(), "release-9");
}

#[test]
fn init_strict_installs_a_pre_receive_hook_that_check_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("strict");
    ok(&run(std::process::Command::new(bin()).args([
        "init",
        "--strict",
        root.to_str().unwrap(),
    ])));
    assert!(root.join("repository/hooks/pre-receive").is_file());
    let toml = std::fs::read_to_string(root.join("deploy.toml")).unwrap();
    assert!(toml.contains("hook = \"pre-receive\""), "{toml}");
    let check =
        run(std::process::Command::new(bin()).args(["--root", root.to_str().unwrap(), "check"]));
    let t = text(&check);
    assert!(
        !t.contains("pre-receive is missing") && !t.contains("post-receive is missing"),
        "{t}"
    );
}

#[test]
fn init_strict_on_a_root_whose_config_says_post_receive_warns() {
    let env = Env::with_init_args(&config("", ""), &["--strict"]);
    let out = env.symdeploy_raw(&["init", "--strict", env.root.to_str().unwrap()]);
    let t = ok(&out);
    assert!(
        t.contains("warning:") && t.contains("hook = \"pre-receive\""),
        "{t}"
    );
}

#[test]
fn a_tag_on_the_production_commit_does_nothing() {
    let env = env();
    push_commit(&env, "first");
    env.git(&["tag", "release-1"]);
    env.push_ok(&["release-1"]);
    env.clear_trace();
    let journal = env.journal().len();
    let before = snapshot(&env.root.join("releases"));
    env.git(&["tag", "release-1-again"]);
    let t = env.push_ok(&["release-1-again"]);
    assert!(t.contains("is already production; nothing to do"), "{t}");
    assert!(env.trace().is_empty(), "{:?}", env.trace());
    assert_eq!(env.journal().len(), journal);
    assert_eq!(snapshot(&env.root.join("releases")), before);
    // Same by hand.
    let t = ok(&env.symdeploy(&["promote"]));
    assert!(t.contains("is already production; nothing to do"), "{t}");
    assert!(env.trace().is_empty());
}

#[test]
fn deleting_a_release_tag_does_nothing() {
    let env = env();
    let a = push_commit(&env, "first");
    env.git(&["tag", "release-1"]);
    env.push_ok(&["release-1"]);
    env.clear_trace();
    let journal = env.journal().len();
    let t = env.push_ok(&[":refs/tags/release-1"]);
    assert!(
        t.contains("remote: -----> ignored: refs/tags/release-1 deleted"),
        "{t}"
    );
    assert!(env.trace().is_empty(), "{:?}", env.trace());
    assert_eq!(env.journal().len(), journal);
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert!(env.release(&a).is_dir());
}

#[test]
fn dry_runs_change_nothing() {
    let env = env();
    push_commit(&env, "first");
    ok(&env.symdeploy(&["promote"]));
    let b = push_commit(&env, "second");
    env.write("www/index.html", "not warmed\n");
    let c = env.commit("not warmed");
    env.git(&["push", "-q", "deploy", "main:refs/heads/other"]);
    env.clear_trace();
    let before = snapshot(&env.root);

    let t = ok(&env.symdeploy(&["promote", "--dry-run"]));
    assert!(t.contains("dry run"), "{t}");
    assert!(
        t.contains(&format!("-> releases/{}", &b[..12])) && t.contains("stop: "),
        "{t}"
    );
    let t = ok(&env.symdeploy(&["promote", "--dry-run", &c]));
    assert!(t.contains("would be warmed up first"), "{t}");
    let t = ok(&env.symdeploy(&["cleanup", "--dry-run", "--keep", "1"]));
    assert!(t.contains("dry run"), "{t}");
    assert_eq!(snapshot(&env.root), before);
    assert!(env.trace().is_empty());
}

#[test]
fn check_reports_a_missing_program_and_a_missing_hook() {
    let env = env();
    let t = ok(&env.symdeploy(&["check"]));
    assert!(t.contains("0 errors"), "{t}");

    env.set_config(&config("", "").replace(
        "notify = [\"make deploy-notify\"]",
        "notify = [\"no-such-notifier --now\"]",
    ));
    let t = fails(&env.symdeploy(&["check"]));
    assert!(
        t.contains("promote.notify: `no-such-notifier`") && t.contains("is not on PATH"),
        "{t}"
    );
    env.set_config(&config("", ""));
    ok(&env.symdeploy(&["check"]));

    let hook = env.root.join("repository/hooks/post-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\nexec '/nonexistent/symdeploy' hook post-receive\n",
    )
    .unwrap();
    let t = fails(&env.symdeploy(&["check"]));
    assert!(
        t.contains("calls /nonexistent/symdeploy, which does not exist"),
        "{t}"
    );
    std::fs::remove_file(&hook).unwrap();
    let t = fails(&env.symdeploy(&["check"]));
    assert!(t.contains("post-receive is missing"), "{t}");
    assert!(t.contains("symdeploy init"), "{t}");
}

#[test]
fn status_shows_who_holds_the_lock_while_a_deploy_runs() {
    let wait = r#"build = ['i=0; while [ ! -e "$SYMDEPLOY_ROOT/go" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done']"#;
    let env = Env::with_config(&config("", "").replace(
        "build = [\"make production-composer\", \"make production-assets\"]",
        wait,
    ));
    let c = env.git(&["rev-parse", "HEAD"]);
    std::thread::scope(|s| {
        let push = s.spawn(|| env.push(&["main"]));
        let deadline = Instant::now() + Duration::from_secs(60);
        let lock = loop {
            let st = json(&env.symdeploy(&["status", "--json"]));
            if let Some(l) = st["lock"].as_str() {
                // The running deploy's own start entry is not an interruption.
                assert_eq!(st["interrupted"], serde_json::json!([]), "{st}");
                break l.to_string();
            }
            assert!(Instant::now() < deadline, "the deploy never took the lock");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(lock.starts_with("pid "), "{lock}");
        assert!(lock.contains(&format!("warm-up of {}", &c[..12])), "{lock}");
        let t = ok(&env.symdeploy(&["status"]));
        assert!(t.contains(&format!("lock        held by {lock}")), "{t}");
        let t = ok(&env.symdeploy(&["check"]));
        assert!(t.contains("the deploy lock is held by pid"), "{t}");
        flag(&env, "go", true);
        let out = push.join().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    });
    let st = json(&env.symdeploy(&["status", "--json"]));
    assert!(st["lock"].is_null(), "{st}");
    assert_eq!(st["warmup"]["commit"], c.as_str());
}

#[test]
fn status_and_log_show_an_interrupted_promote_until_it_is_repaired() {
    let env = env();
    push_commit(&env, "first");
    ok(&env.symdeploy(&["promote"]));
    let b = push_commit(&env, "second");
    let killed = run(std::process::Command::new(bin())
        .args(["--root", env.root.to_str().unwrap(), "promote"])
        .env("SYMDEPLOY_FAULT", "after_switch"));
    assert!(!killed.status.success(), "{}", text(&killed));
    let s = json(&env.symdeploy(&["status", "--json"]));
    let open = s["interrupted"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{s}");
    assert_eq!(open[0]["event"], "promote");
    assert_eq!(open[0]["commit"], b.as_str());
    assert!(s["lock"].is_null(), "a dead holder keeps no lock: {s}");
    let t = ok(&env.symdeploy(&["status"]));
    assert!(
        t.contains(&format!("warning: interrupted promote of {}", &b[..12])),
        "{t}"
    );
    let t = ok(&env.symdeploy(&["log"]));
    assert!(t.contains("promote  interrupted"), "{t}");
    ok(&env.symdeploy(&["recover"]));
    let s = json(&env.symdeploy(&["status", "--json"]));
    assert_eq!(s["interrupted"], serde_json::json!([]), "{s}");
    assert_eq!(s["production"]["commit"], b.as_str());
    let t = ok(&env.symdeploy(&["log", "-n", "1"]));
    assert!(t.contains("promote  ok") && t.contains(&b[..12]), "{t}");
}

#[test]
fn the_reporting_commands_change_nothing() {
    let env = env();
    push_commit(&env, "first");
    ok(&env.symdeploy(&["promote"]));
    push_commit(&env, "second");
    // No deploy holds the lock now; its file is recreated by the next one.
    std::fs::remove_file(env.root.join(".symdeploy/lock")).unwrap();
    let before = snapshot(&env.root);
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["releases"],
        &["releases", "--json"],
        &["log"],
        &["log", "--json"],
        &["check"],
    ] {
        ok(&env.symdeploy(args));
        assert_eq!(
            snapshot(&env.root),
            before,
            "symdeploy {args:?} changed the root"
        );
    }
}
