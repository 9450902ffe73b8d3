//! The orphan sweep: payloads in the object store that no document row points to
//! (an upload whose request died between storing and committing, a crash) are deleted
//! once they are old enough that no upload can still be committing them.

use std::collections::HashSet;
use std::time::Duration;

use diesel::prelude::*;
use futures::StreamExt;

use super::DocumentError;
use crate::db::schema::documents;
use crate::state::AppState;

/// Age after which an unreferenced payload is certainly an orphan.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

/// Deletes unreferenced payloads older than `grace`; returns how many.
pub async fn sweep_orphan_payloads(
    state: &AppState,
    grace: Duration,
) -> Result<usize, DocumentError> {
    let cutoff =
        chrono::Utc::now() - chrono::TimeDelta::from_std(grace).unwrap_or(chrono::TimeDelta::MAX);
    // The listing is consumed in batches, so memory stays flat however many
    // documents the store holds.
    let mut listing = state.storage.list_documents().chunks(500);
    let mut removed = 0;
    while let Some(batch) = listing.next().await {
        let old: Vec<_> = batch
            .into_iter()
            .filter(|blob| !matches!(blob, Ok(blob) if blob.last_modified >= cutoff))
            .collect::<Result<_, _>>()?;
        let keys: Vec<String> = old
            .iter()
            .map(|blob| blob.key.as_str().to_owned())
            .collect();
        let referenced: HashSet<String> = state
            .db
            .read(move |conn| -> Result<_, DocumentError> {
                Ok(documents::table
                    .filter(documents::blob_key.eq_any(&keys))
                    .select(documents::blob_key)
                    .load::<String>(conn)?
                    .into_iter()
                    .collect())
            })
            .await?;
        for blob in old
            .iter()
            .filter(|blob| !referenced.contains(blob.key.as_str()))
        {
            state.storage.delete(&blob.key).await?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(blobs.removed = removed, "orphan payloads swept");
    }
    Ok(removed)
}
