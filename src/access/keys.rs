//! `symdeploy keys add|list|rm`: the deploy user's authorized_keys, one
//! line per person's key, each restricted to `symdeploy shell NAME`.
//!
//! The file is rewritten whole, written aside and renamed over the old one
//! (mode 600, synced), under a lock, so sshd never reads half a file and
//! two `keys add` at once lose nothing. Lines symdeploy did not write are
//! kept as they are, in their place.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::sys::output;

/// Key types sshd accepts in authorized_keys.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// The file sshd reads for the user running this (`~/.ssh/authorized_keys`).
pub(crate) fn default_file() -> Result<PathBuf> {
    let uid = nix::unistd::getuid();
    let home = match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.dir,
        _ => std::env::var_os("HOME")
            .map(PathBuf::from)
            .ok_or_else(|| Error::msg(format!("cannot find the home directory of uid {uid}")))?,
    };
    Ok(home.join(".ssh/authorized_keys"))
}

/// A public key: type and base64 body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    /// `ssh-ed25519`, …
    pub(crate) kind: String,
    /// The base64 blob.
    pub(crate) blob: String,
}

/// Read one public key from the text of a `.pub` file.
pub(crate) fn parse_public_key(text: &str) -> std::result::Result<PublicKey, String> {
    if text.contains("-----BEGIN") {
        return Err("it is a private key; give the public one (the .pub file)".into());
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let [line] = lines.as_slice() else {
        return Err(format!(
            "it holds {} keys; give one public key (the .pub file, one line)",
            lines.len()
        ));
    };
    let mut words = line.split_whitespace();
    let kind = words.next().unwrap_or_default();
    if !KEY_TYPES.contains(&kind) {
        return Err(format!(
            "it does not start with a key type sshd knows ({}); options in front of the key are written by symdeploy, not taken from the file",
            KEY_TYPES.join(", ")
        ));
    }
    let blob = words.next().unwrap_or_default();
    if blob.len() < 16
        || !blob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
    {
        return Err("its key data is not base64".into());
    }
    Ok(PublicKey {
        kind: kind.to_string(),
        blob: blob.to_string(),
    })
}

/// A line symdeploy wrote: whose key, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ours {
    /// The person.
    pub(crate) name: String,
    /// The key.
    pub(crate) key: PublicKey,
}

/// The line `keys add` writes for `name`'s `key`, with `binary` as the
/// forced command's program.
pub(crate) fn line_for(name: &str, key: &PublicKey, binary: &Path) -> String {
    format!(
        "restrict,command=\"{} shell {name}\" {} {} symdeploy:{name}",
        binary.display(),
        key.kind,
        key.blob
    )
}

/// If `line` is one `keys add` wrote, whose and which key it is.
pub(crate) fn ours(line: &str) -> Option<Ours> {
    let rest = line.strip_prefix("restrict,command=\"")?;
    let (command, rest) = rest.split_once("\" ")?;
    let mut cmd = command.rsplitn(3, ' ');
    let name = cmd.next()?;
    if cmd.next()? != "shell" || !cmd.next()?.ends_with("symdeploy") {
        return None;
    }
    let mut words = rest.split_whitespace();
    let key = PublicKey {
        kind: words.next()?.to_string(),
        blob: words.next()?.to_string(),
    };
    Some(Ours {
        name: name.to_string(),
        key,
    })
}

/// The key of any authorized_keys line (after its options), if it has one.
fn key_of(line: &str) -> Option<(String, String)> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    // Options come first and may hold quoted spaces: find the key type word.
    let words: Vec<&str> = t.split_whitespace().collect();
    let i = words.iter().position(|w| KEY_TYPES.contains(w))?;
    Some((words[i].to_string(), words.get(i + 1)?.to_string()))
}

