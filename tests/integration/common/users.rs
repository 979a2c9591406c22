//! Other users, as a server has them: a throwaway deploy user made with
//! useradd (root only), commands run as a user with setpriv, php-fpm's
//! `www-data`, and an sshd started by `scripts/stack/start-sshd`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{bin, git_env, repo_path, run, text};

/// A system user made for one test, removed by its name when dropped. The
/// name is `prefix`, `tag` and the test process's pid (so that a test's
/// users are told apart from another run's, and found by name if a run dies).
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl TestUser {
    /// `useradd --create-home` and an unlocked password field.
    pub fn create(prefix: &str, tag: &str) -> TestUser {
        let name = format!("{prefix}{tag}{}", std::process::id() % 100_000);
        let out = run(Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", &name]));
        assert!(out.status.success(), "useradd {name}: {}", text(&out));
        // useradd leaves the password locked (`!`), and an sshd without PAM refuses
        // locked accounts even for key logins: `*` is "no password" without the lock.
        let out = run(Command::new("usermod").args(["-p", "*", &name]));
        assert!(out.status.success(), "usermod {name}: {}", text(&out));
        let user = nix::unistd::User::from_name(&name)
            .unwrap()
            .expect("the user useradd made");
        TestUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        }
    }

    /// `cmd` run as this user (setpriv: uid, gid, supplementary groups, HOME).
    pub fn cmd(&self, program: &str, dir: &Path) -> Command {
        as_user(self.uid, self.gid, &self.home, program, dir)
    }

    /// git as this user, isolated from the machine's git configuration.
    pub fn git(&self, dir: &Path, args: &[&str]) -> Output {
        let mut c = self.cmd("git", dir);
        c.args(args);
        git_env(&mut c);
        run(&mut c)
    }

    /// [`TestUser::git`] that must succeed; returns its output.
    pub fn git_ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.git(dir, args);
        assert!(
            out.status.success(),
            "git {args:?} as {}: {}",
            self.name,
            text(&out)
        );
        text(&out)
    }

    /// `symdeploy --root ROOT ARGS` as this user, in ROOT.
    pub fn symdeploy(&self, root: &Path, args: &[&str]) -> Output {
        let mut c = self.cmd(bin().to_str().unwrap(), root);
        c.arg("--root").arg(root).args(args);
        run(&mut c)
    }

    /// `symdeploy ARGS` as this user the way a login runs it: in its home,
    /// with only PATH, HOME and `env` in the environment.
    pub fn symdeploy_login(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(bin().to_str().unwrap(), &self.home);
        c.args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.home);
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    }

    /// The user's `~/.ssh/authorized_keys`.
    pub fn authorized_keys(&self) -> PathBuf {
        self.home.join(".ssh/authorized_keys")
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let out = Command::new("userdel")
            .args(["--remove", &self.name])
            .stdin(Stdio::null())
            .output();
        if let Ok(o) = out {
            // userdel -r says "mail spool not found" for users without one; harmless
            if !o.status.success() && o.status.code() != Some(12) {
                eprintln!("userdel {}: {}", self.name, text(&o));
            }
        }
    }
}

/// `program` as uid/gid (setpriv, with the user's supplementary groups and
/// HOME), in `dir`, without an inherited SYMDEPLOY_ROOT.
pub fn as_user(uid: u32, gid: u32, home: &Path, program: &str, dir: &Path) -> Command {
    // By absolute path: callers may give the child a PATH without it.
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("setpriv");
    let mut c = Command::new(setpriv);
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--init-groups")
        .arg("--")
        .arg(program)
        .current_dir(dir)
        .env("HOME", home)
        .env_remove("SYMDEPLOY_ROOT");
    c
}

/// Run `sh -c script` as www-data (uid 33 on Debian), like php-fpm would write.
pub fn as_web_user(script: &str) -> Output {
    let web = nix::unistd::User::from_name("www-data")
        .unwrap()
        .expect("www-data exists (Debian base system)");
    let mut c = as_user(
        web.uid.as_raw(),
        web.gid.as_raw(),
        Path::new("/"),
        "sh",
        Path::new("/"),
    );
    c.args(["-c", script]);
    run(&mut c)
}

/// A temporary directory every user can reach (tempdirs are 0700), named
/// `prefix…` under /tmp.
pub fn open_tempdir(prefix: &str) -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

/// An ed25519 key pair without passphrase, `dir/name` and `dir/name.pub`
/// (the public half readable by all); returns the private key's path.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let out = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key));
    assert!(out.status.success(), "ssh-keygen: {}", text(&out));
    std::fs::set_permissions(
        key.with_extension("pub"),
        std::fs::Permissions::from_mode(0o644),
    )
    .ok();
    key
}

/// An sshd started by `scripts/stack/start-sshd STATE PORT`, stopped (by
/// `stop-sshd STATE`) when dropped.
pub struct StopSshd(pub PathBuf);

impl Drop for StopSshd {
    fn drop(&mut self) {
        let _ = Command::new(repo_path("scripts/stack/stop-sshd"))
            .arg(&self.0)
            .stdin(Stdio::null())
            .output();
    }
}

/// `scripts/stack/start-sshd STATE PORT` for `user` with more `vars`
/// (STACK_SSH_*); panics unless it started. Returns the guard that stops it
/// and what the script printed (`KEY='value'` lines).
pub fn start_sshd(
    state: &Path,
    port: u16,
    user: &str,
    vars: &[(&str, &str)],
) -> (StopSshd, String) {
    let mut c = Command::new(repo_path("scripts/stack/start-sshd"));
    c.arg(state)
        .arg(port.to_string())
        .env("STACK_SSH_USER", user);
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = run(&mut c);
    let stop = StopSshd(state.to_path_buf());
    assert!(out.status.success(), "start-sshd: {}", text(&out));
    (stop, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A PATH for SSH sessions that finds the symdeploy under test first.
pub fn remote_path() -> String {
    let bin_dir = bin().parent().unwrap().display().to_string();
    format!("{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}
