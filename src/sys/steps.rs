//! Run configured commands: `sh -c` in the release, a clean environment, output
//! streamed live line by line, a timeout that kills the whole process group.
//!
//! A step's output goes through a pipe we own, never straight to our stderr:
//! a daemon that a step leaves behind keeps only that pipe open, so the push
//! (which waits for the hook's stderr to close) never hangs on it.
//!
//! [`Step`] is the one way a command runs: built like a `Command` (stage,
//! command, `.cwd()`, `.env()`, `.timeout()`), then [`Step::run`]. The stage
//! functions ([`run_stage`], [`run_stage_captured`]) are thin loops over it.

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

use crate::error::{Error, Result};
use crate::sys::output;

/// How long we keep reading a step's output after it exited, for lines still
/// in flight; a leftover background child does not get longer than this.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// Grace between SIGTERM and SIGKILL for a timed-out step.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// A line longer than this is cut into pieces rather than buffered whole.
const MAX_LINE: usize = 64 * 1024;

/// What every step gets in its environment.
#[derive(Debug, Clone)]
pub(crate) struct StepEnv {
    /// The deploy root.
    pub(crate) root: PathBuf,
    /// The release directory the step runs in.
    pub(crate) release: PathBuf,
    /// The release's commit.
    pub(crate) commit: String,
    /// The ref that was pushed (or given by hand).
    pub(crate) git_ref: String,
    /// The current production release directory, if any.
    pub(crate) previous: Option<PathBuf>,
    /// Extra variables (SYMDEPLOY_RESULT for promote.notify).
    pub(crate) extra: Vec<(String, String)>,
    /// How long one command may run.
    pub(crate) timeout: Duration,
}

/// Run `commands` of `stage` in order; the first failure stops the stage.
pub(crate) fn run_stage(stage: &str, commands: &[String], env: &StepEnv) -> Result<()> {
    for command in commands {
        Step::for_env(stage, command, env).run()?;
    }
    Ok(())
}

/// Run `commands` of `stage` like [`run_stage`], but keep their lines (the
/// command lines too) off the screen: they go to the run log and are
/// returned, so a retried health check can show only what matters.
pub(crate) fn run_stage_captured(
    stage: &str,
    commands: &[String],
    env: &StepEnv,
) -> (Result<()>, Vec<String>) {
    let capture = Capture::default();
    for command in commands {
        if let Err(e) = Step::for_env(stage, command, env).capture(&capture).run() {
            return (Err(e), capture.take());
        }
    }
    (Ok(()), capture.take())
}

/// Run one command and report how it ended.
#[cfg(test)]
pub(crate) fn run_one(stage: &str, command: &str, env: &StepEnv) -> Result<()> {
    Step::for_env(stage, command, env).run()
}

/// One configured command, built up and then run (the shape of cargo-util's
/// `ProcessBuilder`): `sh -c COMMAND` in its own process group, both pipes
/// streamed live line by line, a timeout and Ctrl-C ending the whole group,
/// and an orphan record that lives exactly as long as the run.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    stage: String,
    command: String,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    /// None: the step may run for ever (only an interrupt ends it).
    timeout: Option<Duration>,
    /// Where the orphan record goes (see [`end_orphans`]); None: no record.
    record: Option<PathBuf>,
    /// Lines kept aside instead of shown (a retried health check).
    capture: Option<Capture>,
}

impl Step {
    /// A step of `stage` (build, stop, check, ...) running `command` through
    /// `sh -c`, in our working directory, with no timeout and no record.
    pub(crate) fn new(stage: &str, command: &str) -> Step {
        Step {
            stage: stage.to_string(),
            command: command.to_string(),
            cwd: None,
            env: Vec::new(),
            timeout: None,
            record: None,
            capture: None,
        }
    }

    /// A step as the deploy runs it: in the release, with the `SYMDEPLOY_*`
    /// variables, the configured timeout and the root's orphan record.
    pub(crate) fn for_env(stage: &str, command: &str, env: &StepEnv) -> Step {
        let previous = env
            .previous
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut step = Step::new(stage, command);
        step.cwd(&env.release)
            .env("SYMDEPLOY_ROOT", &env.root)
            .env("SYMDEPLOY_RELEASE", &env.release)
            .env("SYMDEPLOY_COMMIT", &env.commit)
            .env("SYMDEPLOY_REF", &env.git_ref)
            .env("SYMDEPLOY_STAGE", stage)
            .env("SYMDEPLOY_PREVIOUS", previous)
            .timeout(env.timeout)
            .record(
                crate::state::root::Root {
                    dir: env.root.clone(),
                }
                .running_step(),
            );
        for (key, value) in &env.extra {
            step.env(key, value);
        }
        step
    }

