//! The deploy lock: a kernel flock on ROOT/.symdeploy/lock.
//!
//! The kernel drops it when its holder dies, however it dies, so there is no
//! stale lock and no `unlock` command. The holder writes who it is into the
//! file so that a waiting deploy (and `status`) can say for whom it waits.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, IoContext, Result};
use crate::state::root::Root;
use crate::sys::output;

/// Held for the life of a deploy; dropping it releases the lock.
pub(crate) struct DeployLock {
    _flock: Flock<File>,
}

/// Take the lock for `purpose` ("warm-up of abc123 (refs/heads/main)"),
/// waiting up to `timeout`.
pub(crate) fn acquire(root: &Root, purpose: &str, timeout: Duration) -> Result<DeployLock> {
    let path = root.lock_file();
    let started = Instant::now();
    let mut said = false;
    let mut file = open(root)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut flock) => {
                let who = format!(
                    "pid {} ({}@{}), {purpose}, since {}",
                    std::process::id(),
                    crate::sys::fs::current_user(),
                    crate::sys::fs::hostname(),
                    crate::sys::fs::now_rfc3339()
                );
                // Best effort: the lock itself is what matters, not the label.
                let _ = flock.set_len(0);
                let _ = flock.rewind();
                let _ = flock.write_all(who.as_bytes());
                if said {
                    output::detail(&format!(
                        "got the deploy lock after {}",
                        crate::sys::fs::human_duration(started.elapsed())
                    ));
                }
                tracing::info!(purpose, "deploy lock taken");
                return Ok(DeployLock { _flock: flock });
            }
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                file = f;
                // Nothing is changed yet: an interrupt simply ends the wait.
                crate::sys::signals::check(
                    "while waiting for the deploy lock; nothing was changed",
                )?;
                let holder = read_holder(&mut file);
                if started.elapsed() >= timeout {
                    return Err(Error::LockTimeout {
                        waited: started.elapsed().as_secs(),
                        holder,
                    });
                }
                // A `status` probing the lock holds it (shared) for an instant;
                // only a lock still busy after a retry is someone's deploy.
                if !said && started.elapsed() >= Duration::from_millis(150) {
                    output::line(&format!(
                        "-----> waiting for the deploy lock, held by {holder} (giving up after {}s)",
                        timeout.as_secs()
                    ));
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((_, e)) => return Err(Error::io("lock", &path, e.into())),
        }
    }
}

/// Who holds the lock right now, if anyone.
pub(crate) fn holder(root: &Root) -> Option<String> {
    // Read-only, never created: `status` may run as a user who cannot write
    // the root, and must still see the holder.
    let file = File::open(root.lock_file()).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_free) => None,
        Err((mut f, _)) => Some(read_holder(&mut f)),
    }
}

fn open(root: &Root) -> Result<File> {
    let path = root.lock_file();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .at("open the lock file", &path)
}

fn read_holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() {
        "another symdeploy process".to_string()
    } else {
        s.to_string()
    }
}
