//! The real stack, end to end. SSH pushes into a deploy root served by
//! nginx + php-fpm (opcache, `$realpath_root`) with a supervisord worker; two
//! hosts behind one remote; 20 promote/rollback rounds under wrk load.
//!
//! The servers are started by `scripts/stack/` on 127.0.0.1 high ports with all
//! their state in a temporary directory, and stopped by `stop-all` when the test
//! ends (also when it fails). The app is `examples/php-app`, pushed with real
//! git. Without the programs (nginx, php-fpm, supervisord, sshd, wrk, ...) each
//! test is skipped with a line naming what is missing and `.ci/install-stack`;
//! `SYMDEPLOY_REQUIRE_STACK=1` turns that into a failure (for CI).
//!
//! The load test runs alone (a lock below): it measures on a 2-core machine
//! and must not share it with another stack.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::common::{bin, git_cmd, repo_path, run, short, text};

/// Promote + rollback rounds in the load test (2 switches each).
const ROUNDS: usize = 20;
/// How long a promoted release's worker may take to write its first heartbeat.
const HEARTBEAT_WAIT: Duration = Duration::from_secs(30);

/// The load test runs alone (it measures on a 2-core machine); the others may
/// share the machine with each other.
static MACHINE: RwLock<()> = RwLock::new(());

fn shared_machine() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}

fn whole_machine() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

/// A line on the real stderr: libtest captures `eprintln!`, and a skip or the
/// measured figures must be visible in a plain `cargo test`.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

fn stack_script(name: &str) -> PathBuf {
    repo_path("scripts/stack").join(name)
}

/// `scripts/stack/check GROUPS...`: true when the programs are there; else the
/// test is skipped with check's line (`missing: nginx ... (run
/// .ci/install-stack as root)`), or fails in CI.
fn stack_ready(groups: &[&str]) -> bool {
    let why = match Command::new(stack_script("check"))
        .args(groups)
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => return true,
        Ok(o) => text(&o).trim().to_string(),
        Err(e) => format!(
            "cannot run scripts/stack/check ({e}); the stack needs bash and the programs .ci/install-stack installs"
        ),
    };
    crate::common::skip(&why);
    false
}

/// `n` distinct free ports on 127.0.0.1 (all bound at once, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// `KEY='value'` lines printed by the start-* scripts.
type Vars = BTreeMap<String, String>;

fn parse_vars(stdout: &[u8]) -> Vars {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.to_string(), v.trim_matches('\'').to_string()))
        })
        .collect()
}

/// The temporary directory holding the hosts and their servers' state; every
/// server started in it is stopped when it is dropped.
struct Stack {
    tmp: tempfile::TempDir,
}