    /// (chainable) The directory the command runs in.
    pub(crate) fn cwd(&mut self, dir: impl AsRef<Path>) -> &mut Step {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// (chainable) Set a variable in the command's environment.
    pub(crate) fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Step {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// (chainable) How long the command may run before its group is ended.
    pub(crate) fn timeout(&mut self, timeout: Duration) -> &mut Step {
        self.timeout = Some(timeout);
        self
    }

    /// (chainable) Keep the orphan record at `path` while the step runs, so
    /// a recovery after a crash can end what it left ([`end_orphans`]).
    pub(crate) fn record(&mut self, path: impl AsRef<Path>) -> &mut Step {
        self.record = Some(path.as_ref().to_path_buf());
        self
    }

    /// (chainable) Send the lines to the run log and `capture`, not the screen.
    fn capture(&mut self, capture: &Capture) -> &mut Step {
        self.capture = Some(capture.clone());
        self
    }

    /// Run the step; `Err` unless it exited 0 in time. An interrupted step
    /// gives the interrupt's error (exit status 130/143 for the operation).
    pub(crate) fn run(&self) -> Result<()> {
        let finished = self.exec()?;
        if finished.status.success() && !finished.timed_out {
            return Ok(());
        }
        if finished.interrupted {
            return Err(crate::sys::signals::error(format!(
                "the {} step `{}` was ended",
                self.stage, self.command
            )));
        }
        Err(Error::Step {
            stage: self.stage.clone(),
            command: self.command.clone(),
            status: self.describe(&finished),
            log: output::log_path(),
        })
    }

    /// Run the step and say how it ended, whatever that was; `Err` only when
    /// it could not run (or was not started because of an interrupt).
    pub(crate) fn exec(&self) -> Result<Finished> {
        // After Ctrl-C only an unwind (starting the daemons again) runs steps.
        crate::sys::signals::check(&format!(
            "the {} step `{}` was not started",
            self.stage, self.command
        ))?;
        let echo = Arc::new(Echo::new(&self.stage, self.capture.clone()));
        echo.show(&format!("$ {}", self.command));
        let started = Instant::now();
        let finished = self.spawn_and_wait(&echo)?;
        tracing::info!(
            stage = self.stage,
            command = self.command,
            status = ?finished.status,
            seconds = started.elapsed().as_secs_f64(),
            "step finished"
        );
        Ok(finished)
    }

    /// Spawn, stream and wait. The guards (orphan record, running group)
    /// end on every way out, an early `?` included.
    fn spawn_and_wait(&self, echo: &Arc<Echo>) -> Result<Finished> {
        let (reader, writer) =
            std::io::pipe().map_err(|e| Error::io("create a pipe for", &self.command, e))?;
        // Recorded before and after the spawn, so that if we are killed while
        // the step runs, the recovery can end what it left running.
        let token = crate::sys::fs::unique_token();
        let record = self
            .record
            .as_deref()
            .map(|path| OrphanRecord::begin(path, &token));
        let child = self.spawn(writer, &token)?;
        let streamer = Streamer::start(reader, Arc::clone(echo));
        let pgid = Pid::from_raw(child.id() as i32);
        if let Some(record) = &record {
            record.spawned(pgid, &format!("{}: {}", self.stage, self.command));
        }
        // From here an interrupt (SIGINT/SIGTERM) ends this group too.
        let running = crate::sys::signals::running_step(pgid.as_raw());
        let finished = self.wait(child, pgid)?;
        drop(running);
        streamer.finish(echo);
        drop(record);
        Ok(finished)
    }

    /// Start `sh -c` in its own process group, both pipes into `writer`.
    /// The `Command` (holding our copies of the write end) is gone when this
    /// returns, or the reader would never see EOF.
    fn spawn(&self, writer: PipeWriter, token: &str) -> Result<Child> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&self.command);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        for (key, _) in std::env::vars_os() {
            // Variables of the push (GIT_DIR, GIT_QUARANTINE_PATH, GIT_PUSH_OPTION_*,
            // ...) would make a `git` inside a step act on the deploy repository.
            if key.to_string_lossy().starts_with("GIT_") || key == "SYMDEPLOY_FAULT" {
                cmd.env_remove(key);
            }
        }
        let stdout = writer
            .try_clone()
            .map_err(|e| Error::io("duplicate a pipe for", &self.command, e))?;
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(STEP_VAR, token)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(writer)
            // Its own process group, so a timeout kills everything it started.
            .process_group(0);
        cmd.spawn().map_err(|e| {
            let dir = self
                .cwd
                .as_ref()
                .map_or_else(|| ".".to_string(), |d| d.display().to_string());
            Error::with_help(
                format!("cannot start `sh -c {}` in {dir}: {e}", self.command),
                "check that /bin/sh exists and the release directory is accessible",
            )
        })
    }

