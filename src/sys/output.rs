//! What people see, and what operators keep.
//!
//! Human output goes to stderr, which in a hook is what the pusher sees behind
//! `remote:`. Lines that mean trouble start with `error:` or `warning:` and good
//! news with `success:`, because git colours exactly those words at the start of
//! a remote line. Every line is also copied to the per-deploy log file once one
//! is open, and tracing events for operators go to the same file.
//!
//! Writing to stderr never fails a deploy: when the pusher hangs up (EPIPE), the
//! deploy goes on and the log file keeps the whole story.
//!
//! The sink is one per process on purpose, not a value passed down: the
//! tracing subscriber (installed once per process) writes to the current run
//! log, a step's output arrives on reader threads, and SIGHUP is handled on
//! the signal thread, which must detach the terminal for every writer at
//! once. What a run owns is its lifetime: [`crate::session::begin`] opens
//! the log, and `main` or the hook renders the run's error into it and
//! closes it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

struct Sink {
    log: Option<(File, PathBuf)>,
    stderr_gone: bool,
    /// The header of a stage that has printed nothing yet: it is shown just
    /// before the stage's first line, or with its duration when it ends, so
    /// a stage that did nothing worth a line costs one line at most.
    pending: Option<String>,
    /// A `success:` line held back until the run's last words (cleanup
    /// after a promote) are out: the verdict is the last line.
    verdict: Option<String>,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    log: None,
    stderr_gone: false,
    pending: None,
    verdict: None,
});

fn with_sink<R>(f: impl FnOnce(&mut Sink) -> R) -> R {
    // A panic while holding the lock must not silence every later line.
    let mut guard = SINK.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard)
}

/// Make text from the repository (commit subjects, ref names, paths, step
/// output) safe for a terminal: control characters are shown the way `cat -v`
/// and git show them (`\x1b` as `^[`, BEL as `^G`, DEL as `^?`), C1 controls
/// and the invisible direction overrides (U+202E and friends) as `<U+XXXX>`.
/// A tab stays a tab. Text without such characters is returned as is.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    fn hostile(c: char) -> bool {
        (c.is_control() && c != '\t')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(hostile) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !hostile(c) => out.push(c),
            '\u{7f}' => out.push_str("^?"),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            c => out.push_str(&format!("<U+{:04X}>", c as u32)),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Write one line for people (stderr) and to the deploy log. Control
/// characters are escaped ([`escape`]): much of what is shown came from the
/// repository, and a pusher's terminal must not obey it.
pub(crate) fn line(text: &str) {
    let escaped = text.split('\n').map(escape).collect::<Vec<_>>().join("\n");
    let text = escaped.as_str();
    with_sink(|sink| {
        if let Some(header) = sink.pending.take() {
            write_both(sink, &format!("-----> {header}"));
        }
        write_both(sink, text);
    });
}

/// Write `text` to stderr (unless the terminal is gone) and to the log.
fn write_both(sink: &mut Sink, text: &str) {
    {
        if !sink.stderr_gone {
            let mut err = std::io::stderr().lock();
            if writeln!(err, "{}", crate::sys::color::paint(text)).is_err() {
                // The pusher went away; keep deploying, keep logging.
                sink.stderr_gone = true;
            }
        }
        if let Some((file, _)) = sink.log.as_mut() {
            let _ = writeln!(file, "{text}");
        }
    }
}

/// Write one line to the deploy log only (full hashes, background output of
/// a step that already returned): what the operator may need later, but not
/// on the pusher's screen.
pub(crate) fn log_only(text: &str) {
    let escaped = text.split('\n').map(escape).collect::<Vec<_>>().join("\n");
    with_sink(|sink| {
        if let Some((file, _)) = sink.log.as_mut() {
            let _ = writeln!(file, "{escaped}");
        }
    });
}

/// A detail line whose screen form names a release by its short hash; the
/// log also gets the full hash, for scripts and for the record.
pub(crate) fn detail_full(screen: &str, full: &str) {
    detail(screen);
    log_only(&format!("       (full commit: {full})"));
}

/// Plural-aware count: `1 file`, `2 files`.
pub(crate) fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The operator's terminal is gone (SIGHUP): keep `note` in the log, and from
/// now on write only to the log. Writing to a hung-up terminal fails (EIO),
/// or could block on a full pipe nobody reads; neither may stop a deploy.
pub(crate) fn detach_terminal(note: &str) {
    with_sink(|sink| {
        sink.stderr_gone = true;
        if let Some((file, _)) = sink.log.as_mut() {
            let _ = writeln!(file, "{note}");
        }
    });
}

/// A stage header: `-----> export`.
pub(crate) fn header(title: &str) {
    line(&format!("-----> {title}"));
}

/// An indented detail line under a stage.
pub(crate) fn detail(text: &str) {
    line(&format!("       {text}"));
}

/// A line that git colours as a warning on the pusher's side.
pub(crate) fn warning(text: &str) {
    line(&format!("warning: {text}"));
}

/// A line that git colours as an error on the pusher's side.
pub(crate) fn error(text: &str) {
    line(&format!("error: {text}"));
}

