//! What people see of `warmup.check` and `promote.watch`, pinned as insta
//! snapshots (tests/integration/snapshots/integration__transcript_watch__*.snap): a push whose
//! warm-up check fails, a promote that starts a watch, the status line of a
//! watch, and the watcher's own log of a rollback. Hashes, times, paths and
//! pids are redacted (`crate::common::redact` and `snapshot_settings`, plus clock
//! times here).

use crate::common::{redact, stderr, text, wait_for, Env};

const CONFIG: &str = r#"
branch = "main"
shared = []
[warmup]
build = []
links = []
migrate = []
check = ["test ! -e broken || { echo 'PHP Fatal error: Uncaught Error: Call to undefined function boom() in index.php:3'; exit 255; }"]
check_timeout = 1
notify = ["echo \"notify: $SYMDEPLOY_RESULT\""]
[promote]
stop = ["echo stopping the workers"]
after_switch = []
start = ["echo starting the workers"]
check = ["test ! -e \"$SYMDEPLOY_ROOT/sick\" || { echo 'GET /health: 500'; exit 1; }"]
check_timeout = 1
notify = ["echo \"notify: $SYMDEPLOY_RESULT\""]
watch = 120
watch_interval = 1
"#;

/// `redact`, and clock times (the watch's window) as [clock].
fn pin(t: &str) -> String {
    let t = redact(t);
    let mut out = String::new();
    let b = t.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let clock = i + 8 <= b.len()
            && [0, 1, 3, 4, 6, 7]
                .iter()
                .all(|&k| b[i + k].is_ascii_digit())
            && b[i + 2] == b':'
            && b[i + 5] == b':';
        if clock {
            out.push_str("[clock]");
            i += 8;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

#[test]
fn warmup_check_fails() {
    let env = Env::with_config(CONFIG);
    env.push_ok(&["main"]);
    env.write("broken", "");
    env.commit("a front page that throws");
    let t = env.push_ok(&["main"]);
    assert_eq!(t.matches("remote: error: warm-up of").count(), 1, "{t}");
    let _s = crate::common::snapshot_settings(&env).bind_to_scope();
    insta::assert_snapshot!(pin(&t));
}

#[test]
fn promote_starts_a_watch_that_rolls_back() {
    let env = Env::with_config(CONFIG);
    env.push_ok(&["main"]);
    assert!(env.symdeploy(&["promote"]).status.success());
    env.write("second", "");
    let second = env.commit("second");
    env.push_ok(&["main"]);
    let o = env.symdeploy(&["promote"]);
    assert!(o.status.success(), "{}", text(&o));
    let _s = crate::common::snapshot_settings(&env).bind_to_scope();
    insta::assert_snapshot!("promote_with_watch", pin(&stderr(&o)));
    let mut status = String::new();
    wait_for("a passing check", || {
        status = String::from_utf8_lossy(&env.symdeploy(&["status"]).stdout).to_string();
        status.contains("(1/120 checks ok)")
    });
    let line = status
        .lines()
        .find(|l| l.starts_with("watch "))
        .unwrap_or_default()
        .to_string();
    insta::assert_snapshot!("status_while_watching", pin(&line));
    let current: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.root.join(".symdeploy/watch/current.json")).unwrap(),
    )
    .unwrap();
    let pid = current["pid"].as_i64().unwrap();
    std::fs::write(env.root.join("sick"), "").unwrap();
    // The watcher is gone once it has written all it says.
    wait_for("the rollback", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    });
    let log = std::fs::read_dir(env.root.join(".symdeploy/logs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.to_string_lossy().to_string();
            name.contains("-watch-") && name.contains(&second[..12])
        })
        .expect("the watcher's log");
    let log = std::fs::read_to_string(log).unwrap();
    // The log keeps every check and attempt, whose number differs by run:
    // pinned are the header and everything from the failure on.
    assert!(log.contains("GET /health: 500"), "{log}");
    let header = log
        .lines()
        .find(|l| l.starts_with("-----> watching"))
        .expect("the watcher's header");
    let from = log.find("error: the watch check").expect("the failure");
    // Without the tracing lines (timestamped), which the log keeps too.
    let tail: String = log[from..]
        .lines()
        .filter(|l| !l.starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| format!("{l}\n"))
        .collect();
    let log = format!("{header}\n{tail}");
    insta::assert_snapshot!("watch_log_of_a_rollback", pin(&log));
}
