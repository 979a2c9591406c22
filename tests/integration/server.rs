//! A server set up the way operators do it: a non-root deploy user owns the
//! root (`init --user`), pushes come as that user by file path and over SSH,
//! php-fpm's `www-data` writes the shared paths and the release's `writable`
//! dirs, and the deploy user's cleanup removes a release `www-data` wrote
//! into. Also: the README's Quick start, command by command.
//!
//! These need root (useradd, setpriv): run as another user they skip with a
//! message; CI runs them as root. Users made here are named `sd11…` and
//! removed (by that name) when the test ends.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::users::{
    as_web_user, open_tempdir as open_tempdir_in, remote_path, start_sshd, TestUser,
};
use crate::common::{bin, free_port, git_env, need_root, pointed_at, repo_path, run, skip, text};

/// Users made here are named `sd11…`.
fn test_user(tag: &str) -> TestUser {
    TestUser::create("sd11", tag)
}

fn open_tempdir() -> tempfile::TempDir {
    open_tempdir_in("sd11-server-")
}

fn owner(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .uid()
}

const SERVER_CONFIG: &str = r#"
shared = ["log", "www/data/images"]
web_user = "www-data"
writable = ["temp"]
lock_timeout = 120
[warmup]
build = ["mkdir -p temp/cache && echo warmed > temp/cache/boot"]
links = []
migrate = []
notify = []
[promote]
stop = ["true"]
after_switch = []
start = ["true"]
notify = []
"#;

