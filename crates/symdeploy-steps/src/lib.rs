//! One shell command run as a deploy step: `sh -c` in its own process group,
//! both pipes streamed line by line to a [`Listener`], a timeout that ends the
//! whole group (SIGTERM, then SIGKILL after a grace), an interrupt that does
//! the same, and an orphan record that lets a later process end what a killed
//! runner left behind ([`end_orphans`]).
//!
//! Context-free: no deploy root, no stage names, no terminal. The caller says
//! what a line means on screen, where an interrupt comes from, and what a
//! failure tells the operator.
//!
//! A step's output goes through a pipe we own, never straight to our stderr:
//! a daemon that a step leaves behind keeps only that pipe open, so whoever
//! waits for our stderr to close (git, for a hook) never hangs on it.

#![deny(missing_docs)]

use std::ffi::{OsStr, OsString};
use std::io::{PipeReader, PipeWriter, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvError};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How long we keep reading a step's output after it exited, for lines still
/// in flight; a leftover background child does not get longer than this.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// Grace between SIGTERM and SIGKILL for a timed-out or interrupted step.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// A line longer than this is cut into pieces rather than buffered whole.
pub const MAX_LINE: usize = 64 * 1024;
/// The variable that marks every process of one step run.
pub const STEP_VAR: &str = "SYMDEPLOY_STEP_ID";

/// Where a running step's lines and events go. Called from the runner's
/// threads, so it must be shareable.
pub trait Listener: Send + Sync {
    /// One line of the step's output (stdout and stderr as they interleave),
    /// without its newline.
    fn line(&self, text: &str);
    /// A line written after the step returned, by a process it left running.
    fn background_line(&self, text: &str);
    /// The step returned but a process it started still holds its output:
    /// from now on its lines are [`Listener::background_line`]s.
    fn detaching(&self) {}
    /// The step ran past its timeout; its group is being ended.
    fn timed_out(&self, _after: Duration) {}
    /// The step printed nothing for the quiet period (see
    /// [`Step::still_running_after`]) and is still running, `_for` so far.
    fn still_running(&self, _for: Duration) {}
}

/// Where an interrupt of the runner (Ctrl-C, SIGTERM) comes from.
pub trait Interrupts {
    /// Has an interrupt been asked for?
    fn requested(&self) -> bool;
    /// Wakes the wait when an interrupt arrives.
    fn wakeups(&self) -> Receiver<()>;
    /// The step runs as process group `pgid` until the returned guard is
    /// dropped; whoever delivers the interrupt ends that group too.
    fn running(&self, pgid: i32) -> Box<dyn std::any::Any>;
}

/// No interrupts: the step ends by itself or by its timeout.
pub struct NoInterrupts;

impl Interrupts for NoInterrupts {
    fn requested(&self) -> bool {
        false
    }
    fn wakeups(&self) -> Receiver<()> {
        crossbeam_channel::never()
    }
    fn running(&self, _pgid: i32) -> Box<dyn std::any::Any> {
        Box::new(())
    }
}

