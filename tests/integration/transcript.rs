//! What the pusher sees, pinned: golden transcripts (insta snapshots under
//! tests/integration/snapshots/) of real pushes and commands, with hashes, times, paths
//! and pids redacted (`crate::common::redact` and `snapshot_settings`), so a change of wording shows up in
//! review as the transcript itself. Also: notify hears every outcome.
//!
//! A changed transcript fails the test; `INSTA_UPDATE=always cargo test
//! --test integration transcript::` rewrites the snapshots (then review the diff). CI runs
//! with `CI=true`, where insta never writes a snapshot, only fails.

use crate::common::{redact, stderr, text, Env};

/// A root whose steps print nothing and whose daemons are not configured.
const EMPTY_STEPS: &str = r#"
branch = "main"
shared = []
[warmup]
build = []
links = []
migrate = []
notify = []
[promote]
stop = []
after_switch = []
start = []
notify = []
"#;

/// Steps that print something, a health check that needs the release's
/// `healthy` file, and notify commands that say what they heard.
const WITH_OUTPUT: &str = r#"
branch = "main"
shared = ["log"]
[warmup]
build = ["echo compiling 3 templates", "test ! -e broken || { echo 'templates/home.latte: unknown tag {foo}'; exit 2; }"]
links = ["ln -sfn ../common/log log-link && echo linked"]
notify = ["echo \"notify: $SYMDEPLOY_RESULT ${SYMDEPLOY_ERROR:-}\""]
[promote]
stop = ["echo stopping the workers"]
after_switch = []
start = ["echo starting the workers"]
check = ["test -e healthy || { echo 'GET /health: 503'; exit 1; }"]
check_timeout = 1
notify = ["echo \"notify: $SYMDEPLOY_RESULT\""]
"#;

/// A post-receive push whose deploy failed: one `error:` for the failure,
/// and the last `remote:` line says that git took the push all the same (git
/// push exits 0) and that strict mode would have refused it.
fn accepted_but_failed_is_last(t: &str) {
    assert_eq!(t.matches("error:").count(), 2, "{t}");
    let last = t.lines().rfind(|l| l.starts_with("remote:")).unwrap();
    assert!(
        last.starts_with("remote: error: the push was accepted, but its deploy failed")
            && last.contains("strict mode"),
        "{t}"
    );
}

fn remote_lines(t: &str) -> usize {
    t.lines().filter(|l| l.starts_with("remote:")).count()
}

#[test]
fn empty_steps_warmup() {
    let env = Env::with_config(EMPTY_STEPS);
    let t = env.push_ok(&["main"]);
    assert!(remote_lines(&t) <= 10, "{t}");
    let _s = crate::common::snapshot_settings(&env).bind_to_scope();
    insta::assert_snapshot!(redact(&t));
}

#[test]
fn warmup_with_output() {
    let env = Env::with_config(WITH_OUTPUT);
    let t = env.push_ok(&["main"]);
    assert!(t.contains("remote:        notify: ok"), "{t}");
    let _s = crate::common::snapshot_settings(&env).bind_to_scope();
    insta::assert_snapshot!(redact(&t));
}

#[test]
fn failed_build() {
    let env = Env::with_config(WITH_OUTPUT);
    env.push_ok(&["main"]);
    env.write("broken", "");
    env.commit("a template with an unknown tag");
    // post-receive: git takes the commit, the warm-up fails, the push exits 0.
    let t = env.push_ok(&["main"]);
    accepted_but_failed_is_last(&t);
    // warmup.notify heard the failure, and why, on one line.
    assert!(
        t.contains("remote:        notify: failed build step `test ! -e broken"),
        "{t}"
    );
    let _s = crate::common::snapshot_settings(&env).bind_to_scope();
    insta::assert_snapshot!(redact(&t));
}

#[test]
fn promote() {
    let env = Env::with_config(WITH_OUTPUT);
    env.write("healthy", "");
    env.commit("healthy");
    env.push_ok(&["main"]);
    let o = env.symdeploy(&["promote"]);
    assert!(o.status.success(), "{}", text(&o));
    let _s = crate::common::snapshot_settings(&env).bind_to_scope();
    insta::assert_snapshot!(redact(&stderr(&o)));
}