/// The whole story of a server set up for several deployers, on one machine, as root playing the operator.
#[test]
fn deploy_user_pushes_by_file_and_ssh_and_cleans_up_what_www_data_wrote() {
    if !need_root("useradd, setpriv") {
        return;
    }
    let user = test_user("d");
    let tmp = open_tempdir();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("deploy.toml"), SERVER_CONFIG).unwrap();

    // init as root, giving the root to the deploy user
    let out = run(Command::new(bin())
        .args(["init", root.to_str().unwrap(), "--user", &user.name])
        .env_remove("SYMDEPLOY_ROOT"));
    assert!(out.status.success(), "init --user: {}", text(&out));
    assert!(!text(&out).contains("owned by root"), "{}", text(&out));
    for p in [
        root.clone(),
        root.join("repository"),
        root.join("repository/HEAD"),
        root.join("repository/hooks/post-receive"),
        root.join("releases"),
        root.join("common"),
        root.join(".symdeploy"),
        root.join("deploy.toml"),
        root.join("www"),
    ] {
        assert_eq!(
            owner(&p),
            user.uid,
            "{} is not owned by the deploy user",
            p.display()
        );
    }

    // the project, in a clone the deploy user owns (it is the one pushing)
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(user.uid), Some(user.gid)).unwrap();
    user.git_ok(&work, &["init", "-q", "-b", "main"]);
    for (path, body) in [
        ("www/index.html", "one\n"),
        ("www/data/images/logo.svg", "<svg/>\n"),
        ("temp/.gitignore", "*\n!.gitignore\n"),
    ] {
        let mut c = user.cmd("sh", &work);
        c.args([
            "-c",
            &format!("mkdir -p \"$(dirname {path})\" && printf '{body}' > {path}"),
        ]);
        assert!(run(&mut c).status.success());
    }
    user.git_ok(&work, &["add", "-A"]);
    user.git_ok(&work, &["commit", "-qm", "one"]);
    let c1 = user
        .git_ok(&work, &["rev-parse", "HEAD"])
        .trim()
        .to_string();

    // push by file path, as the deploy user
    let repo = root.join("repository");
    user.git_ok(&work, &["remote", "add", "deploy", repo.to_str().unwrap()]);
    let out = user.git(&work, &["push", "deploy", "main"]);
    assert!(
        out.status.success(),
        "file push as {}: {}",
        user.name,
        text(&out)
    );
    let pushed = text(&out);
    assert!(pushed.contains("writable for www-data"), "{pushed}");
    assert_eq!(
        pointed_at(&root, "warmup").as_deref(),
        Some(c1.as_str()),
        "{pushed}"
    );
    let rel1 = root.join("releases").join(&c1);
    assert_eq!(owner(&rel1), user.uid);

    // php-fpm's user writes the shared log and the release's temp/ (also the
    // cache dir the build step made as the deploy user)
    let out = as_web_user(&format!(
        "echo hit >> {log}/access.log && mkdir -p {log}/app && echo x > {log}/app/x.log \
         && mkdir -p {tmpd}/sessions && echo s > {tmpd}/sessions/sess_1 && echo c >> {tmpd}/cache/boot",
        log = root.join("common/log").display(),
        tmpd = rel1.join("temp").display(),
    ));
    assert!(
        out.status.success(),
        "www-data cannot write: {}",
        text(&out)
    );
    assert_eq!(owner(&rel1.join("temp/sessions/sess_1")), 33);
    // init again (an operator completing the root) leaves www-data's files to www-data
    let out = run(Command::new(bin())
        .args(["init", root.to_str().unwrap(), "--user", &user.name])
        .env_remove("SYMDEPLOY_ROOT"));
    assert!(out.status.success(), "second init --user: {}", text(&out));
    assert_eq!(owner(&root.join("common/log/app/x.log")), 33);
    assert_eq!(owner(&rel1.join("temp/sessions")), 33);
    assert_eq!(owner(&root.join("repository/HEAD")), user.uid);
    // and it cannot write elsewhere in the release
    let out = as_web_user(&format!("echo x > {}/www/hack.php", rel1.display()));
    assert!(!out.status.success(), "www-data could write the code");

    // check, as the deploy user: ownership and the web user's access are fine
    let out = user.symdeploy(&root, &["check"]);
    let t = text(&out);
    assert!(out.status.success(), "check as the deploy user: {t}");
    assert!(t.contains("owned by") && t.contains(&user.name), "{t}");
    assert!(t.contains("temp is writable for www-data"), "{t}");
    assert!(t.contains("common/log is writable for www-data"), "{t}");

    // push over SSH, logging in as the deploy user, and promote with a tag
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let port = free_port();
    let (_stop, vars) = start_sshd(
        &state,
        port,
        &user.name,
        &[
            ("STACK_SSH_EXACT_PATH", "1"),
            ("STACK_REMOTE_PATH", &remote_path()),
        ],
    );
    let ssh_cmd = var(&vars, "GIT_SSH_COMMAND");

    {
        let mut c = user.cmd("sh", &work);
        c.args(["-c", "printf 'two\\n' > www/index.html"]);
        assert!(run(&mut c).status.success());
    }
    user.git_ok(&work, &["commit", "-qam", "two"]);
    let c2 = user
        .git_ok(&work, &["rev-parse", "HEAD"])
        .trim()
        .to_string();
    user.git_ok(&work, &["tag", "release-2"]);
    // The ssh client runs as root (it holds the test key); the server side,
    // receive-pack, hook and steps, runs as the deploy user.
    let url = format!("ssh://{}@127.0.0.1:{port}{}", user.name, repo.display());
    let mut push = crate::common::git_cmd(&work);
    push.args(["-c", "safe.directory=*", "push", &url, "main", "release-2"])
        .env("GIT_SSH_COMMAND", &ssh_cmd);
    let out = run(&mut push);
    assert!(out.status.success(), "ssh push: {}", text(&out));
    assert_eq!(
        pointed_at(&root, "production").as_deref(),
        Some(c2.as_str()),
        "{}",
        text(&out)
    );
    let rel2 = root.join("releases").join(&c2);
    assert_eq!(
        owner(&rel2),
        user.uid,
        "the ssh push's release belongs to the deploy user"
    );
    let out = as_web_user(&format!("echo s > {}/temp/s2", rel2.display()));
    assert!(
        out.status.success(),
        "www-data cannot write release 2's temp: {}",
        text(&out)
    );

    // cleanup, as the deploy user, removes release 1 with www-data's files in it
    let out = user.symdeploy(&root, &["cleanup", "--keep", "1"]);
    assert!(
        out.status.success(),
        "cleanup as the deploy user: {}",
        text(&out)
    );
    assert!(!rel1.exists(), "release 1 is still there: {}", text(&out));
    assert!(rel2.exists());
    // common/ is never touched: www-data's log survives
    assert!(root.join("common/log/app/x.log").exists());

    // check notices a writable dir the web user lost, and names the setfacl to run
    let out = run(Command::new("setfacl").arg("-b").arg(rel2.join("temp")));
    assert!(out.status.success(), "setfacl -b: {}", text(&out));
    let out = user.symdeploy(&root, &["check"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("temp is not writable for the web user www-data"),
        "{t}"
    );
    assert!(t.contains("setfacl -R -m u:www-data:rwX"), "{t}");

    // a root given back to root is reported to the deploy user, with the chown to run
    std::os::unix::fs::chown(root.join("releases"), Some(0), Some(0)).unwrap();
    let out = user.symdeploy(&root, &["check"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains(&format!("chown -R {}:", user.name)), "{t}");
}

#[test]
fn init_as_root_without_user_warns_and_refuses_root_as_user() {
    if !need_root("useradd, setpriv") {
        return;
    }
    let tmp = open_tempdir();
    let root = tmp.path().join("root");
    let out = run(Command::new(bin()).args(["init", root.to_str().unwrap()]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("owned by root: pushes must then come as root"),
        "{}",
        text(&out)
    );
    // a binary the deploy user cannot reach (a private home, like /root/.cargo/bin) is named
    let user = test_user("p");
    let private = tmp.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    std::fs::copy(bin(), private.join("symdeploy")).unwrap();
    let out = run(Command::new(private.join("symdeploy")).args([
        "init",
        tmp.path().join("root2").to_str().unwrap(),
        "--user",
        &user.name,
    ]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{} cannot run", user.name))
            && text(&out).contains("no execute permission on"),
        "{}",
        text(&out)
    );
    let out = run(Command::new(bin()).args(["init", root.to_str().unwrap(), "--user", "root"]));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("must be a normal user"),
        "{}",
        text(&out)
    );
    let out = run(Command::new(bin()).args([
        "init",
        root.to_str().unwrap(),
        "--user",
        "sd11-nobody-here",
    ]));
    assert!(!out.status.success());
    assert!(text(&out).contains("useradd"), "{}", text(&out));
}

/// The README's Quick start, command by command, with the example names
/// replaced by this test's (user, root, binary). The package install is
/// CI's `scripts/deb-smoke`; the push goes by file path here (SSH is the test
/// above).
#[test]
fn readme_quick_start_works_top_to_bottom() {
    if !need_root("useradd, setpriv") {
        return;
    }
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let server = snippet(&readme, "quickstart-server");
    let client = snippet(&readme, "quickstart-client");
    let user = test_user("q");
    let tmp = open_tempdir();
    let root = tmp.path().join("myapp");
    let key = tmp.path().join("id.pub");
    std::fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyForTheQuickStartTest test\n",
    )
    .unwrap();
    let repo_dir = root.join("repository");
    // Word by word: `deploy` is the user (and the remote's name), `symdeploy`
    // the binary under test (runuser may reset PATH), /srv/myapp our root.
    let subst = |line: &str| -> String {
        line.split(' ')
            .map(|w| {
                let w = w.replace(
                    "ssh://deploy@server/srv/myapp/repository",
                    repo_dir.to_str().unwrap(),
                );
                let w = w
                    .replace("/srv/myapp", root.to_str().unwrap())
                    .replace("your_key.pub", key.to_str().unwrap());
                if w == "symdeploy" {
                    bin().to_str().unwrap().to_string()
                } else if w == "deploy" {
                    user.name.clone()
                } else if let Some(rest) = w.strip_prefix("~deploy") {
                    format!("~{}{rest}", user.name)
                } else if let Some(rest) = w.strip_prefix("deploy:") {
                    format!("{}:{rest}", user.name)
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    // A server without supervisord: PATH has what the Quick start and the
    // seed's make targets need, and no supervisorctl; init must leave it out.
    let shim = tmp.path().join("shim");
    std::fs::create_dir(&shim).unwrap();
    for prog in [
        "sh", "git", "make", "install", "cat", "chown", "runuser", "echo", "mkdir", "printf", "id",
        "env", "true", "dirname", "rm", "usermod",
    ] {
        let out = run(Command::new("sh").args(["-c", &format!("command -v {prog}")]));
        let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if found.starts_with('/') {
            std::os::unix::fs::symlink(&found, shim.join(prog)).unwrap();
        }
    }
    let path = shim.to_str().unwrap().to_string();
    // Locked, as useradd leaves a new account: the Quick start must unlock it
    // (sshd without PAM refuses a locked account's keys).
    let lock = run(Command::new("usermod").args(["-p", "!", &user.name]));
    assert!(lock.status.success(), "{}", text(&lock));
    let mut init_output = String::new();
    let mut ran = 0;
    for line in commands(&server) {
        if line.starts_with("apt-get install ./") {
            continue; // the package: scripts/deb-smoke in CI; here the binary under test
        }
        let line = if line.starts_with("useradd ") {
            // made (and removed) by the test under its own name
            continue;
        } else {
            subst(&line)
        };
        let out = run(Command::new("sh")
            .args(["-ec", &line])
            .env("PATH", &path)
            .current_dir(tmp.path()));
        assert!(
            out.status.success(),
            "Quick start (server) `{line}` failed: {}",
            text(&out)
        );
        if line.contains(" init ") {
            init_output = text(&out);
        }
        ran += 1;
    }
    assert!(
        ran >= 3,
        "too few server commands in the Quick start:\n{server}"
    );
    assert_eq!(
        owner(&root),
        user.uid,
        "after the Quick start the root belongs to the deploy user"
    );
    let shadow = run(Command::new("getent").args(["shadow", &user.name]));
    assert_eq!(
        text(&shadow).split(':').nth(1),
        Some("*"),
        "after the Quick start the deploy user's account is not locked"
    );
    assert!(
        init_output.contains("`supervisorctl` is not on PATH here: left out promote.stop"),
        "init did not say it left supervisorctl out:\n{init_output}"
    );
    assert!(
        std::fs::read_to_string(user.home.join(".ssh/authorized_keys"))
            .unwrap()
            .contains("KeyForTheQuickStartTest")
    );

    // the client side: a project clone of the deploy user's, pushed by path
    let work = tmp.path().join("project");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(user.uid), Some(user.gid)).unwrap();
    user.git_ok(&work, &["init", "-q", "-b", "main"]);
    let mut c = user.cmd("sh", &work);
    c.args(["-c", "mkdir -p www && echo hi > www/index.html"]);
    assert!(run(&mut c).status.success());
    // the seed's make targets, which the generated deploy.toml runs
    std::fs::write(work.join("Makefile"), crate::common::MAKEFILE).unwrap();
    user.git_ok(&work, &["add", "-A"]);
    user.git_ok(&work, &["commit", "-qm", "first"]);
    let head = user
        .git_ok(&work, &["rev-parse", "HEAD"])
        .trim()
        .to_string();
    for line in commands(&client) {
        let line = subst(&line);
        let mut c = user.cmd("sh", &work);
        c.args(["-ec", &line]).env("PATH", &path);
        git_env(&mut c);
        let out = run(&mut c);
        assert!(
            out.status.success(),
            "Quick start (client) `{line}` failed: {}",
            text(&out)
        );
    }
    assert_eq!(
        pointed_at(&root, "production").as_deref(),
        Some(head.as_str())
    );
}

/// The lines of a `<!-- snippet: NAME -->` block, comments stripped.
fn snippet(readme: &str, name: &str) -> String {
    let marker = format!("<!-- snippet: {name} -->");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"));
    let rest = &readme[start + marker.len()..];
    let open = rest.find("```").expect("a code block after the marker");
    let body = &rest[open + 3..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").expect("the block's end")].to_string()
}

fn commands(block: &str) -> Vec<String> {
    block
        .lines()
        .map(|l| match l.find("  #") {
            Some(i) => l[..i].trim().to_string(),
            None => l.trim().to_string(),
        })
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn var(vars: &str, name: &str) -> String {
    vars.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .map(|v| v.trim_matches('\'').to_string())
        .unwrap_or_else(|| panic!("start-sshd printed no {name}:\n{vars}"))
}

/// Without ACLs (a btrfs mounted `noacl`; ext4 lost that option in Linux 6.x) the warm-up falls back to the web
/// user's group with setgid directories, and says so in the push output.
#[test]
fn without_acls_the_warmup_falls_back_to_group_and_says_so() {
    if !need_root("useradd, setpriv") {
        return;
    }
    let tmp = open_tempdir();
    let image = tmp.path().join("noacl.img");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let f = std::fs::File::create(&image).unwrap();
    f.set_len(128 << 20).unwrap();
    drop(f);
    let out = Command::new("mkfs.btrfs")
        .args(["-q", "-f"])
        .arg(&image)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => return skip(&format!("mkfs.btrfs failed: {}", text(&o))),
        Err(e) => {
            return skip(&format!(
                "no mkfs.btrfs ({e}): .ci/install-stack installs btrfs-progs"
            ))
        }
    }
    let out = run(Command::new("mount")
        .args(["-o", "loop,noacl"])
        .arg(&image)
        .arg(&mnt));
    if !out.status.success() {
        return skip(&format!("cannot loop-mount here: {}", text(&out)));
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).output();
        }
    }
    let _umount = Unmount(mnt.clone());
    std::fs::set_permissions(&mnt, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let root = mnt.join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("deploy.toml"), SERVER_CONFIG).unwrap();
    let out = run(Command::new(bin()).args(["init", root.to_str().unwrap()]));
    assert!(out.status.success(), "{}", text(&out));
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let git = |args: &[&str]| {
        let out = run(crate::common::git_cmd(&work).args(args));
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
        text(&out)
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(work.join("www")).unwrap();
    std::fs::write(work.join("www/index.html"), "x\n").unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-qm", "one"]);
    let pushed = git(&["push", root.join("repository").to_str().unwrap(), "main"]);
    let head = git(&["rev-parse", "HEAD"]).trim().to_string();
    assert!(pushed.contains("no POSIX ACLs"), "{pushed}");
    assert_eq!(
        pointed_at(&root, "warmup").as_deref(),
        Some(head.as_str()),
        "{pushed}"
    );
    let temp = root.join("releases").join(&head).join("temp");
    let meta = std::fs::metadata(&temp).unwrap();
    assert_eq!(meta.gid(), 33, "temp/ belongs to www-data's group");
    assert_eq!(
        meta.mode() & 0o2070,
        0o2070,
        "temp/ is group-writable and setgid"
    );
    // and www-data can write there, through its group
    let out = as_web_user(&format!("echo s > {}/s", temp.display()));
    assert!(out.status.success(), "{}", text(&out));
}

/// The README's optional restriction: git-shell as the deploy user's login
/// shell, symdeploy its one extra command. Pushes and `ssh … symdeploy
/// status` work over SSH; a plain shell command does not.
#[test]
fn git_shell_deploy_user_pushes_and_runs_symdeploy_only() {
    if !need_root("useradd, setpriv") {
        return;
    }
    let found = String::from_utf8_lossy(
        &run(Command::new("sh").args(["-c", "command -v git-shell"])).stdout,
    )
    .trim()
    .to_string();
    let Some(git_shell) = [
        found.as_str(),
        "/usr/bin/git-shell",
        "/usr/lib/git-core/git-shell",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists()) else {
        return skip("no git-shell on this machine (Debian's git package has it)");
    };
    let user = test_user("g");
    // the README's three commands, with the binary under test for /usr/bin/symdeploy
    let out = run(Command::new("usermod").args(["--shell", git_shell, &user.name]));
    assert!(out.status.success(), "usermod --shell: {}", text(&out));
    let cmds = user.home.join("git-shell-commands");
    std::fs::create_dir(&cmds).unwrap();
    std::os::unix::fs::chown(&cmds, Some(user.uid), Some(user.gid)).unwrap();
    std::os::unix::fs::symlink(bin(), cmds.join("symdeploy")).unwrap();

    let tmp = open_tempdir();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("deploy.toml"), SERVER_CONFIG).unwrap();
    let out = run(Command::new(bin()).args(["init", root.to_str().unwrap(), "--user", &user.name]));
    assert!(out.status.success(), "{}", text(&out));

    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let port = free_port();
    // No STACK_SSH_EXACT_PATH: its ForceCommand would bypass the login shell;
    // no login check either: git-shell refuses its `echo login-ok`.
    let (_stop, _) = start_sshd(
        &state,
        port,
        &user.name,
        &[("STACK_SSH_SKIP_LOGIN_CHECK", "1")],
    );
    let key = state.join("ssh/id_ed25519");
    let ssh = format!(
        "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        key.display()
    );
    let ssh_run = |command: &str| {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            &format!("{ssh} -p {port} {}@127.0.0.1 {command}", user.name),
        ]);
        run(&mut c)
    };
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("www")).unwrap();
    std::fs::write(work.join("www/index.html"), "x\n").unwrap();
    let git = |args: &[&str]| {
        let out = run(crate::common::git_cmd(&work)
            .args(args)
            .env("GIT_SSH_COMMAND", &ssh));
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
        text(&out)
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "one"]);
    let head = git(&["rev-parse", "HEAD"]).trim().to_string();
    let url = format!(
        "ssh://{}@127.0.0.1:{port}{}/repository",
        user.name,
        root.display()
    );
    git(&["push", &url, "main"]);
    assert_eq!(pointed_at(&root, "warmup").as_deref(), Some(head.as_str()));

    let out = ssh_run(&format!("symdeploy --root {} status", root.display()));
    assert!(out.status.success(), "ssh symdeploy status: {}", text(&out));
    assert!(text(&out).contains(&head[..12]), "{}", text(&out));
    let out = ssh_run("id");
    assert!(!out.status.success(), "git-shell ran `id`: {}", text(&out));
}
