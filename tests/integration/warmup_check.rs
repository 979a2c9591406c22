//! `warmup.check`: a release is ready only once its check, run through
//! `warmup` pointing at it, passes. Real binary, real git pushes.

use crate::common::*;

/// The check records where `warmup` points while it runs (the proof that it
/// goes through the new release) and fails when the release has `BROKEN`.
const CHECK: &str = r#"
[warmup]
build = ["make production-composer"]
links = []
migrate = []
notify = ["echo \"notify-warmup $SYMDEPLOY_RESULT\" >> \"$SYMDEPLOY_ROOT/trace.log\""]
check = ["echo \"check $(readlink \"$SYMDEPLOY_ROOT/warmup\") $(cat \"$SYMDEPLOY_ROOT/www_warmup/index.html\")\" >> \"$SYMDEPLOY_ROOT/trace.log\"; if [ -f BROKEN ]; then echo 'PHP Fatal error: boom' >&2; exit 1; fi"]
check_timeout = 2
"#;

fn config(strict: bool) -> String {
    let base = TEST_CONFIG.replace(
        "[warmup]\nbuild = [\"make production-composer\", \"make production-assets\"]\nlinks = [\"make production-links\"]\nmigrate = [\"make production-migrate\"]\nnotify = [\"make deploy-notify-warmup\"]\n",
        CHECK,
    );
    assert!(base.contains("check = "), "the test config has the check");
    if strict {
        format!("hook = \"pre-receive\"\n{base}")
    } else {
        base
    }
}

fn state(env: &Env, commit: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.root.join(format!(".symdeploy/releases/{commit}.json")))
            .unwrap(),
    )
    .unwrap();
    v["state"].as_str().unwrap_or_default().to_string()
}

/// A good release pushed and promoted, then a broken one pushed.
fn good_then_broken(env: &Env) -> (String, String) {
    let good = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    let out = env.symdeploy(&["promote", &good]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(state(env, &good), "ready");
    env.clear_trace();
    env.write("BROKEN", "");
    env.write("www/index.html", "broken\n");
    let bad = env.commit("a release whose front page throws");
    (good, bad)
}

#[test]
fn a_release_whose_check_fails_is_never_ready_and_warmup_goes_back() {
    let env = Env::with_config(&config(false));
    let (good, bad) = good_then_broken(&env);
    let out = env.push(&["main"]);
    let t = text(&out);
    // The check saw warmup (and www_warmup) on the new release.
    assert!(
        env.trace()
            .contains(&format!("check releases/{bad} broken")),
        "{:?}",
        env.trace()
    );
    assert!(t.contains("PHP Fatal error: boom"), "{t}");
    assert!(
        t.contains(&format!(
            "remote: error: warm-up of {} failed: check step",
            &bad[..12]
        )),
        "{t}"
    );
    assert_eq!(t.matches("remote: error: warm-up of").count(), 1, "{t}");
    assert!(t.contains("warmup.check_timeout"), "{t}");
    assert_eq!(env.pointed("warmup").as_deref(), Some(good.as_str()));
    assert_eq!(env.pointed("production").as_deref(), Some(good.as_str()));
    assert_eq!(state(&env, &bad), "failed");
    assert!(env.trace().contains(&"notify-warmup failed".to_string()));
    let last = env.journal().pop().unwrap();
    assert_eq!(last["result"], "failed");
    assert_eq!(last["commit"], bad.as_str());
    // No promote takes it.
    let out = env.symdeploy(&["promote", &bad]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(env.pointed("production").as_deref(), Some(good.as_str()));
    // Nor a tag.
    env.git(&["tag", "release-9"]);
    let _ = env.push(&["release-9"]);
    assert_eq!(env.pointed("production").as_deref(), Some(good.as_str()));
}

#[test]
fn a_passing_check_makes_the_release_ready_and_is_timed() {
    let env = Env::with_config(&config(false));
    let first = env.git(&["rev-parse", "HEAD"]);
    let t = env.push_ok(&["main"]);
    assert!(t.contains("check"), "{t}");
    assert_eq!(env.pointed("warmup").as_deref(), Some(first.as_str()));
    assert_eq!(state(&env, &first), "ready");
    assert!(env
        .trace()
        .contains(&format!("check releases/{first} hello")));
    let end = env.journal().pop().unwrap();
    assert_eq!(end["result"], "ok");
    assert!(end["durations"]["check"].is_number(), "{end}");
}

#[test]
fn the_first_release_failing_its_check_leaves_no_warmup() {
    let env = Env::with_config(&config(false));
    env.write("BROKEN", "");
    let bad = env.commit("broken from the start");
    let _ = env.push(&["main"]);
    assert_eq!(env.pointed("warmup"), None);
    assert!(!env.root.join("warmup").exists());
    assert_eq!(state(&env, &bad), "failed");
}

#[test]
fn strict_mode_rejects_a_push_whose_check_fails() {
    let env = Env::with_config(&config(true));
    let (good, bad) = good_then_broken(&env);
    let out = env.push(&["main"]);
    let t = text(&out);
    assert!(!out.status.success(), "the push must be refused: {t}");
    assert!(
        env.trace()
            .contains(&format!("check releases/{bad} broken")),
        "the check ran with warmup on the new release: {:?}",
        env.trace()
    );
    assert!(t.contains("PHP Fatal error: boom"), "{t}");
    assert!(t.contains("is refused"), "{t}");
    let refs = run(git_cmd(&env.root.join("repository")).args(["rev-parse", "main"]));
    assert_eq!(String::from_utf8_lossy(&refs.stdout).trim(), good);
    assert_eq!(env.pointed("warmup").as_deref(), Some(good.as_str()));
    assert_eq!(env.pointed("production").as_deref(), Some(good.as_str()));
    assert_eq!(state(&env, &bad), "failed");
    assert!(env.trace().contains(&"notify-warmup failed".to_string()));
    // A passing check in strict mode: the push lands and warmup moves.
    std::fs::remove_file(env.work.join("BROKEN")).unwrap();
    let fixed = env.commit("fixed");
    env.push_ok(&["main"]);
    assert_eq!(env.pointed("warmup").as_deref(), Some(fixed.as_str()));
    assert_eq!(state(&env, &fixed), "ready");
}

#[test]
fn a_warmup_killed_during_its_check_is_failed_by_recover_and_warmup_goes_back() {
    let env = Env::with_config(&config(false));
    let (good, _) = good_then_broken(&env);
    std::fs::remove_file(env.work.join("BROKEN")).unwrap();
    let killed = env.commit("killed while checking");
    let mut push = git_cmd(&env.work);
    push.args(["push", "deploy", "main"])
        .env("SYMDEPLOY_FAULT", "warmup-check");
    let _ = run(&mut push);
    // Killed with warmup on the release under check, which is not ready.
    assert_eq!(env.pointed("warmup").as_deref(), Some(killed.as_str()));
    assert_ne!(state(&env, &killed), "ready");
    let out = env.symdeploy(&["recover"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(state(&env, &killed), "failed");
    assert_eq!(env.pointed("warmup").as_deref(), Some(good.as_str()));
    assert_eq!(env.pointed("production").as_deref(), Some(good.as_str()));
}
