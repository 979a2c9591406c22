//! `promote.watch`: production watched by a detached watcher after a
//! promote, rolled back when its check fails; ended by a newer promote, a
//! rollback, `watch stop`; a killed watcher ended by `recover`. Real binary,
//! real git pushes.

use crate::common::*;
use std::io::Write;
use std::time::{Duration, Instant};

/// The watch check fails while ROOT/sick exists.
fn config(window: u64) -> String {
    format!(
        "{TEST_CONFIG}check = [\"test ! -f \\\"$SYMDEPLOY_ROOT/sick\\\"\"]\ncheck_timeout = 1\nwatch = {window}\nwatch_interval = 1\n"
    )
}

fn current(env: &Env) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(env.root.join(".symdeploy/watch/current.json")).ok()?)
        .ok()
}

fn watcher_pid(env: &Env) -> i32 {
    current(env).expect("a watch is under way")["pid"]
        .as_i64()
        .unwrap() as i32
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn watch_ends(env: &Env) -> Vec<serde_json::Value> {
    env.journal()
        .into_iter()
        .filter(|e| e["event"] == "watch" && e["phase"] == "end")
        .collect()
}

/// A promoted, then a second commit pushed and promoted (watched).
fn two_promotes(env: &Env) -> (String, String) {
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    let out = env.symdeploy(&["promote"]);
    assert!(out.status.success(), "{}", text(&out));
    env.write("www/index.html", "second\n");
    let b = env.commit("second");
    env.push_ok(&["main"]);
    let out = env.symdeploy(&["promote"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("watching production"), "{t}");
    (a, b)
}

#[test]
fn a_failing_watch_check_rolls_production_back_through_the_switch() {
    let env = Env::with_config(&config(120));
    let (a, b) = two_promotes(&env);
    let pid = watcher_pid(&env);
    // The promote is back while its watch runs; status shows the watch.
    wait_for("a first check", || {
        text(&env.symdeploy(&["status"])).contains("1/120 checks ok")
            || text(&env.symdeploy(&["status"])).contains("2/120 checks ok")
    });
    let status = text(&env.symdeploy(&["status"]));
    assert!(
        status.contains(&format!("watching releases/{} until ", &b[..12])),
        "{status}"
    );
    let prom = text(&env.symdeploy(&["status", "--prometheus"]));
    assert!(prom.contains("symdeploy_watch_active{"), "{prom}");
    assert!(prom.contains("} 1\n"), "{prom}");
    env.clear_trace();
    std::fs::write(env.root.join("sick"), "").unwrap();
    let broken = Instant::now();
    wait_for("production back", || {
        env.pointed("production").as_deref() == Some(a.as_str())
    });
    // A figure, not an assertion: interval (1 s) + check_timeout (1 s) + stop/start.
    let _ = writeln!(
        std::io::stderr(),
        "watch: production back {:.2}s after the check broke (interval 1s + check_timeout 1s + stop/start)",
        broken.elapsed().as_secs_f64()
    );
    wait_for("the watcher to go", || !alive(pid));
    let trace = env.trace();
    assert!(trace.iter().any(|l| l.starts_with("stop ")), "{trace:?}");
    assert!(
        trace
            .iter()
            .any(|l| l.starts_with("notify ") && l.contains("rolled-back")),
        "{trace:?}"
    );
    assert_daemons_running(&env, "watch");
    let end = watch_ends(&env).pop().unwrap();
    assert_eq!(end["result"], "rolled-back", "{end}");
    assert_eq!(end["commit"], b.as_str());
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.root.join(format!(".symdeploy/releases/{b}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(state["state"], "bad");
    assert!(current(&env).is_none());
    let check = env.symdeploy(&["status", "--check"]);
    assert!(!check.status.success());
    assert!(text(&check).contains("rolled back"), "{}", text(&check));
    // production.json knows production went back: `rollback` has nowhere
    // bad to go, and status names A as production.
    let status = text(&env.symdeploy(&["status"]));
    assert!(
        status.contains(&format!("production  {}", &a[..12])),
        "{status}"
    );
}

#[test]
fn a_newer_promote_ends_the_old_watch_without_a_rollback() {
    let env = Env::with_config(&config(120));
    let (_, b) = two_promotes(&env);
    let old = watcher_pid(&env);
    env.write("www/index.html", "third\n");
    let c = env.commit("third");
    env.push_ok(&["main"]);
    let out = env.symdeploy(&["promote"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!("the watch of releases/{} ended", &b[..12])),
        "{t}"
    );
    wait_for("the old watcher to go", || !alive(old));
    assert_eq!(env.pointed("production").as_deref(), Some(c.as_str()));
    let ends = watch_ends(&env);
    let of_b: Vec<_> = ends.iter().filter(|e| e["commit"] == b.as_str()).collect();
    assert_eq!(of_b.len(), 1, "{ends:?}");
    assert_eq!(of_b[0]["result"], "ended");
    // The new watch is of the new release.
    let cur = current(&env).unwrap();
    assert_eq!(cur["entry"]["commit"], c.as_str());
    env.symdeploy(&["watch", "stop"]);
}

#[test]
fn a_manual_rollback_ends_the_watch() {
    let env = Env::with_config(&config(120));
    let (a, b) = two_promotes(&env);
    let pid = watcher_pid(&env);
    let out = env.symdeploy(&["rollback"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    wait_for("the watcher to go", || !alive(pid));
    let end = watch_ends(&env).pop().unwrap();
    assert_eq!(
        (end["result"].as_str(), end["commit"].as_str()),
        (Some("ended"), Some(b.as_str()))
    );
    assert!(current(&env).is_none(), "a rollback starts no watch");
    assert_daemons_running(&env, "watch");
}

#[test]
fn watch_stop_ends_it_by_hand_and_production_stays() {
    let env = Env::with_config(&config(120));
    let (_, b) = two_promotes(&env);
    let pid = watcher_pid(&env);
    let out = env.symdeploy(&["watch", "stop"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("is stopped"), "{t}");
    wait_for("the watcher to go", || !alive(pid));
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
    let end = watch_ends(&env).pop().unwrap();
    assert_eq!(end["result"], "ended");
    assert!(
        end["error"].as_str().unwrap().contains("watch stop"),
        "{end}"
    );
    assert!(!text(&env.symdeploy(&["status"])).contains("watching releases/"));
    // Breaking the check now rolls nothing back.
    std::fs::write(env.root.join("sick"), "").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
    let out = env.symdeploy(&["watch", "stop"]);
    assert!(
        text(&out).contains("no watch is under way"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_sigkilled_watcher_is_ended_by_recover_with_a_warning() {
    let env = Env::with_config(&config(120));
    let (_, b) = two_promotes(&env);
    let pid = watcher_pid(&env);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the watcher to die", || !alive(pid));
    let check = env.symdeploy(&["status", "--check"]);
    assert!(!check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("interrupted watch"),
        "{}",
        text(&check)
    );
    let out = env.symdeploy(&["recover"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("warning: the watch of releases/"), "{t}");
    assert!(t.contains("was cut short"), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
    let end = watch_ends(&env).pop().unwrap();
    assert_eq!(end["result"], "interrupted");
    assert!(current(&env).is_none());
    assert_daemons_running(&env, "watch");
    let check = env.symdeploy(&["status", "--check"]);
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn a_tag_push_returns_while_its_watch_runs_in_a_session_of_its_own() {
    let env = Env::with_config(&config(60));
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    env.git(&["tag", "release-1"]);
    let pushed = Instant::now();
    let t = env.push_ok(&["release-1"]);
    let _ = writeln!(
        std::io::stderr(),
        "watch: the tag push returned after {:.2}s of a 60s window",
        pushed.elapsed().as_secs_f64()
    );
    assert!(t.contains("watching production"), "{t}");
    // Had the push waited for the window, the watch would be over by now.
    let cur = current(&env).expect("the watch is still under way");
    assert_eq!(cur["entry"]["commit"], a.as_str());
    let pid = cur["pid"].as_i64().unwrap() as i32;
    assert!(alive(pid));
    // setsid: the watcher leads a session of its own, so the pusher's
    // hang-up (SIGHUP to its session) never reaches it.
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid))).unwrap();
    assert_eq!(sid.as_raw(), pid);
    let out = env.symdeploy(&["watch", "stop"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("the watcher to go", || !alive(pid));
}

#[test]
fn a_watch_whose_checks_pass_ends_ok_after_its_window() {
    let env = Env::with_config(&config(3));
    let (_, b) = two_promotes(&env);
    let pid = watcher_pid(&env);
    wait_for("the window to pass", || !alive(pid));
    let end = watch_ends(&env).pop().unwrap();
    assert_eq!(end["result"], "ok", "{end}");
    assert_eq!(end["commit"], b.as_str());
    assert!(
        end["durations"]["checks_ok"].as_f64().unwrap() >= 1.0,
        "{end}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
    assert!(current(&env).is_none());
}

#[test]
fn a_strict_tag_push_starts_its_watch_once_git_has_the_tag() {
    let env = Env::with_config(&format!("hook = \"pre-receive\"\n{}", config(60)));
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    env.git(&["tag", "release-1"]);
    let t = env.push_ok(&["release-1"]);
    assert!(t.contains("watching production"), "{t}");
    let cur = current(&env).expect("the watch is under way");
    assert_eq!(cur["entry"]["commit"], a.as_str());
    let pid = cur["pid"].as_i64().unwrap() as i32;
    assert!(alive(pid));
    // The watch's run is open, the promote's is not.
    let out = env.symdeploy(&["status", "--check"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.symdeploy(&["watch", "stop"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("the watcher to go", || !alive(pid));
}
