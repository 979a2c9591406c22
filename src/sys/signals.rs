//! Signals during a locked operation: Ctrl-C, `kill`, a dropped SSH session.
//!
//! The rule (also in the book, docs/src/interrupts.md):
//!
//! - SIGINT and SIGTERM ask the operation to stop. The running step's process
//!   group is ended and the operation unwinds through its failure path: a
//!   promote that had not flipped `production` starts the daemons again, one
//!   that had rolls back (unless only notify was left: then it finishes). The
//!   journal gets an `end` entry `interrupted` and symdeploy exits 128 + the
//!   signal (130, 143). While it unwinds (starting the daemons, rolling back,
//!   recovering) further signals only say what is still being done: they
//!   never cut the unwind short, so the daemons are never left stopped.
//! - SIGHUP means the operator is gone, not that they want it to stop: the
//!   operation goes on as if nothing happened and from then on writes only
//!   to its run log (a hung-up terminal must not kill it with EIO/EPIPE).
//!
//! A real signal handler can do almost nothing safely, so signal-hook turns
//! the signals into messages for one thread of ours, which does the work:
//! set the flag, end the running step's group, wake whoever waits.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender};
use nix::sys::signal::Signal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The first SIGINT/SIGTERM received (0: none).
static INTERRUPT: AtomicI32 = AtomicI32::new(0);
/// The process group of the step running now (0: none).
static RUNNING_GROUP: AtomicI32 = AtomicI32::new(0);
/// What the operation is doing that no signal may cut short, innermost last.
static UNWINDING: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Wakes a thread waiting on a step or a retry when an interrupt comes.
static WAKE: OnceLock<(Sender<()>, Receiver<()>)> = OnceLock::new();
static INSTALLED: OnceLock<()> = OnceLock::new();

/// What a caught signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignalRequest {
    /// Stop: unwind like a failure (SIGINT, SIGTERM).
    Stop(i32),
    /// The operator's terminal is gone: carry on quietly (SIGHUP).
    Detach,
}

/// What a signal asks for, given its number; None for other signals.
pub(crate) fn request(signal: i32) -> Option<SignalRequest> {
    match signal {
        SIGINT | SIGTERM => Some(SignalRequest::Stop(signal)),
        SIGHUP => Some(SignalRequest::Detach),
        _ => None,
    }
}

/// Catch SIGINT, SIGTERM and SIGHUP for the rest of the process. Called when
/// an operation starts changing the root (taking the lock); before that the
/// default actions (die) are exactly right. Safe to call more than once.
pub(crate) fn install() {
    INSTALLED.get_or_init(|| {
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(s) => s,
            Err(e) => {
                crate::sys::output::warning(&format!(
                    "cannot catch signals ({e}); Ctrl-C during this run kills symdeploy outright (the next deploy or `symdeploy recover` repairs it)"
                ));
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    received(signal);
                }
            });
        if let Err(e) = spawned {
            crate::sys::output::warning(&format!("cannot watch for signals: {e}"));
        }
    });
}

fn wake_channel() -> &'static (Sender<()>, Receiver<()>) {
    WAKE.get_or_init(|| crossbeam_channel::bounded(1))
}

/// A receiver that gets a message when an interrupt arrives; the flag
/// (`interrupted`) is the truth, a message only says "look again".
pub(crate) fn wakeups() -> Receiver<()> {
    wake_channel().1.clone()
}