/// `symdeploy keys add NAME FILE`.
pub(crate) fn add(file: Option<&Path>, name: &str, key_file: &Path) -> Result<()> {
    if !crate::access::valid_name(name) {
        return Err(Error::with_help(
            format!("\"{}\" is not a deployer's name", output::escape(name)),
            "use letters, digits, `.`, `_`, `-` or `@`, starting with a letter or digit (like `anna` or `ci`)",
        ));
    }
    let text = if key_file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).at("read", "stdin")?;
        s
    } else {
        std::fs::read_to_string(key_file).at("read", key_file)?
    };
    let key = parse_public_key(&text).map_err(|why| {
        Error::with_help(
            format!("{} is not an SSH public key: {why}", key_file.display()),
            "give the person's public key file, e.g. `symdeploy keys add anna anna.pub` (made with `ssh-keygen -t ed25519`)",
        )
    })?;
    let binary = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .at("find", "the symdeploy binary")?;
    if binary
        .display()
        .to_string()
        .contains(|c: char| c == '"' || c == '\\' || c.is_whitespace())
    {
        return Err(Error::with_help(
            format!("the symdeploy binary's path {} cannot go in a forced command (it has a quote, a backslash or white space)", binary.display()),
            "install symdeploy in a plain path like /usr/bin/symdeploy",
        ));
    }
    let path = target(file)?;
    let _lock = lock(&path)?;
    let lines = read_lines(&path)?;
    for (i, l) in lines.iter().enumerate() {
        match (ours(l), key_of(l)) {
            (Some(o), _) if o.key == key && o.name != name => {
                return Err(Error::with_help(
                    format!("that key is already {}'s (line {} of {}); one key is one person", o.name, i + 1, path.display()),
                    format!("remove it first with `symdeploy keys rm {}`, or give {name} a key of their own", o.name),
                ));
            }
            (None, Some((kind, blob))) if kind == key.kind && blob == key.blob => {
                return Err(Error::with_help(
                    format!("that key is already on line {} of {}, without symdeploy's forced command: sshd would use that line and let the key do anything", i + 1, path.display()),
                    "remove that line by hand first, then run `symdeploy keys add` again",
                ));
            }
            _ => {}
        }
    }
    let new = line_for(name, &key, &binary);
    let mut replaced = false;
    let mut out: Vec<String> = Vec::new();
    for l in lines {
        match ours(&l) {
            Some(o) if o.key == key => {
                if !replaced {
                    out.push(new.clone());
                    replaced = true;
                }
            }
            _ => out.push(l),
        }
    }
    if !replaced {
        out.push(new);
    }
    write_atomic(&path, &out)?;
    output::success(&format!(
        "{} {name}'s {} key in {}: it may push and run symdeploy as {name} (through `symdeploy shell {name}`), nothing else",
        if replaced { "kept" } else { "added" },
        key.kind,
        path.display()
    ));
    Ok(())
}

/// `symdeploy keys rm NAME`.
pub(crate) fn rm(file: Option<&Path>, name: &str) -> Result<()> {
    let path = target(file)?;
    let _lock = lock(&path)?;
    let lines = read_lines(&path)?;
    let before = lines.len();
    let out: Vec<String> = lines
        .into_iter()
        .filter(|l| ours(l).is_none_or(|o| o.name != name))
        .collect();
    let removed = before - out.len();
    if removed == 0 {
        return Err(Error::with_help(
            format!(
                "{} has no key named \"{}\"",
                path.display(),
                output::escape(name)
            ),
            "`symdeploy keys list` shows the names",
        ));
    }
    write_atomic(&path, &out)?;
    output::success(&format!(
        "removed {} of {name} from {}",
        output::count(removed as u64, "key", "keys"),
        path.display()
    ));
    Ok(())
}

/// `symdeploy keys list`: one line per key symdeploy wrote.
pub(crate) fn list(file: Option<&Path>) -> Result<()> {
    let path = target(file)?;
    let lines = read_lines(&path)?;
    let mut foreign = 0;
    for l in &lines {
        match ours(l) {
            Some(o) => println!("{:<20} {} {}", o.name, o.key.kind, fingerprint(&o.key)),
            None if key_of(l).is_some() => foreign += 1,
            None => {}
        }
    }
    if foreign > 0 {
        output::warning(&format!(
            "{} in {} not written by symdeploy (no forced command of ours): whoever holds them gets the deploy user's shell",
            output::count(foreign, "other key", "other keys"),
            path.display()
        ));
    }
    Ok(())
}

