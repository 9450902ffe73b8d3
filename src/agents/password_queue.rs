//! Password checks (argon2id, 19 MiB of working memory each) run a few at a time: as
//! many as `[limits] password_checks_at_once`; the others wait their turn for at most
//! `password_check_wait_ms`, then are told the portal is busy. A burst of logins thus
//! costs a bounded amount of memory and CPU, whatever its size.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsConfig;

/// The queue in front of the password checks, shared by every request.
#[derive(Clone)]
pub struct PasswordQueue {
    turns: Arc<Semaphore>,
    wait: Duration,
}

/// No turn came within the wait: the caller answers "busy, try again".
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many password checks are waiting")]
pub struct Busy;

/// The right to run one password check.
pub struct Turn(OwnedSemaphorePermit);

impl PasswordQueue {
    pub fn new(at_once: usize, wait: Duration) -> Self {
        Self {
            turns: Arc::new(Semaphore::new(at_once.max(1))),
            wait,
        }
    }

    pub fn from_config(limits: &LimitsConfig) -> Self {
        Self::new(
            limits.password_checks_at_once,
            Duration::from_millis(limits.password_check_wait_ms),
        )
    }

    /// Waits for a turn, at most the configured time.
    pub async fn wait_for_turn(&self) -> Result<Turn, Busy> {
        match tokio::time::timeout(self.wait, self.turns.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Turn(permit)),
            Ok(Err(_)) | Err(_) => Err(Busy),
        }
    }
}

impl Turn {
    /// Runs `check` on the blocking pool. The turn is held by the check itself, so it
    /// ends when the check does, even if the request stopped waiting for it.
    pub async fn run<T, F>(self, check: F) -> Result<T, tokio::task::JoinError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let turn = self.0;
        crate::telemetry::spawn_blocking(move || {
            let result = check();
            drop(turn);
            result
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_check_past_the_wait_is_told_busy_and_turns_come_back() {
        let queue = PasswordQueue::new(1, Duration::from_millis(20));
        let first = queue.wait_for_turn().await.unwrap();
        assert!(queue.wait_for_turn().await.is_err());
        assert_eq!(first.run(|| 7).await.unwrap(), 7);
        assert!(queue.wait_for_turn().await.is_ok());
    }
}