/// Why a step could not be run at all (it never started, or we lost it).
#[derive(Debug)]
pub enum Error {
    /// Setting up its pipes or waiting for it failed.
    Io {
        /// What was being done ("create a pipe for", "wait for").
        action: &'static str,
        /// The command.
        command: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// `sh` could not be started in the step's directory.
    Spawn {
        /// The command.
        command: String,
        /// The directory it was to run in.
        dir: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The thread waiting for the shell went away without an answer.
    Lost {
        /// The command.
        command: String,
        /// The shell's process id.
        pid: i32,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io {
                action,
                command,
                source,
            } => write!(f, "cannot {action} `{command}`: {source}"),
            Error::Spawn {
                command,
                dir,
                source,
            } => write!(f, "cannot start `sh -c {command}` in {dir}: {source}"),
            Error::Lost { command, pid } => write!(f, "lost track of `{command}` (pid {pid})"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Spawn { source, .. } => Some(source),
            Error::Lost { .. } => None,
        }
    }
}

/// One command, built up and then run (the shape of cargo-util's
/// `ProcessBuilder`).
#[derive(Debug, Clone)]
pub struct Step {
    command: String,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    /// None: the step may run for ever (only an interrupt ends it).
    timeout: Option<Duration>,
    /// Where the orphan record goes and what it calls the step.
    record: Option<(PathBuf, String)>,
    /// Quiet this long: [`Listener::still_running`].
    quiet: Option<Duration>,
}

impl Step {
    /// `command` through `sh -c`, in our working directory, with no
    /// timeout and no record.
    pub fn new(command: impl Into<String>) -> Step {
        Step {
            command: command.into(),
            cwd: None,
            env: Vec::new(),
            timeout: None,
            record: None,
            quiet: None,
        }
    }

    /// The command as given.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// (chainable) The directory the command runs in.
    pub fn cwd(&mut self, dir: impl AsRef<Path>) -> &mut Step {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// (chainable) Set a variable in the command's environment.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Step {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// (chainable) How long the command may run before its group is ended.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Step {
        self.timeout = Some(timeout);
        self
    }

    /// The timeout set, if any.
    pub fn timeout_set(&self) -> Option<Duration> {
        self.timeout
    }

    /// (chainable) Keep the orphan record at `path` while the step runs,
    /// naming it `what`, so that a process that comes after a crash can end
    /// what it left ([`end_orphans`]).
    pub fn record(&mut self, path: impl AsRef<Path>, what: &str) -> &mut Step {
        self.record = Some((path.as_ref().to_path_buf(), what.to_string()));
        self
    }

    /// (chainable) After `quiet` without a line, tell the listener the step
    /// is still running (and again after each further `quiet`).
    pub fn still_running_after(&mut self, quiet: Duration) -> &mut Step {
        self.quiet = Some(quiet);
        self
    }

    /// Run the step and say how it ended, whatever that was; `Err` only when
    /// it could not be run. The guards (orphan record, running group) end on
    /// every way out.
    pub fn exec(
        &self,
        listener: Arc<dyn Listener>,
        interrupts: &dyn Interrupts,
    ) -> Result<Finished, Error> {
        let run = Run {
            step: self,
            echo: Arc::new(Echo::new(listener)),
        };
        run.spawn_and_wait(interrupts)
    }

    /// Start `sh -c` in its own process group, both pipes into `writer`.
    /// The `Command` (holding our copies of the write end) is gone when this
    /// returns, or the reader would never see EOF.
    fn spawn(&self, writer: PipeWriter, token: &str) -> Result<Child, Error> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&self.command);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        for (key, _) in std::env::vars_os() {
            // Variables of a push (GIT_DIR, GIT_QUARANTINE_PATH, GIT_PUSH_OPTION_*,
            // ...) would make a `git` inside a step act on the deploy repository.
            if key.to_string_lossy().starts_with("GIT_") || key == "SYMDEPLOY_FAULT" {
                cmd.env_remove(key);
            }
        }
        let stdout = writer.try_clone().map_err(|source| Error::Io {
            action: "duplicate a pipe for",
            command: self.command.clone(),
            source,
        })?;
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(STEP_VAR, token)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(writer)
            // Its own process group, so a timeout kills everything it started.
            .process_group(0);
        cmd.spawn().map_err(|source| Error::Spawn {
            command: self.command.clone(),
            dir: self
                .cwd
                .as_ref()
                .map_or_else(|| ".".to_string(), |d| d.display().to_string()),
            source,
        })
    }
}

/// One run of a step: the step and where its lines go.
struct Run<'a> {
    step: &'a Step,
    echo: Arc<Echo>,
}

