//! History at scale: retention of run logs and release records, the journal
//! carried forward from the single-file format and compressed into segments,
//! recovery of a run interrupted before a rotation, the cleanup after a
//! promote done in the background, and the disk preflight on a small tmpfs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{background_pids, ok, text, wait_all, wait_gone, Env, TEST_CONFIG};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn config(extra: &str) -> String {
    format!("{extra}\n{TEST_CONFIG}")
}

#[test]
fn cleanup_keeps_keep_logs_run_logs_and_no_record_of_removed_releases() {
    let env = Env::with_config(&config("keep_logs = 4\njournal_segment_kib = 2"));
    env.set_config(
        &config("keep_logs = 4\njournal_segment_kib = 2")
            .replace("keep_releases = 5", "keep_releases = 2"),
    );
    let mut first = String::new();
    let mut all_out = String::new();
    for i in 0..9 {
        env.write("www/index.html", &format!("v{i}\n"));
        let c = env.commit(&format!("deploy {i}"));
        if i == 0 {
            first = c.clone();
        }
        let t = if i % 2 == 0 {
            env.push_ok(&["-o", "promote", "main"])
        } else {
            env.push_ok(&["main"])
        };
        all_out.push_str(&t);
    }
    wait_all(&all_out);
    let t = ok(&env.symdeploy(&["cleanup"]));
    let state = env.root.join(".symdeploy");
    let releases: Vec<String> = names(&env.root.join("releases"));
    assert!(releases.len() < 9, "{releases:?}");
    assert!(!releases.contains(&first), "{t}");
    // No record of a removed release.
    for r in names(&state.join("releases")) {
        let commit = r.strip_suffix(".json").unwrap();
        assert!(
            releases.iter().any(|c| c == commit),
            "record {r} of a removed release"
        );
    }
    // At most keep_logs run logs, plus those of releases still on disk.
    let logs = names(&state.join("logs"));
    let of_releases = logs
        .iter()
        .filter(|l| {
            releases
                .iter()
                .any(|c| l.contains(&format!("-{}-", &c[..12])))
        })
        .count();
    assert!(
        logs.len() <= 4 + of_releases,
        "{} logs, {of_releases} of releases on disk: {logs:?}",
        logs.len()
    );
    assert!(logs.len() >= 4, "{logs:?}");
    // History is kept: compressed segments, and `log --all` from the start.
    let segments = names(&state.join("journal"));
    assert!(
        segments.iter().any(|s| s.ends_with(".jsonl.gz")),
        "{segments:?}"
    );
    let all = ok(&env.symdeploy(&["log", "--all"]));
    let first_line = all.lines().next().unwrap_or_default();
    assert!(first_line.contains(&first[..12]), "{all}");
    assert!(first_line.contains("warmup"), "{all}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&env.symdeploy(&["log", "--all", "--json"]))).unwrap();
    let ends = json.as_array().unwrap();
    // 9 warm-ups, 5 promotes, the cleanup runs are not journaled.
    assert_eq!(
        ends.iter().filter(|e| e["event"] == "warmup").count(),
        9,
        "{json}"
    );
    assert_eq!(
        ends.iter().filter(|e| e["event"] == "promote").count(),
        5,
        "{json}"
    );
    // `log -n 2` reads from the end: the last push warmed up and promoted.
    let last = ok(&env.symdeploy(&["log", "-n", "2"]));
    assert_eq!(last.lines().count(), 2, "{last}");
    assert!(last.lines().next().unwrap().contains("warmup"), "{last}");
    assert!(last.lines().nth(1).unwrap().contains("promote"), "{last}");
    // status still knows production and the previous release.
    let s: serde_json::Value =
        serde_json::from_str(&ok(&env.symdeploy(&["status", "--json"]))).unwrap();
    assert!(s["production"]["since"].is_string(), "{s}");
    assert!(s["previous"]["commit"].is_string(), "{s}");
}

fn legacy_line(i: usize, phase: &str, event: &str) -> String {
    let mut v = serde_json::json!({
        "time": format!("2021-03-04T05:{:02}:{:02}Z", (i / 60) % 60, i % 60),
        "run": format!("legacy{i}"),
        "event": event,
        "phase": phase,
        "commit": format!("{:040x}", i),
        "ref": "refs/heads/main",
        "user": "olduser",
        "host": "oldhost",
        "pid": 4242,
    });
    if phase == "end" {
        v["result"] = "ok".into();
    }
    format!("{v}\n")
}

#[test]
fn an_old_single_file_journal_is_read_and_carried_forward() {
    let env = Env::with_config(&config("journal_segment_kib = 16"));
    // A journal as an older symdeploy wrote it: one file, 3,000 lines, one
    // run (a cleanup) that never ended, no open-run files.
    let mut legacy = String::new();
    for i in 0..1500 {
        if i == 1000 {
            legacy.push_str(&legacy_line(i, "start", "cleanup"));
            continue;
        }
        legacy.push_str(&legacy_line(i, "start", "warmup"));
        legacy.push_str(&legacy_line(i, "end", "warmup"));
    }
    let state = env.root.join(".symdeploy");
    std::fs::write(state.join("journal.jsonl"), &legacy).unwrap();
    assert!(!state.join("journal").exists());

    // Read as it is, before anything carries it forward.
    let s = ok(&env.symdeploy(&["status"]));
    assert!(s.contains("interrupted cleanup"), "{s}");
    let l = ok(&env.symdeploy(&["log", "-n", "1"]));
    assert!(l.contains("2021-03-04T05:24:59Z  warmup   ok"), "{l}");

    // The first deploy carries it forward and repairs the open run.
    let c = env.commit("after the upgrade");
    let t = env.push_ok(&["main"]);
    assert!(t.contains("recovering an interrupted cleanup"), "{t}");
    assert!(state.join("journal").is_dir());
    let segs = names(&state.join("journal"));
    assert!(segs.len() >= 2, "split into segments: {segs:?}");
    assert!(segs.iter().all(|s| s.ends_with(".jsonl.gz")), "{segs:?}");
    // The current segment holds only what came after.
    let current = std::fs::read_to_string(state.join("journal.jsonl")).unwrap();
    assert!(!current.contains("legacy0\""), "{current}");
    let s = ok(&env.symdeploy(&["status"]));
    assert!(!s.contains("interrupted"), "{s}");
    // Nothing lost: every old line, the repair and the new deploy.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&env.symdeploy(&["log", "--all", "--json"]))).unwrap();
    let ends = json.as_array().unwrap();
    assert_eq!(ends.len(), 1499 + 1 + 1, "{}", ends.len());
    assert_eq!(ends[0]["run"], "legacy0");
    assert_eq!(ends[1499]["result"], "interrupted");
    assert_eq!(ends[1500]["commit"], c.as_str());
    let last = ok(&env.symdeploy(&["log", "-n", "1"]));
    assert!(last.contains(&c[..12]), "{last}");
}

#[test]
fn recovery_finds_a_run_interrupted_before_a_rotation() {
    let env = Env::with_config(&config("journal_segment_kib = 1"));
    env.push_ok(&["main"]);
    let b = env.commit("killed during its build");
    let out = env.push_with(&["main"], &[("SYMDEPLOY_FAULT", "build")]);
    let _ = text(&out);
    let state = env.root.join(".symdeploy");
    let journal = std::fs::read_to_string(state.join("journal.jsonl")).unwrap();
    assert!(journal.len() > 1024, "the next command rotates");
    assert_eq!(names(&state.join("open")).len(), 1);
    let s = ok(&env.symdeploy(&["status"]));
    assert!(s.contains("interrupted warmup"), "{s}");

    let c = env.commit("the next one");
    let t = env.push_ok(&["main"]);
    // The start of the interrupted run went into a compressed segment first.
    let current = std::fs::read_to_string(state.join("journal.jsonl")).unwrap();
    let b_lines: Vec<&str> = current.lines().filter(|l| l.contains(&b)).collect();
    assert!(
        b_lines.iter().all(|l| l.contains("\"end\"")),
        "the start was rotated away: {current}"
    );
    assert!(
        t.contains(&format!("recovering an interrupted warmup of {}", &b[..12])),
        "{t}"
    );
    assert_eq!(env.pointed("warmup").as_deref(), Some(c.as_str()));
    assert!(names(&state.join("open")).is_empty());
    let all = ok(&env.symdeploy(&["log", "--all"]));
    assert!(
        all.lines()
            .any(|l| l.contains(&b[..12]) && l.contains("interrupted")),
        "{all}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&ok(&env.symdeploy(&["releases", "--json"]))).unwrap();
    let row = r
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["commit"] == b.as_str());
    // Its half-built release is kept for inspection, marked failed.
    if let Some(row) = row {
        assert_eq!(row["state"], "failed", "{r}");
    }
}

#[test]
fn a_promote_push_does_not_wait_for_deleting_the_old_release() {
    let env = Env::with_config(&TEST_CONFIG.replace("keep_releases = 5", "keep_releases = 1"));
    // A: 20,000 files; B and C small.
    for i in 0..20_000 {
        let p = env.work.join(format!("vendor/d{}/f{i}.php", i / 500));
        if i % 500 == 0 {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        }
        std::fs::write(p, format!("<?php // {i}\n")).unwrap();
    }
    let a = env.commit("a big release");
    env.push_ok(&["-o", "promote", "main"]);
    std::fs::remove_dir_all(env.work.join("vendor")).unwrap();
    env.commit("b");
    let t = env.push_ok(&["-o", "promote", "main"]);
    wait_all(&t);
    assert!(
        env.release(&a).is_dir(),
        "A is the previous production release"
    );
    let c = env.commit("c");
    let t = env.push_ok(&["-o", "promote", "main"]);
    // The push is back: production flipped, A is out of releases/ already
    // (one rename), and its deletion was handed to another process.
    assert_eq!(env.pointed("production").as_deref(), Some(c.as_str()));
    assert!(!env.release(&a).exists(), "{t}");
    assert!(t.contains(&format!("remove {}", &a[..12])), "{t}");
    let pids = background_pids(&t);
    assert_eq!(pids.len(), 1, "{t}");
    let promote_pid = env
        .journal()
        .iter()
        .rev()
        .find(|e| e["event"] == "promote")
        .map(|e| e["pid"].as_i64().unwrap())
        .unwrap();
    assert_ne!(i64::from(pids[0]), promote_pid);
    wait_gone(pids[0]);
    let state = env.root.join(".symdeploy");
    assert!(names(&state.join("trash")).is_empty());
    let log = names(&state.join("logs"))
        .into_iter()
        .find(|l| l.ends_with(&format!("-cleanup-background-{}.log", pids[0])))
        .expect("the background cleanup's log");
    let log = std::fs::read_to_string(state.join("logs").join(log)).unwrap();
    assert!(log.contains(&format!("deleted {a}-")), "{log}");
    // The next deploy finds nothing left over.
    env.commit("d");
    let t = env.push_ok(&["main"]);
    assert!(!t.contains("left by an interrupted deploy"), "{t}");
    assert!(!t.contains("deleted"), "{t}");
    assert!(names(&env.root.join("releases"))
        .iter()
        .all(|n| !n.starts_with('.')));
}

/// A tmpfs mounted for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root: {}",
            text(&out)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// Incompressible bytes, the same every run.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_warmup_that_would_cross_min_free_cleans_failed_releases_then_refuses() {
    let env = Env::with_config(
        &TEST_CONFIG
            .replace(
                "build = [\"make production-composer\", \"make production-assets\"]",
                "build = [\"test ! -e fail-build\", \"make production-composer\"]",
            )
            .replace(
                "branch = \"main\"",
                "branch = \"main\"\nmin_free = \"4MiB\"",
            ),
    );
    let _fs = Tmpfs::mount(&env.root.join("releases"), "16m");
    env.push_ok(&["main"]);
    // A failed release of 3 MiB, kept for inspection (newer than every ready one).
    std::fs::write(env.work.join("blob1"), noise(3 << 20, 1)).unwrap();
    std::fs::write(env.work.join("fail-build"), "").unwrap();
    let failed = env.commit("fails its build");
    let out = env.push(&["main"]);
    assert!(env.release(&failed).is_dir(), "{}", text(&out));
    // 9 MiB + 4 MiB kept free: only fits once the failed release is gone.
    std::fs::remove_file(env.work.join("fail-build")).unwrap();
    std::fs::remove_file(env.work.join("blob1")).unwrap();
    std::fs::write(env.work.join("blob2"), noise(9 << 20, 2)).unwrap();
    let fits = env.commit("fits after cleaning");
    let t = env.push_ok(&["main"]);
    assert!(
        t.contains("removing failed and surplus releases first"),
        "{t}"
    );
    assert!(!env.release(&failed).exists(), "{t}");
    assert_eq!(env.pointed("warmup").as_deref(), Some(fits.as_str()));
    // 10 MiB more cannot fit next to it, whatever is removed: refused with
    // the figures, before anything is written into releases/.
    std::fs::write(env.work.join("blob3"), noise(10 << 20, 3)).unwrap();
    let big = env.commit("too big");
    let before = names(&env.root.join("releases"));
    let out = env.push(&["main"]);
    let t = text(&out);
    assert!(t.contains("not enough disk space to warm up"), "{t}");
    assert!(t.contains("min_free keeps 4.0 MiB free"), "{t}");
    assert!(t.contains("it needs 1"), "{t}");
    assert!(t.contains("help:"), "{t}");
    assert_eq!(names(&env.root.join("releases")), before);
    assert!(!env.release(&big).exists());
    assert_eq!(env.pointed("warmup").as_deref(), Some(fits.as_str()));
    let s: serde_json::Value =
        serde_json::from_str(&ok(&env.symdeploy(&["status", "--json"]))).unwrap();
    assert!(s["interrupted"].as_array().unwrap().is_empty(), "{s}");
}

