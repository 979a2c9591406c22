//! The test harness: a temporary deploy root made by the real binary, a
//! project clone with the seed's Makefile targets, and real `git push`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod skip;
pub mod users;

#[allow(unused_imports)] // fleet.rs includes this module and uses only some
pub use skip::{cannot_here, required, skip};

/// The symdeploy binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_symdeploy"))
}

/// The seed's Makefile: every target records itself in ROOT/trace.log with
/// the stage and the directory it ran in.
pub const MAKEFILE: &str = "\
TRACE = $(SYMDEPLOY_ROOT)/trace.log
production-composer:
\techo \"composer $$SYMDEPLOY_STAGE $$PWD\" >> $(TRACE)
production-assets:
\techo \"assets $$SYMDEPLOY_STAGE $$PWD\" >> $(TRACE)
production-links:
\techo \"links $$SYMDEPLOY_STAGE $$PWD\" >> $(TRACE)
production-migrate:
\techo \"migrate $$SYMDEPLOY_STAGE $$PWD\" >> $(TRACE)
deploy-notify-warmup:
\techo \"notify-warmup $$SYMDEPLOY_STAGE $$PWD\" >> $(TRACE)
production-supervisor:
\techo \"supervisor $$SYMDEPLOY_STAGE $$PWD\" >> $(TRACE)
deploy-notify:
\techo \"notify $$SYMDEPLOY_STAGE $$SYMDEPLOY_RESULT $$PWD\" >> $(TRACE)
";

/// A deploy config whose daemons are simulated by echo lines in the trace.
pub const TEST_CONFIG: &str = r#"
branch = "main"
keep_releases = 5
shared = ["log", "www/data/images"]
lock_timeout = 120
[warmup]
build = ["make production-composer", "make production-assets"]
links = ["make production-links"]
migrate = ["make production-migrate"]
notify = ["make deploy-notify-warmup"]
[promote]
stop = ["echo \"stop $SYMDEPLOY_STAGE $PWD\" >> \"$SYMDEPLOY_ROOT/trace.log\""]
after_switch = ["make production-supervisor"]
start = ["echo \"start $SYMDEPLOY_STAGE $PWD\" >> \"$SYMDEPLOY_ROOT/trace.log\""]
notify = ["make deploy-notify"]
"#;

/// A deploy root and a project clone in a temporary directory.
pub struct Env {
    /// Keeps everything alive for the test.
    pub tmp: tempfile::TempDir,
    /// The deploy root.
    pub root: PathBuf,
    /// The project clone that pushes.
    pub work: PathBuf,
}

/// Run a command, returning its output; panics only if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// stdout + stderr as one string, for assertions and failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A git command isolated from the machine's configuration.
pub fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir);
    git_env(&mut c);
    c
}

/// The environment of [`git_cmd`], for a git run another way (as another
/// user): no system or global configuration, a fixed author.
pub fn git_env(c: &mut Command) {
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Tester")
        .env("GIT_AUTHOR_EMAIL", "tester@example.invalid")
        .env("GIT_COMMITTER_NAME", "Tester")
        .env("GIT_COMMITTER_EMAIL", "tester@example.invalid")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
}

