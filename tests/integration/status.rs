//! `symdeploy status` tells the truth when it matters: with a broken
//! deploy.toml, after a failed warm-up of the branch tip (`--check` for
//! cron/Nagios), and as Prometheus metrics that the official Python parser
//! (`prometheus_client`, Debian's python3-prometheus-client, installed by
//! `.ci/install-stack`) reads.

use std::process::Stdio;

use crate::common::{text, Env};

const CONFIG: &str = r#"
branch = "main"
shared = []
min_free = "off"
[warmup]
build = ["test ! -e broken || { echo 'the build is broken'; exit 2; }"]
links = []
notify = []
[promote]
stop = []
after_switch = []
start = []
notify = []
"#;

#[test]
fn status_with_a_broken_deploy_toml_shows_the_error_then_the_state() {
    let env = Env::with_config(CONFIG);
    let first = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    env.set_config("branch = \"main\"\n[warmup]\nbuild = 3\n");
    let o = env.symdeploy(&["status"]);
    let err = String::from_utf8_lossy(&o.stderr);
    let out = String::from_utf8_lossy(&o.stdout);
    // Everything is shown, and the exit code still says the config is broken.
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        err.starts_with("error: "),
        "the config error comes first: {err}"
    );
    assert!(err.contains("deploy.toml:3"), "{err}");
    // ... and then everything it can read.
    assert!(
        out.contains(&format!("warmup      {} ready", &first[..12])),
        "{out}"
    );
    assert!(
        out.contains(&format!("main        {} warmed up", &first[..12])),
        "{out}"
    );
    // --check lists it as a problem; --json carries it.
    let o = env.symdeploy(&["status", "--check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("deploy.toml cannot be read"),
        "{}",
        text(&o)
    );
    let o = env.symdeploy(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["config_error"]
        .as_str()
        .unwrap()
        .contains("deploy.toml:3"));
}

#[test]
fn check_fails_after_a_failed_warmup_of_the_tip_and_passes_after_the_fix() {
    let env = Env::with_config(CONFIG);
    env.push_ok(&["main"]);
    let o = env.symdeploy(&["status", "--check"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).starts_with("OK: "), "{}", text(&o));

    env.write("broken", "");
    let bad = env.commit("breaks the build");
    env.push_ok(&["main"]);
    let o = env.symdeploy(&["status", "--check"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.starts_with("PROBLEM: "), "{t}");
    assert!(
        t.contains(&format!(
            "the tip of main ({}) is not warmed up: its warm-up failed",
            &bad[..12]
        )),
        "{t}"
    );
    assert!(t.contains(".symdeploy/logs/"), "the log path: {t}");
    // Plain status says why too.
    let s = text(&env.symdeploy(&["status"]));
    assert!(
        s.contains(&format!("main        {} NOT warmed up", &bad[..12])),
        "{s}"
    );

    env.git(&["rm", "-q", "broken"]);
    env.commit("fix the build");
    env.push_ok(&["main"]);
    let o = env.symdeploy(&["status", "--check"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn check_reports_a_rolled_back_promote() {
    let env = Env::with_config(&CONFIG.replace(
        "start = []",
        "start = []\ncheck = [\"test -e healthy\"]\ncheck_timeout = 1",
    ));
    env.write("healthy", "");
    env.commit("healthy");
    env.push_ok(&["main"]);
    assert!(env.symdeploy(&["promote"]).status.success());
    env.git(&["rm", "-q", "healthy"]);
    let b = env.commit("unhealthy");
    env.push_ok(&["main"]);
    assert!(!env.symdeploy(&["promote"]).status.success());
    let o = env.symdeploy(&["status", "--check"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!("the last promote ({}, ", &b[..12])) && t.contains("was rolled back"),
        "{t}"
    );
}

#[test]
fn prometheus_output_parses_with_the_official_parser() {
    let env = Env::with_config(CONFIG);
    let first = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    assert!(env.symdeploy(&["promote"]).status.success());
    env.write("broken", "");
    env.commit("breaks the build");
    env.push_ok(&["main"]);
    let o = env.symdeploy(&["status", "--prometheus"]);
    assert!(o.status.success(), "{}", text(&o));
    let Some(samples) = crate::common::parse_prometheus(&o.stdout) else {
        return;
    };
    let value = |name: &str, label_part: &str| -> f64 {
        samples
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")) && l.contains(label_part))
            .unwrap_or_else(|| panic!("no {name} with {label_part}: {samples}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value(
            "symdeploy_production_info",
            &format!("\"commit\": \"{first}\"")
        ),
        1.0
    );
    assert_eq!(
        value("symdeploy_last_warmup_success", "\"result\": \"failed\""),
        0.0
    );
    assert_eq!(
        value("symdeploy_last_promote_success", "\"result\": \"ok\""),
        1.0
    );
    assert!(value("symdeploy_last_warmup_timestamp_seconds", "root") > 1.6e9);
    assert!(value("symdeploy_last_promote_timestamp_seconds", "root") > 1.6e9);
    assert_eq!(value("symdeploy_releases", "\"state\": \"ready\""), 1.0);
    assert_eq!(value("symdeploy_releases", "\"state\": \"failed\""), 1.0);
    assert!(value("symdeploy_free_bytes", "root") > 0.0);
    assert_eq!(value("symdeploy_lock_held_seconds", "root"), 0.0);
    assert_eq!(value("symdeploy_branch_tip_warmed_up", "main"), 0.0);
    assert_eq!(value("symdeploy_problems", "root"), 1.0);
}

/// Poll `f` until it is true, up to a generous deadline.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn check_reports_a_lock_held_too_long_and_low_free_space() {
    let env = Env::with_config(&CONFIG.replace("shared = []", "shared = []\nlock_timeout = 1"));
    env.push_ok(&["main"]);
    // A warm-up that holds the lock for a while.
    env.set_config(
        &CONFIG
            .replace("shared = []", "shared = []\nlock_timeout = 1")
            .replace(
                "build = [\"test ! -e broken || { echo 'the build is broken'; exit 2; }\"]",
                "build = [\"sleep 6\"]",
            ),
    );
    env.write("www/index.html", "second\n");
    env.commit("second");
    let mut warm = crate::common::git_cmd(&env.work)
        .args(["push", "deploy", "main"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last = String::new();
    wait_until(
        "status --check to see the lock held past lock_timeout",
        || {
            let o = env.symdeploy(&["status", "--check"]);
            last = text(&o);
            o.status.code() == Some(1) && last.contains("the deploy lock has been held for")
        },
    );
    assert!(last.contains("longer than lock_timeout (1s)"), "{last}");
    assert!(warm.wait().unwrap().success());
    let o = env.symdeploy(&["status", "--check"]);
    assert!(o.status.success(), "{}", text(&o));

    // A min_free that this filesystem cannot meet.
    env.set_config(&CONFIG.replace("min_free = \"off\"", "min_free = \"999999GiB\""));
    let o = env.symdeploy(&["status", "--check"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("under min_free"), "{t}");
}
