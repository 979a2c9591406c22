//! Migrations as data and the rollback rule, through real pushes: v1 knows
//! 001, v2 001–002, v3 001–003, each promoted.

use crate::common::{ok, run, text, Env, TEST_CONFIG};

const M1: &str = "001_users.sql";
const M2: &str = "002_orders.sql";
const M3: &str = "003_invoices.sql";

fn config(extra_top: &str, tables: &str) -> String {
    format!("migrations = \"migrations/*.sql\"\n{extra_top}{TEST_CONFIG}{tables}")
}

/// The undo step: records what it was told and where it ran.
const UNDO: &str = "[rollback]\nmigrate = [\"echo \\\"undo $SYMDEPLOY_MIGRATIONS_UNDO|$SYMDEPLOY_TARGET|$PWD\\\" >> \\\"$SYMDEPLOY_ROOT/trace.log\\\"\"]\n";

/// v1, v2, v3 pushed and promoted in turn; returns their commits.
fn three_versions(env: &Env) -> [String; 3] {
    let mut out = Vec::new();
    for (i, m) in [M1, M2, M3].iter().enumerate() {
        env.write(&format!("migrations/{m}"), &format!("-- {m}\n"));
        let c = env.commit(&format!("v{}", i + 1));
        env.push_ok(&["main"]);
        ok(&env.symdeploy(&["promote"]));
        out.push(c);
    }
    [out[0].clone(), out[1].clone(), out[2].clone()]
}

fn end_of(env: &Env, event: &str) -> serde_json::Value {
    env.journal()
        .into_iter()
        .rev()
        .find(|e| e["event"] == event && e["phase"] == "end")
        .expect("an end entry")
}

