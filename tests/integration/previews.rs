//! Preview environments per branch, through real `git push` to a real bare
//! repository: everything about previews that needs no web server
//! (tests/integration/stack.rs serves them with the real nginx and php-fpm).

use std::path::Path;
use std::process::Command;

use crate::common::{bin, git_cmd, ok, run, text, Env, TEST_CONFIG};

fn config(extra: &str) -> String {
    format!("{TEST_CONFIG}[previews]\nbranches = \"feature/*\"\n{extra}",)
}

/// `previews/<slug>/production` -> `releases/<commit>`: the release's
/// name, `preview-<slug>-<commit>`.
fn preview_target(env: &Env, slug: &str) -> Option<String> {
    let t = std::fs::read_link(env.root.join("previews").join(slug).join("production")).ok()?;
    let c = t.to_str()?.strip_prefix("releases/")?;
    Some(format!("preview-{slug}-{c}"))
}

/// Every preview release directory, as `<slug>/<commit>`.
fn preview_releases(env: &Env) -> Vec<String> {
    let mut out = Vec::new();
    for p in std::fs::read_dir(env.root.join("previews")).unwrap() {
        let p = p.unwrap();
        let Ok(rs) = std::fs::read_dir(p.path().join("releases")) else {
            continue;
        };
        for r in rs {
            out.push(format!(
                "{}/{}",
                p.file_name().to_string_lossy(),
                r.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// An env whose main branch is warmed up and promoted (production and
/// warmup on commit A), with a branch feature/login-form checked out.
fn scene(extra: &str) -> (Env, String) {
    let env = Env::with_config(&config(extra));
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    ok(&env.symdeploy(&["promote"]));
    env.git(&["checkout", "-q", "-b", "feature/login-form"]);
    (env, a)
}

#[test]
fn a_branch_push_makes_a_preview_and_production_and_warmup_stay() {
    let (env, a) = scene("");
    // Production wrote to its shared data: a preview must never see it.
    std::fs::write(env.root.join("common/www/data/images/prod.txt"), "prod").unwrap();
    env.clear_trace();
    env.write("www/index.html", "login form v1\n");
    let b = env.commit("login form");
    let t = env.push_ok(&["-o", "promote", "feature/login-form"]);
    assert!(
        t.contains("previews/feature-login-form/production -> releases/"),
        "{t}"
    );
    assert!(t.contains("-o promote does not apply"), "{t}");

    let www = env.root.join("previews/feature-login-form/www/index.html");
    assert_eq!(read(&www), "login form v1\n");
    assert_eq!(read(&env.root.join("production/www/index.html")), "hello\n");
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()));
    assert_eq!(
        preview_target(&env, "feature-login-form").as_deref(),
        Some(format!("preview-feature-login-form-{b}").as_str())
    );
    // Its own release directory, not the main release of the same commit.
    assert!(!env.release(&b).exists());

    // Shared paths resolve under previews/<slug>/common/, never common/.
    let rel = env
        .root
        .join(format!("previews/feature-login-form/releases/{b}"));
    for shared in ["log", "www/data/images"] {
        let real = std::fs::canonicalize(rel.join(shared)).unwrap();
        let expected = std::fs::canonicalize(env.root.join("previews/feature-login-form/common"))
            .unwrap()
            .join(shared);
        assert_eq!(real, expected, "{shared}");
        assert!(!real.starts_with(std::fs::canonicalize(env.root.join("common")).unwrap()));
    }
    assert!(!rel.join("www/data/images/prod.txt").exists());
    // The branch's own copy seeded the preview's data, not production's.
    assert_eq!(
        read(
            &env.root
                .join("previews/feature-login-form/common/www/data/images/logo.svg")
        ),
        "<svg/>\n"
    );
    assert_eq!(
        read(&env.root.join("common/www/data/images/prod.txt")),
        "prod"
    );

    // The warm-up's build and links ran, in the preview's release; migrate
    // did not; notify ran with SYMDEPLOY_STAGE=preview.
    let trace = env.trace();
    let rel_s = rel.display().to_string();
    for step in [
        "composer build",
        "assets build",
        "links links",
        "notify-warmup preview",
    ] {
        assert!(
            trace.iter().any(|l| l == &format!("{step} {rel_s}")),
            "{step}: {trace:?}"
        );
    }
    assert!(!trace.iter().any(|l| l.starts_with("migrate")), "{trace:?}");
    assert!(
        !trace
            .iter()
            .any(|l| l.starts_with("stop") || l.starts_with("start")),
        "{trace:?}"
    );

    // The journal has the run.
    let j = env.journal();
    assert!(j.iter().any(|e| e["event"] == "preview"
        && e["phase"] == "end"
        && e["result"] == "ok"
        && e["commit"] == b.as_str()));

    // A second push re-points it; the old preview release goes.
    env.write("www/index.html", "login form v2\n");
    let c = env.commit("login form 2");
    env.push_ok(&["feature/login-form"]);
    assert_eq!(read(&www), "login form v2\n");
    assert_eq!(
        preview_target(&env, "feature-login-form").as_deref(),
        Some(format!("preview-feature-login-form-{c}").as_str())
    );
    assert!(!rel.exists(), "the replaced preview release is removed");
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()));

    // The root with a preview is a valid root.
    let t = ok(&env.symdeploy(&["check"]));
    assert!(t.contains("0 errors, 0 warnings"), "{t}");
    assert!(
        t.contains("previews/feature-login-form/production -> releases/"),
        "{t}"
    );

    // status, releases and preview list show it.
    let s = ok(&env.symdeploy(&["status"]));
    assert!(
        s.contains("feature-login-form") && s.contains(&c[..12]),
        "{s}"
    );
    let r = ok(&env.symdeploy(&["releases"]));
    assert!(
        r.contains("[preview feature-login-form of feature/login-form, served]"),
        "{r}"
    );
    // releases --json stays the array of main releases (the ansible module reads it).
    let rj: serde_json::Value =
        serde_json::from_str(ok(&env.symdeploy(&["releases", "--json"])).trim()).unwrap();
    let rj = rj.as_array().expect("an array");
    assert_eq!(rj.len(), 1, "{rj:?}");
    assert_eq!(rj[0]["commit"], a.as_str());
    let l = ok(&env.symdeploy(&["preview", "list", "--json"]));
    let rows: serde_json::Value = serde_json::from_str(l.trim()).unwrap();
    assert_eq!(rows[0]["slug"], "feature-login-form");
    assert_eq!(rows[0]["branch"], "feature/login-form");
    assert_eq!(rows[0]["commit"], c.as_str());
    let sj: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(
        &env.symdeploy(&["status", "--json"]).stdout,
    ))
    .unwrap();
    assert_eq!(sj["previews"][0]["slug"], "feature-login-form");

    // Deleting the branch removes the preview and its release; the preview's
    // data stays (docs/src/previews.md), production's is untouched.
    let t = env.push_ok(&[":feature/login-form"]);
    assert!(t.contains("preview feature-login-form removed"), "{t}");
    assert!(
        std::fs::symlink_metadata(env.root.join("previews/feature-login-form/production")).is_err()
    );
    assert!(!env
        .root
        .join(format!("previews/feature-login-form/releases/{c}"))
        .exists());
    assert!(env.root.join("previews/feature-login-form/common").is_dir());
    assert_eq!(
        read(&env.root.join("common/www/data/images/prod.txt")),
        "prod"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    let l = ok(&env.symdeploy(&["preview", "list"]));
    assert!(l.contains("no previews yet"), "{l}");
}

#[test]
fn non_matching_branches_are_ignored_and_main_still_warms_up() {
    let (env, a) = scene("");
    env.git(&["checkout", "-q", "-b", "bugfix/x"]);
    env.write("www/index.html", "bugfix\n");
    env.commit("bugfix");
    let t = env.push_ok(&["bugfix/x"]);
    assert!(
        t.contains("ignored: branch bugfix/x is not the deploy branch"),
        "{t}"
    );
    assert!(!env.root.join("previews").exists());
    // Deleting a branch that never had a preview is ignored as before.
    let t = env.push_ok(&[":bugfix/x"]);
    assert!(t.contains("ignored"), "{t}");
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()));

    // Previews off (the default): a feature branch is ignored as today.
    env.set_config(TEST_CONFIG);
    env.git(&["checkout", "-q", "-b", "feature/off"]);
    env.commit("off");
    let t = env.push_ok(&["feature/off"]);
    assert!(t.contains("ignored: branch feature/off"), "{t}");
    assert!(!env.root.join("previews").exists());
}

