//! Configured commands as deploy steps. The process itself (its group, the
//! streamed pipes, timeout and interrupt, orphans after a crash) is the
//! `symdeploy-steps` crate; here a step gets its stage, the `SYMDEPLOY_*`
//! variables, the root's orphan record, its lines on screen and in the run
//! log, Ctrl-C from [`crate::sys::signals`], and its failure as our error.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) use symdeploy_steps::StepEnd;
use symdeploy_steps::{Finished, Interrupts, Listener};

use crate::error::{Error, Result};
use crate::sys::output;

/// What every step gets in its environment.
#[derive(Debug, Clone)]
pub(crate) struct StepEnv {
    /// The deploy root.
    pub(crate) root: PathBuf,
    /// The release directory the step runs in.
    pub(crate) release: PathBuf,
    /// The release's commit.
    pub(crate) commit: crate::state::commit::Commit,
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

/// One configured command of a stage (build, stop, check, ...).
#[derive(Debug, Clone)]
pub(crate) struct Step {
    stage: String,
    process: symdeploy_steps::Step,
    /// Lines kept aside instead of shown (a retried health check).
    capture: Option<Capture>,
}

impl Step {
    /// A step of `stage` running `command` through `sh -c`, in our working
    /// directory, with no timeout and no record.
    pub(crate) fn new(stage: &str, command: &str) -> Step {
        let mut process = symdeploy_steps::Step::new(command);
        process.still_running_after(still_running_after());
        Step {
            stage: stage.to_string(),
            process,
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
            .env("SYMDEPLOY_COMMIT", env.commit.as_str())
            .env("SYMDEPLOY_REF", &env.git_ref)
            .env("SYMDEPLOY_STAGE", stage)
            .env("SYMDEPLOY_PREVIOUS", previous)
            .env(crate::sys::deployer::BY_VAR, crate::sys::deployer::by())
            .timeout(env.timeout);
        // The record is the lock holder's: the watch checks without the
        // lock, and a deploy's recovery must not end its check as an orphan.
        if stage != crate::state::root::WATCH_STAGE {
            let record = crate::state::root::Root {
                dir: env.root.clone(),
            }
            .running_step();
            step.process.record(record, &format!("{stage}: {command}"));
        }
        for (key, value) in &env.extra {
            step.env(key, value);
        }
        step
    }

    /// (chainable) The directory the command runs in.
    pub(crate) fn cwd(&mut self, dir: impl AsRef<Path>) -> &mut Step {
        self.process.cwd(dir);
        self
    }

    /// (chainable) Set a variable in the command's environment.
    pub(crate) fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Step {
        self.process.env(key, value);
        self
    }

    /// (chainable) How long the command may run before its group is ended.
    pub(crate) fn timeout(&mut self, timeout: Duration) -> &mut Step {
        self.process.timeout(timeout);
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
        let Some(end) = finished.end() else {
            return Ok(());
        };
        if finished.interrupted {
            return Err(crate::sys::signals::error(format!(
                "the {} step `{}` was ended",
                self.stage,
                self.process.command()
            )));
        }
        Err(Error::Step {
            stage: self.stage.clone(),
            command: self.process.command().to_string(),
            status: end,
            log: output::log_path(),
        })
    }

    /// Run the step and say how it ended, whatever that was; `Err` only when
    /// it could not run (or was not started because of an interrupt).
    pub(crate) fn exec(&self) -> Result<Finished> {
        let command = self.process.command();
        // After Ctrl-C only an unwind (starting the daemons again) runs steps.
        crate::sys::signals::check(&format!(
            "the {} step `{command}` was not started",
            self.stage
        ))?;
        let echo = Arc::new(Echo {
            stage: self.stage.clone(),
            command: command.to_string(),
            capture: self.capture.clone(),
        });
        echo.line(&format!("$ {command}"));
        let started = Instant::now();
        let finished = self
            .process
            .exec(echo, &Signals)
            .map_err(|e| step_error(e, command))?;
        tracing::info!(
            stage = self.stage,
            command,
            status = %symdeploy_steps::status_words(finished.status),
            seconds = started.elapsed().as_secs_f64(),
            "step finished"
        );
        Ok(finished)
    }
}

/// A step that could not be run at all, told for the operator.
fn step_error(e: symdeploy_steps::Error, command: &str) -> Error {
    match e {
        symdeploy_steps::Error::Io { action, source, .. } => Error::io(action, command, source),
        symdeploy_steps::Error::Spawn { .. } => Error::with_help(
            e.to_string(),
            "check that /bin/sh exists and the release directory is accessible",
        ),
        symdeploy_steps::Error::Lost { .. } => Error::msg(e.to_string()),
    }
}

/// Ctrl-C, SIGTERM and SIGHUP as [`crate::sys::signals`] sees them.
struct Signals;

impl Interrupts for Signals {
    fn requested(&self) -> bool {
        crate::sys::signals::should_stop()
    }
    fn wakeups(&self) -> crossbeam_channel::Receiver<()> {
        crate::sys::signals::wakeups()
    }
    fn running(&self, pgid: i32) -> Box<dyn std::any::Any> {
        Box::new(crate::sys::signals::running_step(pgid))
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

/// Where a step's lines go: the screen (and the run log), or only the run
/// log and a capture; a background child's late lines to the run log only.
struct Echo {
    stage: String,
    command: String,
    capture: Option<Capture>,
}

impl Listener for Echo {
    fn line(&self, text: &str) {
        if let Some(c) = &self.capture {
            output::log_only(&format!("       {text}"));
            c.push(text.to_string());
        } else {
            output::detail(text);
        }
    }

    fn background_line(&self, text: &str) {
        output::log_only(&format!("       [{}, background] {text}", self.stage));
    }

    fn detaching(&self) {
        self.line(&format!(
            "(a process this step started is still running; its later output goes to the run log only, tagged [{}, background])",
            self.stage
        ));
    }

    fn timed_out(&self, after: Duration) {
        output::warning(&format!(
            "`{}` ran longer than step_timeout ({}s); killing its process group",
            self.command,
            after.as_secs()
        ));
    }

    /// So that a long `composer install` or `sleep` does not look like a hang.
    fn still_running(&self, running: Duration) {
        self.line(&format!("still running ({}s)", running.as_secs()));
    }
}

/// How long a step may print nothing before symdeploy says it is still
/// running: 30 s, or SYMDEPLOY_PROGRESS_SECS.
fn still_running_after() -> Duration {
    let secs = std::env::var("SYMDEPLOY_PROGRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// After a crash, end the processes of the step that was running when the
/// run died (see `symdeploy_steps::end_orphans`). Without this, an orphaned
/// `stop` could stop the daemons after the recovery has started them again.
/// Call with the deploy lock held; returns what was done, for the operator.
pub(crate) fn end_orphans(root: &crate::state::root::Root) -> Option<String> {
    let found = symdeploy_steps::end_orphans(&root.running_step())?;
    Some(if found.ended == 0 {
        format!("the interrupted step ({}) had already ended", found.what)
    } else {
        format!(
            "ended {} still running from the interrupted step ({})",
            output::count(found.ended as u64, "process", "processes"),
            found.what
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path, timeout: Duration) -> StepEnv {
        StepEnv {
            root: dir.to_path_buf(),
            release: dir.to_path_buf(),
            commit: crate::state::commit::Commit::parse(&"c0ffee".repeat(7)[..40]).unwrap(),
            git_ref: "refs/heads/main".into(),
            previous: None,
            extra: vec![],
            timeout,
        }
    }

    /// A root with `.symdeploy/`, so the orphan record can be written.
    fn root_env(timeout: Duration) -> (tempfile::TempDir, StepEnv) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join(".symdeploy")).unwrap();
        let e = env(t.path(), timeout);
        (t, e)
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
            format!("build {} none\n", &"c0ffee".repeat(7)[..40])
        );
    }

    #[test]
    fn failure_is_a_step_error_with_its_end() {
        let t = tempfile::tempdir().unwrap();
        let e = run_one("build", "exit 7", &env(t.path(), Duration::from_secs(10))).unwrap_err();
        assert!(
            matches!(&e, Error::Step { status: StepEnd::Exit(7), stage, .. } if stage == "build"),
            "{e:?}"
        );
        assert!(e.to_string().contains("exit status 7"), "{e}");
        let e = run_one("build", "sleep 30", &env(t.path(), Duration::from_secs(1))).unwrap_err();
        assert!(e.to_string().contains("timed out after 1s"), "{e}");
    }

    #[test]
    fn the_root_keeps_the_orphan_record_while_a_step_runs() {
        let seen = "test -s \"$SYMDEPLOY_ROOT/.symdeploy/step\" && grep -qx \"$SYMDEPLOY_STEP_ID\" \"$SYMDEPLOY_ROOT/.symdeploy/step\"";
        let (t, env) = root_env(Duration::from_secs(10));
        Step::for_env("build", seen, &env).run().unwrap();
        let record = crate::state::root::Root {
            dir: t.path().to_path_buf(),
        }
        .running_step();
        assert!(!record.exists());
    }

    #[test]
    fn a_captured_step_keeps_its_lines_and_the_command_line() {
        let (_t, env) = root_env(Duration::from_secs(30));
        let (result, lines) = run_stage_captured("check", &["echo one; echo two >&2".into()], &env);
        result.unwrap();
        assert_eq!(lines, ["$ echo one; echo two >&2", "one", "two"]);
    }

    #[test]
    fn a_spawn_failure_is_an_error() {
        let (t, mut env) = root_env(Duration::from_secs(30));
        env.release = t.path().join("missing");
        let e = run_one("build", "true", &env).unwrap_err();
        assert!(e.to_string().contains("cannot start"), "{e}");
        assert!(e.help().unwrap_or_default().contains("/bin/sh"), "{e:?}");
    }
}
