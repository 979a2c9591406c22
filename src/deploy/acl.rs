//! The web user's write access (deploy.toml `web_user`, `writable`).
//!
//! php-fpm runs as `www-data` and writes logs, uploads and caches; the files it
//! creates are owned by `www-data`, so without help the deploy user's cleanup
//! cannot delete an old release (`Permission denied`). Every warm-up therefore
//! gives the web user `rwx` on the shared paths in common/ and the `writable`
//! directories of the release with POSIX ACLs, plus *default* ACLs naming both
//! the web user and the deploy user: whatever either creates below inherits
//! entries that let the other delete it.
//!
//! ACLs are set with the `setfacl` program (Debian's `acl` package) rather
//! than a crate: the crates either link libacl (build-time headers on every
//! builder) or generate bindings with bindgen (libclang); `setfacl` does the
//! recursive walk and the mask recalculation the way operators know from
//! `getfacl`, and one process per path per warm-up costs nothing next to
//! composer. Where the filesystem has no ACLs, we fall back to group ownership
//! (the web user's group) with the setgid bit on directories, and say so.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, IoContext, Result};
use crate::sys::output;

/// A resolved `web_user`.
#[derive(Debug, Clone)]
pub(crate) struct WebUser {
    /// The name from deploy.toml.
    pub(crate) name: String,
    /// Its uid.
    pub(crate) uid: u32,
    /// Its primary group.
    pub(crate) gid: u32,
    /// Its primary and supplementary groups.
    pub(crate) groups: Vec<u32>,
}

/// How a path was made writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// POSIX ACLs (access + default).
    Acl,
    /// Group ownership + setgid: the filesystem has no ACLs.
    Group,
}

/// Look up `name` in the user database.
pub(crate) fn resolve(name: &str) -> Result<WebUser> {
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| Error::msg(format!("cannot look up the web user \"{name}\": {e}")))?
        .ok_or_else(|| {
            Error::with_help(
                format!("web_user \"{name}\" (deploy.toml) does not exist on this machine"),
                "set web_user to the user php-fpm / the web server runs as (`ps -o user= -C php-fpm8.2`), or remove the key",
            )
        })?;
    let groups = std::ffi::CString::new(name)
        .ok()
        .and_then(|c| nix::unistd::getgrouplist(&c, user.gid).ok())
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![user.gid.as_raw()]);
    Ok(WebUser {
        name: name.to_string(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
    })
}

/// Make every shared path in `common` and every `writable` directory of
/// `release` writable for `web`; reports what it did in the push output.
pub(crate) fn grant_all(
    web: &WebUser,
    common: &Path,
    shared: &[String],
    release: &Path,
    writable: &[String],
) -> Result<()> {
    let mut fallback: Vec<PathBuf> = Vec::new();
    for p in shared {
        let path = common.join(p);
        if std::fs::symlink_metadata(&path).is_err() {
            continue; // shared::link_all made it; a missing one is its business
        }
        // Shared data can be big (uploads): walk it only the first time;
        // after that the default ACLs cover whatever appears in it.
        let recursive = !has_default_entry(&path, web.uid);
        if grant(&path, web, recursive)? == Method::Group {
            fallback.push(path);
        }
    }
    for w in writable {
        let path = ensure_release_dir(release, w)?;
        if grant(&path, web, true)? == Method::Group {
            fallback.push(path);
        }
    }
    let n = shared.len() + writable.len();
    if fallback.is_empty() {
        output::detail(&format!(
            "{n} path(s) writable for {} (ACLs; default ACLs keep them deletable by {})",
            web.name,
            crate::sys::fs::current_user()
        ));
    } else {
        output::warning(&format!(
            "no POSIX ACLs on the filesystem of {}: fell back to group ownership ({} group, setgid directories); the deploy user can remove the web user's files only if it is in that group and the web user's umask keeps group write (e.g. UMask=0002 for php-fpm)",
            fallback
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            web.name
        ));
    }
    Ok(())
}

/// A `writable` directory inside the release, made if missing; refused when
/// any component is a symlink (it could point outside the release).
fn ensure_release_dir(release: &Path, rel: &str) -> Result<PathBuf> {
    let mut cur = release.to_path_buf();
    for part in rel.split('/') {
        cur.push(part);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::with_help(
                    format!(
                        "writable path \"{rel}\" goes through a symlink in the release: {}",
                        cur.display()
                    ),
                    "make it a real directory in the repository, or change `writable` in deploy.toml",
                ))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::with_help(
                    format!(
                        "writable path \"{rel}\" needs {} to be a directory, but it is a file in the release",
                        cur.display()
                    ),
                    "change `writable` in deploy.toml or the file in the repository",
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur).at("create directory", &cur)?;
            }
            Err(e) => return Err(Error::io("inspect", &cur, e)),
        }
    }
    Ok(cur)
}