fn name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// Handle one signal, on the signal thread.
fn received(signal: i32) {
    match request(signal) {
        Some(SignalRequest::Detach) => {
            tracing::warn!("SIGHUP: the terminal went away; carrying on");
            crate::sys::output::detach_terminal(
                "-----> the terminal hung up (SIGHUP): carrying on; from here on output goes only to this log",
            );
        }
        Some(SignalRequest::Stop(sig)) => {
            let first = INTERRUPT
                .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            let unwinding = unwinding_now();
            match (&unwinding, first) {
                (Some(what), _) => crate::sys::output::line(&format!(
                    "-----> {} received: still {what}; symdeploy ends when that is done (the daemons are not left stopped)",
                    name(sig)
                )),
                (None, true) => {
                    crate::sys::output::line(&format!(
                        "-----> {} received: ending the running step and undoing this run",
                        name(sig)
                    ));
                    end_running_step();
                }
                (None, false) => crate::sys::output::line(&format!(
                    "-----> {} received again: already stopping this run",
                    name(sig)
                )),
            }
            tracing::warn!(signal = %name(sig), "interrupt received");
            let _ = wake_channel().0.try_send(());
        }
        None => {}
    }
}

/// SIGTERM to the running step's process group (the step waiter escalates
/// to SIGKILL after a grace period), unless an unwind is running it.
fn end_running_step() {
    let pgid = RUNNING_GROUP.load(Ordering::SeqCst);
    if pgid > 0 && unwinding_now().is_none() {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), Signal::SIGTERM);
    }
}

/// The first SIGINT/SIGTERM received, if any.
pub(crate) fn interrupted() -> Option<i32> {
    match INTERRUPT.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Should work that may be skipped stop now? True once interrupted, except
/// while unwinding (which must run to its end).
pub(crate) fn should_stop() -> bool {
    interrupted().is_some() && unwinding_now().is_none()
}

/// The error an interrupted run returns: exit status 128 + the signal.
pub(crate) fn error(what: impl Into<String>) -> crate::error::Error {
    let signal = interrupted().unwrap_or(SIGINT);
    crate::error::Error::Interrupted {
        signal,
        message: format!("interrupted by {}: {}", name(signal), what.into()),
    }
}

/// The `Err` to return when the run must stop now, else `Ok`.
pub(crate) fn check(what: &str) -> crate::error::Result<()> {
    if should_stop() {
        Err(error(what.to_string()))
    } else {
        Ok(())
    }
}

fn unwinding_now() -> Option<String> {
    UNWINDING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .last()
        .cloned()
}

/// Marks work that no signal may cut short (restarting the daemons, a
/// rollback, a recovery) for as long as it lives.
pub(crate) struct Unwinding(());

/// Begin work no signal may cut short; `what` reads after "still":
/// "starting the daemons again".
pub(crate) fn unwinding(what: &str) -> Unwinding {
    UNWINDING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(what.to_string());
    Unwinding(())
}

impl Drop for Unwinding {
    fn drop(&mut self) {
        UNWINDING.lock().unwrap_or_else(|p| p.into_inner()).pop();
    }
}

/// Registers the process group of the step running now, so an interrupt can
/// end it; unregistered on drop.
pub(crate) struct RunningStep(());

/// Register `pgid` as the running step's group. If an interrupt already came
/// (between the check before the spawn and now), the group is ended at once.
pub(crate) fn running_step(pgid: i32) -> RunningStep {
    RUNNING_GROUP.store(pgid, Ordering::SeqCst);
    if should_stop() {
        end_running_step();
    }
    RunningStep(())
}

impl Drop for RunningStep {
    fn drop(&mut self) {
        RUNNING_GROUP.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_and_term_stop_hup_detaches() {
        assert_eq!(request(SIGINT), Some(SignalRequest::Stop(SIGINT)));
        assert_eq!(request(SIGTERM), Some(SignalRequest::Stop(SIGTERM)));
        assert_eq!(request(SIGHUP), Some(SignalRequest::Detach));
        assert_eq!(request(signal_hook::consts::SIGUSR1), None);
    }

    #[test]
    fn unwinding_nests_and_ends_on_drop() {
        assert_eq!(unwinding_now(), None);
        {
            let _a = unwinding("rolling back");
            {
                let _b = unwinding("starting the daemons again");
                assert_eq!(
                    unwinding_now().as_deref(),
                    Some("starting the daemons again")
                );
            }
            assert_eq!(unwinding_now().as_deref(), Some("rolling back"));
        }
        assert_eq!(unwinding_now(), None);
    }
}
