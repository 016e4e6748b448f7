//! One policy across a fleet: a host sharing its database with others
//! puts in place what any of them activates, rolls back or shadows.
//! PostgreSQL announces each change (`NOTIFY`); the follower also looks
//! every [`LOOK_EVERY`] whatever it heard, which covers a lost
//! announcement or listening connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::AppState;

/// The longest a fleet's policy change takes to be looked for.
pub const LOOK_EVERY: Duration = Duration::from_millis(500);

/// The follower's thread; stopped (and joined) when dropped.
#[derive(Debug)]
pub(crate) struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Follows the fleet's policy for `state` until dropped.
    pub(crate) fn start(state: AppState) -> Follower {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("quota-policy-follower".to_owned())
            .spawn(move || {
                while !stopped.load(Ordering::SeqCst) {
                    let engine = state.engine();
                    match state.lifecycle().follow(engine) {
                        Ok(true) => tracing::info!(
                            policy_sha256 = %engine.policy().sha256(),
                            "now deciding with the fleet's policy"
                        ),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot read the fleet's policy; trying again"),
                    }
                    engine.store().wait_for_policy_event(LOOK_EVERY);
                }
            });
        match thread {
            Ok(thread) => Follower {
                stop,
                thread: Some(thread),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start following the fleet's policy");
                Follower { stop, thread: None }
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
