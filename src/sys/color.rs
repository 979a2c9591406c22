//! Colour on a terminal: the leading word of a line (`error:`, `warning:`,
//! `success:`, `help:`) and stage headers, as git colours them on the
//! pusher's side. Only stderr gets colour, never the run log; and a hook
//! never adds any: git colours those same words itself when the pusher's
//! `color.remote` says so.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

static ON: AtomicBool = AtomicBool::new(false);

/// `--color`: when to colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum When {
    /// On a terminal, unless NO_COLOR is set (or TERM=dumb).
    Auto,
    /// Always (but never in a hook).
    Always,
    /// Never.
    Never,
}

/// Decide once per process.
pub(crate) fn choose(when: When, in_hook: bool) {
    let on = !in_hook
        && match when {
            When::Always => true,
            When::Never => false,
            When::Auto => auto(
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
                std::env::var_os("NO_COLOR").as_deref(),
                std::env::var_os("TERM").as_deref(),
            ),
        };
    ON.store(on, Ordering::Relaxed);
}

/// `auto`: a terminal that is not dumb, and no NO_COLOR (https://no-color.org:
/// set and not empty).
fn auto(
    terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

/// `text` as the terminal shows it: its leading word coloured when colour
/// is on.
pub(crate) fn paint(text: &str) -> Cow<'_, str> {
    if !ON.load(Ordering::Relaxed) {
        return Cow::Borrowed(text);
    }
    const WORDS: &[(&str, &str)] = &[
        ("error:", "\x1b[1;31m"),
        ("warning:", "\x1b[1;33m"),
        ("success:", "\x1b[1;32m"),
        ("help:", "\x1b[1;36m"),
        ("----->", "\x1b[1m"),
    ];
    for (word, code) in WORDS {
        if let Some(rest) = text.strip_prefix(word) {
            return Cow::Owned(format!("{code}{word}\x1b[0m{rest}"));
        }
    }
    Cow::Borrowed(text)
}

#[cfg(test)]
mod tests {
    use super::auto;
    use std::ffi::OsStr;

    #[test]
    fn auto_means_a_terminal_without_no_color() {
        assert!(auto(true, None, Some(OsStr::new("xterm"))));
        assert!(!auto(false, None, Some(OsStr::new("xterm"))));
        assert!(!auto(
            true,
            Some(OsStr::new("1")),
            Some(OsStr::new("xterm"))
        ));
        // NO_COLOR set but empty does not count.
        assert!(auto(true, Some(OsStr::new("")), None));
        assert!(!auto(true, None, Some(OsStr::new("dumb"))));
    }
}
