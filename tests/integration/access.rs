//! Who may deploy, through a real sshd and real `git push`: one deploy
//! user, three people's keys added with `symdeploy keys add` (`ci` may push
//! branches, `lead` may also release, `stranger` is in no list), `[access]`
//! in deploy.toml, and release tags signed with SSH keys
//! (`promote.signers`). Hostile requests are refused and change nothing.
//!
//! These need root (useradd, setpriv, sshd as another user): run as another
//! user they skip with a message; CI runs them as root. Users made here are
//! named `sd19…` and removed by that name when the test ends.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use crate::common::users::{keygen, remote_path, start_sshd, StopSshd, TestUser};
use crate::common::{bin, free_port, need_root, pointed_at, run, text};

/// Users made here are named `sd19…`.
fn deploy_user(tag: &str) -> TestUser {
    TestUser::create("sd19", tag)
}

const CONFIG: &str = r#"
shared = []
@HOOK@
[warmup]
build = []
links = []
migrate = []
notify = ['echo "warmup by=$SYMDEPLOY_BY" >> "$SYMDEPLOY_ROOT/notified"']
[promote]
stop = ["true"]
after_switch = []
start = ["true"]
notify = ['echo "promote by=$SYMDEPLOY_BY" >> "$SYMDEPLOY_ROOT/notified"']
@SIGNERS@
[access]
push = ["ci", "lead"]
release = ["lead"]
"#;

/// The people, their keys and a way to act as each over SSH.
struct World {
    _tmp: tempfile::TempDir,
    tmp: PathBuf,
    user: TestUser,
    root: PathBuf,
    work: PathBuf,
    port: u16,
    keys: PathBuf,
    _sshd: StopSshd,
}

impl World {
    fn new(tag: &str, strict: bool) -> World {
        let tmp_dir = tempfile::Builder::new()
            .prefix("sd19-access-")
            .tempdir_in("/tmp")
            .unwrap();
        let tmp = tmp_dir.path().to_path_buf();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        let user = deploy_user(tag);
        let root = tmp.join("root");
        std::fs::create_dir(&root).unwrap();
        let config = CONFIG
            .replace("@HOOK@", if strict { "hook = \"pre-receive\"" } else { "" })
            .replace("@SIGNERS@", "");
        std::fs::write(root.join("deploy.toml"), config).unwrap();
        let mut init = Command::new(bin());
        init.args(["init", root.to_str().unwrap(), "--user", &user.name]);
        if strict {
            init.arg("--strict");
        }
        let out = run(&mut init);
        assert!(out.status.success(), "init: {}", text(&out));
        assert!(
            text(&out).contains("pre-receive"),
            "init installs a pre-receive hook in both modes: {}",
            text(&out)
        );

        let keys = tmp.join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
        for who in ["ci", "lead", "stranger", "other", "foreign"] {
            keygen(&keys, who);
        }
        // A line the operator wrote by hand stays where it is.
        let ssh_dir = user.home.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        let foreign = std::fs::read_to_string(keys.join("foreign.pub")).unwrap();
        std::fs::write(
            user.authorized_keys(),
            format!("# the operator's own key\nfrom=\"10.9.9.9\" {foreign}"),
        )
        .unwrap();
        std::os::unix::fs::chown(&ssh_dir, Some(user.uid), Some(user.gid)).unwrap();
        std::os::unix::fs::chown(user.authorized_keys(), Some(user.uid), Some(user.gid)).unwrap();
        for who in ["ci", "lead", "stranger"] {
            let out = user.symdeploy_login(
                &[
                    "keys",
                    "add",
                    who,
                    keys.join(format!("{who}.pub")).to_str().unwrap(),
                ],
                &[],
            );
            assert!(out.status.success(), "keys add {who}: {}", text(&out));
        }

        let state = tmp.join("state");
        std::fs::create_dir(&state).unwrap();
        let port = free_port();
        let (stop, _) = start_sshd(
            &state,
            port,
            &user.name,
            &[
                ("STACK_SSH_USER_KEYS", "1"),
                ("STACK_SSH_ACCEPT_ENV", "SYMDEPLOY_BY SYMDEPLOY_ROOT GIT_*"),
                ("STACK_REMOTE_PATH", &remote_path()),
            ],
        );

        let work = tmp.join("work");
        std::fs::create_dir_all(work.join("www")).unwrap();
        std::fs::write(work.join("www/index.html"), "one\n").unwrap();
        let w = World {
            _tmp: tmp_dir,
            tmp,
            user,
            root,
            work,
            port,
            keys,
            _sshd: stop,
        };
        w.git(&["init", "-q", "-b", "main"]);
        w.git(&["add", "-A"]);
        w.git(&["commit", "-qm", "one"]);
        w
    }

