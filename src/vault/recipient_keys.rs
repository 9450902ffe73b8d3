//! The vault key a document for someone must be encrypted to, for senders who encrypt
//! on their own machine (the API, `eguichet deliver`, the agent's delivery page). The
//! answer has the same shape whether the person was known or not: an unknown person
//! gets their vault, escrowed, as a delivery would create it. Every answer is audited;
//! each agent's lookups are rationed.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use super::metadata::parse_recipient;
use super::{DocumentError, resolve_recipient};
use crate::agents::Agent;
use crate::audit::{self, Actor, AuditEvent};
use crate::crypto::VaultRecipient;
use crate::state::AppState;

/// Lookups an agent may burst to, and how many come back per second. A bulk run
/// asks once per line, so the steady rate is the bulk delivery target (1,000
/// documents per second): the ration stops a runaway script or a stolen token from
/// reading keys faster than a delivery could use them, and every answer is audited.
/// Counted per instance.
const LOOKUP_BURST: f64 = 2000.0;
const LOOKUPS_PER_SECOND: f64 = 1000.0;

/// Why no key was given.
#[derive(Debug, thiserror::Error)]
pub enum KeyLookupError {
    #[error("too many recipient lookups; retry in a second")]
    TooMany,
    #[error(transparent)]
    Document(#[from] DocumentError),
}

/// The vault key of the person `recipient` names (as in a delivery's metadata).
pub async fn vault_key_for(
    state: &AppState,
    agent: &Agent,
    recipient: serde_json::Value,
) -> Result<VaultRecipient, KeyLookupError> {
    if !agent.role.can_deliver() {
        return Err(DocumentError::Forbidden.into());
    }
    if !take_lookup(&agent.id) {
        return Err(KeyLookupError::TooMany);
    }
    let recipient = parse_recipient(recipient).map_err(DocumentError::from)?;
    let (citizen, _) = resolve_recipient(state, &recipient).await?;
    let (tenant, agent_id, citizen_id) = (agent.tenant_id.clone(), agent.id.clone(), citizen.id);
    state
        .db
        .write(move |conn| {
            audit::record(
                conn,
                AuditEvent::new(Actor::Agent(agent_id), "recipient.key_given")
                    .tenant(&tenant)
                    .citizen(&citizen_id),
            )
        })
        .await
        .map_err(DocumentError::from)?;
    Ok(citizen.recipient)
}

/// One token from the agent's bucket, if there is one.
fn take_lookup(agent_id: &str) -> bool {
    static BUCKETS: LazyLock<Mutex<LookupBuckets>> = LazyLock::new(Mutex::default);
    BUCKETS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take(agent_id, Instant::now())
}

/// A token bucket per agent.
#[derive(Default)]
struct LookupBuckets(HashMap<String, (f64, Instant)>);

impl LookupBuckets {
    fn take(&mut self, agent_id: &str, now: Instant) -> bool {
        let (tokens, since) = self
            .0
            .entry(agent_id.to_owned())
            .or_insert((LOOKUP_BURST, now));
        let refilled = now.saturating_duration_since(*since).as_secs_f64() * LOOKUPS_PER_SECOND;
        *tokens = (*tokens + refilled).min(LOOKUP_BURST);
        *since = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{LOOKUP_BURST, LOOKUPS_PER_SECOND, LookupBuckets};

    #[test]
    fn an_agent_bursts_then_gets_the_steady_rate_and_others_are_untouched() {
        let mut buckets = LookupBuckets::default();
        let start = Instant::now();
        let granted = (0..3000).filter(|_| buckets.take("a", start)).count();
        assert_eq!(granted as f64, LOOKUP_BURST);
        assert!(!buckets.take("a", start), "the burst is spent");
        assert!(
            buckets.take("b", start),
            "another agent has their own bucket"
        );
        let later = start + Duration::from_millis(100);
        let refilled = (0..3000).filter(|_| buckets.take("a", later)).count();
        assert_eq!(refilled as f64, LOOKUPS_PER_SECOND / 10.0);
        let much_later = later + Duration::from_secs(3600);
        let capped = (0..3000).filter(|_| buckets.take("a", much_later)).count();
        assert_eq!(
            capped as f64, LOOKUP_BURST,
            "an idle hour gives one burst, no more"
        );
    }
}