#[test]
fn a_rollback_behind_the_schema_is_refused_and_keep_schema_vouches() {
    let env = Env::with_config(&config("", ""));
    let [v1, v2, v3] = three_versions(&env);

    // status and releases show what each release knows.
    let r = ok(&env.symdeploy(&["releases"]));
    let line = |c: &str| {
        r.lines()
            .find(|l| l.starts_with(&c[..12]))
            .unwrap_or_else(|| panic!("{c}: {r}"))
            .to_string()
    };
    assert!(line(&v3).contains("schema 3 (003_invoices.sql)"), "{r}");
    assert!(line(&v2).contains("schema 2 (002_orders.sql)"), "{r}");
    assert!(
        !line(&v2).contains("needs undo"),
        "v2 served during v3's warm-up: {r}"
    );
    assert!(
        line(&v1).contains("schema 1 (001_users.sql), rollback needs undo"),
        "{r}"
    );
    let s = ok(&env.symdeploy(&["status"]));
    assert!(s.contains("schema 3 (003_invoices.sql)"), "{s}");

    // v1 never served against 001–003: refused, nothing stopped or moved.
    env.clear_trace();
    let out = env.symdeploy(&["rollback", &format!("releases/{v1}")]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains(&format!("{M3} {M2}")), "newest first: {t}");
    assert!(
        t.contains("[rollback] migrate") && t.contains("--keep-schema"),
        "{t}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(v3.as_str()));
    assert!(env.trace().is_empty(), "no step ran: {:?}", env.trace());
    // A promote of the older release is a rollback all the same.
    let out = env.symdeploy(&["promote", &v1]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("{M3} {M2}")), "{}", text(&out));
    assert_eq!(env.pointed("production").as_deref(), Some(v3.as_str()));
    assert!(env.trace().is_empty(), "no step ran: {:?}", env.trace());

    // The one-step rollback the warm-up window proved works as today.
    let t = ok(&env.symdeploy(&["rollback"]));
    assert!(
        t.contains("served production against the current schema"),
        "{t}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(v2.as_str()));
    ok(&env.symdeploy(&["promote", &v3]));

    // --keep-schema: the operator vouches; it lands and is journaled.
    let t = ok(&env.symdeploy(&["rollback", "--keep-schema", &v1[..12]]));
    assert!(t.contains("--keep-schema"), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(v1.as_str()));
    let end = end_of(&env, "rollback");
    assert_eq!(end["result"], "ok");
    let note = end["schema"].as_str().unwrap_or_default();
    assert!(note.contains("--keep-schema") && note.contains(M3), "{end}");
}

#[test]
fn rollback_migrate_undoes_in_the_release_being_left_before_the_flip() {
    let env = Env::with_config(&config("", UNDO));
    let [v1, _v2, v3] = three_versions(&env);
    env.clear_trace();
    let t = ok(&env.symdeploy(&["rollback", &v1[..12]]));
    assert!(t.contains("rollback.migrate"), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(v1.as_str()));
    let trace = env.trace();
    let undo = trace
        .iter()
        .position(|l| l.starts_with("undo "))
        .unwrap_or_else(|| panic!("{trace:?}"));
    let stop = trace.iter().position(|l| l.starts_with("stop ")).unwrap();
    let after = trace
        .iter()
        .position(|l| l.starts_with("supervisor "))
        .unwrap();
    assert!(stop < undo && undo < after, "{trace:?}");
    let parts: Vec<&str> = trace[undo]["undo ".len()..].split('|').collect();
    assert_eq!(parts[0], format!("{M3} {M2}"));
    assert_eq!(parts[1], env.release(&v1).display().to_string());
    assert_eq!(parts[2], env.release(&v3).display().to_string());
    let end = end_of(&env, "rollback");
    assert!(
        end["schema"]
            .as_str()
            .unwrap_or_default()
            .contains("undone"),
        "{end}"
    );
    // The database is back to v1's schema: v1 knows it all.
    let r = ok(&env.symdeploy(&["releases"]));
    assert!(
        !r.lines()
            .any(|l| l.starts_with(&v1[..12]) && l.contains("needs undo")),
        "{r}"
    );
}

#[test]
fn sigkill_during_the_undo_leaves_production_and_recover_starts_the_daemons() {
    let env = Env::with_config(&config("", UNDO));
    let [v1, _v2, v3] = three_versions(&env);
    env.clear_trace();
    let out = run(env
        .command(&["rollback", &v1[..12]])
        .env("SYMDEPLOY_FAULT", "rollback-migrate"));
    assert!(!out.status.success());
    assert_eq!(env.pointed("production").as_deref(), Some(v3.as_str()));
    let trace = env.trace();
    assert!(trace.iter().any(|l| l.starts_with("stop ")), "{trace:?}");
    assert!(!trace.iter().any(|l| l.starts_with("start ")), "{trace:?}");
    env.clear_trace();
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(t.contains("rollback"), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(v3.as_str()));
    let trace = env.trace();
    assert!(trace.iter().any(|l| l.starts_with("start ")), "{trace:?}");
    // Nothing was undone on record: v1 still needs the undo.
    let r = ok(&env.symdeploy(&["releases"]));
    assert!(
        r.lines()
            .any(|l| l.starts_with(&v1[..12]) && l.contains("needs undo")),
        "{r}"
    );
}

#[test]
fn an_automatic_rollback_behind_the_schema_proceeds_and_says_so() {
    // The app tells what the database has; someone ran 003 by hand after
    // v3's warm-up, so v2 never served against it.
    let env = Env::with_config(&config(
        "migrations_applied = \"cat $SYMDEPLOY_ROOT/applied.txt\"\n",
        "",
    ));
    let applied = env.root.join("applied.txt");
    std::fs::write(&applied, format!("{M1}\n")).unwrap();
    env.write(&format!("migrations/{M1}"), "--\n");
    env.commit("v1");
    env.push_ok(&["main"]);
    ok(&env.symdeploy(&["promote"]));
    std::fs::write(&applied, format!("{M1}\n{M2}\n")).unwrap();
    env.write(&format!("migrations/{M2}"), "--\n");
    let v2 = env.commit("v2");
    env.push_ok(&["main"]);
    ok(&env.symdeploy(&["promote"]));
    env.write(&format!("migrations/{M3}"), "--\n");
    env.write("www/fail", "x\n");
    let v3 = env.commit("v3");
    env.push_ok(&["main"]);
    std::fs::write(&applied, format!("{M1}\n{M2}\n{M3}\n")).unwrap();
    let cfg = config(
        "migrations_applied = \"cat $SYMDEPLOY_ROOT/applied.txt\"\n",
        "",
    )
    .replace(
        "[promote]\n",
        "[promote]\ncheck = [\"test ! -e www/fail\"]\ncheck_timeout = 1\n",
    );
    env.set_config(&cfg);
    let out = env.symdeploy(&["promote", &v3]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("SCHEMA AHEAD") && t.contains(M3), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(v2.as_str()));
    let end = end_of(&env, "promote");
    assert_eq!(end["result"], "rolled-back", "{end}");
    assert!(
        end["schema"]
            .as_str()
            .unwrap_or_default()
            .contains("SCHEMA AHEAD"),
        "{end}"
    );
}

#[test]
fn a_bad_migrations_glob_is_a_config_error() {
    let env = Env::new();
    env.set_config(&config("", "").replace(
        "migrations = \"migrations/*.sql\"",
        "migrations = \"mig*/x.sql\"",
    ));
    let out = env.symdeploy(&["check"]);
    let t = text(&out);
    assert!(t.contains("only the file name may have wildcards"), "{t}");
}

#[test]
fn skip_migrate_leaves_the_migration_to_another_host_and_still_records_the_schema() {
    let env = Env::with_config(&config("", ""));
    env.write(&format!("migrations/{M1}"), "--\n");
    let v1 = env.commit("v1");
    let t = env.push_ok(&["-o", "skip-migrate", "main"]);
    assert!(t.contains("migrate: skipped (-o skip-migrate"), "{t}");
    assert!(!t.contains("unknown push option"), "{t}");
    assert!(
        !env.trace().iter().any(|l| l.starts_with("migrate ")),
        "{:?}",
        env.trace()
    );
    ok(&env.symdeploy(&["promote"]));
    // The next warm-up migrates as usual, and the rule knows both schemas.
    env.write(&format!("migrations/{M2}"), "--\n");
    env.commit("v2");
    env.push_ok(&["main"]);
    assert_eq!(
        env.trace()
            .iter()
            .filter(|l| l.starts_with("migrate "))
            .count(),
        1,
        "{:?}",
        env.trace()
    );
    ok(&env.symdeploy(&["promote"]));
    let r = ok(&env.symdeploy(&["releases"]));
    assert!(
        r.lines()
            .any(|l| l.starts_with(&v1[..12]) && l.contains("schema 1 (001_users.sql)")),
        "{r}"
    );
}

#[test]
fn transcripts_of_a_refused_rollback_and_an_undo() {
    let env = Env::with_config(&config("", UNDO));
    let [v1, _v2, _v3] = three_versions(&env);
    // Without the undo step: the refusal.
    env.set_config(&config("", ""));
    let out = env.symdeploy(&["rollback", &v1[..12]]);
    assert!(!out.status.success());
    let _s = crate::common::snapshot_settings(&env).bind_to_scope();
    insta::assert_snapshot!("refused_rollback", crate::common::redact(&text(&out)));
    env.set_config(&config("", UNDO));
    let t = ok(&env.symdeploy(&["rollback", &v1[..12]]));
    insta::assert_snapshot!("rollback_with_undo", crate::common::redact(&t));
}

#[test]
fn strict_mode_a_tag_of_a_release_behind_the_schema_is_rejected() {
    let env = Env::with_init_args(&config("", ""), &["--strict"]);
    let [v1, _v2, v3] = three_versions(&env);
    env.git(&["tag", "release-old", &v1]);
    let out = env.push(&["release-old"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains(&format!("{M3} {M2}")), "{t}");
    assert_eq!(env.pointed("production").as_deref(), Some(v3.as_str()));
    // git did not keep the tag.
    let remote = run(crate::common::git_cmd(&env.root.join("repository")).args([
        "tag",
        "--list",
        "release-old",
    ]));
    assert!(text(&remote).trim().is_empty(), "{}", text(&remote));
}