#[test]
fn colliding_branch_names_get_their_own_stable_slug() {
    let (env, _) = scene("");
    env.write("www/index.html", "one\n");
    env.commit("one");
    env.push_ok(&["feature/login-form"]);
    env.git(&["checkout", "-q", "-b", "feature/Login_Form"]);
    env.write("www/index.html", "two\n");
    env.commit("two");
    let t = env.push_ok(&["feature/Login_Form"]);
    let rows: serde_json::Value =
        serde_json::from_str(ok(&env.symdeploy(&["preview", "list", "--json"])).trim()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{t}");
    let other = rows
        .iter()
        .find(|r| r["branch"] == "feature/Login_Form")
        .unwrap()["slug"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        other.starts_with("feature-login-form-") && other.len() == 25,
        "{other}"
    );
    assert_eq!(
        read(&env.root.join(format!("previews/{other}/www/index.html"))),
        "two\n"
    );
    assert_eq!(
        read(&env.root.join("previews/feature-login-form/www/index.html")),
        "one\n"
    );
    // Pushed again, each keeps its slug.
    env.write("www/index.html", "two again\n");
    env.commit("two again");
    env.push_ok(&["feature/Login_Form"]);
    assert_eq!(
        read(&env.root.join(format!("previews/{other}/www/index.html"))),
        "two again\n"
    );
}

#[test]
fn seed_fills_a_new_previews_data() {
    let (env, _) = scene("seed = \"previews-seed\"\n");
    std::fs::create_dir_all(env.root.join("previews-seed/app")).unwrap();
    std::fs::write(
        env.root.join("previews-seed/app/db.neon"),
        "database: preview\n",
    )
    .unwrap();
    std::fs::create_dir_all(env.root.join("previews-seed/log")).unwrap();
    env.commit("x");
    env.push_ok(&["feature/login-form"]);
    let data = env.root.join("previews/feature-login-form/common");
    assert_eq!(read(&data.join("app/db.neon")), "database: preview\n");
    // The release's shared log dir resolves into the seeded copy.
    assert_eq!(
        std::fs::canonicalize(env.root.join("previews/feature-login-form/production/log")).unwrap(),
        std::fs::canonicalize(data.join("log")).unwrap()
    );

    // A missing seed is a clear error, and nothing is served.
    std::fs::remove_dir_all(env.root.join("previews-seed")).unwrap();
    env.git(&["checkout", "-q", "-b", "feature/second"]);
    env.commit("second");
    let out = env.push(&["feature/second"]);
    let t = text(&out);
    assert!(
        t.contains("previews.seed") && t.contains("is not a directory"),
        "{t}"
    );
    assert!(
        std::fs::symlink_metadata(env.root.join("previews/feature-second/production")).is_err()
    );
}

#[test]
fn a_failed_preview_build_keeps_the_old_preview() {
    let (env, a) = scene("build = [\"test ! -e www/fail\"]\n");
    env.write("www/index.html", "good\n");
    env.commit("good");
    env.push_ok(&["feature/login-form"]);
    env.write("www/fail", "x");
    env.commit("bad");
    let out = env.push(&["feature/login-form"]);
    let t = text(&out);
    assert!(
        t.contains("preview feature-login-form of") && t.contains("failed"),
        "{t}"
    );
    assert_eq!(
        read(&env.root.join("previews/feature-login-form/www/index.html")),
        "good\n"
    );
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()));
}

