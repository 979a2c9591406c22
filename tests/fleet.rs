//! All-or-nothing deploys across a fleet, driven by Ansible.
//!
//! Three "hosts" on this machine: an sshd each on 127.0.0.2, .3 and .4 (free
//! ports, throwaway host keys), each with its own deploy user (`sdffleetN`,
//! created by the provisioning role, removed when the test ends) and its own
//! deploy root and symdeploy binary. They start empty: `ansible/provision.yml`
//! (the symdeploy role, over SSH as root) installs the binary, creates the
//! user, templates deploy.toml and runs `symdeploy init`. Then
//! `ansible/deploy.yml` runs from a clone of a small app, as an operator
//! would, reaching the hosts over SSH as their deploy users; the pushes go
//! from the clone over SSH too.
//!
//! Which host fails is decided by the commits: a host's build step is
//! `sh build.sh hostN`, its health check `sh check.sh hostN`, and each fails
//! while the commit holds `fail-build-hostN` / `fail-check-hostN`.
//!
//! Without ansible-playbook, sshd or root the test is skipped with a line
//! naming what is missing; in CI (`CI=true` or `SYMDEPLOY_REQUIRE_STACK=1`) that is a failure.
//! `SYMDEPLOY_SHOW_PLAYS=1` prints every deploy's Ansible output.

// Its own test binary, so that it runs alone: its timings (a 4 s check window, hosts cut off
// mid-switch) are not shared with the rest of the suite.
#[path = "integration/common/mod.rs"]
mod common;

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::common::{bin, git_cmd, repo_path, run, short, text, wait_for_within};

const HOSTS: usize = 3;

/// A line on the real stderr: libtest captures `eprintln!`, and a skip or the
/// measured figures must be visible in a plain `cargo test`.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// True when everything the fleet needs is here; else the test is skipped
/// with a line naming what is missing, or fails in CI.
fn fleet_ready() -> bool {
    let mut missing: Vec<String> = [
        "ansible-playbook",
        "sshd",
        "ssh",
        "ssh-keygen",
        "useradd",
        "userdel",
        "git",
    ]
    .into_iter()
    .filter(|p| find_program(p).is_none())
    .map(String::from)
    .collect();
    if !Path::new("/usr/bin/python3").is_file() {
        missing.push("/usr/bin/python3".into());
    }
    let mut why = Vec::new();
    if !missing.is_empty() {
        why.push(format!(
            "missing: {} (run .ci/install-stack as root)",
            missing.join(" ")
        ));
    }
    if !nix::unistd::Uid::effective().is_root() {
        why.push("not root (the test creates the hosts' deploy users)".into());
    }
    if why.is_empty() {
        return true;
    }
    let why = why.join("; ");
    common::skip(&why);
    false
}

/// A free port on `addr` (bound, then released).
fn free_port(addr: &str) -> u16 {
    let l = TcpListener::bind((addr, 0)).unwrap_or_else(|e| panic!("bind {addr}:0: {e}"));
    l.local_addr().unwrap().port()
}

struct Host {
    name: String,
    addr: String,
    port: u16,
    user: String,
    dir: PathBuf,
    root: PathBuf,
    bin: PathBuf,
    /// The sshd listener (0 once stopped).
    sshd_pid: AtomicI32,
}

impl Host {
    /// What `production` points at (a commit), read from the link itself.
    fn production(&self) -> Option<String> {
        let t = std::fs::read_link(self.root.join("production")).ok()?;
        Some(t.file_name()?.to_string_lossy().into_owned())
    }

    fn remote(&self) -> String {
        format!(
            "ssh://{}@{}:{}{}",
            self.user,
            self.addr,
            self.port,
            self.root.join("repository").display()
        )
    }