/// SHA256 fingerprint as ssh-keygen prints it, or the key's tail without it.
fn fingerprint(key: &PublicKey) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .and_then(|mut c| {
            if let Some(mut i) = c.stdin.take() {
                let _ = writeln!(i, "{} {}", key.kind, key.blob);
            }
            c.wait_with_output()
        });
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .find(|w| w.starts_with("SHA256:"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("…{}", &key.blob[key.blob.len().saturating_sub(12)..]))
}

/// The file to edit: the one given, else sshd's default; a symlink is
/// followed so that the link stays.
fn target(file: Option<&Path>) -> Result<PathBuf> {
    let path = match file {
        Some(f) => std::path::absolute(f).at("resolve", f)?,
        None => default_file()?,
    };
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t.lines().map(str::to_string).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Held while the file is read and replaced: a second `keys` command waits.
fn lock(path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).at("create directory", dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .at("restrict", dir)?;
        // Made by root for the deploy user: theirs, like their home.
        if nix::unistd::geteuid().is_root() {
            use std::os::unix::fs::MetadataExt;
            if let Some(home) = dir.parent().and_then(|h| std::fs::metadata(h).ok()) {
                std::os::unix::fs::chown(dir, Some(home.uid()), Some(home.gid()))
                    .at("chown", dir)?;
            }
        }
    }
    let lock_path = dir.join(".symdeploy-keys.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .at("open", &lock_path)?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::msg(format!("cannot lock {}: {e}", lock_path.display())))
}

/// Replace `path` by `lines` in one rename: written to a temporary file
/// beside it (mode 600 from the start), synced, renamed, the directory synced.
fn write_atomic(path: &Path, lines: &[String]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A writer killed halfway left its temporary file; with the lock held,
    // every one of them is such a leftover.
    let prefix = format!(".{name}.symdeploy-");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let tmp = dir.join(format!("{prefix}{}", std::process::id()));
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .at("create", &tmp)?;
    // Run as root for the deploy user (`--authorized-keys ~deploy/...`): the
    // file must stay the user's, or sshd, reading it as the user, cannot.
    if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(path).or_else(|_| std::fs::metadata(dir)) {
            std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid())).at("chown", &tmp)?;
        }
    }
    let half = text.len() / 2;
    let result = f
        .write_all(&text.as_bytes()[..half])
        .and_then(|()| {
            crate::sys::faults::point("keys-half-written");
            f.write_all(&text.as_bytes()[half..])
        })
        .and_then(|()| f.sync_all());
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("write", &tmp, e));
    }
    crate::sys::faults::point("keys-before-rename");
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("replace", path, e));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxf5fFZ1t2K7bS0qfQ7s8hHqjP2Lw6lq0bK8kRzvW7n anna@laptop";

    #[test]
    fn our_lines_read_back_and_others_do_not() {
        let key = parse_public_key(KEY).unwrap();
        let line = line_for("anna", &key, Path::new("/usr/bin/symdeploy"));
        assert_eq!(
            ours(&line),
            Some(Ours {
                name: "anna".into(),
                key: key.clone()
            })
        );
        assert_eq!(ours(KEY), None);
        assert_eq!(ours("command=\"/bin/sh\" ssh-ed25519 AAAA x"), None);
        assert_eq!(
            key_of(&format!("from=\"10.0.0.1\",no-pty {KEY}")),
            Some((key.kind.clone(), key.blob.clone()))
        );
    }

    #[test]
    fn only_one_public_key_is_taken() {
        assert!(parse_public_key(&format!("{KEY}\n{KEY}")).is_err());
        assert!(parse_public_key("-----BEGIN OPENSSH PRIVATE KEY-----\nxx").is_err());
        assert!(parse_public_key(&format!("command=\"id\" {KEY}")).is_err());
        assert!(parse_public_key("ssh-ed25519 not;base64!!!!!!!!!!!").is_err());
        assert!(parse_public_key("").is_err());
    }
}
