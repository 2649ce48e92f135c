//! The time a service acts on, injectable: the system clock, moved by an offset that
//! tests (and only tests: production refuses a start-up offset) advance to see a
//! holding period end without waiting for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock, `offset_secs` ahead (0 in production).
    pub fn with_offset(offset_secs: i64) -> Self {
        let clock = Self::default();
        clock.advance(chrono::Duration::seconds(offset_secs));
        clock
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every copy of it) `by` into the future.
    pub fn advance(&self, by: chrono::Duration) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_move_together() {
        let clock = Clock::default();
        let copy = clock.clone();
        clock.advance(chrono::Duration::days(31));
        assert!(copy.now() - Utc::now() > chrono::Duration::days(30));
    }
}
