//! The one clock: the engine, the store's timestamps, the decision log's
//! retention and anything else that times something take it from here, so
//! a test sets the time instead of sleeping past a limit.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The time in Unix milliseconds. Cheap to clone; clones share the source.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&self.now_ms()).finish()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The system clock (0 before 1970, saturating far ahead).
    pub fn system() -> Self {
        Clock(Arc::new(system_now_ms))
    }

    /// A clock that reads `now_ms` (a test's settable time).
    pub fn from_fn(now_ms: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now_ms))
    }

    /// The time now, Unix ms.
    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

/// The system clock in Unix milliseconds (0 before 1970, saturating far ahead).
pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