#[test]
fn promote_rolled_back_by_a_failed_check() {
    let env = Env::with_config(WITH_OUTPUT);
    env.write("healthy", "");
    env.commit("healthy");
    env.push_ok(&["main"]);
    assert!(env.symdeploy(&["promote"]).status.success());
    env.git(&["rm", "-q", "healthy"]);
    env.commit("forgot the health endpoint");
    env.push_ok(&["main"]);
    let o = env.symdeploy(&["promote"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = stderr(&o);
    assert_eq!(t.matches("error:").count(), 1, "{t}");
    assert!(t.contains("notify: rolled-back"), "{t}");
    let _s = crate::common::snapshot_settings(&env).bind_to_scope();
    insta::assert_snapshot!(redact(&t));
}

#[test]
fn tag_push_whose_warmup_fails() {
    let env = Env::with_config(WITH_OUTPUT);
    env.write("healthy", "");
    env.commit("healthy");
    env.push_ok(&["main"]);
    assert!(env.symdeploy(&["promote"]).status.success());
    env.write("broken", "");
    env.commit("a template with an unknown tag");
    env.git(&["tag", "release-2"]);
    let t = env.push_ok(&["release-2"]);
    accepted_but_failed_is_last(&t);
    // Production is unchanged, and the transcript says so.
    assert!(t.contains("remote:        production -> releases/"), "{t}");
    // warmup.notify and promote.notify both heard `failed`.
    assert!(
        t.contains("remote:        notify: failed build step"),
        "{t}"
    );
    assert!(
        t.lines()
            .any(|l| l.trim_end() == "remote:        notify: failed"),
        "{t}"
    );
    let _s = crate::common::snapshot_settings(&env).bind_to_scope();
    insta::assert_snapshot!(redact(&t));
}

#[test]
fn repoint_without_rebuild() {
    let env = Env::with_config(EMPTY_STEPS);
    let first = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    env.write("www/index.html", "second\n");
    env.commit("second");
    env.push_ok(&["main"]);
    let t = env.push_ok(&["-f", &format!("{first}:refs/heads/main")]);
    assert_eq!(env.pointed("warmup").as_deref(), Some(first.as_str()));
    let _s = crate::common::snapshot_settings(&env).bind_to_scope();
    insta::assert_snapshot!(redact(&t));
}

#[test]
fn broken_deploy_toml() {
    let env = Env::with_config(EMPTY_STEPS);
    env.push_ok(&["main"]);
    env.set_config("branch = \"main\"\n[warmup]\nbuild = \"make\"\n");
    env.write("www/index.html", "second\n");
    env.commit("second");
    let t = env.push_ok(&["main"]);
    accepted_but_failed_is_last(&t);
    // Journaled as a failed run with a run log of its own.
    let last = env.journal().pop().unwrap();
    assert_eq!(last["result"], "failed", "{last}");
    let log = last["log"].as_str().expect("a run log");
    assert!(
        std::fs::read_to_string(log)
            .unwrap()
            .contains("deploy.toml"),
        "{log}"
    );
    let _s = crate::common::snapshot_settings(&env).bind_to_scope();
    insta::assert_snapshot!(redact(&t));
}

#[test]
fn rust_log_writes_no_colour_codes_into_a_pipe() {
    let env = Env::with_config(EMPTY_STEPS);
    env.push_ok(&["main"]);
    let o = crate::common::run(
        std::process::Command::new(crate::common::bin())
            .args(["--root", env.root.to_str().unwrap(), "warmup"])
            .env("RUST_LOG", "info"),
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    // The tracing lines are there, in plain text.
    assert!(t.contains("INFO"), "{t}");
    assert!(!t.contains('\u{1b}'), "ANSI codes in a pipe: {t:?}");
}

#[test]
fn install_sh_help_prints_its_usage() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let o = crate::common::run(
        std::process::Command::new("bash")
            .arg(&script)
            .arg("--help"),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.starts_with("Build symdeploy"), "{out}");
    assert!(out.contains("./install.sh ROOT [--user NAME]"), "{out}");
    assert!(
        !out.contains("sed "),
        "a line of code instead of the usage: {out}"
    );
    let o = crate::common::run(
        std::process::Command::new("bash")
            .arg(&script)
            .arg("--bogus"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// The output examples of the README and the book (docs/src) are these
/// snapshots: each block after a `<!-- transcript: NAME -->` marker must be
/// the snapshot NAME's text.
#[test]
fn readme_examples_are_the_snapshots() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for page in std::fs::read_dir(dir.join("docs/src")).unwrap() {
        let page = page.unwrap().path();
        if page.extension().is_some_and(|e| e == "md") {
            docs.push_str(&std::fs::read_to_string(&page).unwrap());
        }
    }
    let mut checked = 0;
    for part in docs.split("<!-- transcript: ").skip(1) {
        let (name, rest) = part.split_once(" -->").unwrap();
        let block = rest
            .split_once("```text\n")
            .and_then(|(_, b)| b.split_once("\n```"))
            .map(|(b, _)| b)
            .unwrap_or_else(|| panic!("no ```text block after the {name} marker"));
        let snap = std::fs::read_to_string(dir.join(format!(
            "tests/integration/snapshots/integration__transcript__{name}.snap"
        )))
        .unwrap_or_else(|e| panic!("the docs name snapshot {name}: {e}"));
        let body = snap.splitn(3, "---\n").nth(2).unwrap().trim_end();
        assert_eq!(
            block, body,
            "{name} example (README or docs/src) differs from tests/integration/snapshots/integration__transcript__{name}.snap; copy it in"
        );
        checked += 1;
    }
    assert!(
        checked >= 8,
        "only {checked} examples in the README and docs/src"
    );
}

/// A line a step's background child prints after the step returned (and
/// after the short drain) is not shown under the next stage: it goes to the
/// run log, tagged with the stage it came from.
#[test]
fn background_output_goes_to_the_run_log_tagged() {
    let env = Env::with_config(&EMPTY_STEPS.replace(
        "build = []\nlinks = []",
        "build = [\"(sleep 4; echo lat\\\"\\\"e-line) & echo started\"]\nlinks = [\"sleep 7; echo links-ran\"]",
    ));
    let c = env.git(&["rev-parse", "HEAD"]);
    let t = env.push_ok(&["main"]);
    assert!(t.contains("remote:        started"), "{t}");
    assert!(t.contains("remote:        links-ran"), "{t}");
    assert!(!t.contains("late-line"), "background output on screen: {t}");
    let logs = env.root.join(".symdeploy/logs");
    let log: String = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(&c[..12]))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        log.contains("       [build, background] late-line"),
        "not in the run log, tagged: {log}"
    );
}