/// The commit a ref of the bare repository `repo` names, if it exists.
pub fn repo_ref(repo: &Path, name: &str) -> Option<String> {
    let out =
        run(git_cmd(repo).args(["rev-parse", "--verify", "-q", &format!("{name}^{{commit}}")]));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Env {
    /// `symdeploy init`, TEST_CONFIG, and a project with the seed's layout,
    /// committed once (not pushed).
    pub fn new() -> Env {
        Self::with_config(TEST_CONFIG)
    }

    /// Like `new`, with another deploy.toml.
    pub fn with_config(config: &str) -> Env {
        Self::with_init_args(config, &[])
    }

    /// Like `with_config`, passing extra arguments to `symdeploy init`.
    pub fn with_init_args(config: &str, init_args: &[&str]) -> Env {
        Self::with_init_args_in(config, init_args, &std::env::temp_dir())
    }

    /// Like `with_init_args`, with the temporary directory made under `base`
    /// (a filesystem with a feature a test needs, such as chattr).
    pub fn with_init_args_in(config: &str, init_args: &[&str], base: &Path) -> Env {
        std::fs::create_dir_all(base).expect("test base directory");
        let tmp = tempfile::Builder::new()
            .prefix("symdeploy-test-")
            .tempdir_in(base)
            .expect("tempdir");
        let root = tmp.path().join("root");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("deploy.toml"), config).unwrap();
        let env = Env { tmp, root, work };
        let out = env.symdeploy_raw(&[&["init", env.root.to_str().unwrap()], init_args].concat());
        assert!(out.status.success(), "init failed: {}", text(&out));
        std::fs::create_dir_all(&env.work).unwrap();
        env.git(&["init", "-q", "-b", "main"]);
        env.git(&[
            "remote",
            "add",
            "deploy",
            env.root.join("repository").to_str().unwrap(),
        ]);
        env.write("Makefile", MAKEFILE);
        env.write("www/index.html", "hello\n");
        env.write("www/data/images/logo.svg", "<svg/>\n");
        env.write("app/config.neon", "parameters:\n");
        env.commit("initial commit");
        env
    }

    /// Run symdeploy with `--root ROOT` and args.
    pub fn symdeploy(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// `symdeploy --root ROOT ARGS...` as every test runs it (in the test's
    /// directory, without an inherited SYMDEPLOY_ROOT), for a test that
    /// needs more than [`Env::symdeploy`]: extra variables, pipes, a
    /// process group.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root")
            .arg(&self.root)
            .args(args)
            .current_dir(self.tmp.path())
            .env_remove("SYMDEPLOY_ROOT");
        c
    }

    /// Run symdeploy with exactly these args.
    pub fn symdeploy_raw(&self, args: &[&str]) -> Output {
        run(Command::new(bin())
            .args(args)
            .current_dir(self.tmp.path())
            .env_remove("SYMDEPLOY_ROOT"))
    }

    /// Run git in the project clone; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let out = run(git_cmd(&self.work).args(args));
        assert!(out.status.success(), "git {args:?} failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `git push deploy ARGS...`, returning the output (success or not).
    pub fn push(&self, args: &[&str]) -> Output {
        let mut full = vec!["push", "deploy"];
        full.extend_from_slice(args);
        run(git_cmd(&self.work).args(full))
    }

    /// `git push deploy ARGS...` with extra environment variables.
    pub fn push_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut c = git_cmd(&self.work);
        c.args(["push", "deploy"]).args(args);
        for (k, v) in vars {
            c.env(k, v);
        }
        run(&mut c)
    }

    /// Push and insist it worked; returns the output text.
    pub fn push_ok(&self, args: &[&str]) -> String {
        let out = self.push(args);
        let t = text(&out);
        assert!(out.status.success(), "push {args:?} failed: {t}");
        t
    }

    /// Write a file in the clone (parents created).
    pub fn write(&self, path: &str, content: &str) {
        let p = self.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// Make a file in the clone executable.
    pub fn chmod_x(&self, path: &str) {
        std::fs::set_permissions(self.work.join(path), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }

    /// Commit everything; returns the commit hash.
    pub fn commit(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// The commit a root symlink points at (releases/<hash>).
    pub fn pointed(&self, name: &str) -> Option<String> {
        let t = std::fs::read_link(self.root.join(name)).ok()?;
        t.to_str()?.strip_prefix("releases/").map(str::to_string)
    }

    /// The lines of ROOT/trace.log.
    pub fn trace(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("trace.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Forget the trace so far.
    pub fn clear_trace(&self) {
        let _ = std::fs::remove_file(self.root.join("trace.log"));
    }

    /// The release directory of a commit.
    pub fn release(&self, commit: &str) -> PathBuf {
        self.root.join("releases").join(commit)
    }

    /// Replace deploy.toml.
    pub fn set_config(&self, config: &str) {
        std::fs::write(self.root.join("deploy.toml"), config).unwrap();
    }

    /// The commit a ref of the deploy repository names, if it exists.
    pub fn repo_ref(&self, name: &str) -> Option<String> {
        repo_ref(&self.root.join("repository"), name)
    }

    /// The `state` of a release's record (.symdeploy/releases/NAME.json),
    /// empty when there is none.
    pub fn record_state(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.root.join(format!(".symdeploy/releases/{name}.json")))
                .unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&text)
            .map(|v| v["state"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    /// The journal's entries.
    pub fn journal(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.root.join(".symdeploy/journal.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("journal line is JSON"))
            .collect()
    }
}

/// What a file tree holds, for byte-for-byte comparisons: path → kind,
/// executable bit, content or symlink target.
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if meta.is_dir() {
                out.insert(rel, "dir".into());
                walk(base, &p, out);
            } else {
                let exec = meta.permissions().mode() & 0o111 != 0;
                let bytes = std::fs::read(&p).unwrap();
                out.insert(
                    rel,
                    format!("file exec={exec} {}", String::from_utf8_lossy(&bytes)),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `git archive COMMIT | tar -x` of the deploy repository into a new dir.
pub fn git_archive(repo: &Path, commit: &str, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let archive = run(git_cmd(repo).args(["archive", commit]));
    assert!(archive.status.success(), "git archive: {}", text(&archive));
    let mut tar = Command::new("tar")
        .args(["-x", "-C", dest.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    tar.stdin
        .take()
        .unwrap()
        .write_all(&archive.stdout)
        .unwrap();
    assert!(tar.wait().unwrap().success());
}

/// The pids of the background cleanups a push or command announced
/// ("deleting in the background (pid N, ...").
pub fn background_pids(t: &str) -> Vec<i32> {
    t.match_indices("deleting in the background (pid ")
        .filter_map(|(i, m)| {
            let rest = &t[i + m.len()..];
            rest[..rest.find(',')?].parse().ok()
        })
        .collect()
}

/// Wait (generously) until a process has exited (or is a zombie no one reaps).
pub fn wait_gone(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("");
        if stat.is_empty() || state == "Z" || state == "X" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} still running"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Wait for every background cleanup announced in `t` to finish (they hold
/// the deploy lock while they delete).
pub fn wait_all(t: &str) {
    for pid in background_pids(t) {
        wait_gone(pid);
    }
}

/// A transcript made comparable across runs, for snapshot tests: commits
/// become `[c1]`, `[c2]`... in the order they first appear (a 12-hex short
/// hash and its full 40-hex form get the same name). Counting is more than a
/// regex can do; the rest is done by insta's filters when the snapshot is
/// taken (see [`snapshot_settings`]). Every line ends with a newline.
pub fn redact(text: &str) -> String {
    let mut names: Vec<String> = Vec::new();
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(&number_commits(line, &mut names));
        out.push('\n');
    }
    out
}

/// `line` with every 12- or 40-hex word named by its place in `names`.
fn number_commits(line: &str, names: &mut Vec<String>) -> String {
    let bytes = line.as_bytes();
    let is_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if starts_word && is_hex(bytes[i]) {
            let mut j = i;
            while j < bytes.len() && is_hex(bytes[j]) {
                j += 1;
            }
            let run = &line[i..j];
            let ends_word = j >= bytes.len() || !bytes[j].is_ascii_alphanumeric();
            if ends_word && (run.len() == 40 || run.len() == 12) {
                let key = &run[..12];
                let n = match names.iter().position(|k| k == key) {
                    Some(n) => n,
                    None => {
                        names.push(key.to_string());
                        names.len() - 1
                    }
                };
                out.push_str(&format!("[c{}]", n + 1));
            } else {
                out.push_str(run);
            }
            i = j;
            continue;
        }
        let c = line[i..].chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// insta's settings for a transcript of `env` (bind them where the snapshot
/// is taken: `let _s = snapshot_settings(&env).bind_to_scope();`): the
/// temporary root becomes `[ROOT]` (anything else of the test's temporary
/// directory `[TMP]`), git's 7-hex `a..b` ranges `[range]`, durations
/// `[dur]`, log file time stamps `[time]` and pids `[pid]`; trailing blanks
/// (git pads `remote:` lines to clear the terminal) go.
pub fn snapshot_settings(env: &Env) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"(?m)[^\S\n]+$", "");
    s.add_filter(&regex::escape(&env.tmp.path().to_string_lossy()), "[TMP]");
    s.add_filter(r"\[TMP\]/root", "[ROOT]");
    // git's `1234567..89abcde` (and `...` of a forced update).
    s.add_filter(r"\b[0-9a-f]{7}\.{2,3}[0-9a-f]{7}\b", "[range]");
    // A log file's name: 20261126T143235Z-12345.log.
    s.add_filter(r"\b\d{8}T\d{6}Z", "[time]");
    s.add_filter(r"-\d+\.log", "-[pid].log");
    // 0.29s, 12.5s, 1m02s.
    s.add_filter(r"\b\d+(\.\d+|m\d{2})s\b", "[dur]");
    s
}

/// True when running as root; otherwise the test is skipped (see [`skip`]:
/// a failure in CI), saying it needs root for `needs` (useradd, setpriv, ...).
pub fn need_root(needs: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip(&format!("needs root for {needs}; CI runs it as root"));
    false
}

/// The output text of a command that must have succeeded.
pub fn ok(out: &Output) -> String {
    let t = text(out);
    assert!(out.status.success(), "command failed: {t}");
    t
}

/// stderr alone, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The 12-hex short form of a commit, as symdeploy prints it.
pub fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

/// A file of this repository (scripts/stack/..., examples/...).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The name of what `root/name` (a symlink) points at: the release's
/// directory name.
pub fn pointed_at(root: &Path, name: &str) -> Option<String> {
    std::fs::read_link(root.join(name))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Wait until `f` is true, up to a generous 60 s: not a timing assertion,
/// what is waited for either happens or the test has found the bug.
pub fn wait_for(what: &str, f: impl FnMut() -> bool) {
    wait_for_within(what, std::time::Duration::from_secs(60), f);
}

/// [`wait_for`] with another bound.
pub fn wait_for_within(what: &str, limit: std::time::Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        // 50 ms, as most tests polled before this was shared: a test that
        // acts the moment a step has begun (faults.rs kills a promote whose
        // `stop` wrote its first line) depends on it.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The daemons are running: the trace's last `stop`/`start` line (of
/// TEST_CONFIG's promote.stop/start) is a start, or there is none.
pub fn assert_daemons_running(env: &Env, context: &str) {
    let trace = env.trace();
    let last = trace
        .iter()
        .rev()
        .find(|l| l.starts_with("stop ") || l.starts_with("start "));
    if let Some(l) = last {
        assert!(
            l.starts_with("start "),
            "{context}: the daemons were left stopped; trace: {trace:#?}"
        );
    }
}

/// `name labels value` per sample from prometheus_client's own parser, or
/// `None` (a visible skip) where /usr/bin/python3 lacks it.
pub fn parse_prometheus(text_format: &[u8]) -> Option<String> {
    use std::io::Write;
    const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        print(s.name, json.dumps(s.labels, sort_keys=True), s.value)
"#;
    let has = Command::new("/usr/bin/python3")
        .args(["-c", "import prometheus_client"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        skip("missing: /usr/bin/python3 with prometheus_client (run .ci/install-stack as root)");
        return None;
    }
    let mut py = Command::new("/usr/bin/python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    py.stdin.take().unwrap().write_all(text_format).unwrap();
    let parsed = py.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "prometheus_client refused it: {}\n{}",
        String::from_utf8_lossy(&parsed.stderr),
        String::from_utf8_lossy(text_format)
    );
    Some(String::from_utf8_lossy(&parsed.stdout).into_owned())
}

/// A file made immutable (`chattr +i`) so that nothing, root included, can
/// remove it; made mutable again on drop, so a failed test leaves nothing
/// its clean-up cannot remove.
pub struct Immutable(PathBuf);

impl Immutable {
    /// Freeze `path`; `None` (recorded as a skip of `what`) where this
    /// filesystem or container does not allow it (tmpfs, no CAP_LINUX_IMMUTABLE).
    pub fn freeze(path: &Path, what: &str) -> Option<Immutable> {
        let guard = Immutable(path.to_path_buf());
        match Command::new("chattr").arg("+i").arg(path).output() {
            Ok(o) if o.status.success() => Some(guard),
            other => {
                cannot_here(&format!(
                    "chattr +i does not work here ({other:?}); {what} is not tested"
                ));
                None
            }
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}