impl Run<'_> {
    fn spawn_and_wait(&self, interrupts: &dyn Interrupts) -> Result<Finished, Error> {
        let command = &self.step.command;
        let (reader, writer) = std::io::pipe().map_err(|source| Error::Io {
            action: "create a pipe for",
            command: command.clone(),
            source,
        })?;
        // Recorded before and after the spawn, so that if we are killed while
        // the step runs, a recovery can end what it left running.
        let token = unique_token();
        let record = self
            .step
            .record
            .as_ref()
            .map(|(path, what)| (OrphanRecord::begin(path, &token, what), what));
        let child = self.step.spawn(writer, &token)?;
        let streamer = Streamer::start(reader, Arc::clone(&self.echo));
        let pgid = Pid::from_raw(child.id() as i32);
        if let Some((record, what)) = &record {
            record.spawned(pgid, what);
        }
        // From here an interrupt ends this group too.
        let running = interrupts.running(pgid.as_raw());
        let finished = self.wait(child, pgid, interrupts)?;
        drop(running);
        streamer.finish(&self.echo);
        drop(record);
        Ok(finished)
    }

    /// Wait for the step to end: until it exits, or its timeout (then SIGTERM
    /// to its group, SIGKILL after a grace), or an interrupt (SIGTERM, SIGKILL
    /// after the same grace). Every wait is on a channel: the exit, an
    /// interrupt's wake-up, the next deadline, or the quiet-period tick.
    fn wait(
        &self,
        child: Child,
        pgid: Pid,
        interrupts: &dyn Interrupts,
    ) -> Result<Finished, Error> {
        let exited = wait_in_thread(child);
        let wakeups = interrupts.wakeups();
        let mut watch = Watch::new(self, pgid);
        let started = Instant::now();
        let ticks = match self.step.quiet {
            Some(quiet) => crossbeam_channel::tick(quiet.min(Duration::from_millis(250))),
            None => crossbeam_channel::never(),
        };
        loop {
            if !watch.interrupted && interrupts.requested() {
                watch.interrupt();
            }
            // A clone, so the arm below may replace the watch's deadline.
            let deadline = watch.deadline.clone();
            crossbeam_channel::select! {
                recv(exited) -> r => {
                    watch.requested = interrupts.requested();
                    return Ok(watch.finished(self.exit_status(r, pgid)?));
                }
                recv(wakeups) -> _ => {}
                recv(deadline) -> _ => watch.deadline_passed(),
                recv(ticks) -> _ => {
                    if let Some(quiet) = self.step.quiet {
                        self.echo.tick(started, quiet);
                    }
                }
            }
        }
    }

    /// What the waiting thread sent: the status, or why there is none.
    fn exit_status(
        &self,
        received: std::result::Result<std::io::Result<ExitStatus>, RecvError>,
        // The shell leads its own group: the group's number is its pid.
        pid: Pid,
    ) -> Result<ExitStatus, Error> {
        match received {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(source)) => Err(Error::Io {
                action: "wait for",
                command: self.step.command.clone(),
                source,
            }),
            Err(_) => Err(Error::Lost {
                command: self.step.command.clone(),
                pid: pid.as_raw(),
            }),
        }
    }

    fn listener_timed_out(&self) {
        self.echo
            .listener
            .timed_out(self.step.timeout.unwrap_or_default());
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// The shell's exit status.
    pub status: ExitStatus,
    /// It ran past its timeout and its group was ended.
    pub timed_out: bool,
    /// An interrupt ended it.
    pub interrupted: bool,
    /// Its timeout, as it was set.
    pub timeout: Option<Duration>,
}

impl Finished {
    /// Did it exit 0 in time?
    pub fn succeeded(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// How it ended, when it did not succeed.
    pub fn end(&self) -> Option<StepEnd> {
        if self.succeeded() {
            return None;
        }
        Some(if self.timed_out {
            StepEnd::TimedOut(self.timeout.unwrap_or_default().as_secs())
        } else if let Some(code) = self.status.code() {
            StepEnd::Exit(code)
        } else if let Some(sig) = self.status.signal() {
            StepEnd::Signal(sig)
        } else {
            StepEnd::Other(format!("{}", self.status))
        })
    }
}

/// A status as a log shows it: `exit 0`, `exit 2`, `signal 9 (SIGKILL)`.
pub fn status_words(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit {code}")
    } else if let Some(sig) = status.signal() {
        format!("signal {sig} ({})", signal_name(sig))
    } else {
        format!("{status}")
    }
}

fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// How a step that did not succeed ended: decided on as a value, shown as
/// the operator reads it ("exit status 2", "killed by signal 9 (SIGKILL)").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEnd {
    /// The shell exited with this code; 127 is its "command not found".
    Exit(i32),
    /// A signal ended the shell.
    Signal(i32),
    /// It ran past its timeout (seconds) and its process group was killed.
    TimedOut(u64),
    /// Anything the platform reports otherwise, as it reports it.
    Other(String),
}

impl StepEnd {
    /// The shell could not find the program (exit status 127).
    pub fn not_found(&self) -> bool {
        *self == StepEnd::Exit(127)
    }
}

impl std::fmt::Display for StepEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepEnd::Exit(code) => write!(f, "exit status {code}"),
            StepEnd::Signal(sig) => write!(f, "killed by signal {sig} ({})", signal_name(*sig)),
            StepEnd::TimedOut(secs) => write!(
                f,
                "timed out after {secs}s (step_timeout); its process group was killed"
            ),
            StepEnd::Other(text) => f.write_str(text),
        }
    }
}

/// The wait for one running step: what has been done to its group so far
/// and when the next escalation is due.
struct Watch<'a> {
    step: &'a Run<'a>,
    pgid: Pid,
    /// The caller asked for an interrupt when the shell exited.
    requested: bool,
    /// Fires at the step's timeout, then (once SIGTERM went) at SIGKILL's.
    deadline: Receiver<Instant>,
    /// SIGTERM went to the group: the deadline is SIGKILL's now.
    terminating: bool,
    timed_out: bool,
    interrupted: bool,
}