impl Stack {
    fn new() -> Stack {
        // In /tmp, not $TMPDIR: unix socket paths (php-fpm, supervisord) must stay short.
        let tmp = tempfile::Builder::new()
            .prefix("sdstack-")
            .tempdir_in("/tmp")
            .expect("tempdir in /tmp");
        Stack { tmp }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Run scripts/stack/SCRIPT and return what it printed.
    fn start(&self, script: &str, args: &[&str], env: &[(&str, String)]) -> Vars {
        let out = run(Command::new(stack_script(script))
            .args(args)
            // Removed first: only what the test passes in `env` counts.
            .env_remove("PREVIEW_DOMAIN")
            .env_remove("WARMUP_HOST")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("PHP_FPM_CHILDREN")
            .env_remove("NGINX_WORKERS")
            .env_remove("WORKER_INTERVAL"));
        assert!(
            out.status.success(),
            "scripts/stack/{script} {args:?} failed:\n{}",
            text(&out)
        );
        parse_vars(&out.stdout)
    }

    /// A deploy root `NAME/root` made by `symdeploy init` with the example's
    /// deploy.toml, and its servers: nginx + php-fpm, supervisord, and sshd
    /// when asked.
    fn host(&self, name: &str, opts: HostOpts) -> Host {
        let root = self.path().join(name).join("root");
        let state = self.state().join(name);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let ports = free_ports(2);
        let (http_port, ssh_port) = (ports[0], ports[1]);
        let supervisor_conf = state.join("supervisord.conf");

        let mut config = example_config(http_port, &supervisor_conf);
        if let Some(edit) = opts.edit {
            config = edit(&config);
        }
        if opts.strict {
            config = format!("hook = \"pre-receive\"\n{config}");
        }
        std::fs::write(root.join("deploy.toml"), config).unwrap();
        let mut init = Command::new(bin());
        init.arg("init").arg(&root);
        if opts.strict {
            init.arg("--strict");
        }
        let out = run(&mut init);
        assert!(out.status.success(), "symdeploy init: {}", text(&out));
        let config_dir = root.join("common/app/config");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(
            config_dir.join("local.ini"),
            format!("greeting = {}\n", opts.greeting),
        )
        .unwrap();

        let root_s = root.to_str().unwrap();
        let state_s = state.to_str().unwrap();
        let mut web_env: Vec<(&str, String)> = opts
            .preview_domain
            .map(|d| vec![("PREVIEW_DOMAIN", d.to_string())])
            .unwrap_or_default();
        if let Some(h) = opts.warmup_host {
            web_env.push(("WARMUP_HOST", h.to_string()));
        }
        let web = self.start(
            "start-web",
            &[root_s, state_s, &http_port.to_string()],
            &web_env,
        );
        let sup = self.start("start-supervisor", &[root_s, state_s], &[]);
        assert_eq!(
            sup["SUPERVISOR_CONF"],
            supervisor_conf.to_str().unwrap(),
            "start-supervisor wrote its config elsewhere than deploy.toml says"
        );
        let ssh = opts.ssh.then(|| {
            // The remote PATH is exactly this: the symdeploy under test first, so a
            // stale one in ~/.cargo/bin cannot answer `ssh HOST symdeploy`.
            let bin_dir = bin().parent().unwrap().to_str().unwrap().to_string();
            let mut env = vec![
                ("STACK_SSH_EXACT_PATH", "1".to_string()),
                (
                    "STACK_REMOTE_PATH",
                    format!(
                        "{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                    ),
                ),
            ];
            if let Some(key) = &opts.ssh_client_key {
                env.push(("SSH_CLIENT_KEY", key.clone()));
            }
            self.start("start-sshd", &[state_s, &ssh_port.to_string()], &env)
        });
        Host {
            root,
            state,
            web,
            ssh,
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let out = Command::new(stack_script("stop-all"))
            .arg(self.state())
            .stdin(Stdio::null())
            .output();
        if let Ok(o) = out {
            if !o.status.success() {
                say(&format!("stop-all failed: {}", text(&o)));
            }
        }
    }
}

#[derive(Default)]
struct HostOpts {
    /// `symdeploy init --strict` and hook = "pre-receive".
    strict: bool,
    /// Start an sshd for this host.
    ssh: bool,
    /// Authorize this key instead of a new one (one GIT_SSH_COMMAND for all hosts).
    ssh_client_key: Option<String>,
    /// ROOT/common/app/config/local.ini's greeting.
    greeting: &'static str,
    /// Change the deploy.toml text.
    edit: Option<fn(&str) -> String>,
    /// Serve previews as SLUG.<this> (start-web's PREVIEW_DOMAIN).
    preview_domain: Option<&'static str>,
    /// Serve ROOT/www_warmup as this host name (start-web's WARMUP_HOST).
    warmup_host: Option<&'static str>,
}

/// examples/php-app/deploy.toml with the test's port and supervisord config.
fn example_config(http_port: u16, supervisor_conf: &Path) -> String {
    let text = std::fs::read_to_string(repo_path("examples/php-app/deploy.toml")).unwrap();
    let text = text
        .replace("@HTTP_PORT@", &http_port.to_string())
        .replace("@SUPERVISOR_CONF@", supervisor_conf.to_str().unwrap());
    assert!(
        !text.lines().any(|l| !l.starts_with('#') && l.contains('@')),
        "a placeholder of examples/php-app/deploy.toml was not replaced:\n{text}"
    );
    text
}

/// One deploy root with its servers.
struct Host {
    root: PathBuf,
    state: PathBuf,
    web: Vars,
    ssh: Option<Vars>,
}

impl Host {
    fn http_port(&self) -> u16 {
        self.web["HTTP_PORT"].parse().unwrap()
    }

    fn ssh_vars(&self) -> &Vars {
        self.ssh.as_ref().expect("this host has no sshd")
    }

    /// ssh://USER@127.0.0.1:PORT/ROOT/repository
    fn ssh_url(&self) -> String {
        format!(
            "{}{}/repository",
            self.ssh_vars()["SSH_URL"],
            self.root.display()
        )
    }

    fn git_ssh_command(&self) -> String {
        self.ssh_vars()["GIT_SSH_COMMAND"].clone()
    }

    /// Run a command on this host over ssh.
    fn ssh(&self, command: &str) -> Output {
        let vars = self.ssh_vars();
        let mut words = vars["SSH_COMMAND"].split_whitespace();
        let mut cmd = Command::new(words.next().unwrap());
        cmd.args(words)
            .arg(format!("{}@127.0.0.1", vars["SSH_USER"]))
            .arg(command);
        run(&mut cmd)
    }

    fn symdeploy(&self, args: &[&str]) -> Output {
        run(Command::new(bin())
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .env_remove("SYMDEPLOY_ROOT"))
    }

    fn symdeploy_ok(&self, args: &[&str]) -> String {
        let out = self.symdeploy(args);
        assert!(
            out.status.success(),
            "symdeploy {args:?} failed on {}:\n{}",
            self.root.display(),
            text(&out)
        );
        text(&out)
    }

    /// The commit a root symlink points at.
    fn pointed(&self, name: &str) -> Option<String> {
        let t = std::fs::read_link(self.root.join(name)).ok()?;
        t.to_str()?.strip_prefix("releases/").map(str::to_string)
    }

    /// A ref of ROOT/repository, if it exists.
    fn git_ref(&self, name: &str) -> Option<String> {
        crate::common::repo_ref(&self.root.join("repository"), name)
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http_port(), path)
            .unwrap_or_else(|e| panic!("GET {path} on nginx of {}: {e}", self.root.display()))
    }

    /// GET / must answer 200 with `commit=COMMIT`; returns the body.
    fn assert_serves(&self, commit: &str) -> String {
        let (status, body) = self.get("/");
        assert_eq!(
            (status, commit_of(&body)),
            (200, Some(commit)),
            "nginx of {} should serve {commit}: {body}",
            self.root.display()
        );
        body
    }

    fn heartbeat(&self) -> String {
        std::fs::read_to_string(self.root.join("common/log/worker.heartbeat")).unwrap_or_default()
    }

    /// Poll the worker's heartbeat until it names `commit`; returns how long it took.
    fn wait_heartbeat(&self, commit: &str) -> Duration {
        let started = Instant::now();
        loop {
            let hb = self.heartbeat();
            if commit_of(&hb) == Some(commit) {
                return started.elapsed();
            }
            if started.elapsed() > HEARTBEAT_WAIT {
                let status = run(Command::new("supervisorctl")
                    .arg("-c")
                    .arg(self.state.join("supervisord.conf"))
                    .arg("status"));
                panic!(
                    "the worker's heartbeat does not show {commit} after {HEARTBEAT_WAIT:?}: {hb:?}\nsupervisorctl status: {}\nworker log: {}",
                    text(&status),
                    std::fs::read_to_string(self.state.join("worker.out.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn notify_log(&self) -> String {
        std::fs::read_to_string(self.root.join("common/log/notify.log")).unwrap_or_default()
    }
}

/// `commit=<hash>` from a response body or a heartbeat line.
fn commit_of(s: &str) -> Option<&str> {
    s.split_whitespace().find_map(|w| w.strip_prefix("commit="))
}

fn pid_of(s: &str) -> Option<u32> {
    s.split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
}

/// One HTTP/1.0 GET on a new connection: (status, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_get_host(port, "localhost", path)
}

/// One HTTP/1.0 GET with this Host header: (status, body).
fn http_get_host(port: u16, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let bad = || std::io::Error::other(format!("malformed response: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_string()))
}

/// A scratch clone of examples/php-app with one commit.
struct Project {
    dir: PathBuf,
}

impl Project {
    fn new(dir: PathBuf) -> Project {
        copy_tree(&repo_path("examples/php-app"), &dir);
        let p = Project { dir };
        p.git(&["init", "-q", "-b", "main"]);
        p.commit("php-app: first release");
        p
    }

    fn git(&self, args: &[&str]) -> String {
        let out = run(git_cmd(&self.dir).args(args));
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn commit(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn change(&self, file: &str, content: &str, msg: &str) -> String {
        std::fs::write(self.dir.join(file), content).unwrap();
        self.commit(msg)
    }

    /// `git push ARGS...` (with GIT_SSH_COMMAND when given).
    fn push(&self, args: &[&str], ssh: Option<&str>) -> Output {
        let mut cmd = git_cmd(&self.dir);
        cmd.arg("push").args(args);
        if let Some(s) = ssh {
            cmd.env("GIT_SSH_COMMAND", s);
        }
        run(&mut cmd)
    }

    fn push_ok(&self, args: &[&str], ssh: Option<&str>) -> String {
        let out = self.push(args, ssh);
        assert!(out.status.success(), "git push {args:?}: {}", text(&out));
        text(&out)
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let ty = e.file_type().unwrap();
        let dest = to.join(e.file_name());
        if ty.is_dir() {
            copy_tree(&e.path(), &dest);
        } else if ty.is_file() {
            std::fs::copy(e.path(), &dest).unwrap(); // keeps the mode (app/worker, bin/migrate)
        }
    }
}

/// A child process killed (and reaped) if the test ends before it does.
struct Reaped(Option<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// wrk on `port` with scripts/stack/wrk-commits.lua (which counts the
/// releases that answered), for at most `seconds` even if the test hangs.
fn start_wrk(port: u16, seconds: u32) -> Reaped {
    Reaped(Some(
        Command::new("wrk")
            .args([
                "-t1",
                "-c4",
                &format!("-d{seconds}s"),
                "--timeout",
                "5s",
                "-s",
            ])
            .arg(stack_script("wrk-commits.lua"))
            .arg(format!("http://127.0.0.1:{port}/"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wrk"),
    ))
}

/// Stop wrk with SIGINT (it still prints its summary); its stdout and status.
fn stop_wrk(wrk: &mut Reaped) -> (String, std::process::ExitStatus) {
    let mut child = wrk.0.take().unwrap();
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (out, child.wait().unwrap())
}

/// Lines of a child's stdout and stderr as they come (split at \n and \r).
fn stream_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    fn pump(r: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
        std::thread::spawn(move || {
            for chunk in BufReader::new(r).split(b'\n') {
                let Ok(chunk) = chunk else { break };
                for part in String::from_utf8_lossy(&chunk).split('\r') {
                    if tx.send(part.to_string()).is_err() {
                        return;
                    }
                }
            }
        });
    }
    pump(child.stdout.take().unwrap(), tx.clone());
    pump(child.stderr.take().unwrap(), tx);
    rx
}

/// A warm-up step that holds the warm-up until the test creates ROOT/gate
/// (bounded: it gives up after 60 s). The line it prints is not the text of
/// the command, so seeing it proves the step is running.
fn with_gate(config: &str) -> String {
    let build = r#"build = ["make production-composer", "make production-assets"]"#;
    assert!(
        config.contains(build),
        "examples/php-app/deploy.toml changed its build steps"
    );
    config.replace(
        build,
        r#"build = ["make production-composer", "make production-assets", 'echo "gate-$((6*7))-waiting"; i=0; while [ ! -e "$SYMDEPLOY_ROOT/gate" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; test -e "$SYMDEPLOY_ROOT/gate"']"#,
    )
}

// ---------------------------------------------------------------------------
// 1. Push over SSH
// ---------------------------------------------------------------------------

#[test]
fn ssh_push_streams_warmup_then_tag_promotes() {
    if !stack_ready(&["web", "supervisor", "sshd", "app"]) {
        return;
    }
    let _machine = shared_machine();
    let stack = Stack::new();
    let host = stack.host(
        "h1",
        HostOpts {
            ssh: true,
            greeting: "hello-over-ssh",
            edit: Some(with_gate),
            ..Default::default()
        },
    );
    let project = Project::new(stack.path().join("work"));
    let a = project.git(&["rev-parse", "HEAD"]);
    let url = host.ssh_url();
    let ssh = host.git_ssh_command();

    // The warm-up's output reaches the pusher while the hook still runs: the
    // gate step waits for us, and we only open it once we have read its line.
    let mut push = git_cmd(&project.dir);
    push.args(["push", &url, "main"])
        .env("GIT_SSH_COMMAND", &ssh)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Reaped(Some(push.spawn().expect("spawn git push")));
    let lines = stream_lines(child.0.as_mut().unwrap());
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => {
                let gate = l.contains("gate-42-waiting");
                seen.push(l);
                if gate {
                    break;
                }
            }
            Err(_) => panic!(
                "no gate line from the warm-up within 60 s: the remote: output is not streamed\n{}",
                seen.join("\n")
            ),
        }
    }
    assert!(
        child.0.as_mut().unwrap().try_wait().unwrap().is_none(),
        "git push ended before the gate opened:\n{}",
        seen.join("\n")
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("remote: -----> warming up") && l.contains(short(&a))),
        "the warm-up header should have arrived before the gate line:\n{}",
        seen.join("\n")
    );
    assert_eq!(
        host.pointed("warmup"),
        None,
        "warmup flipped before the warm-up ended"
    );
    std::fs::write(host.root.join("gate"), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.0.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "git push hangs after the gate opened"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(5)) {
        seen.push(l);
    }
    let out = seen.join("\n");
    assert!(status.success(), "ssh push of main failed:\n{out}");
    for want in [
        format!("remote: success: warmup -> releases/{}", &a[..12]),
        "remote:        migrate: applied 001_create_visits.sql".to_string(),
        "remote:        production-assets: built www/assets/app.css".to_string(),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(host.pointed("warmup").as_deref(), Some(a.as_str()));
    assert_eq!(host.pointed("production"), None);
    assert_eq!(host.get("/").0, 404, "nothing is promoted yet");

    // A release tag pushed over SSH promotes: nginx serves it, supervisord runs its worker.
    project.git(&["tag", "release-1"]);
    let out = project.push_ok(&[&url, "release-1"], Some(&ssh));
    assert!(
        out.contains(&format!(
            "remote: success: production -> releases/{}",
            &a[..12]
        )),
        "{out}"
    );
    for stage in [
        "stop",
        "switch production",
        "after_switch",
        "start",
        "check",
        "notify",
    ] {
        assert!(
            out.contains(&format!("remote: -----> {stage}")),
            "no {stage} in:\n{out}"
        );
    }
    assert_eq!(host.pointed("production").as_deref(), Some(a.as_str()));
    let body = host.assert_serves(&a);
    assert!(body.contains("greeting=hello-over-ssh"), "{body}");
    host.wait_heartbeat(&a);
    let notify = host.notify_log();
    for want in [
        format!("event=deploy-notify-warmup stage=notify commit={a}"),
        format!("event=production-supervisor stage=after_switch commit={a}"),
        format!("event=deploy-notify stage=notify commit={a} ref=refs/tags/release-1"),
    ] {
        assert!(
            notify.contains(&want),
            "notify.log lacks {want:?}:\n{notify}"
        );
    }
    assert!(notify.contains("result=ok"), "{notify}");

    // `ssh HOST symdeploy --root ROOT status`: the binary under test, found on the session's PATH.
    let which = host.ssh("command -v symdeploy");
    assert_eq!(
        String::from_utf8_lossy(&which.stdout).trim(),
        bin().to_str().unwrap(),
        "{}",
        text(&which)
    );
    let root = host.root.display().to_string();
    let status = host.ssh(&format!("symdeploy --root {root} status"));
    assert!(status.status.success(), "{}", text(&status));
    let st = text(&status);
    assert!(st.contains(&format!("production  {}", short(&a))), "{st}");
    assert!(st.contains("lock        free"), "{st}");
    let json = host.ssh(&format!("symdeploy --root {root} status --json"));
    assert!(json.status.success(), "{}", text(&json));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status --json");
    assert_eq!(v["production"]["commit"], a.as_str());
    assert_eq!(v["warmup"]["commit"], a.as_str());
    assert_eq!(v["root"], root.as_str());

    // A second push warms up without touching production; migrations apply once.
    let b = project.change("www/robots.txt", "User-agent: *\n", "robots.txt");
    let out = project.push_ok(&[&url, "main"], Some(&ssh));
    assert!(
        out.contains("migrate: 0 applied, 2 already applied"),
        "{out}"
    );
    assert_eq!(host.pointed("warmup").as_deref(), Some(b.as_str()));
    assert_eq!(host.pointed("production").as_deref(), Some(a.as_str()));
    host.assert_serves(&a);
    let count = run(Command::new("sqlite3")
        .arg(host.root.join("common/db/app.sqlite"))
        .arg("SELECT count(*) FROM schema_migrations"));
    assert_eq!(
        String::from_utf8_lossy(&count.stdout).trim(),
        "2",
        "{}",
        text(&count)
    );
}

// ---------------------------------------------------------------------------
// 2. Zero downtime under load
// ---------------------------------------------------------------------------

/// One request of the probe loop.
struct Sample {
    start: Instant,
    end: Instant,
    result: Result<(u16, Option<String>), String>,
}

/// Sequential GET / requests, as fast as they go, until stopped.
fn start_probe(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let result = http_get(port, "/")
                .map(|(s, body)| (s, commit_of(&body).map(str::to_string)))
                .map_err(|e| e.to_string());
            samples.push(Sample {
                start,
                end: Instant::now(),
                result,
            });
            // wrk is the load; the probe only needs to be dense around each flip
            std::thread::sleep(Duration::from_millis(1));
        }
        samples
    })
}

/// Every change of ROOT/production with the time it was *seen*: readlink
/// every 200 µs. The time recorded is at or after the rename(2), never before.
fn start_flip_watcher(
    root: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(Instant, String)>> {
    std::thread::spawn(move || {
        let link = root.join("production");
        let read = || {
            std::fs::read_link(&link)
                .ok()
                .and_then(|t| t.to_str()?.strip_prefix("releases/").map(str::to_string))
                .unwrap_or_default()
        };
        let mut last = read();
        let mut flips = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let now = read();
            if now != last {
                flips.push((Instant::now(), now.clone()));
                last = now;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        flips
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
fn promote_and_rollback_under_load_drop_no_request() {
    if !stack_ready(&["web", "supervisor", "load", "app"]) {
        return;
    }
    let _machine = whole_machine();
    let stack = Stack::new();
    let host = stack.host(
        "h1",
        HostOpts {
            greeting: "under-load",
            ..Default::default()
        },
    );
    let project = Project::new(stack.path().join("work"));
    let repo = host.root.join("repository").display().to_string();
    let a = project.git(&["rev-parse", "HEAD"]);
    project.push_ok(&[&repo, "main"], None);
    host.symdeploy_ok(&["promote"]);
    host.assert_serves(&a);
    host.wait_heartbeat(&a);
    let b = project.change("www/robots.txt", "User-agent: *\n", "second release");
    project.push_ok(&[&repo, "main"], None);
    assert_eq!(host.pointed("warmup").as_deref(), Some(b.as_str()));
    assert_eq!(host.pointed("production").as_deref(), Some(a.as_str()));

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = start_flip_watcher(host.root.clone(), stop.clone());
    let probe = start_probe(host.http_port(), stop.clone());
    // Bounded: wrk ends by itself after 300 s even if this test hangs; we stop
    // it with SIGINT (it still prints its summary) once the rounds are done.
    let mut wrk = start_wrk(host.http_port(), 300);
    std::thread::sleep(Duration::from_millis(500));

    let started = Instant::now();
    // When each switch command started, in flip order (promote b, rollback to a, ...).
    let mut switch_started = Vec::new();
    let mut switch_took = Vec::new();
    let mut heartbeat_took = Vec::new();
    for round in 0..ROUNDS {
        for (target, args) in [(&b, vec!["promote", b.as_str()]), (&a, vec!["rollback"])] {
            let old_worker = pid_of(&host.heartbeat()).expect("worker heartbeat has a pid");
            let t0 = Instant::now();
            switch_started.push(t0);
            let out = host.symdeploy(&args);
            switch_took.push(t0.elapsed());
            assert!(
                out.status.success(),
                "round {round}: symdeploy {args:?} failed:\n{}",
                text(&out)
            );
            assert_eq!(host.pointed("production").as_deref(), Some(target.as_str()));
            // Right after the command returns, a new request gets the new release.
            host.assert_serves(target);
            heartbeat_took.push(host.wait_heartbeat(target));
            assert!(
                !Path::new(&format!("/proc/{old_worker}")).exists(),
                "round {round}: the previous worker (pid {old_worker}) still runs after {args:?}"
            );
        }
    }
    let rounds_took = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));

    let (wrk_out, wrk_status) = stop_wrk(&mut wrk);
    stop.store(true, Ordering::Relaxed);
    let samples = probe.join().unwrap();
    let flips = watcher.join().unwrap();

    // wrk: no error of any kind, only the two releases.
    let summary = wrk_out
        .lines()
        .find_map(|l| l.strip_prefix("wrk-commits: "))
        .unwrap_or_else(|| panic!("no wrk-commits line (wrk {wrk_status}):\n{wrk_out}"));
    let counts: BTreeMap<&str, u64> = summary
        .split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.rsplit_once('=')?;
            Some((k, v.parse().ok()?))
        })
        .collect();
    let requests = counts["requests"];
    assert!(requests > 0, "{wrk_out}");
    assert_eq!(
        counts["non2xx"], 0,
        "non-2xx responses under load:\n{wrk_out}"
    );
    assert_eq!(
        counts["socket_errors"], 0,
        "socket errors under load:\n{wrk_out}"
    );
    for (k, _) in counts.iter().filter(|(k, _)| k.starts_with("commit:")) {
        let c = &k["commit:".len()..];
        assert!(
            c == a || c == b,
            "a response from neither release ({k}):\n{wrk_out}"
        );
    }
    for (k, _) in counts.iter().filter(|(k, _)| k.starts_with("status:")) {
        assert_eq!(*k, "status:200", "{wrk_out}");
    }
    let (from_a, from_b) = (
        counts
            .get(format!("commit:{a}").as_str())
            .copied()
            .unwrap_or(0),
        counts
            .get(format!("commit:{b}").as_str())
            .copied()
            .unwrap_or(0),
    );
    assert!(
        from_a > 0 && from_b > 0,
        "both releases should have served:\n{wrk_out}"
    );

    // The flips the watcher saw: one per switch, alternating, each between its
    // command's start and the next command's start.
    let targets: Vec<&str> = flips.iter().map(|(_, c)| c.as_str()).collect();
    let expected: Vec<&str> = (0..ROUNDS).flat_map(|_| [b.as_str(), a.as_str()]).collect();
    assert_eq!(targets, expected, "production flips seen by the watcher");
    for (k, (seen, _)) in flips.iter().enumerate() {
        assert!(*seen >= switch_started[k]);
        if let Some(next) = switch_started.get(k + 1) {
            assert!(
                seen < next,
                "flip {k} seen only after the next switch began"
            );
        }
    }

    // The probe's own requests, against the flip times. The time a flip was
    // seen is at or after the rename(2); the true flip lies between the start
    // of its switch command and that time. For each response:
    // - it must be 200 from release a or b;
    // - release of the last flip seen before it ended: current, fine;
    // - otherwise it is the other release. If it ended after the *next* switch
    //   command had started, it is that switch's new release seen before the
    //   watcher noticed the flip: fine. Else it is the old release served after
    //   a flip (a request that nginx resolved before the rename and that ended
    //   after it). Such a request must have started before the flip was seen
    //   (a request starting later resolves the new link: if this fails, the
    //   flip is not atomic for new requests), and end - seen is the time it
    //   saw the old release after the flip (a slight underestimate: the
    //   watcher notices a flip within its 0.2 ms polling period, plus any
    //   scheduling delay under load).
    // We time the flip ourselves rather than trust "the promote completed":
    // the command returns seconds after the rename (start, check, notify).
    let mut stale_max = Duration::ZERO;
    let mut stale_count = 0;
    let mut early_count = 0;
    let mut probe_max = Duration::ZERO;
    for s in &samples {
        let (status, commit) = match &s.result {
            Ok((status, commit)) => (*status, commit.as_deref()),
            Err(e) => panic!("probe request failed: {e}"),
        };
        assert_eq!(status, 200, "probe got {status}");
        let commit = commit.expect("probe response names its commit");
        assert!(commit == a || commit == b, "probe: commit {commit}");
        probe_max = probe_max.max(s.end - s.start);
        // flips seen before this response ended, and the release production then pointed at
        let n = flips.iter().take_while(|(seen, _)| *seen <= s.end).count();
        let current = if n == 0 {
            a.as_str()
        } else {
            flips[n - 1].1.as_str()
        };
        if commit == current {
            continue;
        }
        if switch_started.get(n).is_some_and(|next| s.end >= *next) {
            early_count += 1;
            continue;
        }
        assert!(
            n > 0,
            "release {commit} served before any flip but production was {a}"
        );
        let flip_seen = flips[n - 1].0;
        assert!(
            s.start < flip_seen,
            "a request started {:.2} ms after flip {} was seen and still got the old release {commit}",
            ms(s.start - flip_seen),
            n - 1
        );
        stale_count += 1;
        stale_max = stale_max.max(s.end - flip_seen);
    }
    assert!(
        samples.len() > 100,
        "the probe made only {} requests",
        samples.len()
    );

    let errors = std::fs::read_to_string(&host.web["NGINX_ERROR_LOG"]).unwrap_or_default();
    let bad: Vec<&str> = errors
        .lines()
        .filter(|l| {
            ["[error]", "[crit]", "[alert]", "[emerg]"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "nginx logged errors during the switches:\n{}",
        bad.join("\n")
    );

    let avg = |v: &[Duration]| ms(v.iter().sum::<Duration>() / v.len() as u32);
    let max = |v: &[Duration]| ms(v.iter().copied().max().unwrap_or_default());
    say(&format!(
        "stack: under load: {ROUNDS} promote+rollback rounds ({} switches) in {:.1} s; \
         wrk served {requests} requests (non-2xx 0, socket errors 0; release {} {from_a}, release {} {from_b}); \
         probe {} requests, longest {:.1} ms; \
         longest a response showed the old release after the flip: {:.2} ms ({stale_count} such responses, all started before the flip; \
         {early_count} showed the new release just before the watcher saw the flip); \
         switch took avg {:.0} ms, max {:.0} ms; new worker heartbeat after the switch avg {:.0} ms, max {:.0} ms",
        2 * ROUNDS,
        rounds_took.as_secs_f64(),
        short(&a),
        short(&b),
        samples.len(),
        ms(probe_max),
        ms(stale_max),
        avg(&switch_took),
        max(&switch_took),
        avg(&heartbeat_took),
        max(&heartbeat_took),
    ));
}

// ---------------------------------------------------------------------------
// 3. Two hosts behind one remote
// ---------------------------------------------------------------------------

/// `<!-- snippet: NAME -->` blocks of README.md and the book (docs/src):
/// every copy, with the file it came from.
fn doc_snippets(name: &str) -> Vec<(String, String)> {
    let marker = format!("<!-- snippet: {name} -->");
    let mut found = Vec::new();
    let mut files = vec!["README.md".to_string()];
    let mut pages: Vec<String> = std::fs::read_dir(repo_path("docs/src"))
        .expect("docs/src")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/src/{n}"))
        .collect();
    pages.sort();
    files.extend(pages);
    for file in &files {
        let Ok(doc) = std::fs::read_to_string(repo_path(file)) else {
            continue;
        };
        let mut rest = doc.as_str();
        while let Some(i) = rest.find(&marker) {
            rest = &rest[i + marker.len()..];
            let open = rest.find("```").expect("a fenced block after the marker");
            let body_start = open + rest[open..].find('\n').expect("fence line") + 1;
            let body_len = rest[body_start..].find("\n```").expect("closing fence") + 1;
            found.push((
                file.to_string(),
                rest[body_start..body_start + body_len].to_string(),
            ));
            rest = &rest[body_start + body_len..];
        }
    }
    assert!(!found.is_empty(), "no `{marker}` in README.md or docs/src");
    found
}

/// The snippet with its example values replaced; each must occur in it.
fn instantiate(file: &str, snippet: &str, replace: &[(&str, String)]) -> String {
    let mut s = snippet.to_string();
    for (from, to) in replace {
        assert!(
            s.contains(from),
            "{file}: the snippet lost its example value {from:?}:\n{snippet}"
        );
        s = s.replace(from, to);
    }
    s
}

#[test]
fn two_hosts_one_remote_strict_mode() {
    if !stack_ready(&["web", "supervisor", "sshd", "app"]) {
        return;
    }
    let _machine = shared_machine();
    let stack = Stack::new();
    let h1 = stack.host(
        "h1",
        HostOpts {
            strict: true,
            ssh: true,
            greeting: "host-one",
            ..Default::default()
        },
    );
    let h2 = stack.host(
        "h2",
        HostOpts {
            strict: true,
            ssh: true,
            ssh_client_key: Some(h1.ssh_vars()["SSH_KEY"].clone()),
            greeting: "host-two",
            ..Default::default()
        },
    );
    for h in [&h1, &h2] {
        assert!(h.root.join("repository/hooks/pre-receive").exists());
        assert!(!h.root.join("repository/hooks/post-receive").exists());
    }
    let (url1, url2) = (h1.ssh_url(), h2.ssh_url());
    let ssh = h1.git_ssh_command();
    let project = Project::new(stack.path().join("work"));

    // The remote, set up by the commands of the book (several-hosts.md).
    let copies = doc_snippets("multi-host-remote");
    assert!(
        copies.iter().all(|(_, s)| *s == copies[0].1),
        "the copies of multi-host-remote differ"
    );
    for (file, snippet) in copies.iter().take(1) {
        let commands = instantiate(
            file,
            snippet,
            &[
                (
                    "ssh://deploy@web1.example.com/srv/myapp/repository",
                    url1.clone(),
                ),
                (
                    "ssh://deploy@web2.example.com/srv/myapp/repository",
                    url2.clone(),
                ),
            ],
        );
        for line in commands
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                words[0], "git",
                "{file}: multi-host-remote runs git only: {line}"
            );
            project.git(&words[1..]);
        }
    }
    assert_eq!(
        project.git(&["remote", "get-url", "--push", "--all", "deploy"]),
        format!("{url1}\n{url2}")
    );

    // 1. `git push deploy main` warms up both hosts. (Strict mode's flips run
    //    in git's reference-transaction hook, whose lines come without `remote:`.)
    let a = project.git(&["rev-parse", "HEAD"]);
    let out = project.push_ok(&["deploy", "main"], Some(&ssh));
    assert_eq!(
        out.matches(&format!("success: warmup -> releases/{}", &a[..12]))
            .count(),
        2,
        "{out}"
    );
    for h in [&h1, &h2] {
        assert_eq!(h.pointed("warmup").as_deref(), Some(a.as_str()));
        assert_eq!(h.git_ref("refs/heads/main").as_deref(), Some(a.as_str()));
    }

    // 2. Strict mode: host 2 lacks its local config, so its warm-up fails; the
    //    push exits non-zero showing host 2's error; host 2's branch stays.
    let h2_ini = h2.root.join("common/app/config/local.ini");
    let h2_ini_text = std::fs::read_to_string(&h2_ini).unwrap();
    std::fs::remove_file(&h2_ini).unwrap();
    let b = project.change("www/robots.txt", "User-agent: *\n", "second release");
    let pushed = project.push(&["deploy", "main"], Some(&ssh));
    let out = text(&pushed);
    assert!(
        !pushed.status.success(),
        "push should fail on host 2:\n{out}"
    );
    let missing = format!("{} is missing", h2_ini.display());
    assert!(
        out.contains(&missing),
        "host 2's error should be shown:\n{out}"
    );
    assert!(
        !out.contains(&format!(
            "{} is missing",
            h1.root.join("common/app/config/local.ini").display()
        )),
        "{out}"
    );
    assert!(
        out.contains("! [remote rejected] main -> main (pre-receive hook declined)"),
        "{out}"
    );
    // git reports host 1 before it talks to host 2: the error comes from host 2's push.
    let user_at = format!("{}@", h1.ssh_vars()["SSH_USER"]);
    let to_h1 = out
        .find(&format!("To {}", url1.replace(&user_at, "")))
        .unwrap_or_else(|| panic!("no `To {url1}` line:\n{out}"));
    assert!(out.find(&missing).unwrap() > to_h1, "{out}");
    assert_eq!(h1.pointed("warmup").as_deref(), Some(b.as_str()));
    assert_eq!(h1.git_ref("refs/heads/main").as_deref(), Some(b.as_str()));
    assert_eq!(h2.pointed("warmup").as_deref(), Some(a.as_str()));
    assert_eq!(
        h2.git_ref("refs/heads/main").as_deref(),
        Some(a.as_str()),
        "strict mode must keep host 2's branch"
    );

    // 3. A release tag of the commit both hosts warmed promotes both.
    project.git(&["tag", "release-1", &a]);
    let out = project.push_ok(&["deploy", "release-1"], Some(&ssh));
    assert_eq!(
        out.matches(&format!("success: production -> releases/{}", &a[..12]))
            .count(),
        2,
        "{out}"
    );
    for (h, greeting) in [(&h1, "host-one"), (&h2, "host-two")] {
        assert_eq!(h.pointed("production").as_deref(), Some(a.as_str()));
        let body = h.assert_serves(&a);
        assert!(body.contains(&format!("greeting={greeting}")), "{body}");
        h.wait_heartbeat(&a);
    }

    // 4. A tag of a commit host 2 cannot warm up: host 1 promotes it, host 2
    //    refuses the tag and keeps its production (the documented limit).
    project.git(&["tag", "-a", "-m", "second release", "release-2", &b]);
    let pushed = project.push(&["deploy", "release-2"], Some(&ssh));
    let out = text(&pushed);
    assert!(
        !pushed.status.success(),
        "host 2 should refuse release-2:\n{out}"
    );
    assert!(out.contains(&missing), "{out}");
    assert!(
        out.contains("! [remote rejected] release-2 -> release-2 (pre-receive hook declined)"),
        "{out}"
    );
    assert_eq!(
        out.matches(&format!("success: production -> releases/{}", &b[..12]))
            .count(),
        1,
        "{out}"
    );
    assert_eq!(h1.pointed("production").as_deref(), Some(b.as_str()));
    h1.assert_serves(&b);
    h1.wait_heartbeat(&b);
    assert_eq!(h2.pointed("production").as_deref(), Some(a.as_str()));
    h2.assert_serves(&a);
    assert_eq!(
        h2.git_ref("refs/tags/release-2"),
        None,
        "host 2 must not have the tag"
    );
    assert_eq!(
        h1.git_ref("refs/tags/release-2").as_deref(),
        Some(b.as_str())
    );

    // 5. The documented way out: fix host 2, push the branch and the tag again;
    //    host 1 is up to date, only host 2 acts.
    std::fs::write(&h2_ini, h2_ini_text).unwrap();
    let out = project.push_ok(&["deploy", "main"], Some(&ssh));
    assert_eq!(out.matches("success: warmup").count(), 1, "{out}");
    let out = project.push_ok(&["deploy", "release-2"], Some(&ssh));
    assert_eq!(
        out.matches(&format!("success: production -> releases/{}", &b[..12]))
            .count(),
        1,
        "{out}"
    );
    for h in [&h1, &h2] {
        assert_eq!(h.pointed("production").as_deref(), Some(b.as_str()));
        h.assert_serves(&b);
        h.wait_heartbeat(&b);
    }
}

// ---------------------------------------------------------------------------
// 4. The docs' snippets are the configs the servers run
// ---------------------------------------------------------------------------

/// Directive lines: comments, blank lines and spacing differences dropped.
fn directives(text: &str, comments: &[&str]) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !comments.iter().any(|c| l.starts_with(c)))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The lines of `text` from the line equal to `first` (trimmed) to its block's
/// end: the matching `}` for nginx, the next `[section]` for ini files.
fn section(text: &str, first: &str, braces: bool) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == first)
        .unwrap_or_else(|| panic!("no {first:?} in:\n{text}"));
    let mut out = vec![lines[start]];
    let mut depth = 1i32;
    for l in &lines[start + 1..] {
        if braces {
            depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
            out.push(l);
            if depth == 0 {
                break;
            }
        } else {
            if l.trim_start().starts_with('[') {
                break;
            }
            out.push(l);
        }
    }
    out.join("\n")
}

fn id(flag: &str) -> String {
    let out = run(Command::new("id").arg(flag));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn docs_snippets_are_the_configs_the_servers_run() {
    // deploy.toml: no server needed.
    let example = std::fs::read_to_string(repo_path("examples/php-app/deploy.toml")).unwrap();
    for (file, snippet) in doc_snippets("deploy-toml") {
        let got = instantiate(
            &file,
            &snippet,
            &[
                (
                    "supervisorctl stop all",
                    "supervisorctl -c @SUPERVISOR_CONF@ stop all".into(),
                ),
                (
                    "supervisorctl reload",
                    "supervisorctl -c @SUPERVISOR_CONF@ reload".into(),
                ),
                (
                    "http://localhost/health.php",
                    "http://127.0.0.1:@HTTP_PORT@/health.php".into(),
                ),
            ],
        );
        assert_eq!(
            directives(&got, &["#"]),
            directives(&example, &["#"]),
            "{file}: the deploy-toml snippet differs from examples/php-app/deploy.toml"
        );
    }

    // systemd: verified (not run) when systemd-analyze is there.
    for (file, snippet) in doc_snippets("systemd-unit") {
        let app = repo_path("examples/php-app");
        let unit = instantiate(
            &file,
            &snippet,
            &[
                ("User=www-data", format!("User={}", id("-un"))),
                ("/srv/myapp", app.display().to_string()),
            ],
        );
        let has = run(Command::new("sh").args(["-c", "command -v systemd-analyze"]));
        if !has.status.success() {
            // Not one of .ci/install-stack's programs: listed, never a failure.
            crate::common::cannot_here(
                "systemd-analyze is not installed: the systemd-unit snippet is not verified",
            );
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("myapp-worker.service");
        std::fs::write(&path, unit).unwrap();
        let out = run(Command::new("systemd-analyze").arg("verify").arg(&path));
        let t = text(&out);
        assert!(
            out.status.success() && !t.contains("myapp-worker.service"),
            "{file}: systemd-analyze verify rejects the systemd-unit snippet:\n{t}"
        );
    }

    if !stack_ready(&["web", "supervisor"]) {
        return;
    }
    let _machine = shared_machine();
    let stack = Stack::new();
    let host = stack.host(
        "h1",
        HostOpts {
            greeting: "docs",
            ..Default::default()
        },
    );
    let root = host.root.display().to_string();
    let state = host.state.display().to_string();

    let nginx = std::fs::read_to_string(&host.web["NGINX_CONF"]).unwrap();
    let generated = section(&nginx, "server {", true);
    for (file, snippet) in doc_snippets("nginx-server") {
        let got = instantiate(
            &file,
            &snippet,
            &[
                (
                    "listen 80;",
                    format!("listen 127.0.0.1:{};", host.http_port()),
                ),
                ("server_name example.com;", "server_name localhost;".into()),
                ("/srv/myapp", root.clone()),
                (
                    "unix:/run/php/myapp.sock",
                    format!("unix:{state}/php-fpm.sock"),
                ),
            ],
        );
        assert_eq!(
            directives(&got, &["#"]),
            directives(&generated, &["#"]),
            "{file}: the nginx-server snippet differs from the server block nginx runs ({})",
            host.web["NGINX_CONF"]
        );
    }
    assert!(generated.contains("$realpath_root$fastcgi_script_name"));
    assert!(!nginx
        .lines()
        .any(|l| l.trim_start().starts_with("open_file_cache")));

    let fpm = std::fs::read_to_string(&host.web["PHP_FPM_CONF"]).unwrap();
    let generated = section(&fpm, "[app]", false);
    for (file, snippet) in doc_snippets("php-fpm-pool") {
        let got = instantiate(
            &file,
            &snippet,
            &[
                ("[myapp]", "[app]".into()),
                ("user = www-data", format!("user = {}", id("-un"))),
                ("owner = www-data", format!("owner = {}", id("-un"))),
                ("group = www-data", format!("group = {}", id("-gn"))),
                ("/run/php/myapp.sock", format!("{state}/php-fpm.sock")),
                (
                    "/var/log/php/myapp-errors.log",
                    format!("{state}/php-errors.log"),
                ),
            ],
        );
        assert_eq!(
            directives(&got, &[";", "#"]),
            directives(&generated, &[";", "#"]),
            "{file}: the php-fpm-pool snippet differs from the pool php-fpm runs ({})",
            host.web["PHP_FPM_CONF"]
        );
    }

    let sup = std::fs::read_to_string(host.state.join("supervisord.conf")).unwrap();
    let generated = section(&sup, "[program:worker]", false);
    for (file, snippet) in doc_snippets("supervisord-program") {
        let got = instantiate(
            &file,
            &snippet,
            &[
                ("[program:myapp-worker]", "[program:worker]".into()),
                (
                    "/var/log/supervisor/myapp-worker.log",
                    format!("{state}/worker.out.log"),
                ),
                ("/srv/myapp", root.clone()),
            ],
        );
        assert_eq!(
            directives(&got, &[";", "#"]),
            directives(&generated, &[";", "#"]),
            "{file}: the supervisord-program snippet differs from the program supervisord runs"
        );
    }
    // nginx runs with that config (404: nothing is deployed yet).
    assert_eq!(host.get("/health.php").0, 404);
}

// ---------------------------------------------------------------------------
// 5. Previews
// ---------------------------------------------------------------------------

/// The server block nginx runs (the one holding `marker`) is the book's
/// snippet `name`, once the book's port, host name (`names`: the book's and
/// this test's), root and php-fpm socket are this host's.
fn assert_nginx_runs_the_snippet(host: &Host, marker: &str, name: &str, names: (&str, &str)) {
    let nginx = std::fs::read_to_string(&host.web["NGINX_CONF"]).unwrap();
    let start = nginx
        .find(marker)
        .unwrap_or_else(|| panic!("no server block with {marker} in nginx's config"));
    let block = section(
        &nginx[nginx[..start].rfind("server {").unwrap()..],
        "server {",
        true,
    );
    let root = host.root.display().to_string();
    let state = host.state.display().to_string();
    for (file, snippet) in doc_snippets(name) {
        let got = instantiate(
            &file,
            &snippet,
            &[
                (
                    "listen 80;",
                    format!("listen 127.0.0.1:{};", host.http_port()),
                ),
                (names.0, names.1.into()),
                ("/srv/myapp", root.clone()),
                (
                    "unix:/run/php/myapp.sock",
                    format!("unix:{state}/php-fpm.sock"),
                ),
            ],
        );
        assert_eq!(
            directives(&got, &["#"]),
            directives(&block, &["#"]),
            "{file}: the {name} snippet differs from the block nginx runs"
        );
    }
}

/// The example's deploy.toml with previews of feature/* branches, seeded
/// from ROOT/previews-seed (the preview's own local.ini).
fn with_previews(config: &str) -> String {
    format!("{config}\n[previews]\nbranches = \"feature/*\"\nseed = \"previews-seed\"\n")
}

#[test]
fn previews_are_served_by_slug_and_production_keeps_serving() {
    if !stack_ready(&["web", "supervisor", "app"]) {
        return;
    }
    let _machine = shared_machine();
    let stack = Stack::new();
    let host = stack.host(
        "h1",
        HostOpts {
            greeting: "production",
            edit: Some(with_previews),
            preview_domain: Some("preview.test"),
            ..Default::default()
        },
    );
    let seed = host.root.join("previews-seed/app/config");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("local.ini"), "greeting = preview\n").unwrap();
    // The server block nginx runs is the book's nginx-preview-server snippet.
    assert_nginx_runs_the_snippet(
        &host,
        "server_name ~^",
        "nginx-preview-server",
        ("preview\\.example\\.com", "preview\\.test"),
    );

    let project = Project::new(stack.path().join("work"));
    let url = host.root.join("repository").display().to_string();
    let a = project.git(&["rev-parse", "HEAD"]);
    project.push_ok(&[&url, "main"], None);
    host.symdeploy_ok(&["promote"]);
    host.assert_serves(&a);

    // Production keeps answering while preview pushes run.
    let stop = Arc::new(AtomicBool::new(false));
    let port = host.http_port();
    let probe = {
        let stop = stop.clone();
        let a = a.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n == 0 {
                let (status, body) = http_get(port, "/").expect("GET / during preview pushes");
                assert_eq!(status, 200, "{body}");
                assert_eq!(commit_of(&body), Some(a.as_str()), "{body}");
                n += 1;
            }
            n
        })
    };
    project.git(&["checkout", "-q", "-b", "feature/login-form"]);
    let b = project.change("www/login.html", "login form\n", "login form");
    let t = project.push_ok(&[&url, "feature/login-form"], None);
    assert!(
        t.contains("previews/feature-login-form/production ->"),
        "{t}"
    );
    let preview = |path: &str| {
        http_get_host(port, "feature-login-form.preview.test", path).expect("GET preview")
    };
    let (status, body) = preview("/");
    assert_eq!(status, 200, "{body}");
    assert_eq!(commit_of(&body), Some(b.as_str()), "{body}");
    assert!(
        body.contains("greeting=preview"),
        "the preview's own config: {body}"
    );
    assert_eq!(preview("/login.html"), (200, "login form\n".to_string()));
    // Production does not have the branch's file: its front controller answers.
    let (_, body) = http_get(port, "/login.html").unwrap();
    assert_eq!(commit_of(&body), Some(a.as_str()), "{body}");

    // A second push: the preview serves it at once.
    let c = project.change("www/login.html", "login form 2\n", "login form 2");
    project.push_ok(&[&url, "feature/login-form"], None);
    let (_, body) = preview("/");
    assert_eq!(commit_of(&body), Some(c.as_str()), "{body}");
    assert_eq!(preview("/login.html"), (200, "login form 2\n".to_string()));

    // Unknown slugs get 404.
    let (status, _) = http_get_host(port, "nope.preview.test", "/").unwrap();
    assert_eq!(status, 404);
    let (status, _) = http_get_host(port, "nope.preview.test", "/index.php").unwrap();
    assert_eq!(status, 404);

    // The branch deleted: the preview is gone, production untouched.
    project.push_ok(&[&url, ":feature/login-form"], None);
    let (status, _) = preview("/");
    assert_eq!(status, 404);
    stop.store(true, Ordering::Relaxed);
    let served = probe.join().expect("production kept serving");
    say(&format!(
        "stack: production answered {served} requests during the preview pushes, all with {}",
        short(&a)
    ));
    host.assert_serves(&a);
    assert_eq!(host.pointed("production").as_deref(), Some(a.as_str()));
    assert_eq!(host.pointed("warmup").as_deref(), Some(a.as_str()));
}

// ---------------------------------------------------------------------------
// The warm-up check through the www_warmup vhost
// ---------------------------------------------------------------------------

/// warmup.check through the warm-up vhost (Host: warmup.test) on the port
/// promote.check already names.
fn with_warmup_check(config: &str) -> String {
    let port = config
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("promote.check names the nginx port")
        .to_string();
    let notify = r#"notify = ["make deploy-notify-warmup"]"#;
    assert!(
        config.contains(notify),
        "examples/php-app/deploy.toml changed its warm-up notify"
    );
    config.replace(
        notify,
        &format!(
            "{notify}\ncheck = [\"curl -fsS -m 5 -H 'Host: warmup.test' http://127.0.0.1:{port}/\"]\ncheck_timeout = 3"
        ),
    )
}

#[test]
fn a_warmup_check_through_www_warmup_catches_a_php_fatal_while_production_answers() {
    if !stack_ready(&["web", "supervisor", "load", "app"]) {
        return;
    }
    let _machine = shared_machine();
    let stack = Stack::new();
    let host = stack.host(
        "h1",
        HostOpts {
            greeting: "warm",
            edit: Some(with_warmup_check),
            warmup_host: Some("warmup.test"),
            ..Default::default()
        },
    );
    // The server block nginx runs is docs/src/watch.md's nginx-warmup-server snippet.
    assert_nginx_runs_the_snippet(
        &host,
        "server_name warmup.test;",
        "nginx-warmup-server",
        ("warmup.example.com", "warmup.test"),
    );

    let project = Project::new(stack.path().join("work"));
    let url = host.root.join("repository").display().to_string();
    let a = project.git(&["rev-parse", "HEAD"]);
    let t = project.push_ok(&[&url, "main"], None);
    assert!(t.contains("-----> check"), "the warm-up ran its check: {t}");
    host.symdeploy_ok(&["promote"]);
    host.assert_serves(&a);
    let (status, body) = http_get_host(host.http_port(), "warmup.test", "/").unwrap();
    assert_eq!(
        (status, commit_of(&body)),
        (200, Some(a.as_str())),
        "{body}"
    );

    // Load on production while the broken release warms up.
    let mut wrk = start_wrk(host.http_port(), 120);
    std::thread::sleep(Duration::from_millis(500));
    let index = std::fs::read_to_string(project.dir.join("www/index.php")).unwrap();
    let broken = index.replacen(
        "$release = dirname(__DIR__);",
        "$release = dirname(__DIR__);\nundefined_function_in_the_new_release();",
        1,
    );
    assert_ne!(broken, index, "examples/php-app/www/index.php changed");
    let b = project.change("www/index.php", &broken, "a front page with a fatal error");
    let t = text(&project.push(&[&url, "main"], None));
    std::thread::sleep(Duration::from_millis(300));
    let (wrk_out, _) = stop_wrk(&mut wrk);

    assert!(
        t.contains(&format!(
            "remote: error: warm-up of {} failed: check step",
            short(&b)
        )),
        "{t}"
    );
    assert!(
        t.contains("500"),
        "curl names the status the fatal error gave: {t}"
    );
    assert_eq!(host.pointed("warmup").as_deref(), Some(a.as_str()));
    assert_eq!(host.pointed("production").as_deref(), Some(a.as_str()));
    let errors = std::fs::read_to_string(host.state.join("php-errors.log")).unwrap_or_default();
    assert!(
        errors.contains("undefined_function_in_the_new_release"),
        "the check reached the new release's PHP: {errors}"
    );
    let out = host.symdeploy(&["promote", &b]);
    assert!(
        !out.status.success(),
        "a failed release is never promoted: {}",
        text(&out)
    );
    host.assert_serves(&a);

    let summary = wrk_out
        .lines()
        .find_map(|l| l.strip_prefix("wrk-commits: "))
        .unwrap_or_else(|| panic!("no wrk-commits line:\n{wrk_out}"));
    let counts: BTreeMap<&str, u64> = summary
        .split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.rsplit_once('=')?;
            Some((k, v.parse().ok()?))
        })
        .collect();
    assert!(counts["requests"] > 0, "{wrk_out}");
    assert_eq!(counts["non2xx"], 0, "{wrk_out}");
    assert_eq!(counts["socket_errors"], 0, "{wrk_out}");
    assert_eq!(
        counts.get(format!("commit:{a}").as_str()).copied(),
        Some(counts["requests"]),
        "every response came from production's release: {wrk_out}"
    );
    say(&format!(
        "stack: production answered {} requests under wrk, 0 errors, while the warm-up check caught a PHP fatal in {}",
        counts["requests"],
        short(&b)
    ));
}