/// The ACL entries that give `web` (and, through default entries, the
/// deploy user) what it needs on `path`.
fn acl_spec(web: &WebUser, is_dir: bool) -> String {
    // `X`: execute only for directories (and files already executable), so a
    // recursive grant does not make uploads executable.
    let mut spec = format!("u:{}:rwX", web.uid);
    if is_dir {
        spec.push_str(&format!(",d:u:{}:rwx", web.uid));
        let me = nix::unistd::geteuid().as_raw();
        if me != 0 && me != web.uid {
            spec.push_str(&format!(",d:u:{me}:rwx"));
        }
    }
    spec
}

/// Give `web` write access to `path` (and everything below, if `recursive`).
pub(crate) fn grant(path: &Path, web: &WebUser, recursive: bool) -> Result<Method> {
    let meta = std::fs::metadata(path).at("inspect", path)?;
    let mut cmd = Command::new("setfacl");
    if recursive && meta.is_dir() {
        cmd.arg("-R");
    }
    cmd.arg("-m")
        .arg(acl_spec(web, meta.is_dir()))
        .arg("--")
        .arg(path);
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::with_help(
                format!(
                    "web_user is set, but `setfacl` is not installed: cannot make {} writable for {}",
                    path.display(),
                    web.name
                ),
                "install it (`apt-get install acl`; the symdeploy package depends on it), then push again",
            ))
        }
        Err(e) => return Err(Error::io("run setfacl on", path, e)),
    };
    if out.status.success() {
        return Ok(Method::Acl);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Operation not supported") {
        group_fallback(path, web, recursive)?;
        return Ok(Method::Group);
    }
    Err(Error::with_help(
        format!(
            "cannot make {} writable for the web user {}: setfacl: {}",
            path.display(),
            web.name,
            stderr.trim()
        ),
        format!(
            "only its owner (or root) can change its ACLs: as root, `chown {}: {}`, then push again",
            crate::sys::fs::current_user(),
            path.display()
        ),
    ))
}

/// No ACLs: the web user's group owns the path, directories get group write
/// and setgid, so that what is created inside keeps that group.
fn group_fallback(path: &Path, web: &WebUser, recursive: bool) -> Result<()> {
    let meta = std::fs::symlink_metadata(path).at("inspect", path)?;
    if meta.file_type().is_symlink() {
        return Ok(()); // never follow a link out of the tree
    }
    if meta.gid() != web.gid {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(web.gid))).map_err(
            |e| {
                Error::with_help(
                    format!(
                        "cannot give {} to the group of the web user {} (no ACLs on this filesystem): {e}",
                        path.display(),
                        web.name
                    ),
                    format!(
                        "add the deploy user to that group (`usermod -aG {} {}`), or put the root on a filesystem with ACLs",
                        nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(web.gid))
                            .ok()
                            .flatten()
                            .map(|g| g.name)
                            .unwrap_or_else(|| web.gid.to_string()),
                        crate::sys::fs::current_user()
                    ),
                )
            },
        )?;
    }
    let mode = meta.permissions().mode() & 0o7777;
    let want = if meta.is_dir() {
        mode | 0o2070
    } else {
        mode | 0o060
    };
    if want != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(want)).at("chmod", path)?;
    }
    if recursive && meta.is_dir() {
        for entry in std::fs::read_dir(path).at("read directory", path)? {
            let entry = entry.at("read directory", path)?;
            group_fallback(&entry.path(), web, true)?;
        }
    }
    Ok(())
}

/// One entry of `getfacl -n` output.
#[derive(Debug, Default)]
struct Acl {
    owner: Option<u8>,
    users: Vec<(u32, u8)>,
    group_owner: Option<u8>,
    groups: Vec<(u32, u8)>,
    mask: Option<u8>,
    other: Option<u8>,
    default_users: Vec<u32>,
}

fn perm_bits(s: &str) -> u8 {
    let b = s.as_bytes();
    let mut p = 0;
    if b.first() == Some(&b'r') {
        p |= 4;
    }
    if b.get(1) == Some(&b'w') {
        p |= 2;
    }
    if b.get(2) == Some(&b'x') {
        p |= 1;
    }
    p
}

fn parse_getfacl(text: &str) -> Acl {
    let mut acl = Acl::default();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let parts: Vec<&str> = line.split(':').collect();
        match parts.as_slice() {
            ["user", "", p] => acl.owner = Some(perm_bits(p)),
            ["user", id, p] => {
                if let Ok(id) = id.parse() {
                    acl.users.push((id, perm_bits(p)))
                }
            }
            ["group", "", p] => acl.group_owner = Some(perm_bits(p)),
            ["group", id, p] => {
                if let Ok(id) = id.parse() {
                    acl.groups.push((id, perm_bits(p)))
                }
            }
            ["mask", "", p] => acl.mask = Some(perm_bits(p)),
            ["other", "", p] => acl.other = Some(perm_bits(p)),
            ["default", "user", id, _] if !id.is_empty() => {
                if let Ok(id) = id.parse() {
                    acl.default_users.push(id)
                }
            }
            _ => {}
        }
    }
    acl
}