#[test]
fn cleanup_applies_keep_and_ttl_days_and_preview_rm_removes_one() {
    let (env, a) = scene("keep = 2\nttl_days = 3\n");
    for (i, branch) in ["feature/one", "feature/two", "feature/three"]
        .iter()
        .enumerate()
    {
        env.git(&["checkout", "-q", "-b", branch]);
        env.write("www/index.html", &format!("{branch}\n"));
        env.commit(&format!("commit {i}"));
        env.push_ok(&[branch]);
    }
    assert_eq!(ok(&env.symdeploy(&["preview", "list"])).lines().count(), 3);
    // Dry run first: nothing goes.
    let t = ok(&env.symdeploy(&["cleanup", "--dry-run"]));
    assert!(t.contains("would remove preview feature-one"), "{t}");
    assert!(env.root.join("previews/feature-one").exists());

    // keep = 2: the least recently pushed goes.
    let t = ok(&env.symdeploy(&["cleanup"]));
    assert!(t.contains("most recently pushed previews (keep)"), "{t}");
    assert!(std::fs::symlink_metadata(env.root.join("previews/feature-one/production")).is_err());
    assert!(env
        .root
        .join("previews/feature-two/www/index.html")
        .exists());
    assert!(env
        .root
        .join("previews/feature-three/www/index.html")
        .exists());
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    assert!(env.release(&a).exists());

    // ttl_days = 3: one not pushed to for 4 days goes (its record's push
    // time is what "not pushed to" means).
    let rec = env.root.join(".symdeploy/previews/feature-two.json");
    let mut m: serde_json::Value = serde_json::from_str(&read(&rec)).unwrap();
    let old = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(96);
    m["pushed"] = old.to_string().into();
    std::fs::write(&rec, m.to_string()).unwrap();
    let t = ok(&env.symdeploy(&["cleanup"]));
    assert!(t.contains("not pushed to for 4 days (ttl_days 3)"), "{t}");
    assert!(std::fs::symlink_metadata(env.root.join("previews/feature-two/production")).is_err());
    assert!(env
        .root
        .join("previews/feature-three/www/index.html")
        .exists());
    let names = preview_releases(&env);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("feature-three/"), "{names:?}");

    // preview rm by hand; --data also removes its data.
    let out = env.symdeploy(&["preview", "rm", "nope"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("feature-three"), "{}", text(&out));
    ok(&env.symdeploy(&["preview", "rm", "--data", "feature-three"]));
    assert!(std::fs::symlink_metadata(env.root.join("previews/feature-three/production")).is_err());
    assert!(!env.root.join("previews/feature-three/common").exists());
    assert!(
        env.root.join("previews/feature-one/common").is_dir(),
        "kept without --data"
    );
    assert!(env.root.join("common/www/data/images/logo.svg").exists());
    let j = env.journal();
    assert!(j
        .iter()
        .any(|e| e["event"] == "preview-remove" && e["result"] == "ok"));
}