impl<'a> Watch<'a> {
    fn new(step: &'a Run<'a>, pgid: Pid) -> Watch<'a> {
        Watch {
            step,
            pgid,
            requested: false,
            deadline: match step.step.timeout {
                Some(t) => crossbeam_channel::after(t),
                None => crossbeam_channel::never(),
            },
            terminating: false,
            timed_out: false,
            interrupted: false,
        }
    }

    /// SIGINT/SIGTERM reached symdeploy. The signal thread sent SIGTERM to
    /// the group already (or will, racing us: once more is harmless).
    fn interrupt(&mut self) {
        self.interrupted = true;
        self.terminate();
    }

    /// The deadline passed: the step's timeout, or SIGKILL's grace.
    fn deadline_passed(&mut self) {
        if self.terminating {
            let _ = killpg(self.pgid, Signal::SIGKILL);
            self.deadline = crossbeam_channel::never();
        } else {
            self.timed_out = true;
            self.step.listener_timed_out();
            self.terminate();
        }
    }

    /// SIGTERM to the group; the first time, SIGKILL is due after the grace.
    fn terminate(&mut self) {
        let _ = killpg(self.pgid, Signal::SIGTERM);
        if !self.terminating {
            self.terminating = true;
            self.deadline = crossbeam_channel::after(KILL_GRACE);
        }
    }

    /// The shell exited with `status`.
    fn finished(mut self, status: ExitStatus) -> Finished {
        // The signal thread may have ended the group before the wait saw the flag.
        self.interrupted |= !status.success() && self.requested;
        if self.timed_out || self.interrupted {
            // Whatever it started is ours to end too.
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
        Finished {
            status,
            timed_out: self.timed_out,
            interrupted: self.interrupted,
            timeout: self.step.step.timeout,
        }
    }
}

/// `child.wait()` on a thread of its own, its answer sent on the channel, so
/// the waiter can also listen for signals and deadlines.
fn wait_in_thread(mut child: Child) -> Receiver<std::io::Result<ExitStatus>> {
    let (tx, exited) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    exited
}

/// The orphan record while a step runs: its token, process group and
/// what it is, for [`end_orphans`] after a crash. Removed when dropped, so
/// every way out of a step removes it; only a killed symdeploy leaves it.
struct OrphanRecord {
    path: PathBuf,
    token: String,
}

impl OrphanRecord {
    /// Written before the spawn: a crash in between still leaves the token
    /// and what the step is (its process group is not known yet).
    fn begin(path: &Path, token: &str, what: &str) -> OrphanRecord {
        let _ = std::fs::write(path, format!("{token}\n\n{what}\n"));
        OrphanRecord {
            path: path.to_path_buf(),
            token: token.to_string(),
        }
    }

    /// The step is running as process group `pgid`.
    fn spawned(&self, pgid: Pid, what: &str) {
        let _ = std::fs::write(&self.path, format!("{}\n{pgid}\n{what}\n", self.token));
    }
}

impl Drop for OrphanRecord {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The listener, with what the runner needs around it: whether the step has
/// returned (later lines are background lines) and when it last spoke.
struct Echo {
    listener: Arc<dyn Listener>,
    detached: AtomicBool,
    last_line: Mutex<Instant>,
}

impl Echo {
    fn new(listener: Arc<dyn Listener>) -> Echo {
        Echo {
            listener,
            detached: AtomicBool::new(false),
            last_line: Mutex::new(Instant::now()),
        }
    }

    fn show(&self, text: &str) {
        *self.last_line.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if self.detached.load(Ordering::SeqCst) {
            self.listener.background_line(text);
        } else {
            self.listener.line(text);
        }
    }

    /// A tick of the quiet-period clock: quiet for `quiet` since the last
    /// line (or the last such note) means "still running".
    fn tick(&self, started: Instant, quiet: Duration) {
        let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= quiet {
            *last = Instant::now();
            drop(last);
            self.listener.still_running(started.elapsed());
        }
    }
}

/// The thread that reads a step's pipe and hands its lines on as they come.
struct Streamer {
    handle: std::thread::JoinHandle<()>,
    ended: Receiver<()>,
}

impl Streamer {
    fn start(reader: PipeReader, echo: Arc<Echo>) -> Streamer {
        let (done, ended) = crossbeam_channel::bounded(1);
        let handle = std::thread::spawn(move || {
            stream_lines(reader, &echo);
            let _ = done.send(());
        });
        Streamer { handle, ended }
    }

