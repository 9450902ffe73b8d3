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

/// Lookups an agent may burst to, and how many come back per second: enough for a
/// bulk run of tens of thousands of lines. Counted per instance.
const LOOKUP_BURST: f64 = 1000.0;
const LOOKUPS_PER_SECOND: f64 = 200.0;

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
    static BUCKETS: LazyLock<Mutex<HashMap<String, (f64, Instant)>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut buckets = BUCKETS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = Instant::now();
    let (tokens, since) = buckets
        .entry(agent_id.to_owned())
        .or_insert((LOOKUP_BURST, now));
    *tokens =
        (*tokens + now.duration_since(*since).as_secs_f64() * LOOKUPS_PER_SECOND).min(LOOKUP_BURST);
    *since = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        true
    } else {
        false
    }
}