fn getfacl(path: &Path) -> Option<Acl> {
    let out = Command::new("getfacl")
        .args(["-n", "-p", "--omit-header", "--"])
        .arg(path)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| parse_getfacl(&String::from_utf8_lossy(&out.stdout)))
}

fn has_default_entry(path: &Path, uid: u32) -> bool {
    getfacl(path).is_some_and(|a| a.default_users.contains(&uid))
}

/// Can `web` write into `path` (create and delete entries if it is a
/// directory)? The POSIX ACL access check, evaluated from `getfacl` (or the
/// mode bits when there is no getfacl), so it works without becoming the
/// web user. `Err` says why not.
pub(crate) fn can_write(path: &Path, web: &WebUser) -> std::result::Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be inspected: {e}"))?;
    let need = if meta.is_dir() { 2 | 1 } else { 2 };
    // It must reach the path too: search permission on every directory above.
    if let Ok(real) = std::fs::canonicalize(path) {
        for dir in real.ancestors().skip(1) {
            if let Ok(m) = std::fs::metadata(dir) {
                if granted(dir, &m, web) & 1 == 0 {
                    return Err(format!(
                        "is out of reach for the web user {}: no search (x) permission on {}",
                        web.name,
                        dir.display()
                    ));
                }
            }
        }
    }
    if granted(path, &meta, web) & need == need {
        Ok(())
    } else {
        let mode = meta.permissions().mode();
        Err(format!(
            "is not writable for the web user {} (owner uid {}, mode {:o})",
            web.name,
            meta.uid(),
            mode & 0o7777
        ))
    }
}

fn granted(path: &Path, meta: &std::fs::Metadata, web: &WebUser) -> u8 {
    let mode = meta.permissions().mode();
    let acl = getfacl(path).unwrap_or_else(|| Acl {
        owner: Some(((mode >> 6) & 7) as u8),
        group_owner: Some(((mode >> 3) & 7) as u8),
        other: Some((mode & 7) as u8),
        ..Acl::default()
    });
    evaluate(&acl, meta.uid(), meta.gid(), web)
}

/// The permissions `web` gets from `acl`, in the kernel's order: owner,
/// named user (masked), groups (masked), other.
fn evaluate(acl: &Acl, owner: u32, group: u32, web: &WebUser) -> u8 {
    if web.uid == 0 {
        return 7;
    }
    let mask = acl.mask.unwrap_or(7);
    if web.uid == owner {
        return acl.owner.unwrap_or(0);
    }
    if let Some((_, p)) = acl.users.iter().find(|(u, _)| *u == web.uid) {
        return p & mask;
    }
    let mut matched = false;
    let mut union = 0;
    if web.groups.contains(&group) {
        matched = true;
        union |= acl.group_owner.unwrap_or(0);
    }
    for (g, p) in &acl.groups {
        if web.groups.contains(g) {
            matched = true;
            union |= p;
        }
    }
    if matched {
        return union & mask;
    }
    acl.other.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> WebUser {
        WebUser {
            name: "www-data".into(),
            uid: 33,
            gid: 33,
            groups: vec![33],
        }
    }

    #[test]
    fn named_user_entry_is_masked() {
        let acl = parse_getfacl(
            "user::rwx\nuser:33:rwx\ngroup::r-x\nmask::r-x\nother::r-x\ndefault:user:33:rwx\n",
        );
        assert_eq!(evaluate(&acl, 1000, 1000, &web()), 5);
        assert_eq!(acl.default_users, vec![33]);
        let acl = parse_getfacl(
            "user::rwx\nuser:33:rwx\t#effective:r-x\ngroup::r-x\nmask::rwx\nother::r-x\n",
        );
        assert_eq!(evaluate(&acl, 1000, 1000, &web()), 7);
    }

    #[test]
    fn owner_group_and_other() {
        let acl = parse_getfacl("user::rwx\ngroup::rwx\nother::r-x\n");
        assert_eq!(evaluate(&acl, 33, 1000, &web()), 7);
        assert_eq!(evaluate(&acl, 1000, 33, &web()), 7);
        assert_eq!(evaluate(&acl, 1000, 1000, &web()), 5);
        let acl = parse_getfacl("user::r-x\ngroup::rwx\nother::rwx\n");
        // the owner entry wins even when it grants less
        assert_eq!(evaluate(&acl, 33, 1000, &web()), 5);
    }

    #[test]
    fn spec_names_the_deploy_user_only_in_default_entries() {
        let s = acl_spec(&web(), true);
        assert!(s.starts_with("u:33:rwX,d:u:33:rwx"), "{s}");
        assert_eq!(acl_spec(&web(), false), "u:33:rwX");
    }
}