    /// Take the host off the network: stop its sshd listener and end the
    /// connections it serves (the per-connection sshd processes are its
    /// children, found by their parent pid). Processes the sessions started go on.
    fn cut_off(&self) {
        let listener = self.sshd_pid.swap(0, Ordering::SeqCst);
        if listener <= 0 {
            return;
        }
        let term = |pid: i32| {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        };
        term(listener);
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(listener) {
                term(pid);
            }
        }
    }

    /// The journal's finished runs (`symdeploy log --json`, read-only).
    fn log(&self) -> Vec<serde_json::Value> {
        let o = run(Command::new(bin())
            .args(["--root"])
            .arg(&self.root)
            .args(["log", "--json", "-n", "1000"]));
        assert!(o.status.success(), "log on {}: {}", self.name, text(&o));
        serde_json::from_slice(&o.stdout).expect("log --json is JSON")
    }

    /// Finished `event` runs of `commit` with their results.
    fn runs(&self, event: &str, commit: &str) -> Vec<String> {
        self.log()
            .iter()
            .filter(|e| e["event"] == event && e["commit"] == commit)
            .map(|e| e["result"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// When production was flipped to `commit` by its successful promote:
    /// the end entry's time less what ran after the flip.
    fn flip_time(&self, commit: &str) -> jiff::Timestamp {
        let log = self.log();
        let e = log
            .iter()
            .rev()
            .find(|e| e["event"] == "promote" && e["commit"] == commit && e["result"] == "ok")
            .unwrap_or_else(|| panic!("{}: no successful promote of {commit}", self.name));
        let end: jiff::Timestamp = e["time"].as_str().unwrap().parse().unwrap();
        let total = e["durations"]["total"].as_f64().expect("total");
        let flip = e["durations"]["flip"].as_f64().expect("flip");
        end.checked_sub(jiff::SignedDuration::from_secs_f64(total - flip))
            .unwrap()
    }
}

/// The three hosts, the control node's key and its clone; everything is torn
/// down on drop (also when the test fails).
struct Fleet {
    /// One fleet at a time: the machine has two cores, and three hosts each.
    _one: std::sync::MutexGuard<'static, ()>,
    tmp: tempfile::TempDir,
    hosts: Vec<Host>,
    key: PathBuf,
    app: PathBuf,
    inventory: PathBuf,
}

fn user_exists(name: &str) -> bool {
    run(Command::new("id").arg(name)).status.success()
}

fn remove_user(name: &str) {
    if !user_exists(name) {
        return;
    }
    // Sessions of the user end with their clients; give them a moment.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let o = run(Command::new("userdel").args(["-r", name]));
        if o.status.success() || !user_exists(name) {
            return;
        }
        if Instant::now() > deadline {
            say(&format!(
                "warning: could not remove user {name}: {}",
                text(&o)
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Held by the fleet under way (see `Fleet::_one`).
static ONE_FLEET: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Fleet {
    fn new() -> Fleet {
        Fleet::with_users("sdffleet")
    }

    /// A fleet whose deploy users are `<prefix>1`..: a test of its own never
    /// reuses another's users (removed and made again, they may not log in).
    fn with_users(prefix: &str) -> Fleet {
        let one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = tempfile::Builder::new()
            .prefix("sdf-fleet-")
            .tempdir()
            .expect("temp dir");
        // The deploy users must reach their roots below it.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let base = tmp.path().to_path_buf();
        let key = base.join("id_ed25519");
        let o = run(Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "symdeploy-fleet-test",
                "-f",
            ])
            .arg(&key));
        assert!(o.status.success(), "ssh-keygen: {}", text(&o));
        std::fs::copy(base.join("id_ed25519.pub"), base.join("root_keys")).unwrap();
        if !Path::new("/run/sshd").is_dir() {
            std::fs::create_dir_all("/run/sshd").unwrap();
            std::fs::set_permissions("/run/sshd", std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut hosts = Vec::new();
        for n in 1..=HOSTS {
            let user = format!("{prefix}{n}");
            // Left over by a run that was killed: start clean.
            remove_user(&user);
            let addr = format!("127.0.0.{}", n + 1);
            let dir = base.join(format!("host{n}"));
            std::fs::create_dir_all(&dir).unwrap();
            hosts.push(Host {
                name: format!("host{n}"),
                port: free_port(&addr),
                addr,
                root: dir.join("srv/app"),
                bin: dir.join("bin/symdeploy"),
                dir,
                user,
                sshd_pid: AtomicI32::new(0),
            });
        }
        let mut fleet = Fleet {
            _one: one,
            app: base.join("app"),
            inventory: base.join("inventory.yml"),
            tmp,
            hosts,
            key,
        };
        for i in 0..HOSTS {
            fleet.start_sshd(i);
        }
        // The binary under test without its debug info (a fifth of the size, copied
        // three times by the role).
        let o = run(Command::new("strip")
            .args(["--strip-debug", "-o"])
            .arg(fleet.base().join("symdeploy"))
            .arg(bin()));
        if !o.status.success() {
            std::fs::copy(bin(), fleet.base().join("symdeploy")).unwrap();
        }
        // Ansible's remote tmp on the "hosts" (this machine), for root and the deploy
        // users alike (like /tmp), instead of ~/.ansible/tmp in root's home.
        let remote_tmp = fleet.base().join("remote-tmp");
        std::fs::create_dir_all(&remote_tmp).unwrap();
        std::fs::set_permissions(&remote_tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::write(fleet.migrations_log(), "").unwrap();
        std::fs::set_permissions(
            fleet.migrations_log(),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        fleet.write_inventory();
        fleet.make_app();
        fleet
    }

    fn base(&self) -> &Path {
        self.tmp.path()
    }

    /// The "shared database": every run of warmup.migrate, on any host,
    /// appends `<host> <commit>` here.
    fn migrations_log(&self) -> PathBuf {
        self.base().join("migrations.log")
    }

    /// The hosts whose warmup.migrate ran for `commit`.
    fn migrated(&self, commit: &str) -> Vec<String> {
        std::fs::read_to_string(self.migrations_log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with(commit))
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
            .collect()
    }

    fn start_sshd(&mut self, i: usize) {
        let root_keys = self.base().join("root_keys");
        let h = &mut self.hosts[i];
        let hostkey = h.dir.join("host_key");
        let o = run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&hostkey));
        assert!(o.status.success(), "ssh-keygen: {}", text(&o));
        let conf = h.dir.join("sshd_config");
        let pidfile = h.dir.join("sshd.pid");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListenAddress {addr}\nAddressFamily inet\nHostKey {hostkey}\n\
                 PidFile {pid}\nAuthorizedKeysFile .ssh/authorized_keys\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nAllowUsers root {user}\nUsePAM no\n\
                 StrictModes no\nUseDNS no\nPrintMotd no\nMaxStartups 64:30:128\nMaxSessions 64\n\
                 LogLevel VERBOSE\nSubsystem sftp internal-sftp\n\
                 # root logs in (to provision) with the test's key, never root's own keys\n\
                 Match User root\n    AuthorizedKeysFile {root_keys}\n",
                port = h.port,
                addr = h.addr,
                hostkey = hostkey.display(),
                pid = pidfile.display(),
                user = h.user,
                root_keys = root_keys.display(),
            ),
        )
        .unwrap();
        let sshd = find_program("sshd").unwrap();
        let o = run(Command::new(sshd)
            .arg("-f")
            .arg(&conf)
            .arg("-E")
            .arg(h.dir.join("sshd.log")));
        assert!(o.status.success(), "sshd on {}: {}", h.name, text(&o));
        wait_for_within(
            &format!("{}'s sshd pid file", h.name),
            Duration::from_secs(10),
            || std::fs::read_to_string(&pidfile).is_ok_and(|s| s.trim().parse::<i32>().is_ok()),
        );
        let pid = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        h.sshd_pid.store(pid, Ordering::SeqCst);
        let (addr, port) = (h.addr.clone(), h.port);
        wait_for_within(
            &format!("sshd on {addr}:{port}"),
            Duration::from_secs(10),
            || std::net::TcpStream::connect((addr.as_str(), port)).is_ok(),
        );
    }

    fn ssh_command(&self) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o BatchMode=yes \
             -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            self.key.display()
        )
    }

    fn write_inventory(&self) {
        let pubkey = std::fs::read_to_string(self.base().join("id_ed25519.pub")).unwrap();
        // A person's key, added by the role with `symdeploy keys add ci`.
        let ci = self.base().join("ci_ed25519");
        if !ci.exists() {
            let o = run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f"])
                .arg(&ci));
            assert!(o.status.success(), "ssh-keygen: {}", text(&o));
        }
        let ci_pub = std::fs::read_to_string(ci.with_extension("pub")).unwrap();
        let mut hosts = serde_json::Map::new();
        for h in &self.hosts {
            hosts.insert(
                h.name.clone(),
                serde_json::json!({
                    "ansible_host": h.addr,
                    "ansible_port": h.port,
                    "ansible_user": h.user,
                    "symdeploy_user": h.user,
                    "symdeploy_root": h.root,
                    "symdeploy_bin": h.bin,
                    "symdeploy_remote": h.remote(),
                    "symdeploy_warmup_build": [format!("sh build.sh {}", h.name)],
                    "symdeploy_warmup_migrate": [format!(
                        "sh migrate.sh {} {}",
                        h.name,
                        self.migrations_log().display()
                    )],
                    "symdeploy_promote_check": [format!("sh check.sh {}", h.name)],
                }),
            );
        }
        let inv = serde_json::json!({
            "all": {
                "hosts": hosts,
                "vars": {
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "ansible_ssh_private_key_file": self.key,
                    "symdeploy_binary": self.base().join("symdeploy"),
                    "symdeploy_authorized_keys": [pubkey.trim()],
                    "symdeploy_keys": {"ci": ci_pub.trim()},
                    "symdeploy_git_ssh_command": self.ssh_command(),
                    "symdeploy_strict": true,
                    "symdeploy_shared": ["log"],
                    "symdeploy_warmup_links": [],
                    "symdeploy_warmup_notify": [],
                    "symdeploy_promote_stop": [],
                    "symdeploy_promote_after_switch": [],
                    "symdeploy_promote_start": [],
                    // Long enough that host 3's slow check is still running when the test
                    // takes the host off the network, on a loaded machine too.
                    "symdeploy_promote_check_timeout": 8,
                    "symdeploy_promote_notify": [],
                }
            }
        });
        // JSON is YAML: the yaml inventory plugin reads it.
        std::fs::write(&self.inventory, serde_json::to_string_pretty(&inv).unwrap()).unwrap();
    }

    fn git(&self, args: &[&str]) -> String {
        let o = run(git_cmd(&self.app)
            .args(args)
            .env("GIT_SSH_COMMAND", self.ssh_command()));
        assert!(o.status.success(), "git {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn make_app(&self) {
        std::fs::create_dir_all(self.app.join("www")).unwrap();
        self.git(&["init", "-q", "-b", "main"]);
        for (file, body) in [
            (
                "build.sh",
                "#!/bin/sh\n# the build step: fails on host $1 while the commit holds fail-build-$1\n\
                 if [ -e \"fail-build-$1\" ]; then echo \"build failed on $1: fail-build-$1 is in this commit\" >&2; exit 1; fi\n\
                 echo \"built for $1\" > built\n",
            ),
            (
                "check.sh",
                "#!/bin/sh\n# the health check: fails on host $1 while the commit holds fail-check-$1\n\
                 if [ -e \"fail-check-$1\" ]; then echo \"health check failed on $1\" >&2; exit 1; fi\n\
                 # slow-check-$1: a slow check, during which the test takes the host off the network\n\
                 if [ -e \"slow-check-$1\" ]; then touch \"$SYMDEPLOY_ROOT/checking\"; sleep 20; fi\n\
                 # ROOT/sick: the host turns unhealthy after the switch (the canary's watch sees it)\n\
                 if [ -e \"$SYMDEPLOY_ROOT/sick\" ]; then echo \"$1 is sick\" >&2; exit 1; fi\n",
            ),
            (
                "migrate.sh",
                "#!/bin/sh\n# the migrate step: one line per run in the fleet's one database\n\
                 echo \"$1 $SYMDEPLOY_COMMIT\" >> \"$2\"\n",
            ),
            ("www/index.html", "hello\n"),
        ] {
            std::fs::write(self.app.join(file), body).unwrap();
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-qm", "app"]);
    }

    /// A new commit on main: `add` files created, `remove` files removed.
    fn commit(&self, msg: &str, add: &[&str], remove: &[&str]) -> String {
        for f in add {
            std::fs::write(self.app.join(f), "x\n").unwrap();
        }
        for f in remove {
            std::fs::remove_file(self.app.join(f)).unwrap();
        }
        std::fs::write(self.app.join("www/index.html"), format!("{msg}\n")).unwrap();
        self.git(&["add", "-A"]);
        self.git(&["commit", "-qm", msg]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// `ansible-playbook` from the clone, as an operator would run it.
    fn playbook(&self, playbook: &str, extra: &[&str]) -> (bool, String, Duration) {
        let home = self.base().join("ansible-home");
        let cfg = self.base().join("ansible.cfg");
        if !cfg.exists() {
            // An empty config: nothing from /etc/ansible or ~/.ansible.cfg.
            std::fs::write(&cfg, "").unwrap();
            std::fs::create_dir_all(self.base().join("cp")).unwrap();
        }
        let mut cmd = Command::new("ansible-playbook");
        cmd.current_dir(&self.app)
            .env("PWD", &self.app)
            .arg("-i")
            .arg(&self.inventory)
            .arg(repo_path("ansible").join(playbook))
            .args(["-f", "10"])
            .args(extra)
            .env("ANSIBLE_CONFIG", &cfg)
            .env("ANSIBLE_HOME", &home)
            .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
            .env("ANSIBLE_REMOTE_TMP", self.base().join("remote-tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env(
                "ANSIBLE_SSH_ARGS",
                "-o ControlMaster=auto -o ControlPersist=300s -o UserKnownHostsFile=/dev/null \
                 -o StrictHostKeyChecking=no -o IdentitiesOnly=yes",
            )
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", self.base().join("cp"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null());
        let t = Instant::now();
        let o: Output = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run ansible-playbook: {e}"));
        (o.status.success(), text(&o), t.elapsed())
    }

    fn deploy(&self, rev: &str, extra: &[&str]) -> (bool, String) {
        let mut args = vec!["-e".to_string(), format!("rev={rev}")];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, took) = self.playbook("deploy.yml", &args);
        if std::env::var_os("SYMDEPLOY_SHOW_PLAYS").is_some() {
            say(&out);
        }
        say(&format!(
            "fleet: deploy.yml rev={} {} took {:.1}s ({})",
            short(rev),
            extra.join(" "),
            took.as_secs_f64(),
            if ok { "ok" } else { "failed" }
        ));
        (ok, out)
    }

    fn productions(&self) -> Vec<Option<String>> {
        self.hosts.iter().map(Host::production).collect()
    }

    fn assert_all_on(&self, commit: &str, out: &str) {
        for h in &self.hosts {
            assert_eq!(
                h.production().as_deref(),
                Some(commit),
                "{} should serve {}\n{out}",
                h.name,
                short(commit)
            );
        }
    }

    /// Last flip minus first flip to `commit` across the hosts, from their journals.
    fn skew(&self, commit: &str) -> Duration {
        let times: Vec<jiff::Timestamp> = self.hosts.iter().map(|h| h.flip_time(commit)).collect();
        let first = times.iter().min().unwrap();
        let last = times.iter().max().unwrap();
        Duration::try_from(last.duration_since(*first)).unwrap_or_default()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Ansible's ControlPersist masters (started by our ansible runs): end them,
        // so their sessions and the deploy users' processes go away.
        if let Ok(dir) = std::fs::read_dir(self.base().join("cp")) {
            for sock in dir.flatten() {
                let _ = Command::new("ssh")
                    .arg("-o")
                    .arg(format!("ControlPath={}", sock.path().display()))
                    .args(["-O", "exit", "fleet-host"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for h in &self.hosts {
            h.cut_off();
        }
        for h in &self.hosts {
            remove_user(&h.user);
        }
    }
}

#[test]
fn fleet_deploys_are_all_or_nothing() {
    if !fleet_ready() {
        return;
    }
    let fleet = Fleet::new();
    let test_started = Instant::now();

    // Hosts start empty: no user, no binary, no root. The role provisions them.
    for h in &fleet.hosts {
        assert!(!user_exists(&h.user) && !h.root.exists() && !h.bin.exists());
    }
    let (ok, out, took) = fleet.playbook(
        "provision.yml",
        &["-e", "ansible_user=root", "-e", "ansible_become_method=su"],
    );
    say(&format!(
        "fleet: provision.yml took {:.1}s",
        took.as_secs_f64()
    ));
    assert!(ok, "provisioning failed:\n{out}");
    for h in &fleet.hosts {
        assert!(
            user_exists(&h.user),
            "{}: no user {}\n{out}",
            h.name,
            h.user
        );
        let uid = nix::unistd::User::from_name(&h.user).unwrap().unwrap().uid;
        let meta = std::fs::metadata(&h.root).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            uid.as_raw(),
            "{}: the root belongs to the deploy user",
            h.name
        );
        assert!(
            h.root.join("repository/hooks/pre-receive").is_file(),
            "strict mode"
        );
        let toml = std::fs::read_to_string(h.root.join("deploy.toml")).unwrap();
        assert!(
            toml.contains(&format!("build = [\"sh build.sh {}\"]", h.name)),
            "{toml}"
        );
        assert!(toml.contains("check_timeout = 8"), "{toml}");
        let home = nix::unistd::User::from_name(&h.user).unwrap().unwrap().dir;
        let keys = std::fs::read_to_string(home.join(".ssh/authorized_keys")).unwrap();
        assert!(
            keys.contains(&format!("restrict,command=\"{} shell ci\" ssh-ed25519 ", h.bin.display()))
                && keys.contains("symdeploy-fleet-test"),
            "{}: the role adds ci's key restricted to `symdeploy shell ci`, and keeps the others:\n{keys}",
            h.name
        );
        let hook = std::fs::read_to_string(h.root.join("repository/hooks/pre-receive")).unwrap();
        assert!(
            hook.contains(&h.bin.display().to_string()),
            "the hook calls this host's binary:\n{hook}"
        );
    }

    // Provisioning again changes nothing.
    let (ok, out, took) = fleet.playbook(
        "provision.yml",
        &["-e", "ansible_user=root", "-e", "ansible_become_method=su"],
    );
    say(&format!(
        "fleet: provision.yml again took {:.1}s",
        took.as_secs_f64()
    ));
    assert!(ok, "{out}");
    for h in &fleet.hosts {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&h.name) && l.contains(" changed=0 ")),
            "provisioning {} again changed something:\n{out}",
            h.name
        );
    }

    // 1. A good deploy moves all three.
    let a = fleet.git(&["rev-parse", "HEAD"]);
    let (ok, out) = fleet.deploy("main", &["-e", "symdeploy_deployer=anna"]);
    assert!(ok, "a good deploy failed:\n{out}");
    fleet.assert_all_on(&a, &out);
    // The database migrated once, on the first host of the play; the others skipped it.
    assert_eq!(fleet.migrated(&a), ["host1"], "{out}");
    assert!(
        out.contains("; by anna"),
        "the summary names who ran it:\n{out}"
    );
    for h in &fleet.hosts {
        let promoted = h
            .log()
            .into_iter()
            .find(|e| e["event"] == "promote" && e["commit"] == a.as_str())
            .unwrap_or_else(|| panic!("{}: no promote of {a}", h.name));
        assert_eq!(promoted["by"], "anna", "{}: {promoted}", h.name);
    }
    assert!(
        out.contains(&format!(
            "host1: switched; production none -> {}",
            short(&a)
        )),
        "the summary says what moved:\n{out}"
    );

    // 2. Host 3's health check fails: all three end on the previous release.
    let b = fleet.commit("check fails on host3", &["fail-check-host3"], &[]);

    // (But first host 3's deploy.toml is broken: `symdeploy check` fails in the prepare
    // phase, with symdeploy's own words, and nothing is pushed anywhere.)
    let toml = fleet.hosts[2].root.join("deploy.toml");
    let good = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("colour = \"blue\"\n{good}")).unwrap();
    let (ok, out) = fleet.deploy(&b, &[]);
    std::fs::write(&toml, &good).unwrap();
    assert!(!ok, "the play must fail:\n{out}");
    assert!(out.contains("fatal: [host3]"), "{out}");
    assert!(out.contains("symdeploy check failed: error:"), "{out}");
    assert!(
        out.contains("colour"),
        "the check names the bad key:\n{out}"
    );
    for h in &fleet.hosts {
        assert!(h.runs("warmup", &b).is_empty(), "{} warmed up {b}", h.name);
    }
    fleet.assert_all_on(&a, &out);

    let (ok, out) = fleet.deploy(&b, &[]);
    assert!(!ok, "the play must fail:\n{out}");
    fleet.assert_all_on(&a, &out);
    assert_eq!(fleet.migrated(&b), ["host1"], "migrated once:\n{out}");
    assert!(
        out.contains(&format!("switch to {} failed on host3;", short(&b))),
        "{out}"
    );
    assert!(
        out.contains("fatal: [host3]"),
        "the recap names host3:\n{out}"
    );
    assert!(
        !out.contains("fatal: [host1]") && !out.contains("fatal: [host2]"),
        "{out}"
    );
    assert!(
        out.contains("health check failed on host3") || out.contains("check step"),
        "{out}"
    );
    for h in &fleet.hosts[..2] {
        // They really switched, then came back.
        assert_eq!(h.runs("promote", &b), ["ok"], "{}\n{out}", h.name);
        assert_eq!(h.runs("rollback", &a), ["ok"], "{}\n{out}", h.name);
    }
    assert_eq!(fleet.hosts[2].runs("promote", &b), ["rolled-back"]);

    // 3. Host 2's build fails: no host's production changes; the play names host 2.
    let c = fleet.commit(
        "build fails on host2",
        &["fail-build-host2"],
        &["fail-check-host3"],
    );
    let before = fleet.productions();
    let (ok, out) = fleet.deploy(&c, &[]);
    assert!(!ok, "the play must fail:\n{out}");
    assert_eq!(fleet.productions(), before, "{out}");
    assert!(
        out.contains("failed here, so no host was promoted: the push to"),
        "{out}"
    );
    assert!(
        out.contains("fatal: [host2]"),
        "the play names host 2:\n{out}"
    );
    assert!(
        out.contains("build step `sh build.sh host2` failed"),
        "with its error:\n{out}"
    );
    assert!(
        !out.contains("fatal: [host1]") && !out.contains("fatal: [host3]"),
        "{out}"
    );
    for h in &fleet.hosts {
        assert!(h.runs("promote", &c).is_empty(), "{} promoted {c}", h.name);
    }

    // 4. The fix, redeployed: all three move, all at once.
    let d = fleet.commit("fix the build on host2", &[], &["fail-build-host2"]);
    let (ok, out) = fleet.deploy(&d, &[]);
    assert!(ok, "the fixed deploy failed:\n{out}");
    fleet.assert_all_on(&d, &out);
    let ansible_skew = fleet.skew(&d);
    // The same deploy again changes nothing, and every task says so.
    let (ok, out) = fleet.deploy(&d, &[]);
    assert!(ok, "{out}");
    for h in &fleet.hosts {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&h.name) && l.contains(" changed=0 ")),
            "{} reports changes on a deploy that changed nothing:\n{out}",
            h.name
        );
        assert_eq!(
            h.runs("promote", &d),
            ["ok"],
            "one promote of d on {}",
            h.name
        );
    }

    // The same deploy done with three push URLs on one remote: pushes promote one host
    // after another.
    let hosts = &fleet.hosts;
    fleet.git(&["remote", "add", "fleet", &hosts[0].remote()]);
    for h in hosts {
        fleet.git(&["remote", "set-url", "--add", "--push", "fleet", &h.remote()]);
    }
    let e = fleet.commit("next release", &[], &[]);
    fleet.git(&["push", "-q", "fleet", "main"]);
    fleet.git(&["tag", "release-e"]);
    fleet.git(&["push", "-q", "fleet", "release-e"]);
    fleet.assert_all_on(&e, "");
    let push_skew = fleet.skew(&e);
    say(&format!(
        "fleet: flip skew (last host's production flip - first host's, from the journals), \
         empty stop/start steps, 3 hosts: ansible all-at-once {:.3} s; three push URLs {:.3} s",
        ansible_skew.as_secs_f64(),
        push_skew.as_secs_f64()
    ));

    // 5. Rolling, one host at a time, host 2's check fails: host 1 (switched) is rolled
    // back, host 3 is never touched.
    let f = fleet.commit("check fails on host2", &["fail-check-host2"], &[]);
    let (ok, out) = fleet.deploy(
        &f,
        &[
            "-e",
            "symdeploy_strategy=rolling",
            "-e",
            "symdeploy_batch=1",
        ],
    );
    assert!(!ok, "the play must fail:\n{out}");
    fleet.assert_all_on(&e, &out);
    assert!(
        out.contains(&format!("switch to {} failed on host2;", short(&f))),
        "{out}"
    );
    assert!(out.contains("fatal: [host2]"), "{out}");
    assert_eq!(hosts[0].runs("promote", &f), ["ok"], "{out}");
    assert_eq!(hosts[0].runs("rollback", &e), ["ok"], "{out}");
    assert_eq!(hosts[1].runs("promote", &f), ["rolled-back"], "{out}");
    assert!(
        hosts[2].runs("promote", &f).is_empty(),
        "host3 was touched:\n{out}"
    );
    assert!(out.contains("host3: not started"), "{out}");

    // 6. Host 3 is lost while it switches (its check is slow, and its sshd and the
    // connections it serves are ended meanwhile): it counts as failed, the others are
    // rolled back, and the summary says host 3's outcome is unknown.
    let g = fleet.commit(
        "host3 is lost while it switches",
        &["slow-check-host3"],
        &["fail-check-host2"],
    );
    let checking = hosts[2].root.join("checking");
    let (ok, out) = std::thread::scope(|s| {
        let deploy = s.spawn(|| fleet.deploy(&g, &[]));
        wait_for_within("host3's slow check", Duration::from_secs(120), || {
            checking.exists() || deploy.is_finished()
        });
        hosts[2].cut_off();
        deploy.join().unwrap()
    });
    assert!(checking.exists(), "host3 never ran its check:\n{out}");
    assert!(!ok, "the play must fail:\n{out}");
    for h in &hosts[..2] {
        assert_eq!(
            h.production().as_deref(),
            Some(e.as_str()),
            "{}\n{out}",
            h.name
        );
        assert_eq!(h.runs("promote", &g), ["ok"], "{}\n{out}", h.name);
    }
    assert!(
        out.contains(&format!("switch to {} failed on host3;", short(&g))),
        "{out}"
    );
    assert!(
        out.contains("host3: unreachable (whether it switched is unknown"),
        "{out}"
    );
    say(&format!(
        "fleet: host3, lost while switching, ended on {}",
        hosts[2]
            .production()
            .as_deref()
            .map(short)
            .unwrap_or("nothing")
    ));

    say(&format!(
        "fleet: whole story took {:.1}s",
        test_started.elapsed().as_secs_f64()
    ));
}

/// The one JSON object `promote --json` / `rollback --json` print on stdout.
fn report(o: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line of JSON on stdout:\n{}", text(o));
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {}", lines[0]))
}

/// What the Ansible module reads, without Ansible: every outcome of a switch.
#[test]
fn promote_and_rollback_json_say_what_moved() {
    let env = crate::common::Env::with_config(
        r#"
shared = []
[warmup]
build = []
links = []
notify = []
[promote]
stop = []
after_switch = []
start = []
notify = []
check = ["test ! -e fail-check"]
check_timeout = 1
"#,
    );
    let a = env.git(&["rev-parse", "HEAD"]);
    env.push_ok(&["main"]);

    // A first promote: from nothing to a.
    let o = env.symdeploy(&["promote", "--json", "main"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["event"], "promote");
    assert_eq!(r["result"], "ok");
    assert_eq!(r["changed"], true);
    assert_eq!(r["commit"], a.as_str());
    assert_eq!(r["production_before"], serde_json::Value::Null);
    assert_eq!(r["production_after"], a.as_str());
    assert_eq!(r["exit_code"], 0);
    let switched: jiff::Timestamp = r["switched_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        r["switched_at"].as_str().unwrap().len(),
        "2026-01-01T00:00:00.000Z".len()
    );
    // The journal dates the same flip.
    let end = env
        .journal()
        .into_iter()
        .rev()
        .find(|e| e["event"] == "promote" && e["phase"] == "end")
        .unwrap();
    let flip = end["durations"]["flip"].as_f64().unwrap();
    assert!(flip > 0.0 && flip <= end["durations"]["total"].as_f64().unwrap());
    let start = env
        .journal()
        .into_iter()
        .find(|e| e["run"] == end["run"] && e["phase"] == "start")
        .unwrap();
    let started: jiff::Timestamp = start["time"].as_str().unwrap().parse().unwrap();
    assert!(started <= switched, "{started} <= {switched}");

    // Again: nothing to do, exit 0, unchanged.
    let r = report(&env.symdeploy(&["promote", "--json", &a]));
    assert_eq!(
        (r["result"].as_str(), r["changed"].as_bool()),
        (Some("unchanged"), Some(false))
    );
    assert_eq!(r["switched_at"], serde_json::Value::Null);

    // A release whose check fails: switched, rolled back by itself, exit 1, symdeploy's error.
    env.write("fail-check", "x\n");
    let b = env.commit("check fails");
    env.push_ok(&["main"]);
    let o = env.symdeploy(&["promote", "--json", &b]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["result"], "rolled-back");
    assert_eq!(r["changed"], false);
    assert_eq!(r["commit"], b.as_str());
    assert_eq!(r["production_after"], a.as_str());
    assert!(r["switched_at"].is_string());
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("rolled back: check step `test ! -e fail-check` failed"),
        "{r}"
    );
    assert!(r["help"].as_str().unwrap().contains("marked bad"), "{r}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("error: "),
        "stderr as usual"
    );

    // A good c, then rollback --json to a.
    std::fs::remove_file(env.work.join("fail-check")).unwrap();
    let c = env.commit("fixed");
    env.push_ok(&["main"]);
    assert!(env.symdeploy(&["promote", &c]).status.success());
    let o = env.symdeploy(&["rollback", "--json", &a[..8]]);
    assert!(o.status.success(), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["event"], "rollback");
    assert_eq!(r["result"], "ok");
    assert_eq!(r["changed"], true);
    assert_eq!(r["production_before"], c.as_str());
    assert_eq!(r["production_after"], a.as_str());

    // Failing before any switch: a JSON report anyway, production untouched.
    let o = env.symdeploy(&["rollback", "--json", "0000000"]);
    assert_eq!(o.status.code(), Some(1));
    let r = report(&o);
    assert_eq!(
        (r["result"].as_str(), r["changed"].as_bool()),
        (Some("failed"), Some(false))
    );
    assert!(
        r["error"].as_str().unwrap().contains("no release matches"),
        "{r}"
    );
    assert_eq!(env.pointed("production").as_deref(), Some(a.as_str()));

    // --json does not go with --dry-run.
    let o = env.symdeploy(&["promote", "--json", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn a_canary_deploy_waits_for_the_canarys_watch_and_stops_if_it_rolls_back() {
    if !fleet_ready() {
        return;
    }
    let fleet = Fleet::with_users("sdfcanary");
    let (ok, out, _) = fleet.playbook(
        "provision.yml",
        &[
            "-e",
            "ansible_user=root",
            "-e",
            "ansible_become_method=su",
            "-e",
            "symdeploy_promote_watch=4",
            "-e",
            "symdeploy_promote_watch_interval=1",
        ],
    );
    assert!(ok, "provisioning failed:\n{out}");
    let toml = std::fs::read_to_string(fleet.hosts[0].root.join("deploy.toml")).unwrap();
    assert!(toml.contains("watch = 4"), "{toml}");

    // 1. The canary's watch passes: then the others switch.
    let a = fleet.git(&["rev-parse", "HEAD"]);
    let (ok, out) = fleet.deploy(&a, &["-e", "strategy=canary"]);
    assert!(ok, "a good canary deploy failed:\n{out}");
    fleet.assert_all_on(&a, &out);
    assert!(
        out.contains("host1: switched, the canary (its watch: ok)"),
        "the summary names the canary and its watch:\n{out}"
    );
    // The others switched after the canary's window ended.
    let canary_watch_end = fleet.hosts[0]
        .log()
        .iter()
        .rev()
        .find(|e| e["event"] == "watch" && e["commit"] == a.as_str())
        .and_then(|e| e["time"].as_str().map(str::to_string))
        .expect("the canary's watch ended");
    let canary_watch_end: jiff::Timestamp = canary_watch_end.parse().unwrap();
    for h in &fleet.hosts[1..] {
        assert!(
            h.flip_time(&a) > canary_watch_end,
            "{} switched before the canary's watch ended",
            h.name
        );
    }

    // 2. The canary turns sick during its watch: it is rolled back, nobody else moves.
    let b = fleet.commit("sick after the switch", &[], &[]);
    let canary = &fleet.hosts[0];
    let sick = canary.root.join("sick");
    let current = canary.root.join(".symdeploy/watch/current.json");
    let breaker = {
        let (sick, current, b) = (sick.clone(), current.clone(), b.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                let watching_b = std::fs::read_to_string(&current)
                    .is_ok_and(|t| t.contains(&format!("\"commit\": \"{b}\"")));
                if watching_b {
                    std::fs::write(&sick, "").unwrap();
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        })
    };
    let (ok, out) = fleet.deploy(&b, &["-e", "strategy=canary"]);
    assert!(
        breaker.join().unwrap(),
        "the canary never watched {b}:\n{out}"
    );
    let _ = std::fs::remove_file(&sick);
    assert!(
        !ok,
        "a canary rolled back by its watch must fail the deploy:\n{out}"
    );
    fleet.assert_all_on(&a, &out);
    assert!(
        out.contains("host1: failed, the canary (its watch: rolled-back)"),
        "{out}"
    );
    for h in &fleet.hosts[1..] {
        assert!(
            h.runs("promote", &b).is_empty(),
            "{} was switched after a failed canary:\n{out}",
            h.name
        );
        assert!(out.contains(&format!("{}: not started", h.name)), "{out}");
    }
    assert_eq!(canary.runs("watch", &b), ["rolled-back"]);
}
