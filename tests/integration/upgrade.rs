//! A deploy root written by the previous release of symdeploy (commit
//! 042482f, before the layered layout; made by `scripts/make-old-root`) is
//! read the same and driven on by this binary: status and the journal agree
//! with what the old binary said of them, promote, rollback, a push to the
//! branch and one to a preview branch all work, and nothing in `common/` is
//! lost.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{bin, git_cmd, run, text};
use serde_json::Value;

const FIXTURE: &str = "tests/fixtures/root-0.1.0-042482f.tar.gz";

struct Old {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
}

impl Old {
    /// The fixture unpacked, its hooks calling this binary (what installing
    /// the new package over the old one does: the same path, a new program).
    fn unpack() -> Old {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
        let out = run(Command::new("tar")
            .arg("-xzf")
            .arg(&fixture)
            .arg("-C")
            .arg(&dir));
        assert!(out.status.success(), "{}", text(&out));
        let root = dir.join("root");
        for hook in ["post-receive", "pre-receive", "reference-transaction"] {
            let path = root.join("repository/hooks").join(hook);
            let Ok(script) = std::fs::read_to_string(&path) else {
                continue;
            };
            let script: String = script
                .lines()
                .map(|l| match l.strip_prefix("exec '") {
                    Some(rest) => {
                        let args = rest.split_once("' ").map_or("", |(_, a)| a);
                        format!("exec '{}' {args}\n", bin().display())
                    }
                    None => format!("{l}\n"),
                })
                .collect();
            std::fs::write(&path, script).unwrap();
        }
        Old {
            _tmp: tmp,
            dir,
            root,
        }
    }

    fn symdeploy(&self, args: &[&str]) -> Output {
        run(Command::new(bin()).arg("--root").arg(&self.root).args(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.symdeploy(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn said(&self, file: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join(file)).unwrap()).unwrap()
    }

    fn pointed(&self, link: &str) -> String {
        let target = std::fs::read_link(self.root.join(link)).unwrap();
        target.file_name().unwrap().to_string_lossy().into_owned()
    }
}

/// The fields of a pointer (production, warmup) that an upgrade must keep.
fn pointer(v: &Value) -> Value {
    serde_json::json!({
        "commit": v["commit"],
        "release": v["release"],
        "state": v["state"],
        "subject": v["subject"],
    })
}

#[test]
fn a_root_of_the_previous_release_reads_the_same() {
    let old = Old::unpack();
    let was = old.said("status.json");
    let now = old.json(&["status", "--json"]);
    assert_eq!(pointer(&now["production"]), pointer(&was["production"]));
    assert_eq!(pointer(&now["warmup"]), pointer(&was["warmup"]));
    assert_eq!(now["interrupted"], serde_json::json!([]));
    let slugs = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["previews"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["slug"].clone(), p["branch"].clone(), p["commit"].clone()))
            .collect()
    };
    assert_eq!(slugs(&now), slugs(&was));
    assert!(!slugs(&now).is_empty(), "the fixture has a preview");

    // Every run the old binary journaled, read back the same.
    let fields = |v: &Value| -> Vec<(Value, Value, Value, Value)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["event"].clone(),
                    e["commit"].clone(),
                    e["ref"].clone(),
                    e["result"].clone(),
                )
            })
            .collect()
    };
    let log = old.json(&["log", "--all", "--json"]);
    assert_eq!(fields(&log), fields(&old.said("log.json")));
    assert!(fields(&log).len() >= 7, "{log}");

    let failed = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["result"] == "failed")
        .expect("the fixture has a failed build");
    let failed = &failed["commit"].as_str().unwrap()[..12];
    let releases = old.ok(&["releases"]);
    assert!(releases.contains(failed), "{releases}");
    // The one problem of that root: the branch's tip did not build.
    let check = old.symdeploy(&["status", "--check"]);
    let said = text(&check);
    assert_eq!(check.status.code(), Some(1), "{said}");
    assert!(said.contains(": 1 problem\n"), "{said}");
    assert!(
        said.contains(&format!("({failed}) is not warmed up")),
        "{said}"
    );
}

#[test]
fn a_root_of_the_previous_release_deploys_on() {
    let old = Old::unpack();
    let common_before = run(Command::new("find")
        .arg(old.root.join("common"))
        .args(["-type", "f", "-printf", "%P %s\n"]));
    let production = old.pointed("production");
    let warmup = old.pointed("warmup");
    assert_ne!(production, warmup);

    // promote what the old binary warmed up, then roll back.
    old.ok(&["promote"]);
    assert_eq!(old.pointed("production"), warmup);
    let trace = std::fs::read_to_string(old.root.join("trace.log")).unwrap();
    assert!(trace.ends_with("stop\nstart\n"), "{trace}");
    old.ok(&["rollback"]);
    assert_eq!(old.pointed("production"), production);

    // A push to the branch and to the preview branch, from a fresh clone.
    let work = old.dir.join("work");
    let out = run(Command::new("git")
        .args(["clone", "-q"])
        .arg(old.root.join("repository"))
        .arg(&work));
    assert!(out.status.success(), "{}", text(&out));
    let git = |args: &[&str]| {
        let out = run(git_cmd(&work).args(args));
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
        text(&out)
    };
    git(&["checkout", "-q", "main"]);
    git(&["rm", "-q", "--ignore-unmatch", "FAIL"]);
    std::fs::write(work.join("www/index.html"), "v3\n").unwrap();
    git(&["commit", "-qam", "after the upgrade"]);
    git(&["push", "-q", "origin", "main"]);
    let head = git(&["rev-parse", "HEAD"]).trim().to_string();
    assert_eq!(old.pointed("warmup"), head);
    assert_eq!(
        std::fs::read_to_string(old.root.join("www_warmup/index.html")).unwrap(),
        "v3\n"
    );
    git(&["checkout", "-q", "feature/x"]);
    std::fs::write(work.join("www/index.html"), "preview v2\n").unwrap();
    git(&["commit", "-qam", "the feature, again"]);
    git(&["push", "-q", "origin", "feature/x"]);
    assert_eq!(
        std::fs::read_to_string(old.root.join("previews/feature-x/www/index.html")).unwrap(),
        "preview v2\n"
    );
    // The push moved the old preview into a root of its own, data and all.
    let preview = old.root.join("previews/feature-x");
    assert!(!std::fs::symlink_metadata(&preview)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(preview.join("common").is_dir());
    assert!(!old.root.join("common-previews/feature-x").exists());
    old.ok(&["cleanup"]);
    let check = old.symdeploy(&["status", "--check"]);
    assert!(check.status.success(), "{}", text(&check));
    // common/ holds what it held (uploads included), byte for byte in size.
    let common_after = run(Command::new("find")
        .arg(old.root.join("common"))
        .args(["-type", "f", "-printf", "%P %s\n"]));
    let lines = |o: &Output| {
        let mut l: Vec<String> = text(o).lines().map(str::to_string).collect();
        l.sort();
        l
    };
    let after = lines(&common_after);
    for line in lines(&common_before) {
        assert!(after.contains(&line), "{line} is gone from common/");
    }
    assert!(after.iter().any(|l| l.contains("upload.jpg")), "{after:?}");
}