#[test]
fn sigkill_during_a_preview_warmup_is_recovered_like_a_warmup() {
    // Killed in a step: the release is marked failed, the preview stays on
    // what it served; killed after every step: recovery finishes the flip.
    for (point, finished) in [
        ("preview-build", false),
        ("export", false),
        ("before-flip-preview", true),
        ("before-rename-production", true),
    ] {
        let (env, a) = scene("");
        env.write("www/index.html", "v1\n");
        env.commit("v1");
        env.push_ok(&["feature/login-form"]);
        let before = preview_target(&env, "feature-login-form").unwrap();
        env.write("www/index.html", "v2\n");
        let c = env.commit("v2");
        let out = run(git_cmd(&env.work)
            .args(["push", "deploy", "feature/login-form"])
            .env("SYMDEPLOY_FAULT", point));
        assert!(
            !text(&out).contains("success: previews/"),
            "{point}: the fault did not fire: {}",
            text(&out)
        );
        // Still served, never a half-built release.
        assert_eq!(
            preview_target(&env, "feature-login-form").as_deref(),
            Some(before.as_str()),
            "{point}"
        );
        let s = ok(&env.symdeploy(&["status"]));
        assert!(s.contains("interrupted preview"), "{point}: {s}");

        let t = ok(&env.symdeploy(&["recover"]));
        assert!(
            t.contains(&format!(
                "recovering an interrupted preview of {}",
                &c[..12]
            )),
            "{point}: {t}"
        );
        let name = format!("preview-feature-login-form-{c}");
        if finished {
            assert_eq!(
                preview_target(&env, "feature-login-form").as_deref(),
                Some(name.as_str()),
                "{point}"
            );
            assert_eq!(
                read(&env.root.join("previews/feature-login-form/www/index.html")),
                "v2\n"
            );
        } else {
            assert_eq!(
                preview_target(&env, "feature-login-form").as_deref(),
                Some(before.as_str()),
                "{point}"
            );
            assert_eq!(
                read(&env.root.join("previews/feature-login-form/www/index.html")),
                "v1\n"
            );
        }
        assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
        assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()));
        let t = ok(&env.symdeploy(&["recover"]));
        assert!(t.contains("nothing to recover"), "{point}: {t}");
        // A new push brings it up to date whatever happened.
        env.write("www/index.html", "v3\n");
        env.commit("v3");
        env.push_ok(&["feature/login-form"]);
        assert_eq!(
            read(&env.root.join("previews/feature-login-form/www/index.html")),
            "v3\n"
        );
        let mut left: Vec<String> = std::fs::read_dir(env.root.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("preview-") || n.starts_with(".tmp"))
            .collect();
        left.extend(preview_releases(&env));
        assert_eq!(left.len(), 1, "{point}: {left:?}");
    }
}

