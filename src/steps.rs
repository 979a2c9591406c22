//! Run configured commands: `sh -c` in the release, a clean environment, output
//! streamed live line by line, a timeout that kills the whole process group.
//!
//! A step's output goes through a pipe we own, never straight to our stderr:
//! a daemon that a step leaves behind keeps only that pipe open, so the push
//! (which waits for the hook's stderr to close) never hangs on it.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::output;

/// How long we keep reading a step's output after it exited, for lines still
/// in flight; a leftover background child does not get longer than this.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// Grace between SIGTERM and SIGKILL for a timed-out step.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// A line longer than this is cut into pieces rather than buffered whole.
const MAX_LINE: usize = 64 * 1024;

/// What every step gets in its environment.
#[derive(Debug, Clone)]
pub struct StepEnv {
    /// The deploy root.
    pub root: PathBuf,
    /// The release directory the step runs in.
    pub release: PathBuf,
    /// The release's commit.
    pub commit: String,
    /// The ref that was pushed (or given by hand).
    pub git_ref: String,
    /// The current production release directory, if any.
    pub previous: Option<PathBuf>,
    /// Extra variables (SYMDEPLOY_RESULT for promote.notify).
    pub extra: Vec<(String, String)>,
    /// How long one command may run.
    pub timeout: Duration,
}

/// Run `commands` of `stage` in order; the first failure stops the stage.
pub fn run_stage(stage: &str, commands: &[String], env: &StepEnv) -> Result<()> {
    for command in commands {
        run_one(stage, command, env)?;
    }
    Ok(())
}

/// Run `commands` of `stage` like [`run_stage`], but keep their lines (the
/// command lines too) off the screen: they go to the run log and are
/// returned, so a retried health check can show only what matters.
pub fn run_stage_captured(
    stage: &str,
    commands: &[String],
    env: &StepEnv,
) -> (Result<()>, Vec<String>) {
    let capture = Capture::default();
    for command in commands {
        if let Err(e) = run_one_with(stage, command, env, Some(&capture)) {
            return (Err(e), capture.take());
        }
    }
    (Ok(()), capture.take())
}

/// Lines of a step kept aside instead of shown.
#[derive(Default, Clone)]
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

/// Run one command and report how it ended.
pub fn run_one(stage: &str, command: &str, env: &StepEnv) -> Result<()> {
    run_one_with(stage, command, env, None)
}

fn run_one_with(
    stage: &str,
    command: &str,
    env: &StepEnv,
    capture: Option<&Capture>,
) -> Result<()> {
    // After Ctrl-C only an unwind (starting the daemons again) runs steps.
    crate::signals::check(&format!("the {stage} step `{command}` was not started"))?;
    let echo = Arc::new(Echo {
        stage: stage.to_string(),
        detached: AtomicBool::new(false),
        capture: capture.cloned(),
    });
    echo.show(&format!("$ {command}"));
    let started = Instant::now();
    let (reader, writer) =
        std::io::pipe().map_err(|e| Error::io("create a pipe for", command, e))?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command).current_dir(&env.release);
    for (key, _) in std::env::vars_os() {
        // Variables of the push (GIT_DIR, GIT_QUARANTINE_PATH, GIT_PUSH_OPTION_*,
        // ...) would make a `git` inside a step act on the deploy repository.
        if key.to_string_lossy().starts_with("GIT_") || key == "SYMDEPLOY_FAULT" {
            cmd.env_remove(key);
        }
    }
    let previous = env
        .previous
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    cmd.env("SYMDEPLOY_ROOT", &env.root)
        .env("SYMDEPLOY_RELEASE", &env.release)
        .env("SYMDEPLOY_COMMIT", &env.commit)
        .env("SYMDEPLOY_REF", &env.git_ref)
        .env("SYMDEPLOY_STAGE", stage)
        .env("SYMDEPLOY_PREVIOUS", previous)
        .envs(env.extra.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(
            writer
                .try_clone()
                .map_err(|e| Error::io("duplicate a pipe for", command, e))?,
        )
        .stderr(writer)
        // Its own process group, so a timeout kills everything it started.
        .process_group(0);
    // Recorded before and after the spawn, so that if we are killed while the
    // step runs, the recovery can end what it left running (end_orphans).
    let token = crate::fsutil::unique_token();
    cmd.env(STEP_VAR, &token);
    let record = record_path(env);
    let _ = std::fs::write(&record, format!("{token}\n"));
    let child = cmd.spawn().map_err(|e| {
        Error::with_help(
            format!(
                "cannot start `sh -c {command}` in {}: {e}",
                env.release.display()
            ),
            "check that /bin/sh exists and the release directory is accessible",
        )
    })?;
    // Our copies of the pipe's write end must be closed, or EOF never comes.
    drop(cmd);
    let (line_done, lines_ended) = crossbeam_channel::bounded(1);
    let streamer_echo = Arc::clone(&echo);
    let streamer = std::thread::spawn(move || {
        stream_lines(reader, &streamer_echo);
        let _ = line_done.send(());
    });

    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = std::fs::write(&record, format!("{token}\n{pgid}\n{stage}: {command}\n"));
    // From here an interrupt (SIGINT/SIGTERM) ends this group too.
    let running = crate::signals::running_step(pgid.as_raw());
    let (status, timed_out, interrupted) = wait_step(child, pgid, env.timeout, command)?;
    drop(running);
    wait_for_streamer(streamer, lines_ended, &echo);
    let _ = std::fs::remove_file(&record);
    let took = started.elapsed();
    tracing::info!(
        stage,
        command,
        ?status,
        seconds = took.as_secs_f64(),
        "step finished"
    );
    if status.success() && !timed_out {
        return Ok(());
    }
    if interrupted {
        return Err(crate::signals::error(format!(
            "the {stage} step `{command}` was ended"
        )));
    }
    let how = if timed_out {
        format!(
            "timed out after {}s (step_timeout); its process group was killed",
            env.timeout.as_secs()
        )
    } else if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(sig) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| sig.to_string());
        format!("killed by signal {sig} ({name})")
    } else {
        format!("{status}")
    };
    Err(Error::Step {
        stage: stage.to_string(),
        command: command.to_string(),
        status: how,
        log: output::log_path(),
    })
}