    /// Wait briefly for the last lines. If a background child of the step
    /// still holds the pipe, give up on it: the thread is left blocked on a
    /// pipe nobody will read after we exit, and the caller goes on.
    fn finish(self, echo: &Echo) {
        if self.ended.recv_timeout(DRAIN_AFTER_EXIT).is_err() {
            // Told before the flag is set, so it stays with this step's lines.
            echo.listener.detaching();
            echo.detached.store(true, Ordering::SeqCst);
            return;
        }
        let _ = self.handle.join();
    }
}

fn stream_lines(mut reader: impl Read, echo: &Echo) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            emit(&pending[start..start + pos], echo);
            start += pos + 1;
        }
        pending.drain(..start);
        while pending.len() >= MAX_LINE {
            let rest = pending.split_off(MAX_LINE);
            emit(&pending, echo);
            pending = rest;
        }
    }
    if !pending.is_empty() {
        emit(&pending, echo);
    }
}

fn emit(line: &[u8], echo: &Echo) {
    let text = String::from_utf8_lossy(line);
    echo.show(text.trim_end_matches('\r'));
}

/// A token no other run of any process here has: time and pid.
fn unique_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}-{}", std::process::id())
}

/// What [`end_orphans`] found and did.
#[derive(Debug, PartialEq, Eq)]
pub struct Orphans {
    /// How many processes it ended.
    pub ended: usize,
    /// What the step was, as its record names it.
    pub what: String,
}

/// After a crash, end the processes of the step that was running when its
/// runner died, as the record at `record` names them: those still in its
/// process group and carrying its token (never a daemon that left the group,
/// never an unrelated process that reused the number). The record is removed.
/// `None`: there was no record.
pub fn end_orphans(record: &Path) -> Option<Orphans> {
    let text = std::fs::read_to_string(record).ok()?;
    let mut lines = text.lines();
    let token = lines.next().unwrap_or_default().to_string();
    let pgid: Option<i32> = lines.next().and_then(|l| l.trim().parse().ok());
    let what = lines.next().unwrap_or("a step").to_string();
    let ended = if token.is_empty() {
        0
    } else {
        let orphan = Orphan {
            pgid,
            mark: format!("{STEP_VAR}={token}"),
        };
        orphan.end_all()
    };
    let _ = std::fs::remove_file(record);
    Some(Orphans { ended, what })
}

/// How long [`end_orphans`] waits for SIGKILLed processes to be gone.
const ORPHAN_GONE: Duration = Duration::from_secs(5);

/// The processes of one interrupted step: in its group, with its mark.
struct Orphan {
    pgid: Option<i32>,
    /// `SYMDEPLOY_STEP_ID=<token>`, as it appears in /proc/PID/environ.
    mark: String,
}

impl Orphan {
    /// SIGKILL every process of the step and wait (on their pidfds, not a
    /// polling loop) until they are gone: SIGKILL is asynchronous, and the
    /// recovery must not start the daemons while an old `stop` still runs.
    /// Returns how many were ended.
    fn end_all(&self) -> usize {
        let mut ended = 0;
        let mut waiting = Vec::new();
        for pid in all_pids() {
            match Pidfd::open(pid) {
                // Held before the checks: if the number is reused after
                // them, the pidfd still names the (dead) process we checked.
                Ok(fd) => {
                    if self.owns(pid) && fd.kill() {
                        ended += 1;
                        waiting.push(fd);
                    }
                }
                // A kernel before 5.3: kill by number; nothing to wait on.
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSYS) => {
                    if self.owns(pid) && kill(pid, Signal::SIGKILL).is_ok() {
                        ended += 1;
                    }
                }
                // Gone already (ESRCH) or not ours to see.
                Err(_) => {}
            }
        }
        wait_gone(waiting, ORPHAN_GONE);
        ended
    }

    /// Is `pid` a live process of this step?
    fn owns(&self, pid: i32) -> bool {
        if self.pgid.is_some_and(|g| process_group(pid) != Some(g)) {
            return false;
        }
        std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == self.mark.as_bytes()))
    }
}

fn kill(pid: i32, signal: Signal) -> nix::Result<()> {
    nix::sys::signal::kill(Pid::from_raw(pid), signal)
}

/// Every process number in /proc.
fn all_pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
}

