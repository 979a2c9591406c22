//! Ctrl-C, SIGTERM and a hung-up terminal during a promote or a
//! warm-up; recovery running the interrupted run's own commands; a cleanup
//! problem after a promote is only a warning. Real binary, real git; each
//! symdeploy runs in its own process group, which the test signals the way a
//! terminal would (never the test runner's group).

use crate::common::*;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// A step that, when ROOT/block-NAME exists, removes it (so it blocks only
/// once), says it is running (ROOT/in-NAME) and waits for ROOT/go.
fn gate(name: &str) -> String {
    format!(
        r#"if [ -e "$SYMDEPLOY_ROOT/block-{name}" ]; then rm -f "$SYMDEPLOY_ROOT/block-{name}"; touch "$SYMDEPLOY_ROOT/in-{name}"; i=0; while [ ! -e "$SYMDEPLOY_ROOT/go" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; fi"#
    )
}

fn trace(what: &str) -> String {
    format!(r#"echo "{what} $SYMDEPLOY_COMMIT" >> "$SYMDEPLOY_ROOT/trace.log""#)
}

/// Daemons simulated by trace lines; every stage can be held at a gate.
fn config(start: &str) -> String {
    // The check fails (and is retried) while ROOT/block-check exists and ROOT/go does not.
    let check = r#"if [ -e "$SYMDEPLOY_ROOT/block-check" ]; then touch "$SYMDEPLOY_ROOT/in-check"; test -e "$SYMDEPLOY_ROOT/go"; fi"#;
    let toml_str = |s: &str| toml::Value::String(s.to_string()).to_string();
    format!(
        r#"
branch = "main"
keep_releases = 5
lock_timeout = 120
step_timeout = 300
[warmup]
build = [{build}]
[promote]
stop = [{stop_trace}, {stop}]
after_switch = [{after}]
start = [{start}]
check = [{check}]
check_timeout = 300
notify = [{notify}, {notify_gate}]
"#,
        build = toml_str(&gate("build")),
        stop_trace = toml_str(&trace("stop")),
        stop = toml_str(&gate("stop")),
        after = toml_str(&gate("after_switch")),
        start = toml_str(&trace(start)),
        check = toml_str(check),
        notify = toml_str(&trace("notify")),
        notify_gate = toml_str(&gate("notify")),
    )
}

/// Production on a first release, a second one warmed up and ready.
fn two_releases() -> (Env, String, String) {
    let env = Env::with_config(&config("start"));
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    let out = env.symdeploy(&["promote"]);
    assert!(out.status.success(), "{}", text(&out));
    env.write("www/index.html", "second\n");
    let b = env.commit("second");
    env.push_ok(&["main"]);
    assert_eq!(env.pointed("warmup").as_deref(), Some(b.as_str()));
    env.clear_trace();
    (env, a, b)
}

/// symdeploy in its own process group, output piped.
fn spawn(env: &Env, args: &[&str]) -> Child {
    env.command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn symdeploy")
}

/// Wait (generously) for a file a step creates; fails the test with the
/// child's output if the child ends first.
fn wait_for(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!(
                "symdeploy ended ({status}) before {}: {err}",
                path.display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How the signal is delivered: to the group (a terminal's Ctrl-C or
/// hang-up) or to the pid alone (`kill`).
#[derive(Clone, Copy, Debug)]
enum To {
    Group,
    Pid,
}

fn send(child: &Child, signal: Signal, to: To) {
    let pid = Pid::from_raw(child.id() as i32);
    match to {
        To::Group => killpg(pid, signal).expect("killpg"),
        To::Pid => kill(pid, signal).expect("kill"),
    }
}

/// The last journal entry of `event`.
fn last(env: &Env, event: &str) -> serde_json::Value {
    env.journal()
        .into_iter()
        .rev()
        .find(|e| e["event"] == event)
        .expect("a journal entry")
}

fn assert_nothing_interrupted(env: &Env) {
    let out = env.symdeploy(&["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        s["interrupted"],
        serde_json::json!([]),
        "status: {}",
        text(&out)
    );
}

/// After the last `stop` in the trace, a `start` ran: the daemons are up.
fn assert_started_after_stop(env: &Env, context: &str) {
    let t = env.trace();
    let last_stop = t
        .iter()
        .rposition(|l| l.starts_with("stop "))
        .unwrap_or_else(|| panic!("{context}: no stop ran: {t:?}"));
    assert!(
        t[last_stop..].iter().any(|l| l.starts_with("start ")),
        "{context}: the daemons were left stopped: {t:?}"
    );
}

/// Interrupt (SIGINT to the group / SIGTERM to the pid) a promote at
/// `stage`, and check the unwind.
fn interrupt_promote_at(stage: &str, signal: Signal, to: To) {
    let (env, a, b) = two_releases();
    std::fs::write(env.root.join(format!("block-{stage}")), "").unwrap();
    let mut child = spawn(&env, &["promote"]);
    wait_for(&env.root.join(format!("in-{stage}")), &mut child);
    send(&child, signal, to);
    let out = child.wait_with_output().unwrap();
    let context = format!("{signal:?} during {stage}: {}", text(&out));
    assert_eq!(
        out.status.code(),
        Some(128 + signal as i32),
        "exit status; {context}"
    );
    assert!(text(&out).contains("interrupted by"), "{context}");
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(a.as_str()),
        "production must be the old release; {context}"
    );
    assert_started_after_stop(&env, &context);
    let end = last(&env, "promote");
    assert_eq!(end["phase"], "end", "{context}");
    assert_eq!(end["result"], "interrupted", "{context}");
    assert_eq!(end["commit"], b.as_str());
    assert_nothing_interrupted(&env);
    // notify is not started after an interrupt.
    assert!(
        !env.trace().iter().any(|l| l.starts_with("notify")),
        "{context}"
    );
    // An interrupt says nothing about the release: it stays ready and
    // warmup stays on it, so the next promote simply tries it again.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.root.join(format!(".symdeploy/releases/{b}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["state"], "ready", "{context}");
    assert_eq!(
        env.pointed("warmup").as_deref(),
        Some(b.as_str()),
        "{context}"
    );
    let _ = std::fs::remove_file(env.root.join("block-check"));
    let again = env.symdeploy(&["promote"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
}

/// SIGHUP (the terminal went away, its pipe closed) at `stage`: the promote
/// finishes as if nothing happened; its output goes to the run log.
fn hang_up_promote_at(stage: &str) {
    let (env, _a, b) = two_releases();
    std::fs::write(env.root.join(format!("block-{stage}")), "").unwrap();
    let mut child = spawn(&env, &["promote"]);
    wait_for(&env.root.join(format!("in-{stage}")), &mut child);
    // The terminal is gone: nobody reads our output any more.
    drop(child.stderr.take());
    drop(child.stdout.take());
    send(&child, Signal::SIGHUP, To::Group);
    // Give the signal thread a moment to see it before the step ends, then
    // let the step go on: whichever order, the outcome must be the same.
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(env.root.join("go"), "").unwrap();
    let status = child.wait().unwrap();
    let context = format!("SIGHUP during {stage}: trace {:?}", env.trace());
    assert_eq!(status.code(), Some(0), "{context} ({status:?})");
    assert_eq!(status.signal(), None, "{context}");
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(b.as_str()),
        "{context}"
    );
    assert_started_after_stop(&env, &context);
    let end = last(&env, "promote");
    assert_eq!(end["phase"], "end", "{context}");
    assert_eq!(end["result"], "ok", "{context}");
    assert_nothing_interrupted(&env);
    // The whole story is in the run log.
    let log = std::fs::read_to_string(end["log"].as_str().expect("a run log")).unwrap();
    assert!(log.contains("SIGHUP"), "{log}");
    assert!(log.contains("success: production -> releases/"), "{log}");
}

#[test]
fn sigint_during_stop_starts_the_daemons_and_keeps_production() {
    interrupt_promote_at("stop", Signal::SIGINT, To::Group);
}

#[test]
fn sigint_during_after_switch_rolls_back() {
    interrupt_promote_at("after_switch", Signal::SIGINT, To::Group);
}

#[test]
fn sigint_during_check_retries_rolls_back() {
    interrupt_promote_at("check", Signal::SIGINT, To::Group);
}

#[test]
fn sigterm_during_stop_starts_the_daemons_and_keeps_production() {
    interrupt_promote_at("stop", Signal::SIGTERM, To::Pid);
}

#[test]
fn sigterm_during_after_switch_rolls_back() {
    interrupt_promote_at("after_switch", Signal::SIGTERM, To::Pid);
}

#[test]
fn sigterm_during_check_retries_rolls_back() {
    interrupt_promote_at("check", Signal::SIGTERM, To::Pid);
}

#[test]
fn sighup_during_stop_finishes_the_promote() {
    hang_up_promote_at("stop");
}

#[test]
fn sighup_during_after_switch_finishes_the_promote() {
    hang_up_promote_at("after_switch");
}

#[test]
fn sighup_during_check_retries_finishes_the_promote() {
    hang_up_promote_at("check");
}

#[test]
fn sigint_when_only_notify_is_left_finishes_the_promote() {
    let (env, _a, b) = two_releases();
    std::fs::write(env.root.join("block-notify"), "").unwrap();
    let mut child = spawn(&env, &["promote"]);
    wait_for(&env.root.join("in-notify"), &mut child);
    send(&child, Signal::SIGINT, To::Group);
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    // Production moved and the daemons run: the promote happened.
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("warning: interrupted by SIGINT"), "{t}");
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(b.as_str()),
        "{t}"
    );
    assert_started_after_stop(&env, &t);
    let end = last(&env, "promote");
    assert_eq!(end["phase"], "end", "{t}");
    assert_eq!(end["result"], "ok", "{t}");
    assert_nothing_interrupted(&env);
}

#[test]
fn a_second_ctrl_c_does_not_abandon_the_rollback() {
    // start is slow: the second Ctrl-C arrives while the daemons are being started again.
    let slow_start = format!(
        r#"touch "$SYMDEPLOY_ROOT/in-start"; sleep 1; {}"#,
        trace("start")
    );
    let (env, a, _b) = two_releases();
    let cfg = config("start").replace(
        &toml::Value::String(trace("start")).to_string(),
        &toml::Value::String(slow_start).to_string(),
    );
    env.set_config(&cfg);
    std::fs::write(env.root.join("block-after_switch"), "").unwrap();
    let mut child = spawn(&env, &["promote"]);
    wait_for(&env.root.join("in-after_switch"), &mut child);
    send(&child, Signal::SIGINT, To::Group);
    wait_for(&env.root.join("in-start"), &mut child);
    send(&child, Signal::SIGINT, To::Group);
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(130), "{t}");
    assert!(
        t.contains("SIGINT received: still starting the daemons again"),
        "{t}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_started_after_stop(&env, &t);
    assert_nothing_interrupted(&env);
}

#[test]
fn sigint_during_a_warmup_step_fails_the_release_and_keeps_warmup() {
    let env = Env::with_config(&config("start"));
    env.push_ok(&["main"]);
    let a = env.git(&["rev-parse", "HEAD"]);
    env.write("www/index.html", "second\n");
    let b = env.commit("second");
    // Into the repository without a warm-up (not the deploy branch); the
    // test runs the warm-up itself, in its own process group.
    env.push_ok(&["HEAD:refs/heads/other"]);
    std::fs::write(env.root.join("block-build"), "").unwrap();
    let mut child = spawn(&env, &["warmup", &b]);
    wait_for(&env.root.join("in-build"), &mut child);
    send(&child, Signal::SIGINT, To::Group);
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(130), "{t}");
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()), "{t}");
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.root.join(format!(".symdeploy/releases/{b}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["state"], "failed", "{t}");
    let end = last(&env, "warmup");
    assert_eq!(end["phase"], "end", "{t}");
    assert_eq!(end["result"], "interrupted", "{t}");
    assert_nothing_interrupted(&env);
}

#[test]
fn recover_after_sigkill_in_stop_runs_the_recorded_start() {
    let (env, a, _b) = two_releases();
    std::fs::write(env.root.join("block-stop"), "").unwrap();
    let mut child = spawn(&env, &["promote"]);
    wait_for(&env.root.join("in-stop"), &mut child);
    send(&child, Signal::SIGKILL, To::Pid);
    let _ = child.wait_with_output().unwrap();
    let started = env
        .journal()
        .into_iter()
        .rev()
        .find(|e| e["event"] == "promote" && e["phase"] == "start")
        .unwrap();
    assert_eq!(
        started["commands"]["start"],
        serde_json::json!([trace("start")]),
        "{started}"
    );
    assert_eq!(
        started["commands"]["stop"],
        serde_json::json!([trace("stop"), gate("stop")]),
        "{started}"
    );
    // The operator edits deploy.toml before recovering.
    env.set_config(&config("start-edited"));
    let out = env.symdeploy(&["recover"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("recorded by the interrupted run"), "{t}");
    let trace = env.trace();
    assert!(
        trace.iter().any(|l| l.starts_with("start ")),
        "the recorded start ran: {trace:?}"
    );
    assert!(
        !trace.iter().any(|l| l.starts_with("start-edited")),
        "not today's start: {trace:?}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_nothing_interrupted(&env);
}

/// The pusher does not wait for the walk that finds an undeletable release:
/// the promote moves the old release aside at once, the background cleanup
/// finds the immutable file, puts the release back (name, files, record) and
/// says so in its log; `status --check` reports it from then on, the next
/// promote warns about it again (checking it on the spot), and `cleanup` by
/// hand fails on it with one error until it is fixed.
#[test]
fn an_undeletable_old_release_warns_after_a_strict_tag_promote_and_fails_cleanup() {
    let cfg = format!(
        "hook = \"pre-receive\"\n{}",
        TEST_CONFIG.replace("keep_releases = 5", "keep_releases = 1")
    );
    // chattr needs a filesystem that keeps attributes (not tmpfs): the
    // target directory is on the same filesystem as the checkout.
    let env = Env::with_init_args_in(&cfg, &[], Path::new(env!("CARGO_TARGET_TMPDIR")));
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    env.git(&["tag", "release-1"]);
    env.push_ok(&["release-1"]);
    env.write("www/index.html", "second\n");
    let b = env.commit("second");
    env.git(&["tag", "release-2"]);
    env.push_ok(&["main", "release-2"]);
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));

    let stuck = env.release(&a).join("www/index.html");
    let Some(_guard) = crate::common::Immutable::freeze(&stuck, "the undeletable-release case")
    else {
        return;
    };

    env.write("www/index.html", "third\n");
    let c = env.commit("third");
    env.git(&["tag", "release-3"]);
    let t = env.push_ok(&["main", "release-3"]);
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(c.as_str()),
        "{t}"
    );
    assert!(t.contains(&format!("remove {}", &a[..12])), "{t}");
    assert!(!t.contains("error:"), "{t}");
    let tags = run(git_cmd(&env.root.join("repository")).args(["tag", "-l", "release-3"]));
    assert_eq!(String::from_utf8_lossy(&tags.stdout).trim(), "release-3");
    // The background cleanup found it and said so in its log.
    let pids = background_pids(&t);
    assert_eq!(pids.len(), 1, "{t}");
    wait_gone(pids[0]);
    let logs = env.root.join(".symdeploy/logs");
    let log = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(&format!("-cleanup-background-{}.log", pids[0]))
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .expect("the background cleanup's log");
    let warned = format!("warning: could not remove releases/{}", &a[..12]);
    assert!(log.contains(&warned), "{log}");
    assert!(log.contains("chattr -i"), "{log}");
    // The release keeps its name, files and record; nothing is left aside.
    assert!(stuck.exists());
    assert!(env
        .root
        .join(format!(".symdeploy/releases/{a}.json"))
        .exists());
    let leftovers: Vec<_> = std::fs::read_dir(env.root.join("releases"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let trash = std::fs::read_dir(env.root.join(".symdeploy/trash"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(trash, 0);

    // Monitoring sees it.
    let out = env.symdeploy(&["status", "--check"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!("could not remove releases/{}", &a[..12])),
        "{t}"
    );
    assert!(t.contains("chattr -i"), "{t}");

    // The next promote checks it again on the spot and warns, as it is
    // still in the way; the push itself succeeds.
    env.write("www/index.html", "fourth\n");
    let d = env.commit("fourth");
    env.git(&["tag", "release-4"]);
    let t = env.push_ok(&["main", "release-4"]);
    wait_all(&t);
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(d.as_str()),
        "{t}"
    );
    // The strict cleanup runs in the reference-transaction hook, whose lines
    // git relays without the `remote:` prefix.
    assert!(
        t.lines()
            .any(|l| l.strip_prefix("remote: ").unwrap_or(l).starts_with(&warned)),
        "{t}"
    );
    assert!(t.contains("chattr -i"), "{t}");
    assert!(!t.contains("error:"), "{t}");
    assert!(stuck.exists());

    // By hand, the same problem is an error, told once.
    let out = env.symdeploy(&["cleanup"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("immutable"), "{t}");
    assert_eq!(t.matches("error:").count(), 1, "{t}");

    // Once fixed, cleanup removes it, and monitoring is content.
    drop(_guard);
    let out = env.symdeploy(&["cleanup"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!env.release(&a).exists());
    let out = env.symdeploy(&["status", "--check"]);
    let t = text(&out);
    assert!(!t.contains("could not remove"), "{t}");
}

/// The last journal entry about `commit`, once its run has ended.
fn wait_for_end(env: &Env, commit: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(e) = env
            .journal()
            .into_iter()
            .rev()
            .find(|e| e["commit"] == commit && e["phase"] == "end")
        {
            return e;
        }
        assert!(Instant::now() < deadline, "the run of {commit} never ended");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_on_a_push_during_its_warm_up_fails_the_release_and_keeps_warmup() {
    let env = Env::with_config(&config("start"));
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    env.write("www/index.html", "second\n");
    let b = env.commit("second");
    std::fs::write(env.root.join("block-build"), "").unwrap();
    // git push, its receive-pack and the hook share the pusher's process
    // group, as from a terminal; Ctrl-C reaches all of them.
    let mut push = git_cmd(&env.work)
        .args(["push", "deploy", "main"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for(&env.root.join("in-build"), &mut push);
    send(&push, Signal::SIGINT, To::Group);
    let _ = push.wait_with_output();
    let end = wait_for_end(&env, &b);
    assert_eq!(end["event"], "warmup", "{end}");
    assert_eq!(end["result"], "interrupted", "{end}");
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()));
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.root.join(format!(".symdeploy/releases/{b}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["state"], "failed");
    // The hook has ended (its lock is free) once status sees no holder.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = env.symdeploy(&["status", "--json"]);
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if s["lock"].is_null() || Instant::now() > deadline {
            assert_eq!(s["interrupted"], serde_json::json!([]), "{s}");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctrl_c_while_waiting_for_the_lock_changes_nothing() {
    let (env, _a, b) = two_releases();
    std::fs::write(env.root.join("block-stop"), "").unwrap();
    let mut first = spawn(&env, &["promote"]);
    wait_for(&env.root.join("in-stop"), &mut first);
    let mut second = spawn(&env, &["promote"]);
    // Read its output as it comes, to see it waiting.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stderr = second.stderr.take().unwrap();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.lock().unwrap().contains("waiting for the deploy lock") {
        assert!(Instant::now() < deadline, "{}", seen.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let journal_before = env.journal().len();
    send(&second, Signal::SIGINT, To::Group);
    let status = second.wait().unwrap();
    let _ = reader.join();
    let t = seen.lock().unwrap().clone();
    assert_eq!(status.code(), Some(130), "{t}");
    assert!(t.contains("nothing was changed"), "{t}");
    assert_eq!(env.journal().len(), journal_before, "{t}");
    // The first promote is not disturbed.
    std::fs::write(env.root.join("go"), "").unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
}

#[test]
fn a_real_terminal_hanging_up_does_not_stop_the_promote() {
    // A pseudo-terminal whose master side closes: from then on every write
    // to it fails with EIO, as on a dropped SSH session with a pty.
    let (env, _a, b) = two_releases();
    let pty = nix::pty::openpty(None, None).expect("openpty");
    std::fs::write(env.root.join("block-stop"), "").unwrap();
    let mut child = Command::new(bin())
        .arg("--root")
        .arg(&env.root)
        .arg("promote")
        .current_dir(env.tmp.path())
        .env_remove("SYMDEPLOY_ROOT")
        .stdin(Stdio::null())
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave))
        .process_group(0)
        .spawn()
        .expect("spawn symdeploy");
    wait_for(&env.root.join("in-stop"), &mut child);
    drop(pty.master);
    send(&child, Signal::SIGHUP, To::Group);
    std::fs::write(env.root.join("go"), "").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}; trace {:?}",
        env.trace()
    );
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
    assert_started_after_stop(&env, "pty hang-up");
    assert_eq!(last(&env, "promote")["result"], "ok");
    assert_nothing_interrupted(&env);
}

#[test]
fn sigint_during_a_rollback_stop_keeps_production_and_starts_the_daemons() {
    let (env, _a, b) = two_releases();
    let out = env.symdeploy(&["promote"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.pointed("production").as_deref(), Some(b.as_str()));
    std::fs::write(env.root.join("block-stop"), "").unwrap();
    let mut child = spawn(&env, &["rollback"]);
    wait_for(&env.root.join("in-stop"), &mut child);
    send(&child, Signal::SIGINT, To::Group);
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(130), "{t}");
    assert_eq!(
        env.pointed("production").as_deref(),
        Some(b.as_str()),
        "{t}"
    );
    assert_started_after_stop(&env, &t);
    let end = last(&env, "rollback");
    assert_eq!(end["phase"], "end", "{t}");
    assert_eq!(end["result"], "interrupted", "{t}");
    assert_nothing_interrupted(&env);
}

/// A preview whose release cannot be removed: `preview rm` fails with one
/// error line that names the release by its place
/// (`previews/<slug>/releases/<commit>`), and the preview keeps serving.
#[test]
fn a_stuck_preview_release_is_one_error_naming_it_whole() {
    let cfg = format!("{TEST_CONFIG}[previews]\nbranches = \"feature/*\"\n");
    let env = Env::with_init_args_in(&cfg, &[], Path::new(env!("CARGO_TARGET_TMPDIR")));
    env.push_ok(&["main"]);
    env.git(&["checkout", "-q", "-b", "feature/stuck"]);
    env.write("www/index.html", "stuck\n");
    env.commit("stuck");
    env.push_ok(&["feature/stuck"]);
    let served = std::fs::canonicalize(env.root.join("previews/feature-stuck/production"))
        .expect("the preview serves a release");
    let stuck = served.join("www/index.html");
    let Some(_guard) = crate::common::Immutable::freeze(&stuck, "the stuck preview case") else {
        return;
    };
    let commit = served
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a release name")
        .to_string();
    let name = format!("previews/feature-stuck/releases/{}", &commit[..12]);
    for args in [&["preview", "rm", "feature-stuck"][..], &["cleanup"][..]] {
        let out = env.symdeploy(args);
        let t = text(&out);
        if args[0] == "preview" {
            assert!(!out.status.success(), "{t}");
        }
        assert!(t.matches("error:").count() <= 1, "{args:?}: {t}");
        if !out.status.success() {
            assert_eq!(t.matches("error:").count(), 1, "{args:?}: {t}");
            assert!(
                t.contains(&format!("could not remove {name}:")),
                "the release is named by its place: {t}"
            );
        }
    }
    assert!(stuck.exists());
    drop(_guard);
    let out = env.symdeploy(&["preview", "rm", "feature-stuck"]);
    assert!(out.status.success(), "{}", text(&out));
}