#[test]
fn strict_mode_a_failed_preview_build_rejects_the_branch_push() {
    let env = Env::with_init_args(&config("build = [\"test ! -e www/fail\"]\n"), &["--strict"]);
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);
    env.git(&["checkout", "-q", "-b", "feature/login-form"]);
    env.write("www/index.html", "strict preview\n");
    let b = env.commit("preview");
    env.push_ok(&["feature/login-form"]);
    assert_eq!(
        read(&env.root.join("previews/feature-login-form/www/index.html")),
        "strict preview\n"
    );
    assert_eq!(env.pointed("warmup").as_deref(), Some(a.as_str()));

    env.write("www/fail", "x");
    let c = env.commit("fails");
    let out = env.push(&["feature/login-form"]);
    assert!(!out.status.success(), "{}", text(&out));
    // git kept the old branch tip, and the preview the old release.
    let tip =
        run(git_cmd(&env.root.join("repository"))
            .args(["rev-parse", "refs/heads/feature/login-form"]));
    assert_eq!(String::from_utf8_lossy(&tip.stdout).trim(), b);
    assert_eq!(
        preview_target(&env, "feature-login-form").as_deref(),
        Some(format!("preview-feature-login-form-{b}").as_str())
    );
    assert_ne!(c, b);

    // Deleting the branch in strict mode removes the preview once git deleted it.
    let t = env.push_ok(&[":feature/login-form"]);
    assert!(t.contains("preview feature-login-form removed"), "{t}");
    assert!(
        std::fs::symlink_metadata(env.root.join("previews/feature-login-form/production")).is_err()
    );
    let r = ok(&env.symdeploy(&["recover"]));
    assert!(r.contains("nothing to recover"), "{r}");

    // A new branch whose first build fails is refused; cleanup forgets it.
    env.git(&["checkout", "-q", "-b", "feature/never"]);
    let out = env.push(&["feature/never"]);
    assert!(!out.status.success(), "{}", text(&out));
    let l = ok(&env.symdeploy(&["preview", "list"]));
    assert!(l.contains("feature-never"), "{l}");
    let t = ok(&env.symdeploy(&["cleanup"]));
    assert!(
        t.contains("its branch feature/never no longer exists"),
        "{t}"
    );
    let l = ok(&env.symdeploy(&["preview", "list"]));
    assert!(!l.contains("feature-never"), "{l}");
    let names: Vec<String> = std::fs::read_dir(env.root.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("preview-"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_bad_previews_config_names_file_and_line() {
    let env = Env::new();
    let bad = config("keep = 0\n");
    env.set_config(&bad);
    let line = bad.lines().position(|l| l == "keep = 0").unwrap() + 1;
    let out = run(Command::new(bin()).args(["--root", env.root.to_str().unwrap(), "check"]));
    let t = text(&out);
    assert!(!out.status.success());
    assert!(
        t.contains(&format!("deploy.toml:{line}:")) && t.contains("previews.keep"),
        "{t}"
    );
    // A push is refused with the same message.
    env.git(&["checkout", "-q", "-b", "feature/x"]);
    let t = text(&env.push(&["feature/x"]));
    assert!(t.contains(&format!("deploy.toml:{line}:")), "{t}");
}

#[test]
fn strict_mode_a_kill_while_git_holds_the_ref_leaves_the_old_preview() {
    let env = Env::with_init_args(&config(""), &["--strict"]);
    env.push_ok(&["main"]);
    env.git(&["checkout", "-q", "-b", "feature/login-form"]);
    env.write("www/index.html", "v1\n");
    let b = env.commit("v1");
    env.push_ok(&["feature/login-form"]);
    env.write("www/index.html", "v2\n");
    env.commit("v2");
    let out = run(git_cmd(&env.work)
        .args(["push", "deploy", "feature/login-form"])
        .env("SYMDEPLOY_FAULT", "strict-before-flip-preview"));
    // The reference-transaction hook died in `prepared`: git aborts the update.
    assert!(!out.status.success(), "{}", text(&out));
    let tip =
        run(git_cmd(&env.root.join("repository"))
            .args(["rev-parse", "refs/heads/feature/login-form"]));
    assert_eq!(String::from_utf8_lossy(&tip.stdout).trim(), b);
    assert_eq!(
        read(&env.root.join("previews/feature-login-form/www/index.html")),
        "v1\n"
    );
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(t.contains("recovering an interrupted preview"), "{t}");
    assert!(t.contains("git did not update"), "{t}");
    assert_eq!(
        preview_target(&env, "feature-login-form").as_deref(),
        Some(format!("preview-feature-login-form-{b}").as_str())
    );
    let j = env.journal();
    assert!(j
        .iter()
        .any(|e| e["event"] == "preview" && e["result"] == "rejected"));
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(t.contains("nothing to recover"), "{t}");
    // The next push goes through.
    env.write("www/index.html", "v3\n");
    env.commit("v3");
    env.push_ok(&["feature/login-form"]);
    assert_eq!(
        read(&env.root.join("previews/feature-login-form/www/index.html")),
        "v3\n"
    );
}

#[test]
fn sigkill_during_a_preview_removal_is_finished_by_recovery() {
    let (env, a) = scene("");
    env.write("www/index.html", "v1\n");
    let b = env.commit("v1");
    env.push_ok(&["feature/login-form"]);
    let out = run(git_cmd(&env.work)
        .args(["push", "deploy", ":feature/login-form"])
        .env("SYMDEPLOY_FAULT", "preview-remove"));
    assert!(
        text(&out).contains("died of signal 9"),
        "the fault did not fire: {}",
        text(&out)
    );
    // The link went first: nothing serves a half-removed preview.
    assert!(
        std::fs::symlink_metadata(env.root.join("previews/feature-login-form/production")).is_err()
    );
    // What a kill inside a flip or a seed copy leaves; the next locked command tidies it.
    let stray_link = env.root.join("previews/.symdeploy-link-feature-x-99999");
    std::os::unix::fs::symlink("../releases/nothing", &stray_link).unwrap();
    let stray_seed = env
        .root
        .join("previews/feature-login-form/.tmp-feature-x-99999");
    std::fs::create_dir_all(stray_seed.join("app")).unwrap();
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(
        t.contains("recovering an interrupted preview-remove"),
        "{t}"
    );
    assert!(std::fs::symlink_metadata(&stray_link).is_err());
    assert!(!stray_seed.exists());
    assert!(env.root.join("previews/feature-login-form/common").is_dir());
    assert!(t.contains("preview feature-login-form removed"), "{t}");
    assert!(!env
        .root
        .join(format!("previews/feature-login-form/releases/{b}"))
        .exists());
    let l = ok(&env.symdeploy(&["preview", "list"]));
    assert!(l.contains("no previews yet"), "{l}");
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(t.contains("nothing to recover"), "{t}");
}

/// `sh -c script` as www-data (uid 33 on Debian), like php-fpm would write.
fn as_www_data(script: &str) -> Option<std::process::Output> {
    let web = nix::unistd::User::from_name("www-data").ok()??;
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    Some(run(Command::new(setpriv)
        .arg(format!("--reuid={}", web.uid))
        .arg(format!("--regid={}", web.gid))
        .arg("--clear-groups")
        .args(["--", "sh", "-c", script])
        .current_dir("/")))
}

#[test]
fn web_user_writes_the_previews_data_and_temp_not_commons() {
    if !nix::unistd::geteuid().is_root() || as_www_data("true").is_none() {
        return crate::common::skip("needs root, setpriv and the www-data user");
    }
    let (env, _) = scene("");
    let cfg = config("").replace(
        "lock_timeout = 120",
        "lock_timeout = 120\nweb_user = \"www-data\"\nwritable = [\"temp\"]",
    );
    env.set_config(&cfg);
    // Temp dirs are 0700: www-data must be able to walk to the root.
    let mut p = env.root.clone();
    while p != Path::new("/") && p != Path::new("/tmp") {
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p.pop();
    }
    env.write("temp/.gitignore", "*\n!.gitignore\n");
    env.commit("temp");
    let t = env.push_ok(&["feature/login-form"]);
    assert!(t.contains("writable for www-data"), "{t}");
    let preview = env.root.join("previews/feature-login-form/production");
    let out = as_www_data(&format!(
        "echo hit >> {p}/log/access.log && echo s > {p}/temp/sess_1",
        p = preview.display()
    ))
    .unwrap();
    assert!(
        out.status.success(),
        "www-data cannot write: {}",
        text(&out)
    );
    assert!(env
        .root
        .join("previews/feature-login-form/common/log/access.log")
        .exists());
    assert!(!env.root.join("common/log/access.log").exists());
    // What www-data wrote does not keep the preview from going.
    env.push_ok(&[":feature/login-form"]);
    assert!(std::fs::symlink_metadata(&preview).is_err());
}