/// A process held by a pidfd (Linux 5.3+): a signal sent or a wait done
/// through it reaches that process, never a later one with its number, and
/// it works for processes that are not our children (orphans of a crash).
struct Pidfd(std::os::fd::OwnedFd);

impl Pidfd {
    fn open(pid: i32) -> std::io::Result<Pidfd> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes two integers and returns a new descriptor
        // or -1; no memory is shared with the kernel.
        let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned to us and nothing else owns it.
        Ok(Pidfd(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd as std::os::fd::RawFd)
        }))
    }

    /// SIGKILL the process; false if it could not be signalled.
    fn kill(&self) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: a descriptor we own, a signal number, no siginfo (null is
        // documented as "like kill(2)"), no flags.
        let rc = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                nix::libc::SIGKILL,
                std::ptr::null::<nix::libc::siginfo_t>(),
                0,
            )
        };
        rc == 0
    }
}

/// Wait until every process in `procs` has exited (a zombie has), or
/// `within` has passed: a pidfd becomes readable when its process exits, so
/// this is one poll(2) with a timeout per exit, no sleeping loop. Returns
/// whether all are gone.
fn wait_gone(mut procs: Vec<Pidfd>, within: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let deadline = Instant::now() + within;
    while !procs.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(timeout) = PollTimeout::try_from(left) else {
            return false;
        };
        let mut fds: Vec<PollFd> = procs
            .iter()
            .map(|p| PollFd::new(p.0.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, timeout) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
        let exited: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut exited = exited.into_iter();
        procs.retain(|_| !exited.next().unwrap_or(false));
    }
    true
}

