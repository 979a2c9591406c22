//! `symdeploy export` and `carry`, through the real binary.

use crate::common::*;
use std::os::unix::fs::MetadataExt;

#[test]
fn export_command_matches_git_archive_and_refuses_an_existing_dir() {
    let env = Env::new();
    env.write(".gitattributes", "/www/data export-ignore\n");
    env.write("bin/run", "#!/bin/sh\n");
    env.chmod_x("bin/run");
    let commit = env.commit("export me");
    env.push_ok(&["main"]);
    let repo = env.root.join("repository");
    let out_dir = env.tmp.path().join("exported");
    let out = run(std::process::Command::new(bin()).args([
        "export",
        "--repo",
        repo.to_str().unwrap(),
        "main",
        out_dir.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 excluded by export-ignore"),
        "{}",
        text(&out)
    );
    let archive = env.tmp.path().join("archive");
    git_archive(&repo, &commit, &archive);
    let mut got = snapshot(&out_dir);
    assert_eq!(
        got.remove("REVISION"),
        Some(format!("file exec=false {commit}\n"))
    );
    assert_eq!(got, snapshot(&archive));

    // GIT_DIR is honoured, and an existing directory is refused untouched.
    let again = run(std::process::Command::new(bin())
        .env("GIT_DIR", &repo)
        .args(["export", &commit[..12], out_dir.to_str().unwrap()]));
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    // Without --repo or GIT_DIR, the deploy root's repository is used.
    let third = env.tmp.path().join("third");
    let out = env.symdeploy(&["export", "HEAD", third.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(third.join("bin/run").is_file());
}

#[test]
fn carry_copies_vendor_from_the_previous_release_without_sharing_files() {
    let build = "test -d vendor && echo carried > vendor/state || { mkdir -p vendor/pkg && echo fresh > vendor/state && echo lib > vendor/pkg/lib.php; }";
    let env = Env::with_config(&format!(
        "shared = []\ncarry = [\"vendor\", \"node_modules\"]\n[warmup]\nbuild = [\"{}\"]\nlinks = []\nnotify = []\n",
        build.replace('"', "\\\"")
    ));
    let first = env.git(&["rev-parse", "HEAD"]);
    let t = env.push_ok(&["main"]);
    assert!(t.contains("no previous release to carry from"), "{t}");
    env.write("x", "2");
    let second = env.commit("second");
    let t = env.push_ok(&["main"]);
    assert!(
        t.contains("vendor: carried 2 files from the previous release"),
        "{t}"
    );
    assert!(
        t.contains("node_modules: not in the previous release"),
        "{t}"
    );
    let old = env.release(&first).join("vendor");
    let new = env.release(&second).join("vendor");
    assert_eq!(
        std::fs::read_to_string(new.join("state")).unwrap(),
        "carried\n"
    );
    assert_eq!(
        std::fs::read_to_string(old.join("state")).unwrap(),
        "fresh\n"
    );
    assert_eq!(
        std::fs::read_to_string(new.join("pkg/lib.php")).unwrap(),
        "lib\n"
    );
    let (a, b) = (
        std::fs::metadata(old.join("pkg/lib.php")).unwrap(),
        std::fs::metadata(new.join("pkg/lib.php")).unwrap(),
    );
    assert_ne!(a.ino(), b.ino(), "carry must copy, never hard-link");
    assert_eq!(b.nlink(), 1);
}

#[test]
fn big_blobs_are_streamed_from_loose_objects_and_packs_and_deltas_fall_back() {
    let env = Env::new();
    let mut body = String::new();
    for i in 0..2000 {
        body.push_str(&format!("line {i} of a file big enough to be streamed\n"));
    }
    env.write("big/a.txt", &body);
    env.write("big/b.txt", &body.replace("line", "row"));
    env.push_ok(&["main"]);
    env.write("big/a.txt", &format!("{body}one more line\n"));
    let commit = env.commit("a small change to a big file: a delta once packed");
    env.push_ok(&["main"]);
    let repo = env.root.join("repository");
    let archive = env.tmp.path().join("archive");
    git_archive(&repo, &commit, &archive);
    let expected = snapshot(&archive);
    let export = |name: &str| {
        let dir = env.tmp.path().join(name);
        let out = run(std::process::Command::new(bin())
            .env("SYMDEPLOY_STREAM_THRESHOLD", "1000")
            .env("RUST_LOG", "info")
            .args([
                "export",
                "--repo",
                repo.to_str().unwrap(),
                &commit,
                dir.to_str().unwrap(),
            ]));
        assert!(out.status.success(), "{}", text(&out));
        let mut got = snapshot(&dir);
        got.remove("REVISION");
        let streamed = text(&out).matches("streamed from the object store").count();
        (got, streamed)
    };
    // Small pushes arrive as loose objects.
    assert!(std::fs::read_dir(repo.join("objects/pack"))
        .unwrap()
        .next()
        .is_none());
    let (got, streamed) = export("from-loose");
    assert_eq!(got, expected);
    assert_eq!(
        streamed, 2,
        "both big files stream from their loose objects"
    );
    // Packed, the changed file becomes a delta (not streamable: gix reads it).
    let gc = run(git_cmd(&repo).args(["gc", "-q", "--aggressive"]));
    assert!(gc.status.success(), "{}", text(&gc));
    let verify = run(git_cmd(&repo).args(["verify-pack", "-v"]).arg(
        std::fs::read_dir(repo.join("objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "idx"))
            .unwrap(),
    ));
    assert!(text(&verify).contains(" blob "), "{}", text(&verify));
    let (got, streamed) = export("from-pack");
    assert_eq!(got, expected);
    assert!(
        streamed >= 1,
        "the unchanged big file is a whole pack entry"
    );
}
