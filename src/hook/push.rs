//! What a push asks for: the hook's `<old> <new> <ref>` lines, parsed and
//! checked whole before anything runs, and the route of each ref (warm up,
//! promote, preview, remove a preview, or ignore with a reason).

use gix::ObjectId;

use crate::ctx::Ctx;
use crate::error::{Error, Result};

/// One line of hook input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefUpdate {
    /// The ref's old value (zeros when created).
    pub(crate) old: String,
    /// The ref's new value (zeros when deleted).
    pub(crate) new: String,
    /// The full ref name.
    pub(crate) name: String,
}

impl RefUpdate {
    /// A push that deletes the ref.
    pub(crate) fn is_deletion(&self) -> bool {
        self.new.bytes().all(|b| b == b'0')
    }
}

/// What a ref push asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Warm up the pushed commit.
    Warmup,
    /// Warm up (if needed) and promote the pushed tag's commit.
    Promote,
    /// Warm the pushed commit up as its branch's preview.
    Preview,
    /// The branch of a preview was deleted: remove the preview.
    RemovePreview,
    /// Nothing; the reason is shown.
    Ignore(String),
}

/// Hook stdin, parsed: the updates to route, and the refs skipped because
/// their names are not UTF-8 (shown with `\xNN` for the bytes that are not).
#[derive(Debug, Default)]
pub(crate) struct Input {
    /// The updates, in git's order.
    pub(crate) updates: Vec<RefUpdate>,
    /// Refs git accepted whose names are not UTF-8: never deployed.
    pub(crate) skipped: Vec<String>,
}

/// Parse hook stdin; the first bad line fails the whole input. Ref names
/// are bytes to git (any byte >= 0x80 is allowed): a well-formed line whose
/// name is not UTF-8 is skipped, not an error, so it never drops the other
/// refs of the push. deploy.toml names branches and tags in UTF-8, so such
/// a ref can be none of them.
pub(crate) fn parse_input(input: &[u8]) -> Result<Input> {
    let mut out = Input::default();
    for (i, line) in input.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let shown = shown_bytes(line);
        let bad = |why: &str| {
            Error::with_help(
                format!("hook input line {}: {why}: {:?}", i + 1, truncate(&shown, 200)),
                "the hook expects `<old-id> <new-id> <ref-name>` lines from git; run it only as a git hook (or pipe exactly that format)",
            )
        };
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        if fields.len() != 3 {
            return Err(bad("expected three space-separated fields"));
        }
        let mut ids = Vec::new();
        for id in &fields[..2] {
            match std::str::from_utf8(id) {
                // git hands hooks full lowercase ids (of commits, tag
                // objects, or zeros for a deletion).
                Ok(id) if crate::state::commit::Commit::parse_stored(id).is_some() => {
                    ids.push(id.to_string())
                }
                _ => return Err(bad("not a full hexadecimal object id")),
            }
        }
        let name = fields[2];
        if gix::validate::reference::name(name.into()).is_err() || !name.starts_with(b"refs/") {
            return Err(bad("not a valid ref name"));
        }
        let Ok(name) = std::str::from_utf8(name) else {
            out.skipped.push(shown_bytes(name));
            continue;
        };
        let new = ids.pop().unwrap_or_default();
        let old = ids.pop().unwrap_or_default();
        out.updates.push(RefUpdate {
            old,
            new,
            name: name.to_string(),
        });
    }
    Ok(out)
}

/// Bytes as text: UTF-8 as it is, every other byte as `\xNN`.
pub(crate) fn shown_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// What a push is told about each ref it skipped for a name that is not UTF-8.
pub(crate) fn warn_skipped(skipped: &[String]) {
    for name in skipped {
        crate::sys::output::warning(&format!(
            "{} is not deployed: its name is not UTF-8, and the deploy branch, release tags and preview branches are named in UTF-8 (deploy.toml); git keeps the ref all the same, and the other refs of this push are deployed",
            crate::sys::output::escape(name)
        ));
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Decide what to do with one ref update.
pub(crate) fn route(ctx: &Ctx, update: &RefUpdate) -> Action {
    let branch_ref = ctx.config.branch_ref();
    if ctx.config.preview_branch(&update.name).is_some() {
        return if update.is_deletion() {
            Action::RemovePreview
        } else {
            Action::Preview
        };
    }
    if update.is_deletion() {
        return Action::Ignore(format!(
            "{} deleted; symdeploy never removes releases on a push",
            update.name
        ));
    }
    if update.name == branch_ref {
        return Action::Warmup;
    }
    if let Some(tag) = update.name.strip_prefix("refs/tags/") {
        if ctx.config.is_promote_tag(tag) {
            return Action::Promote;
        }
        return Action::Ignore(format!(
            "tag {tag} does not match promote.tags \"{}\"",
            ctx.config.promote.tags
        ));
    }
    if let Some(branch) = update.name.strip_prefix("refs/heads/") {
        return Action::Ignore(format!(
            "branch {branch} is not the deploy branch ({})",
            ctx.config.branch
        ));
    }
    Action::Ignore(format!(
        "{} is neither the deploy branch nor a release tag",
        update.name
    ))
}

/// Push options (`git push -o promote`), as git hands them to hooks.
pub(crate) fn push_options() -> Vec<String> {
    let count: usize = std::env::var("GIT_PUSH_OPTION_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (0..count.min(100))
        .filter_map(|i| std::env::var(format!("GIT_PUSH_OPTION_{i}")).ok())
        .collect()
}

/// A full object id from hook input (checked by [`parse_input`] already).
pub(crate) fn parse_id(text: &str) -> Result<ObjectId> {
    ObjectId::from_hex(text.as_bytes())
        .map_err(|e| Error::msg(format!("bad object id {text}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const Z: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn parses_well_formed_input() {
        let u = parse_input(
            format!("{Z} {A} refs/heads/main\n{A} {Z} refs/tags/release-1\n").as_bytes(),
        )
        .unwrap()
        .updates;
        assert_eq!(u.len(), 2);
        assert!(!u[0].is_deletion());
        assert!(u[1].is_deletion());
    }

    #[test]
    fn rejects_malformed_lines_naming_the_line() {
        for bad in [
            format!("{Z} {A}\n"),
            format!("{Z} xyz refs/heads/main\n"),
            format!("{Z} {A} refs/heads/../x\n"),
            format!("{Z} {A} main\n"),
            format!("{Z} {A} refs/heads/main extra\n"),
        ] {
            let e = parse_input(format!("{Z} {A} refs/heads/ok\n{bad}").as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains("line 2"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_ref_name_that_is_not_utf8_is_skipped_and_the_rest_kept() {
        let mut input = format!("{Z} {A} refs/heads/main\n{Z} {A} refs/heads/caf").into_bytes();
        input.extend_from_slice(b"\xe9\n");
        let got = parse_input(&input).unwrap();
        assert_eq!(got.updates.len(), 1);
        assert_eq!(got.updates[0].name, "refs/heads/main");
        assert_eq!(got.skipped, ["refs/heads/caf\\xE9"]);
        // Bytes git would never send in an id or a ref name still fail the input.
        let mut bad = format!("{Z} {A} refs/heads/main\n{Z} ").into_bytes();
        bad.extend_from_slice(b"\xff refs/heads/x\n");
        assert!(parse_input(&bad).is_err());
        let mut bad = format!("{Z} {A} refs/heads/a").into_bytes();
        bad.extend_from_slice(b"\x01\xe9\n");
        assert!(parse_input(&bad).is_err());
    }
}
