//! Who runs this: the deployer's name the forced command hands down, the
//! roles a deploy root gives names, and how a promote was authorized (for
//! the journal). Plain data, read by everything that records or decides;
//! the decisions themselves are in `crate::access`.

/// The variable `symdeploy shell` sets to the deployer's name. Only the
/// forced command sets it; it clears whatever the client sent.
pub(crate) const BY_VAR: &str = "SYMDEPLOY_BY";

/// The roles of `[access]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Roles {
    /// May push branches: warm-ups, previews, other refs.
    pub(crate) push: Vec<String>,
    /// May promote: release tags, `-o promote`, promote and rollback over SSH.
    pub(crate) release: Vec<String>,
}

/// What an action needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// status, log, releases, check: anyone in either list.
    Read,
    /// Branch pushes, warm-ups, previews.
    Push,
    /// Anything that moves production.
    Release,
}

impl Role {
    /// The role's name as deploy.toml spells it.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Role::Read => "push or release",
            Role::Push => "push",
            Role::Release => "release",
        }
    }
}

impl Roles {
    /// May `name` do what needs `role`?
    pub(crate) fn allows(&self, name: &str, role: Role) -> bool {
        let push = self.push.iter().any(|n| n == name);
        let release = self.release.iter().any(|n| n == name);
        match role {
            Role::Read => push || release,
            Role::Push => push,
            Role::Release => release,
        }
    }

    /// Who holds `role`, for messages.
    pub(crate) fn holders(&self, role: Role) -> String {
        let list: Vec<&String> = match role {
            Role::Push => self.push.iter().collect(),
            Role::Release => self.release.iter().collect(),
            Role::Read => self.push.iter().chain(&self.release).collect(),
        };
        if list.is_empty() {
            "nobody".to_string()
        } else {
            list.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// A deployer's name: what `keys add` accepts and `[access]` lists. Plain
/// enough to be safe in a forced command, a journal line and a log header.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// The name the forced command gave, if this process runs on behalf of one.
pub(crate) fn named() -> Option<String> {
    std::env::var(BY_VAR).ok().filter(|n| valid_name(n))
}

/// Who is deploying: the forced command's name, else the Unix user.
pub(crate) fn by() -> String {
    named().unwrap_or_else(crate::sys::machine::current_user)
}

/// A good signature: who signed, with which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signature {
    /// The principal of the allowed-signers file.
    pub(crate) principal: String,
    /// The key's fingerprint (`SHA256:…`).
    pub(crate) fingerprint: String,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.principal, self.fingerprint)
    }
}

/// Git's verdict on a good signature: `Good "git" signature for PRINCIPAL
/// with ED25519 key SHA256:…`.
pub(crate) fn parse_good(out: &str) -> Option<Signature> {
    let line = out
        .lines()
        .find(|l| l.starts_with("Good \"git\" signature for "))?;
    let rest = line.strip_prefix("Good \"git\" signature for ")?;
    let (principal, key) = rest.split_once(" with ")?;
    let fingerprint = key.split_whitespace().find(|w| w.starts_with("SHA256:"))?;
    Some(Signature {
        principal: principal.to_string(),
        fingerprint: fingerprint.to_string(),
    })
}

use std::sync::Mutex;

/// What the journal records about a promote's authorization, for the run
/// in progress in this process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Authority {
    /// The release tag's good signature.
    pub(crate) signer: Option<Signature>,
    /// Promoted without a signed tag on purpose (`--unsigned`).
    pub(crate) unsigned: bool,
}

static AUTHORITY: Mutex<Option<Authority>> = Mutex::new(None);

/// Remember, for the journal entries this process writes next, how the
/// promote was authorized.
pub(crate) fn set_authority(a: Authority) {
    if let Ok(mut g) = AUTHORITY.lock() {
        *g = Some(a);
    }
}

/// How the promote in progress was authorized, if one was recorded.
pub(crate) fn authority() -> Option<Authority> {
    AUTHORITY.lock().ok().and_then(|g| g.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        for ok in ["ci", "lead", "anna.b", "dev-1", "x_y", "me@laptop"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "-x", ".x", "a b", "a\"b", "a,b", "a;id", "ä", "a/b", "$(id)", "a\nb",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(!valid_name(&"a".repeat(65)));
    }

    #[test]
    fn roles_are_separate() {
        let r = Roles {
            push: vec!["ci".into(), "lead".into()],
            release: vec!["lead".into(), "ops".into()],
        };
        assert!(r.allows("ci", Role::Push) && !r.allows("ci", Role::Release));
        assert!(r.allows("ops", Role::Release) && !r.allows("ops", Role::Push));
        assert!(r.allows("ops", Role::Read) && r.allows("ci", Role::Read));
        assert!(!r.allows("stranger", Role::Read));
        assert_eq!(r.holders(Role::Release), "lead, ops");
        assert_eq!(Roles::default().holders(Role::Push), "nobody");
    }

    #[test]
    fn good_signatures_are_read_from_gits_words() {
        let s = parse_good(
            "Good \"git\" signature for lead with ED25519 key SHA256:uZPuvGCjuh0o+cZSUeaYsky5duPbSzqOAJdWZG0pe8A\n",
        )
        .unwrap();
        assert_eq!(s.principal, "lead");
        assert_eq!(
            s.fingerprint,
            "SHA256:uZPuvGCjuh0o+cZSUeaYsky5duPbSzqOAJdWZG0pe8A"
        );
        // a good signature by a key nobody listed is no principal's
        assert_eq!(
            parse_good("Good \"git\" signature with ED25519 key SHA256:x\nNo principal matched."),
            None
        );
        assert_eq!(parse_good("error: no signature found"), None);
    }
}