    /// Wait for the step to end: until it exits, or its timeout (then SIGTERM
    /// to its group, SIGKILL after a grace), or an interrupt (the signal
    /// thread has sent SIGTERM; SIGKILL after the same grace). Every wait is
    /// on a channel: the exit, a signal wake-up, or the next deadline.
    fn wait(&self, child: Child, pgid: Pid) -> Result<Finished> {
        let exited = wait_in_thread(child);
        let wakeups = crate::sys::signals::wakeups();
        let mut watch = Watch::new(self, pgid);
        loop {
            if !watch.interrupted && crate::sys::signals::should_stop() {
                watch.interrupt();
            }
            // A clone, so the arm below may replace the watch's deadline.
            let deadline = watch.deadline.clone();
            crossbeam_channel::select! {
                recv(exited) -> r => return Ok(watch.finished(self.exit_status(r, pgid)?)),
                recv(wakeups) -> _ => {}
                recv(deadline) -> _ => watch.deadline_passed(),
            }
        }
    }

    /// What the waiting thread sent: the status, or why there is none.
    fn exit_status(
        &self,
        received: std::result::Result<std::io::Result<ExitStatus>, RecvError>,
        // The shell leads its own group: the group's number is its pid.
        pid: Pid,
    ) -> Result<ExitStatus> {
        match received {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => Err(Error::io("wait for", &self.command, e)),
            Err(_) => Err(Error::msg(format!(
                "lost track of `{}` (pid {pid})",
                self.command
            ))),
        }
    }

    fn warn_timeout(&self) {
        output::warning(&format!(
            "`{}` ran longer than step_timeout ({}s); killing its process group",
            self.command,
            self.timeout.unwrap_or_default().as_secs()
        ));
    }

    /// How a step that did not succeed ended, for its error message.
    fn describe(&self, finished: &Finished) -> String {
        let status = finished.status;
        if finished.timed_out {
            format!(
                "timed out after {}s (step_timeout); its process group was killed",
                self.timeout.unwrap_or_default().as_secs()
            )
        } else if let Some(code) = status.code() {
            format!("exit status {code}")
        } else if let Some(sig) = status.signal() {
            let name = Signal::try_from(sig)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| sig.to_string());
            format!("killed by signal {sig} ({name})")
        } else {
            format!("{status}")
        }
    }
}

/// The wait for one running step: what has been done to its group so far
/// and when the next escalation is due.
struct Watch<'a> {
    step: &'a Step,
    pgid: Pid,
    /// Fires at the step's timeout, then (once SIGTERM went) at SIGKILL's.
    deadline: Receiver<Instant>,
    /// SIGTERM went to the group: the deadline is SIGKILL's now.
    terminating: bool,
    timed_out: bool,
    interrupted: bool,
}