/// A hint line under an error.
pub(crate) fn help(text: &str) {
    line(&format!("help: {text}"));
}

/// A line that git colours as success on the pusher's side.
pub(crate) fn success(text: &str) {
    line(&format!("success: {text}"));
}

/// A `success:` line shown last: held until [`show_verdict`] (or
/// [`close_log`]), so what still runs after the switch (the cleanup) prints
/// above it.
pub(crate) fn success_last(text: &str) {
    let held = format!("success: {text}");
    let earlier = with_sink(|sink| sink.verdict.replace(held));
    if let Some(earlier) = earlier {
        line(&earlier);
    }
}

/// Show the held `success:` line, if any.
pub(crate) fn show_verdict() {
    if let Some(v) = with_sink(|sink| sink.verdict.take()) {
        line(&v);
    }
}

/// Render an error the way an operator should read it.
pub(crate) fn report(err: &crate::error::Error) {
    error(&err.to_string());
    match err {
        crate::error::Error::Failed { now, .. } => {
            for l in now {
                detail(l);
            }
        }
        crate::error::Error::Several { parts, .. } => {
            for p in parts {
                detail(&p.to_string());
            }
        }
        _ => {}
    }
    if let Some(h) = err.help() {
        help(&h);
    }
}

/// Open the per-deploy log file; every later line is copied into it.
pub(crate) fn open_log(path: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    with_sink(|sink| sink.log = Some((file, path.to_path_buf())));
    Ok(())
}

/// Stop copying into the log file (flushes it to disk first), after
/// showing a held verdict.
pub(crate) fn close_log() {
    show_verdict();
    with_sink(|sink| {
        if let Some((file, _)) = sink.log.take() {
            let _ = file.sync_data();
        }
    });
}

/// The path of the log file being written, if any.
pub(crate) fn log_path() -> Option<PathBuf> {
    with_sink(|sink| sink.log.as_ref().map(|(_, p)| p.clone()))
}

/// Times a stage. Its header (`-----> build`) is shown just before the
/// stage's first line; a stage that printed nothing is shown when it ends,
/// as one line with its duration (`-----> export: 2 files, 10 B (0.01s)`).
/// A stage dropped without [`Stage::done`] (it failed) shows no header of its
/// own: the error line that follows names what failed.
pub(crate) struct Stage {
    name: String,
    start: Instant,
}

impl Stage {
    /// Start the clock; the header waits for the stage's first line.
    pub(crate) fn start(name: &str) -> Stage {
        // A stage inside a stage (the daemons' start inside a rollback): the
        // outer one's header goes first.
        let outer = with_sink(|sink| sink.pending.take());
        if let Some(outer) = outer {
            header(&outer);
        }
        with_sink(|sink| sink.pending = Some(name.to_string()));
        tracing::info!(stage = name, "stage started");
        Stage {
            name: name.to_string(),
            start: Instant::now(),
        }
    }

    /// End the stage; returns its duration.
    pub(crate) fn done(self) -> Duration {
        self.finish(None)
    }

    /// End the stage with a summary for its one line (`2 files, 10 B`).
    pub(crate) fn done_with(self, summary: &str) -> Duration {
        self.finish(Some(summary))
    }

    fn finish(&self, summary: Option<&str>) -> Duration {
        let took = self.start.elapsed();
        let dur = crate::sys::fs::human_duration(took);
        let quiet = with_sink(|sink| sink.pending.take_if(|p| *p == self.name).is_some());
        match (quiet, summary) {
            (true, Some(s)) => line(&format!("-----> {}: {s} ({dur})", self.name)),
            (true, None) => line(&format!("-----> {} ({dur})", self.name)),
            (false, Some(s)) => detail(&format!("{s}; {} done in {dur}", self.name)),
            (false, None) => detail(&format!("{} done in {dur}", self.name)),
        }
        tracing::info!(stage = %self.name, seconds = took.as_secs_f64(), "stage done");
        took
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // Dropped after `done` (already taken) or on an error path: a header
        // never shown must not appear above unrelated lines later.
        with_sink(|sink| {
            sink.pending.take_if(|p| *p == self.name);
        });
    }
}

/// A `tracing` writer that appends to the current deploy log, if one is open.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        with_sink(|sink| {
            if let Some((file, _)) = sink.log.as_mut() {
                let _ = file.write_all(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Set up tracing: RUST_LOG (default: warnings) to stderr, INFO and up to the
/// per-deploy log file.
pub(crate) fn init_tracing() {
    let stderr_filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes are for people: a pipe or a file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(stderr_filter);
    let file_layer = tracing_subscriber::fmt::layer()
        .with_writer(|| LogWriter)
        .with_ansi(false)
        .with_target(false)
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
}

/// Text for one environment variable or one line: newlines and runs of
/// spaces become single spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(escape("plain subject\tok"), "plain subject\tok");
        assert_eq!(
            escape("a\u{1b}[2J\u{1b}[31mred\u{7}\u{202e}cba\u{7f}\r"),
            "a^[[2J^[[31mred^G<U+202E>cba^?^M"
        );
        assert_eq!(escape("\u{9b}31m"), "<U+009B>31m");
    }
}
