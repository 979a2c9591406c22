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

/// Parse hook stdin; the first bad line fails the whole input.
pub(crate) fn parse_input(text: &str) -> Result<Vec<RefUpdate>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let bad = |why: &str| {
            Error::with_help(
                format!("hook input line {}: {why}: {:?}", i + 1, truncate(line, 200)),
                "the hook expects `<old-id> <new-id> <ref-name>` lines from git; run it only as a git hook (or pipe exactly that format)",
            )
        };
        if fields.len() != 3 {
            return Err(bad("expected three space-separated fields"));
        }
        for id in &fields[..2] {
            if !crate::state::root::is_commit_hash(id) {
                return Err(bad("not a full hexadecimal object id"));
            }
        }
        if gix::validate::reference::name(fields[2].into()).is_err()
            || !fields[2].starts_with("refs/")
        {
            return Err(bad("not a valid ref name"));
        }
        out.push(RefUpdate {
            old: fields[0].to_string(),
            new: fields[1].to_string(),
            name: fields[2].to_string(),
        });
    }
    Ok(out)
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
pub(crate) fn parse_id(hex: &str) -> Result<ObjectId> {
    ObjectId::from_hex(hex.as_bytes()).map_err(|e| Error::msg(format!("bad object id {hex}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const Z: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn parses_well_formed_input() {
        let u = parse_input(&format!(
            "{Z} {A} refs/heads/main\n{A} {Z} refs/tags/release-1\n"
        ))
        .unwrap();
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
            let e = parse_input(&format!("{Z} {A} refs/heads/ok\n{bad}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("line 2"), "{bad}: {e}");
        }
    }
}