impl<'a> Watch<'a> {
    fn new(step: &'a Step, pgid: Pid) -> Watch<'a> {
        Watch {
            step,
            pgid,
            deadline: match step.timeout {
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
            self.step.warn_timeout();
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
        self.interrupted |= !status.success() && crate::sys::signals::should_stop();
        if self.timed_out || self.interrupted {
            // Whatever it started is ours to end too.
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
        Finished {
            status,
            timed_out: self.timed_out,
            interrupted: self.interrupted,
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finished {
    /// The shell's exit status.
    pub(crate) status: ExitStatus,
    /// It ran past its timeout and its group was ended.
    pub(crate) timed_out: bool,
    /// A SIGINT/SIGTERM to symdeploy ended it.
    pub(crate) interrupted: bool,
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

/// `ROOT/.symdeploy/step` while a step runs: its token, process group and
/// what it is, for [`end_orphans`] after a crash. Removed when dropped, so
/// every way out of a step removes it; only a killed symdeploy leaves it.
struct OrphanRecord {
    path: PathBuf,
    token: String,
}

impl OrphanRecord {
    /// Written before the spawn: a crash in between still leaves the token.
    fn begin(path: &Path, token: &str) -> OrphanRecord {
        let _ = std::fs::write(path, format!("{token}\n"));
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

/// Lines of a step kept aside instead of shown.
#[derive(Debug, Default, Clone)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl Capture {
    fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Where a step's output lines go.
struct Echo {
    stage: String,
    /// Set once the step returned and we stopped waiting for its output: a
    /// background child's later lines belong to no stage on screen.
    detached: AtomicBool,
    capture: Option<Capture>,
}

impl Echo {
    fn new(stage: &str, capture: Option<Capture>) -> Echo {
        Echo {
            stage: stage.to_string(),
            detached: AtomicBool::new(false),
            capture,
        }
    }

    fn show(&self, text: &str) {
        if self.detached.load(Ordering::SeqCst) {
            output::log_only(&format!("       [{}, background] {text}", self.stage));
        } else if let Some(c) = &self.capture {
            output::log_only(&format!("       {text}"));
            c.push(text.to_string());
        } else {
            output::detail(text);
        }
    }
}

/// The thread that reads a step's pipe and shows its lines as they come.
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
    /// pipe nobody will read after we exit, and the deploy goes on.
    fn finish(self, echo: &Echo) {
        if self.ended.recv_timeout(DRAIN_AFTER_EXIT).is_err() {
            let note = format!(
                "(a process this step started is still running; its later output goes to the run log only, tagged [{}, background])",
                echo.stage
            );
            // Shown before the flag is set, so it stays with this step's lines.
            echo.show(&note);
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

/// The variable that marks every process of one step run.
const STEP_VAR: &str = "SYMDEPLOY_STEP_ID";

/// After a crash, end the processes of the step that was running when the
/// run died: those still in its process group and carrying its token (never
/// a daemon that left the group, never an unrelated process that reused the
/// number). Without this, an orphaned `stop` could stop the daemons after the
/// recovery has started them again. Call with the deploy lock held; returns
/// what was done, for the operator.
pub(crate) fn end_orphans(root: &crate::state::root::Root) -> Option<String> {
    let record = root.running_step();
    let text = std::fs::read_to_string(&record).ok()?;
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
    let _ = std::fs::remove_file(&record);
    Some(if ended == 0 {
        format!("the interrupted step ({what}) had already ended")
    } else {
        format!(
            "ended {} still running from the interrupted step ({what})",
            output::count(ended as u64, "process", "processes")
        )
    })
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

/// Does `program` (the first word of a command) exist on PATH? For `check`.
pub(crate) fn program_on_path(command: &str) -> Option<bool> {
    let first = command.split_whitespace().next()?;
    // Assignments and shell syntax are not programs to look for.
    if first.contains('=') || first.starts_with(['(', '{', '$', '"', '\'']) {
        return None;
    }
    if first.contains('/') {
        return Some(Path::new(first).exists());
    }
    const BUILTINS: &[&str] = &[
        "cd", "echo", "test", "[", "true", "false", "exit", "export", "set", ":", ".", "exec",
        "printf", "if", "for", "while",
    ];
    if BUILTINS.contains(&first) {
        return Some(true);
    }
    let path = std::env::var_os("PATH")?;
    Some(std::env::split_paths(&path).any(|d| d.join(first).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path, timeout: Duration) -> StepEnv {
        StepEnv {
            root: dir.to_path_buf(),
            release: dir.to_path_buf(),
            commit: "c0ffee".into(),
            git_ref: "refs/heads/main".into(),
            previous: None,
            extra: vec![],
            timeout,
        }
    }

    #[test]
    fn runs_in_the_release_with_symdeploy_variables() {
        let t = tempfile::tempdir().unwrap();
        run_one(
            "build",
            "echo \"$SYMDEPLOY_STAGE $SYMDEPLOY_COMMIT ${GIT_DIR:-none}\" > out",
            &env(t.path(), Duration::from_secs(10)),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("out")).unwrap(),
            "build c0ffee none\n"
        );
    }

    #[test]
    fn failure_reports_exit_status() {
        let t = tempfile::tempdir().unwrap();
        let e = run_one("build", "exit 7", &env(t.path(), Duration::from_secs(10))).unwrap_err();
        assert!(e.to_string().contains("exit status 7"), "{e}");
        let e = run_one(
            "build",
            "kill -9 $$",
            &env(t.path(), Duration::from_secs(10)),
        )
        .unwrap_err();
        assert!(e.to_string().contains("signal 9"), "{e}");
    }

    #[test]
    fn timeout_kills_the_process_group() {
        let t = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let e = run_one(
            "build",
            "sleep 30 & sleep 30",
            &env(t.path(), Duration::from_secs(1)),
        )
        .unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(15));
    }

    /// A root with `.symdeploy/`, so the orphan record can be written.
    fn root_env(timeout: Duration) -> (tempfile::TempDir, StepEnv) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join(".symdeploy")).unwrap();
        let e = env(t.path(), timeout);
        (t, e)
    }

    fn record(t: &tempfile::TempDir) -> PathBuf {
        crate::state::root::Root {
            dir: t.path().to_path_buf(),
        }
        .running_step()
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
    fn timeout_ends_the_group_including_a_background_grandchild() {
        let (t, env) = root_env(Duration::from_secs(1));
        let finished = Step::for_env(
            "build",
            "sh -c 'sleep 300' & echo $! > grandchild; sleep 300",
            &env,
        )
        .exec()
        .unwrap();
        assert!(finished.timed_out);
        assert!(!finished.interrupted);
        assert!(!finished.status.success());
        let grandchild = read_pid(&t.path().join("grandchild"));
        assert!(gone(grandchild), "grandchild {grandchild} survived");
    }

    #[test]
    fn output_lines_arrive_in_order_from_both_pipes() {
        let (_t, env) = root_env(Duration::from_secs(30));
        let capture = Capture::default();
        Step::for_env(
            "build",
            "for i in 1 2 3; do echo out$i; echo err$i >&2; done; printf 'no newline\\r'",
            &env,
        )
        .capture(&capture)
        .run()
        .unwrap();
        assert_eq!(
            capture.take(),
            [
                "$ for i in 1 2 3; do echo out$i; echo err$i >&2; done; printf 'no newline\\r'",
                "out1",
                "err1",
                "out2",
                "err2",
                "out3",
                "err3",
                "no newline",
            ]
        );
    }

    #[test]
    fn a_long_line_is_cut_not_buffered_whole() {
        let (_t, env) = root_env(Duration::from_secs(30));
        let capture = Capture::default();
        Step::for_env("build", "head -c 150000 /dev/zero | tr '\\0' x", &env)
            .capture(&capture)
            .run()
            .unwrap();
        let lines = capture.take();
        let sizes: Vec<usize> = lines[1..].iter().map(|l| l.len()).collect();
        assert_eq!(sizes, [MAX_LINE, MAX_LINE, 150000 - 2 * MAX_LINE]);
    }

    #[test]
    fn the_orphan_record_lives_exactly_as_long_as_the_step() {
        // Each command fails unless the record is there while it runs.
        let seen = "test -s \"$SYMDEPLOY_ROOT/.symdeploy/step\" && grep -qx \"$SYMDEPLOY_STEP_ID\" \"$SYMDEPLOY_ROOT/.symdeploy/step\"";
        let (t, env) = root_env(Duration::from_secs(1));
        Step::for_env("build", seen, &env).run().unwrap();
        assert!(!record(&t).exists(), "left after success");

        let e = Step::for_env("build", &format!("{seen} && exit 3"), &env)
            .run()
            .unwrap_err();
        assert!(e.to_string().contains("exit status 3"), "{e}");
        assert!(!record(&t).exists(), "left after failure");

        let e = Step::for_env("build", &format!("{seen} && sleep 300"), &env)
            .run()
            .unwrap_err();
        assert!(e.to_string().contains("timed out after 1s"), "{e}");
        assert!(!record(&t).exists(), "left after timeout");
    }

    #[test]
    fn the_orphan_record_names_the_group_and_the_step() {
        let (t, env) = root_env(Duration::from_secs(30));
        Step::for_env(
            "stop",
            "cp \"$SYMDEPLOY_ROOT/.symdeploy/step\" seen; echo $$ > pid",
            &env,
        )
        .run()
        .unwrap();
        let seen = std::fs::read_to_string(t.path().join("seen")).unwrap();
        let lines: Vec<&str> = seen.lines().collect();
        assert_eq!(lines.len(), 3, "{seen}");
        assert_eq!(lines[1], read_pid(&t.path().join("pid")).to_string());
        assert_eq!(
            lines[2],
            "stop: cp \"$SYMDEPLOY_ROOT/.symdeploy/step\" seen; echo $$ > pid"
        );
    }

    #[test]
    fn exit_status_is_reported() {
        let t = tempfile::tempdir().unwrap();
        let mut step = Step::new("build", "exit 5");
        step.cwd(t.path());
        let finished = step.exec().unwrap();
        assert_eq!(finished.status.code(), Some(5));
        assert!(!finished.timed_out && !finished.interrupted);
        let ok = Step::new("build", "true").exec().unwrap();
        assert!(ok.status.success());
    }

    #[test]
    fn env_and_cwd_reach_the_command() {
        let t = tempfile::tempdir().unwrap();
        let mut step = Step::new("build", "echo \"$A $PWD\" > out");
        step.cwd(t.path()).env("A", "value");
        step.run().unwrap();
        let out = std::fs::read_to_string(t.path().join("out")).unwrap();
        let dir = t.path().canonicalize().unwrap();
        assert_eq!(out, format!("value {}\n", dir.display()));
    }

    #[test]
    fn a_spawn_failure_is_an_error_and_leaves_no_record() {
        let (t, mut env) = root_env(Duration::from_secs(30));
        env.release = t.path().join("missing");
        let e = run_one("build", "true", &env).unwrap_err();
        assert!(e.to_string().contains("cannot start"), "{e}");
        assert!(!record(&t).exists());
    }

    #[test]
    fn end_orphans_kills_the_marked_group_and_waits_until_gone() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join(".symdeploy")).unwrap();
        let root = crate::state::root::Root {
            dir: t.path().to_path_buf(),
        };
        let token = crate::sys::fs::unique_token();
        // Stands for a step left running by a killed symdeploy: its own
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
        std::fs::write(
            root.running_step(),
            format!("{token}\n{pgid}\nstop: sleep\n"),
        )
        .unwrap();
        // Its child is forked once "ready" comes (exec keeps the count at 2).
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(orphan.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready, "ready\n");
        let note = end_orphans(&root).unwrap();
        assert_eq!(
            note,
            "ended 2 processes still running from the interrupted step (stop: sleep)"
        );
        assert!(!root.running_step().exists());
        assert!(orphan.wait().unwrap().signal() == Some(9));
        assert!(
            bystander.try_wait().unwrap().is_none(),
            "bystander was killed"
        );
        bystander.kill().unwrap();
        bystander.wait().unwrap();
        assert_eq!(end_orphans(&root), None);
    }

    #[test]
    fn a_step_that_ignores_sigterm_gets_sigkill_after_the_grace() {
        let (_t, env) = root_env(Duration::from_secs(1));
        let finished = Step::for_env("build", "trap '' TERM; sleep 300", &env)
            .exec()
            .unwrap();
        assert!(finished.timed_out);
        assert_eq!(finished.status.signal(), Some(9));
    }

    /// What `wait` does once the signal thread set the flag: the group is
    /// ended and the step counts as interrupted, not timed out. (Driven
    /// directly: the flag itself is process-wide and would stop the other
    /// tests' steps.)
    #[test]
    fn an_interrupt_ends_the_group_and_is_reported_as_such() {
        let t = tempfile::tempdir().unwrap();
        let mut step = Step::new("stop", "sh -c 'sleep 300' & echo $!; sleep 300");
        step.cwd(t.path()).timeout(Duration::from_secs(3600));
        let (reader, writer) = std::io::pipe().unwrap();
        let child = step.spawn(writer, "token").unwrap();
        let pgid = Pid::from_raw(child.id() as i32);
        let exited = wait_in_thread(child);
        // The shell prints the grandchild's pid once it forked it.
        let (tx, first_line) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(reader), &mut line);
            let _ = tx.send(line);
        });
        let line = first_line.recv_timeout(Duration::from_secs(30)).unwrap();
        let pid: i32 = line.trim().parse().unwrap();
        let mut watch = Watch::new(&step, pgid);
        watch.interrupt();
        let status = exited
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .unwrap();
        let finished = watch.finished(status);
        assert!(finished.interrupted && !finished.timed_out);
        assert!(gone(pid), "grandchild {pid} survived the interrupt");
    }

    #[test]
    fn a_background_child_does_not_hang_the_step() {
        let t = tempfile::tempdir().unwrap();
        let started = Instant::now();
        run_one(
            "build",
            "sleep 20 & echo started",
            &env(t.path(), Duration::from_secs(60)),
        )
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