    fn ssh(&self, who: &str) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o SendEnv=SYMDEPLOY_BY -o SendEnv=SYMDEPLOY_ROOT",
            self.keys.join(who).display()
        )
    }

    fn url(&self) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}/repository",
            self.user.name,
            self.port,
            self.root.display()
        )
    }

    fn git(&self, args: &[&str]) -> String {
        let out = run(crate::common::git_cmd(&self.work).args(args));
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
        text(&out)
    }

    fn commit(&self, msg: &str) -> String {
        std::fs::write(self.work.join("www/index.html"), format!("{msg}\n")).unwrap();
        self.git(&["commit", "-qam", msg]);
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    /// `git push` as `who` (its key), with extra environment (a client's
    /// SYMDEPLOY_BY, sent by SendEnv).
    fn push(&self, who: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = crate::common::git_cmd(&self.work);
        c.arg("push")
            .arg(self.url())
            .args(args)
            .env("GIT_SSH_COMMAND", self.ssh(who));
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    }

    /// `ssh deploy@host REQUEST` as `who`.
    fn ssh_run(&self, who: &str, request: Option<&str>, env: &[(&str, &str)]) -> Output {
        let mut c = Command::new("sh");
        let target = format!("{}@127.0.0.1", self.user.name);
        let line = match request {
            Some(r) => format!(
                "{} -p {} {target} {}",
                self.ssh(who),
                self.port,
                shell_quote(r)
            ),
            None => format!("{} -p {} {target}", self.ssh(who), self.port),
        };
        c.args(["-c", &line]);
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    }

    fn repo_has(&self, refname: &str) -> Option<String> {
        let out = run(Command::new("git")
            .arg("--git-dir")
            .arg(self.root.join("repository"))
            .args([
                "-c",
                "safe.directory=*",
                "rev-parse",
                "--verify",
                "-q",
                refname,
            ]));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn journal_json(&self) -> Vec<serde_json::Value> {
        let out = self.user.symdeploy_login(
            &[
                "--root",
                self.root.to_str().unwrap(),
                "log",
                "--json",
                "-n",
                "100",
            ],
            &[],
        );
        assert!(out.status.success(), "log --json: {}", text(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("log --json: {e}: {}", text(&out)))
    }

    fn set_config(&self, strict: bool, signers: bool) {
        let config = CONFIG
            .replace("@HOOK@", if strict { "hook = \"pre-receive\"" } else { "" })
            .replace(
                "@SIGNERS@",
                if signers {
                    "signers = \"allowed_signers\""
                } else {
                    ""
                },
            );
        std::fs::write(self.root.join("deploy.toml"), config).unwrap();
    }

    fn sign(&self, key: &str, tag: &str) {
        let signing = format!("user.signingkey={}", self.keys.join(key).display());
        self.git(&[
            "-c",
            "gpg.format=ssh",
            "-c",
            &signing,
            "tag",
            "-s",
            "-m",
            tag,
            tag,
        ]);
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn scenario(tag: &str, strict: bool) {
    let w = World::new(tag, strict);
    let root = w.root.to_str().unwrap().to_string();
    let c1 = w.git(&["rev-parse", "HEAD"]).trim().to_string();

    // ci's branch push warms up, and the name is ci everywhere
    let out = w.push("ci", &["main"], &[]);
    assert!(out.status.success(), "ci's push: {}", text(&out));
    assert_eq!(pointed_at(&w.root, "warmup").as_deref(), Some(c1.as_str()));
    let log = w.user.symdeploy_login(&["--root", &root, "log"], &[]);
    assert!(text(&log).contains(" by ci ("), "{}", text(&log));
    let notified = std::fs::read_to_string(w.root.join("notified")).unwrap();
    assert!(notified.contains("warmup by=ci"), "{notified}");

    // ci's release tag is refused before any ref moves; so is a spoofed name
    w.git(&["tag", "release-1"]);
    for (opts, env) in [
        (vec!["release-1"], vec![]),
        (
            vec!["-o", "SYMDEPLOY_BY=lead", "release-1"],
            vec![("SYMDEPLOY_BY", "lead")],
        ),
    ] {
        let out = w.push("ci", &opts, &env);
        let t = text(&out);
        assert!(!out.status.success(), "ci promoted: {t}");
        assert!(
            t.contains("refused: ci may not push refs/tags/release-1"),
            "{t}"
        );
        assert!(t.contains("release role") && t.contains("lead"), "{t}");
        assert_eq!(
            w.repo_has("refs/tags/release-1"),
            None,
            "the tag moved: {t}"
        );
        assert_eq!(pointed_at(&w.root, "production"), None);
    }
    // -o promote on a branch is a promote too
    let c2 = w.commit("two");
    let out = w.push("ci", &["-o", "promote", "main"], &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("with -o promote"), "{}", text(&out));
    assert_eq!(w.repo_has("refs/heads/main").as_deref(), Some(c1.as_str()));
    assert_eq!(pointed_at(&w.root, "warmup").as_deref(), Some(c1.as_str()));

    // a spoofed name (SendEnv, push option) on a branch push is still ci
    let out = w.push(
        "ci",
        &["-o", "SYMDEPLOY_BY=lead", "main"],
        &[("SYMDEPLOY_BY", "lead")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let last = w.journal_json();
    let warm = last
        .iter()
        .rev()
        .find(|e| e["commit"] == c2.as_str() && e["event"] == "warmup")
        .expect("c2's warm-up in the journal");
    assert_eq!(warm["by"], "ci", "{warm}");

    // the stranger may not even push a branch
    w.commit("three");
    let out = w.push("stranger", &["main"], &[]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("refused: stranger may not use this deploy root"),
        "{t}"
    );
    assert_eq!(w.repo_has("refs/heads/main").as_deref(), Some(c2.as_str()));

    // lead promotes with a tag (no signers yet)
    w.git(&["tag", "-d", "release-1"]);
    w.git(&["tag", "release-1", &c2]);
    let out = w.push("lead", &["release-1"], &[]);
    assert!(out.status.success(), "lead's release: {}", text(&out));
    assert_eq!(
        pointed_at(&w.root, "production").as_deref(),
        Some(c2.as_str())
    );
    let status = w.user.symdeploy_login(&["--root", &root, "status"], &[]);
    assert!(text(&status).contains("by lead"), "{}", text(&status));
    let status = w
        .user
        .symdeploy_login(&["--root", &root, "status", "--json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["production"]["by"], "lead", "{json}");
    assert_eq!(json["warmup"]["by"], "ci", "{json}");
    let metrics = w
        .user
        .symdeploy_login(&["--root", &root, "status", "--prometheus"], &[]);
    assert!(
        text(&metrics).contains(",by=\"lead\"}"),
        "{}",
        text(&metrics)
    );
    let releases = w.user.symdeploy_login(&["--root", &root, "releases"], &[]);
    assert!(text(&releases).contains("by ci"), "{}", text(&releases));

    // with promote.signers, only a good signature by a listed principal promotes
    let lead_pub = std::fs::read_to_string(w.keys.join("lead.pub")).unwrap();
    std::fs::write(w.root.join("allowed_signers"), format!("lead {lead_pub}")).unwrap();
    w.set_config(strict, true);
    let out = w.push("lead", &["main"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let c3 = w.git(&["rev-parse", "HEAD"]).trim().to_string();
    w.git(&["tag", "release-2"]);
    w.git(&["tag", "-a", "-m", "unsigned", "release-3"]);
    w.sign("other", "release-4");
    for (tag, why) in [
        ("release-2", "lightweight tag"),
        ("release-3", "no signature found"),
        ("release-4", "No principal matched"),
    ] {
        let out = w.push("lead", &[tag], &[]);
        let t = text(&out);
        assert!(!out.status.success(), "{tag} promoted: {t}");
        assert!(
            t.contains(&format!("refused: refs/tags/{tag} is not a release")) && t.contains(why),
            "{tag}: {t}"
        );
        assert_eq!(
            w.repo_has(&format!("refs/tags/{tag}")),
            None,
            "{tag} moved: {t}"
        );
        assert_eq!(
            pointed_at(&w.root, "production").as_deref(),
            Some(c2.as_str())
        );
    }
    w.sign("lead", "release-5");
    let out = w.push("lead", &["release-5"], &[]);
    assert!(
        out.status.success(),
        "lead's signed release: {}",
        text(&out)
    );
    assert_eq!(
        pointed_at(&w.root, "production").as_deref(),
        Some(c3.as_str())
    );
    let promote = w
        .journal_json()
        .into_iter()
        .rev()
        .find(|e| e["event"] == "promote" && e["phase"] == "end")
        .expect("the promote's end");
    assert_eq!(promote["by"], "lead", "{promote}");
    assert_eq!(promote["commit"], c3.as_str(), "{promote}");
    let signer = promote["signer"].as_str().unwrap_or_default();
    assert!(signer.starts_with("lead (SHA256:"), "{promote}");
    let log = w.user.symdeploy_login(&["--root", &root, "log"], &[]);
    assert!(
        text(&log).contains("signed by lead (SHA256:"),
        "{}",
        text(&log)
    );
    let notified = std::fs::read_to_string(w.root.join("notified")).unwrap();
    assert!(notified.contains("promote by=lead"), "{notified}");

    // symdeploy over SSH: reading is for both, promoting for lead, and
    // a promote without a signed tag needs --unsigned
    let out = w.ssh_run("ci", Some(&format!("symdeploy --root {root} status")), &[]);
    assert!(out.status.success(), "ci's status: {}", text(&out));
    let out = w.ssh_run(
        "ci",
        Some(&format!("symdeploy --root {root} rollback")),
        &[],
    );
    assert!(
        !out.status.success() && text(&out).contains("refused: ci may not roll production back"),
        "{}",
        text(&out)
    );
    assert_eq!(
        pointed_at(&w.root, "production").as_deref(),
        Some(c3.as_str())
    );
    let out = w.ssh_run(
        "stranger",
        Some(&format!("symdeploy --root {root} status")),
        &[],
    );
    assert!(
        !out.status.success() && text(&out).contains("refused: stranger may not"),
        "{}",
        text(&out)
    );
    let logs = || {
        std::fs::read_dir(w.root.join(".symdeploy/logs"))
            .unwrap()
            .count()
    };
    let logs_before = logs();
    let out = w.ssh_run(
        "lead",
        Some(&format!("symdeploy --root {root} promote {c1}")),
        &[],
    );
    assert!(
        !out.status.success()
            && text(&out).contains("needs a release tag on it with a good signature"),
        "{}",
        text(&out)
    );
    assert_eq!(logs(), logs_before, "a refused promote wrote a run log");
    assert_eq!(
        pointed_at(&w.root, "production").as_deref(),
        Some(c3.as_str())
    );
    let out = w.ssh_run(
        "lead",
        Some(&format!("symdeploy --root {root} rollback")),
        &[],
    );
    assert!(out.status.success(), "lead's rollback: {}", text(&out));
    assert_eq!(
        pointed_at(&w.root, "production").as_deref(),
        Some(c2.as_str())
    );
    let rollback = w
        .journal_json()
        .into_iter()
        .rev()
        .find(|e| e["event"] == "rollback")
        .expect("the rollback");
    assert_eq!(rollback["by"], "lead", "{rollback}");
    assert_eq!(rollback["ref"], "rollback", "{rollback}");
    let out = w.ssh_run(
        "lead",
        Some(&format!("symdeploy --root {root} promote --unsigned {c1}")),
        &[],
    );
    assert!(
        out.status.success(),
        "lead's unsigned promote: {}",
        text(&out)
    );
    assert_eq!(
        pointed_at(&w.root, "production").as_deref(),
        Some(c1.as_str())
    );
    let unsigned = w
        .journal_json()
        .into_iter()
        .rev()
        .find(|e| e["event"] == "promote" && e["phase"] == "end")
        .unwrap();
    assert_eq!(unsigned["unsigned"], true, "{unsigned}");

    // -o promote needs a signed release tag on the commit too, or -o unsigned
    let c4 = w.commit("four");
    let out = w.push("lead", &["-o", "promote", "main"], &[]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("refused: -o promote of") && t.contains("-o unsigned"),
        "{t}"
    );
    assert_eq!(
        w.repo_has("refs/heads/main").as_deref(),
        Some(c3.as_str()),
        "{t}"
    );
    assert_eq!(
        pointed_at(&w.root, "production").as_deref(),
        Some(c1.as_str())
    );
    let out = w.push("lead", &["-o", "promote", "-o", "unsigned", "main"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        pointed_at(&w.root, "production").as_deref(),
        Some(c4.as_str())
    );
    let last = w
        .journal_json()
        .into_iter()
        .rev()
        .find(|e| e["event"] == "promote" && e["phase"] == "end")
        .unwrap();
    assert!(
        last["commit"] == c4.as_str() && last["unsigned"] == true && last["by"] == "lead",
        "{last}"
    );

    hostile(&w, &root);
}

/// Requests a deploy key must not get through, each refused with a reason
/// and changing nothing.
fn hostile(w: &World, root: &str) {
    let before = std::fs::read_link(w.root.join("production")).unwrap();
    let marker = w.tmp.join("marker");
    std::fs::write(&marker, "still here").unwrap();
    std::fs::set_permissions(&w.tmp, std::fs::Permissions::from_mode(0o777)).unwrap();
    let outside = w.tmp.join("plain.git");
    let out = run(Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(&outside));
    assert!(out.status.success());
    let requests: Vec<(Option<String>, &str)> = vec![
        (None, "an interactive login"),
        (Some("id".into()), "`id` is not git's push or fetch"),
        (Some("rm -rf /".into()), "`rm` is not git's push or fetch"),
        (Some(format!("rm -rf {}", marker.display())), "`rm` is not"),
        (
            Some(format!("touch {}/pwned", w.tmp.display())),
            "`touch` is not",
        ),
        (Some("sh -c id".into()), "`sh` is not"),
        (
            Some(format!("git-receive-pack '{}'", outside.display())),
            "is not the repository of a symdeploy deploy root",
        ),
        (
            Some(format!("git-receive-pack '{root}/../root/repository'")),
            "contains `..`",
        ),
        (
            Some("git-receive-pack '/etc'".into()),
            "is not the repository",
        ),
        (
            Some(format!(
                "SYMDEPLOY_BY=lead git-receive-pack '{root}/repository'"
            )),
            "is not git's push or fetch",
        ),
        (
            Some(format!("git-receive-pack '{root}/repository'; id")),
            "shell syntax",
        ),
        (
            Some(format!("symdeploy --root {root} status; id")),
            "shell syntax",
        ),
        (
            Some(format!("symdeploy --root {root} export HEAD /tmp/x")),
            "for the server's operator",
        ),
        (
            Some(format!(
                "symdeploy keys add ci {}",
                w.keys.join("other.pub").display()
            )),
            "for the server's operator",
        ),
        (
            Some("symdeploy shell lead".into()),
            "for the server's operator",
        ),
    ];
    for (request, says) in &requests {
        let out = w.ssh_run("ci", request.as_deref(), &[("SYMDEPLOY_BY", "lead")]);
        let t = text(&out);
        assert!(!out.status.success(), "{request:?} was let through: {t}");
        assert!(
            t.contains("refused") && t.contains(says),
            "{request:?}: {t}"
        );
    }
    assert!(marker.exists() && !w.tmp.join("pwned").exists());
    assert_eq!(
        std::fs::read_link(w.root.join("production")).unwrap(),
        before
    );
    // the foreign key still logs in as before (its line was kept) and the
    // keys list names who is who
    let list = w.user.symdeploy_login(&["keys", "list"], &[]);
    let t = text(&list);
    assert!(
        t.contains("ci ") && t.contains("lead ") && t.contains("stranger "),
        "{t}"
    );
    assert!(t.contains("1 other key"), "{t}");
}

#[test]
fn roles_names_and_signed_releases_over_ssh_post_receive() {
    if need_root("useradd, setpriv, sshd") {
        scenario("p", false);
    }
}

#[test]
fn roles_names_and_signed_releases_over_ssh_strict() {
    if need_root("useradd, setpriv, sshd") {
        scenario("s", true);
    }
}

/// `keys add` twice, `keys rm`, a line written by hand, and a `keys add`
/// killed halfway through its write: every line that should stay does,
/// the file is never half-written and stays mode 600.
#[test]
fn keys_keep_foreign_lines_and_survive_a_kill() {
    if !need_root("useradd, setpriv, sshd") {
        return;
    }
    let user = deploy_user("k");
    let tmp = tempfile::Builder::new()
        .prefix("sd19-keys-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let keys = tmp.path();
    for who in ["anna", "ben", "carl", "foreign"] {
        keygen(keys, who);
    }
    let ak = user.authorized_keys();
    std::fs::create_dir_all(ak.parent().unwrap()).unwrap();
    let foreign = std::fs::read_to_string(keys.join("foreign.pub")).unwrap();
    let hand = format!("# by hand\nno-pty {}", foreign.trim());
    std::fs::write(&ak, format!("{hand}\n")).unwrap();
    std::fs::set_permissions(&ak, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(ak.parent().unwrap(), Some(user.uid), Some(user.gid)).unwrap();
    std::os::unix::fs::chown(&ak, Some(user.uid), Some(user.gid)).unwrap();
    let add = |who: &str, key: &str, env: &[(&str, &str)]| {
        user.symdeploy_login(
            &[
                "keys",
                "add",
                who,
                keys.join(format!("{key}.pub")).to_str().unwrap(),
            ],
            env,
        )
    };
    let mode = || std::fs::metadata(&ak).unwrap().permissions().mode() & 0o777;

    for _ in 0..2 {
        let out = add("anna", "anna", &[]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let text1 = std::fs::read_to_string(&ak).unwrap();
    assert!(
        text1.starts_with(&hand),
        "the hand-written lines stay first:\n{text1}"
    );
    assert_eq!(
        text1.matches("symdeploy:anna").count(),
        1,
        "added twice:\n{text1}"
    );
    assert!(
        text1.contains(&format!(
            "restrict,command=\"{} shell anna\" ssh-ed25519 ",
            std::fs::canonicalize(bin()).unwrap().display()
        )),
        "{text1}"
    );
    assert_eq!(mode(), 0o600);

    // one key is one person; a key already there without our forced command is refused
    let out = add("ben", "anna", &[]);
    assert!(
        !out.status.success() && text(&out).contains("already anna's"),
        "{}",
        text(&out)
    );
    let out = add("ben", "foreign", &[]);
    assert!(
        !out.status.success() && text(&out).contains("without symdeploy's forced command"),
        "{}",
        text(&out)
    );
    let out = user.symdeploy_login(
        &[
            "keys",
            "add",
            "a;id",
            keys.join("ben.pub").to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !out.status.success() && text(&out).contains("not a deployer's name"),
        "{}",
        text(&out)
    );
    // the private key, readable by mistake, is not taken
    std::fs::set_permissions(keys.join("ben"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = user.symdeploy_login(
        &["keys", "add", "ben", keys.join("ben").to_str().unwrap()],
        &[],
    );
    assert!(
        !out.status.success() && text(&out).contains("private key"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&ak).unwrap(),
        text1,
        "a refusal changed the file"
    );

    // killed halfway through the write, and just before the rename
    for point in ["keys-half-written", "keys-before-rename"] {
        let out = add("ben", "ben", &[("SYMDEPLOY_FAULT", point)]);
        assert!(!out.status.success(), "{point}: {}", text(&out));
        assert_eq!(
            std::fs::read_to_string(&ak).unwrap(),
            text1,
            "{point} left a changed file"
        );
        assert_eq!(mode(), 0o600);
    }
    let out = add("ben", "ben", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let leftovers: Vec<String> = std::fs::read_dir(ak.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".symdeploy-") && !n.ends_with(".lock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let out = user.symdeploy_login(&["keys", "rm", "anna"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let text2 = std::fs::read_to_string(&ak).unwrap();
    assert!(
        text2.starts_with(&hand)
            && !text2.contains("symdeploy:anna")
            && text2.contains("symdeploy:ben"),
        "{text2}"
    );
    assert_eq!(mode(), 0o600);
    let out = user.symdeploy_login(&["keys", "rm", "anna"], &[]);
    assert!(
        !out.status.success() && text(&out).contains("no key named"),
        "{}",
        text(&out)
    );
    // root editing the deploy user's file leaves it the user's (sshd reads it as the user)
    let out = run(Command::new(bin())
        .args(["keys", "--authorized-keys"])
        .arg(&ak)
        .args(["add", "carl"])
        .arg(keys.join("carl.pub")));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&ak).unwrap()),
        user.uid
    );
    assert_eq!(mode(), 0o600);
    let list = user.symdeploy_login(&["keys", "list"], &[]);
    assert!(
        text(&list).contains("carl")
            && text(&list).contains("ben")
            && text(&list).contains("SHA256:")
            && !text(&list).contains("anna"),
        "{}",
        text(&list)
    );
}

/// What a refused request says, pinned: `symdeploy shell NAME` run the way
/// sshd runs it (no root needed: nothing here is allowed, so nothing runs).
#[test]
fn refusals_say_why() {
    let mut out = String::new();
    for (name, request) in [
        ("ci", None),
        ("ci", Some("id")),
        ("ci", Some("rm -rf /")),
        ("ci", Some("git-receive-pack '/etc'")),
        (
            "ci",
            Some("git-receive-pack '/srv/app/../../etc/repository'"),
        ),
        ("ci", Some("git-upload-archive '/srv/app/repository'")),
        ("ci", Some("symdeploy --root /srv/app status; id")),
        ("ci", Some("symdeploy keys add lead /tmp/k.pub")),
        (
            "ci",
            Some("SYMDEPLOY_BY=lead git-receive-pack '/srv/app/repository'"),
        ),
        ("a;id", Some("id")),
    ] {
        let mut c = Command::new(bin());
        c.args(["shell", name])
            .env_remove("SSH_ORIGINAL_COMMAND")
            .env("HOME", "/nonexistent");
        if let Some(r) = request {
            c.env("SSH_ORIGINAL_COMMAND", r);
        }
        let o = run(&mut c);
        assert!(
            !o.status.success(),
            "{request:?} was let through: {}",
            text(&o)
        );
        out.push_str(&format!(
            "$ {name}: {}\n{}\n",
            request.unwrap_or("(login)"),
            text(&o)
        ));
    }
    insta::assert_snapshot!(out);
}

/// A root made before the access check existed (no pre-receive hook): the
/// first push with `[access]` is checked in post-receive (a refused ref
/// deploys nothing) and installs the check, so the next refusal comes
/// before git moves the ref. Local pushes carry the name the way the
/// forced command passes it on (SYMDEPLOY_BY in the hook's environment).
#[test]
fn an_older_root_gets_the_access_check_on_its_first_push() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(
        root.join("deploy.toml"),
        CONFIG.replace("@HOOK@", "").replace("@SIGNERS@", ""),
    )
    .unwrap();
    let out = run(Command::new(bin()).arg("init").arg(&root));
    assert!(out.status.success(), "{}", text(&out));
    let pre = root.join("repository/hooks/pre-receive");
    assert!(std::fs::read_to_string(&pre)
        .unwrap()
        .contains(" hook access"));
    std::fs::remove_file(&pre).unwrap();

    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("www")).unwrap();
    std::fs::write(work.join("www/index.html"), "x\n").unwrap();
    let git = |args: &[&str], by: &str| {
        let mut c = crate::common::git_cmd(&work);
        c.args(args).env("SYMDEPLOY_BY", by);
        run(&mut c)
    };
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &["commit", "-qm", "one"],
        &["tag", "release-1"],
        &["tag", "release-2"],
    ] {
        assert!(git(args, "ci").status.success());
    }
    let url = root.join("repository");
    let url = url.to_str().unwrap();
    let out = git(&["push", url, "main"], "ci");
    assert!(out.status.success(), "{}", text(&out));
    assert!(pointed_at(&root, "warmup").is_some());
    assert!(
        text(&out).contains("installed") && text(&out).contains("access check"),
        "{}",
        text(&out)
    );
    assert!(std::fs::read_to_string(&pre)
        .unwrap()
        .contains(" hook access"));
    // once more without it: the refusal then comes from post-receive
    std::fs::remove_file(&pre).unwrap();

    let out = git(&["push", url, "release-1"], "ci");
    let t = text(&out);
    assert!(
        t.contains("refused: ci may not push refs/tags/release-1"),
        "{t}"
    );
    assert!(t.contains("installed") && t.contains("access check"), "{t}");
    assert_eq!(pointed_at(&root, "production"), None, "{t}");
    assert!(std::fs::read_to_string(&pre)
        .unwrap()
        .contains(" hook access"));

    let out = git(&["push", url, "release-2"], "ci");
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("refused: ci may not push refs/tags/release-2"),
        "{t}"
    );
    let has = run(Command::new("git").arg("--git-dir").arg(url).args([
        "rev-parse",
        "--verify",
        "-q",
        "refs/tags/release-2",
    ]));
    assert!(!has.status.success(), "the tag moved: {t}");
    assert_eq!(pointed_at(&root, "production"), None);

    // the run log names who started it, first
    let logs: Vec<String> = std::fs::read_dir(root.join(".symdeploy/logs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        logs.iter().any(|l| l.starts_with("# symdeploy ")
            && l.lines().next().unwrap().contains(" warmup ")
            && l.lines().next().unwrap().contains(" by ci (")),
        "{logs:?}"
    );

    // lead, named the same way, may
    let out = git(&["push", url, "release-2"], "lead");
    assert!(out.status.success(), "{}", text(&out));
    assert!(pointed_at(&root, "production").is_some());
    let log = run(Command::new(bin()).arg("--root").arg(&root).arg("log"));
    assert!(
        text(&log).contains("promote  ok") && text(&log).contains("by lead ("),
        "{}",
        text(&log)
    );
}