/// The variable that marks every process of one step run.
const STEP_VAR: &str = "SYMDEPLOY_STEP_ID";

/// `ROOT/.symdeploy/step`: the step running now (token, process group, what).
fn record_path(env: &StepEnv) -> PathBuf {
    crate::root::Root {
        dir: env.root.clone(),
    }
    .running_step()
}

/// After a crash, end the processes of the step that was running when the
/// run died: those still in its process group and carrying its token (never
/// a daemon that left the group, never an unrelated process that reused the
/// number). Without this, an orphaned `stop` could stop the daemons after the
/// recovery has started them again. Call with the deploy lock held; returns
/// what was done, for the operator.
pub fn end_orphans(root: &crate::root::Root) -> Option<String> {
    let record = root.running_step();
    let text = std::fs::read_to_string(&record).ok()?;
    let mut lines = text.lines();
    let token = lines.next().unwrap_or_default().to_string();
    let pgid: Option<i32> = lines.next().and_then(|l| l.trim().parse().ok());
    let what = lines.next().unwrap_or("a step").to_string();
    let wanted = format!("{STEP_VAR}={token}");
    let mut ended = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pgid.is_some_and(|g| process_group(pid) != Some(g)) {
            continue;
        }
        let marked = std::fs::read(entry.path().join("environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == wanted.as_bytes()));
        if marked && !token.is_empty() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            ended.push(pid);
        }
    }
    // SIGKILL is asynchronous: wait until they are really gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && ended.iter().any(|&p| process_group(p).is_some()) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(&record);
    Some(if ended.is_empty() {
        format!("the interrupted step ({what}) had already ended")
    } else {
        format!(
            "ended {} still running from the interrupted step ({what})",
            output::count(ended.len() as u64, "process", "processes")
        )
    })
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

/// Wait for a step to end: until it exits, or its timeout (then SIGTERM to
/// its group, SIGKILL after a grace), or an interrupt (the signal thread has
/// sent SIGTERM; SIGKILL after the same grace). Returns its status, whether
/// it timed out, and whether an interrupt ended it.
fn wait_step(
    mut child: std::process::Child,
    pgid: nix::unistd::Pid,
    timeout: Duration,
    command: &str,
) -> Result<(std::process::ExitStatus, bool, bool)> {
    use nix::sys::signal::{killpg, Signal};
    let (tx, exited) = crossbeam_channel::bounded(1);
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let wakeups = crate::signals::wakeups();
    let started = Instant::now();
    let mut timed_out = false;
    let mut interrupted = false;
    // When the group gets SIGKILL, once SIGTERM was sent.
    let mut kill_at: Option<Instant> = None;
    let status = loop {
        if !interrupted && crate::signals::should_stop() {
            // The signal thread sent SIGTERM (or will, racing us: once more is harmless).
            interrupted = true;
            let _ = killpg(pgid, Signal::SIGTERM);
            kill_at.get_or_insert(Instant::now() + KILL_GRACE);
        }
        let next = match kill_at {
            Some(k) => k,
            None => started + timeout,
        };
        crossbeam_channel::select! {
            recv(exited) -> r => match r {
                Ok(Ok(status)) => break status,
                Ok(Err(e)) => return Err(Error::io("wait for", command, e)),
                Err(_) => return Err(Error::msg(format!("lost track of `{command}` (pid {pid})"))),
            },
            recv(wakeups) -> _ => continue,
            default(next.saturating_duration_since(Instant::now())) => {
                if kill_at.is_some() {
                    let _ = killpg(pgid, Signal::SIGKILL);
                    kill_at = Some(Instant::now() + Duration::from_secs(3600));
                } else {
                    timed_out = true;
                    output::warning(&format!(
                        "`{command}` ran longer than step_timeout ({}s); killing its process group",
                        timeout.as_secs()
                    ));
                    let _ = killpg(pgid, Signal::SIGTERM);
                    kill_at = Some(Instant::now() + KILL_GRACE);
                }
            }
        }
    };
    // The signal thread may have ended the group before this loop saw the flag.
    interrupted |= !status.success() && crate::signals::should_stop();
    if timed_out || interrupted {
        // Whatever it started is ours to end too.
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    Ok((status, timed_out, interrupted))
}

/// Wait briefly for the output thread. If a background child of the step still
/// holds the pipe, give up on it: the thread is left blocked on a pipe nobody
/// will read after we exit, and the deploy goes on.
fn wait_for_streamer(
    handle: std::thread::JoinHandle<()>,
    ended: crossbeam_channel::Receiver<()>,
    echo: &Echo,
) {
    if ended.recv_timeout(DRAIN_AFTER_EXIT).is_err() {
        let note = format!(
            "(a process this step started is still running; its later output goes to the run log only, tagged [{}, background])",
            echo.stage
        );
        // Shown before the flag is set, so it stays with this step's lines.
        echo.show(&note);
        echo.detached.store(true, Ordering::SeqCst);
        return;
    }
    let _ = handle.join();
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

/// Does `program` (the first word of a command) exist on PATH? For `check`.
pub fn program_on_path(command: &str) -> Option<bool> {
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