/// The process group of a live (non-zombie) process.
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps every line, in order.
    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl Listener for Lines {
        fn line(&self, text: &str) {
            self.0.lock().unwrap().push(text.to_string());
        }
        fn background_line(&self, text: &str) {
            self.0.lock().unwrap().push(format!("[background] {text}"));
        }
        fn still_running(&self, _for: Duration) {
            self.0.lock().unwrap().push("still running".to_string());
        }
    }

    fn run(step: &Step) -> (Finished, Vec<String>) {
        let lines = Arc::new(Lines::default());
        let finished = step.exec(lines.clone(), &NoInterrupts).unwrap();
        let got = std::mem::take(&mut *lines.0.lock().unwrap());
        (finished, got)
    }

    fn in_dir(command: &str, dir: &Path) -> Step {
        let mut s = Step::new(command);
        s.cwd(dir);
        s
    }

    /// Wait (on pidfds) until `pid` has exited; a generous deadline, not a
    /// timed assertion: a group that was not ended never gets there.
    fn gone(pid: i32) -> bool {
        match Pidfd::open(pid) {
            Ok(fd) => wait_gone(vec![fd], Duration::from_secs(30)),
            Err(_) => true,
        }
    }

    fn read_pid(path: &Path) -> i32 {
        std::fs::read_to_string(path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn a_log_says_exit_0_not_the_debug_form() {
        assert_eq!(status_words(ExitStatus::from_raw(0)), "exit 0");
        assert_eq!(status_words(ExitStatus::from_raw(2 << 8)), "exit 2");
        assert_eq!(status_words(ExitStatus::from_raw(9)), "signal 9 (SIGKILL)");
    }

    #[test]
    fn exit_status_and_its_end_are_told() {
        let t = tempfile::tempdir().unwrap();
        let (finished, _) = run(&in_dir("exit 5", t.path()));
        assert_eq!(finished.status.code(), Some(5));
        assert!(!finished.timed_out && !finished.interrupted);
        assert_eq!(finished.end(), Some(StepEnd::Exit(5)));
        assert_eq!(finished.end().unwrap().to_string(), "exit status 5");
        let (finished, _) = run(&in_dir("kill -9 $$", t.path()));
        assert_eq!(finished.end(), Some(StepEnd::Signal(9)));
        let (finished, _) = run(&in_dir("no-such-program-here", t.path()));
        assert!(finished.end().unwrap().not_found());
        let (ok, _) = run(&Step::new("true"));
        assert!(ok.succeeded() && ok.end().is_none());
    }

    #[test]
    fn env_and_cwd_reach_the_command_and_the_push_does_not() {
        let t = tempfile::tempdir().unwrap();
        let mut step = in_dir("echo \"$A $PWD ${GIT_DIR:-none}\" > out", t.path());
        step.env("A", "value");
        let (finished, _) = run(&step);
        assert!(finished.succeeded());
        let out = std::fs::read_to_string(t.path().join("out")).unwrap();
        let dir = t.path().canonicalize().unwrap();
        assert_eq!(out, format!("value {} none\n", dir.display()));
    }

    #[test]
    fn output_lines_arrive_in_order_from_both_pipes() {
        let (_, lines) = run(&Step::new(
            "for i in 1 2 3; do echo out$i; echo err$i >&2; done; printf 'no newline\\r'",
        ));
        assert_eq!(
            lines,
            ["out1", "err1", "out2", "err2", "out3", "err3", "no newline"]
        );
    }

    #[test]
    fn a_long_line_is_cut_not_buffered_whole() {
        let (_, lines) = run(&Step::new("head -c 150000 /dev/zero | tr '\\0' x"));
        let sizes: Vec<usize> = lines.iter().map(|l| l.len()).collect();
        assert_eq!(sizes, [MAX_LINE, MAX_LINE, 150000 - 2 * MAX_LINE]);
    }

    #[test]
    fn a_quiet_step_is_still_running_and_a_chatty_one_is_not() {
        let mut quiet = Step::new("sleep 2");
        quiet.still_running_after(Duration::from_millis(600));
        let (_, lines) = run(&quiet);
        assert!(lines.iter().any(|l| l == "still running"), "{lines:?}");
        let mut chatty = Step::new("for i in 1 2 3 4; do echo $i; sleep 0.2; done");
        chatty.still_running_after(Duration::from_secs(5));
        let (_, lines) = run(&chatty);
        assert_eq!(lines, ["1", "2", "3", "4"]);
    }

    #[test]
    fn timeout_ends_the_group_including_a_background_grandchild() {
        let t = tempfile::tempdir().unwrap();
        let mut step = in_dir(
            "sh -c 'sleep 300' & echo $! > grandchild; sleep 300",
            t.path(),
        );
        step.timeout(Duration::from_secs(1));
        let (finished, _) = run(&step);
        assert!(finished.timed_out);
        assert!(!finished.interrupted);
        assert_eq!(finished.end(), Some(StepEnd::TimedOut(1)));
        let grandchild = read_pid(&t.path().join("grandchild"));
        assert!(gone(grandchild), "grandchild {grandchild} survived");
    }

    #[test]
    fn a_step_that_ignores_sigterm_gets_sigkill_after_the_grace() {
        let mut step = Step::new("trap '' TERM; sleep 300");
        step.timeout(Duration::from_secs(1));
        let (finished, _) = run(&step);
        assert!(finished.timed_out);
        assert_eq!(finished.status.signal(), Some(9));
    }

    #[test]
    fn the_orphan_record_lives_exactly_as_long_as_the_step_and_names_it() {
        let t = tempfile::tempdir().unwrap();
        let record = t.path().join("step");
        // The record gets the process group right after the spawn: the
        // step may already run by then, so it waits (at most 5 s) to see it.
        let seen = format!(
            "i=0; while [ -z \"$(sed -n 2p {r})\" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done; \
             cp {r} seen && grep -qx \"${STEP_VAR}\" {r} && echo $$ > pid",
            r = record.display()
        );
        let mut step = in_dir(&seen, t.path());
        step.record(&record, "stop: the step");
        let (finished, _) = run(&step);
        assert!(finished.succeeded());
        assert!(!record.exists(), "left after success");
        let seen = std::fs::read_to_string(t.path().join("seen")).unwrap();
        let lines: Vec<&str> = seen.lines().collect();
        assert_eq!(lines.len(), 3, "{seen}");
        assert_eq!(lines[1], read_pid(&t.path().join("pid")).to_string());
        assert_eq!(lines[2], "stop: the step");

        let mut failing = in_dir(&format!("test -s {} && exit 3", record.display()), t.path());
        failing.record(&record, "build: x");
        let (finished, _) = run(&failing);
        assert_eq!(finished.end(), Some(StepEnd::Exit(3)));
        assert!(!record.exists(), "left after failure");

        let mut slow = in_dir(
            &format!("test -s {} && sleep 300", record.display()),
            t.path(),
        );
        slow.record(&record, "build: x")
            .timeout(Duration::from_secs(1));
        let (finished, _) = run(&slow);
        assert!(finished.timed_out);
        assert!(!record.exists(), "left after timeout");
    }

    #[test]
    fn a_spawn_failure_is_an_error_and_leaves_no_record() {
        let t = tempfile::tempdir().unwrap();
        let record = t.path().join("step");
        let mut step = in_dir("true", &t.path().join("missing"));
        step.record(&record, "build: true");
        let e = step
            .exec(Arc::new(Lines::default()), &NoInterrupts)
            .unwrap_err();
        assert!(e.to_string().contains("cannot start"), "{e}");
        assert!(!record.exists());
    }

    #[test]
    fn a_background_child_does_not_hang_the_step_and_its_late_lines_are_background() {
        let started = Instant::now();
        let (finished, lines) = run(&Step::new("sleep 20 & echo started"));
        assert!(finished.succeeded());
        assert_eq!(lines, ["started"]);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_run_killed_before_its_step_spawned_still_names_the_step() {
        let t = tempfile::tempdir().unwrap();
        let record = t.path().join("step");
        // Killed between the record and the spawn: no drop removes it.
        std::mem::forget(OrphanRecord::begin(&record, &unique_token(), "stop: sleep"));
        let found = end_orphans(&record).expect("the record is there");
        assert_eq!(found.what, "stop: sleep");
        assert_eq!(found.ended, 0, "nothing was running yet");
        // A record of an earlier version (the token alone) reads as before.
        std::fs::write(&record, "abc\n").unwrap();
        assert_eq!(end_orphans(&record).unwrap().what, "a step");
    }

    #[test]
    fn end_orphans_kills_the_marked_group_and_waits_until_gone() {
        let t = tempfile::tempdir().unwrap();
        let record = t.path().join("step");
        let token = unique_token();
        // Stands for a step left running by a killed runner: its own
        // group, the step's mark, and a child.
        let mut orphan = Command::new("sh")
            .args(["-c", "sleep 300 & echo ready; exec sleep 300"])
            .stdout(Stdio::piped())
            .env(STEP_VAR, &token)
            .process_group(0)
            .spawn()
            .unwrap();
        // An unmarked process in no group of ours must be left alone.
        let mut bystander = Command::new("sleep").arg("300").spawn().unwrap();
        let pgid = orphan.id() as i32;
        std::fs::write(&record, format!("{token}\n{pgid}\nstop: sleep\n")).unwrap();
        // Its child is forked once "ready" comes (exec keeps the count at 2).
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(orphan.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready, "ready\n");
        let found = end_orphans(&record).unwrap();
        assert_eq!(
            found,
            Orphans {
                ended: 2,
                what: "stop: sleep".into()
            }
        );
        assert!(!record.exists());
        assert!(orphan.wait().unwrap().signal() == Some(9));
        assert!(
            bystander.try_wait().unwrap().is_none(),
            "bystander was killed"
        );
        bystander.kill().unwrap();
        bystander.wait().unwrap();
        assert_eq!(end_orphans(&record), None);
    }

    /// An interrupt that arrives while the step runs: the group is ended and
    /// the step counts as interrupted, not timed out.
    #[test]
    fn an_interrupt_ends_the_group_and_is_told_as_such() {
        struct Soon {
            at: Instant,
            tx: crossbeam_channel::Sender<()>,
            rx: Receiver<()>,
            group: Arc<Mutex<Option<i32>>>,
        }
        impl Interrupts for Soon {
            fn requested(&self) -> bool {
                let due = self.at.elapsed() > Duration::from_millis(500);
                if due {
                    // As a signal handler would: end the running group.
                    if let Some(g) = *self.group.lock().unwrap() {
                        let _ = killpg(Pid::from_raw(g), Signal::SIGTERM);
                    }
                    let _ = self.tx.try_send(());
                }
                due
            }
            fn wakeups(&self) -> Receiver<()> {
                self.rx.clone()
            }
            fn running(&self, pgid: i32) -> Box<dyn std::any::Any> {
                *self.group.lock().unwrap() = Some(pgid);
                Box::new(())
            }
        }
        let t = tempfile::tempdir().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let soon = Soon {
            at: Instant::now(),
            tx,
            rx,
            group: Arc::new(Mutex::new(None)),
        };
        let mut step = in_dir(
            "sh -c 'sleep 300' & echo $! > grandchild; sleep 300",
            t.path(),
        );
        // The quiet ticks make the wait look at `requested` often.
        step.timeout(Duration::from_secs(3600))
            .still_running_after(Duration::from_millis(100));
        let finished = step.exec(Arc::new(Lines::default()), &soon).unwrap();
        assert!(finished.interrupted && !finished.timed_out);
        let pid = read_pid(&t.path().join("grandchild"));
        assert!(gone(pid), "grandchild {pid} survived the interrupt");
    }
}
