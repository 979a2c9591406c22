//! The rollback rule at the door of a switch: going back to a release that
//! never served production against the current schema, and lacks some
//! applied migration, is refused unless `rollback.migrate` undoes them or
//! the operator vouches with `--keep-schema` ([`crate::state::schema`] has
//! the record and the pure rule). Decided before anything runs, so a refusal
//! stops no daemon and moves nothing.

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::state::commit::Commit;
use crate::state::schema::{self, Verdict};
use crate::sys::output;

/// What a switch does about the database schema, decided before it starts
/// (by the rollback rule below).
#[derive(Debug, Clone, Default)]
pub(crate) struct SchemaPlan {
    /// Migrations `rollback.migrate` undoes after `stop`, before the flip,
    /// newest first; empty: none.
    pub(crate) undo: Vec<String>,
    /// What the journal says about the schema (`--keep-schema`, undo).
    pub(crate) note: Option<String>,
}

/// What a switch of production to `to` does about the schema, or the
/// refusal naming the migrations `to` does not know and the two ways on.
pub(crate) fn plan(ctx: &Ctx, to: Commit, keep_schema: bool) -> Result<SchemaPlan> {
    let ids = match schema::verdict(ctx, to) {
        Verdict::Untracked | Verdict::Knows => return Ok(SchemaPlan::default()),
        Verdict::Proven => {
            output::detail(&format!(
                "schema: releases/{} has served production against the current schema already",
                to.short()
            ));
            return Ok(SchemaPlan::default());
        }
        Verdict::Unknown(ids) => ids,
    };
    let list = ids.join(" ");
    if keep_schema {
        output::warning(&format!(
            "--keep-schema: the database keeps {list}, which releases/{} does not know; you vouch that it works with them",
            to.short()
        ));
        return Ok(SchemaPlan {
            undo: Vec::new(),
            note: Some(format!("kept ahead (--keep-schema): {list}")),
        });
    }
    if !ctx.config.schema.rollback_migrate.is_empty() {
        output::detail(&format!(
            "schema: rollback.migrate undoes {list} in the release being left, after stop and before the flip"
        ));
        return Ok(SchemaPlan {
            note: Some(format!("undone (rollback.migrate): {list}")),
            undo: ids,
        });
    }
    Err(Error::with_help(
        format!(
            "releases/{} has never served production against the current schema and does not know {} applied migration{}: {list}",
            to.short(),
            ids.len(),
            if ids.len() == 1 { "" } else { "s" }
        ),
        "production and the daemons are untouched. Two ways on: set `[rollback] migrate = [...]` in deploy.toml (run in the release being left, with SYMDEPLOY_MIGRATIONS_UNDO, newest first, and SYMDEPLOY_TARGET) to undo them, or add --keep-schema if that release works with the newer schema",
    ))
}

/// An automatic rollback must happen whatever the schema: the loud note it
/// carries (screen, journal, notify) when `to` does not know the schema.
pub(crate) fn ahead_note(ctx: &Ctx, to: Commit) -> Option<String> {
    match schema::verdict(ctx, to) {
        Verdict::Unknown(ids) => Some(format!(
            "SCHEMA AHEAD: releases/{} never served production against the current schema and does not know {}; the database keeps them",
            to.short(),
            ids.join(" ")
        )),
        _ => None,
    }
}