#[test]
fn a_warmup_short_of_inodes_is_refused_before_writing_anything() {
    let env = Env::with_config(&format!("min_free = \"0\"\n{TEST_CONFIG}"));
    // Plenty of bytes, few inodes.
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m,nr_inodes=300", "tmpfs"])
        .arg(env.root.join("releases"))
        .output()
        .expect("run mount");
    assert!(out.status.success(), "needs root: {}", text(&out));
    let _fs = Tmpfs(env.root.join("releases"));
    env.push_ok(&["main"]);
    for i in 0..400 {
        env.write(&format!("www/many/f{i}.txt"), "x\n");
    }
    let many = env.commit("400 files");
    let before = names(&env.root.join("releases"));
    let t = text(&env.push(&["main"]));
    assert!(t.contains("not enough disk space to warm up"), "{t}");
    assert!(t.contains("inodes: "), "{t}");
    assert_eq!(names(&env.root.join("releases")), before);
    assert!(!env.release(&many).exists());
}

#[test]
fn what_a_killed_background_cleanup_left_aside_is_deleted_by_the_next_locked_command() {
    let env = Env::new();
    env.push_ok(&["main"]);
    // As a background cleanup killed mid-deletion would leave it.
    let aside = env.root.join(".symdeploy/trash/0123-abc/www/data");
    std::fs::create_dir_all(&aside).unwrap();
    std::fs::write(aside.join("f"), "x").unwrap();
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(t.contains("deleted 0123-abc"), "{t}");
    assert!(names(&env.root.join(".symdeploy/trash")).is_empty());
}
