//! Bulk delivery: a CSV manifest and a folder or ZIP of files, delivered line by line
//! either by the `eguichet deliver` client through the API, or by a server-side job
//! started from the browser. Both derive the same per-line idempotency key.

pub mod client;
mod jobs;
pub mod manifest;
pub mod pages;
pub mod staging;

pub use jobs::{
    BulkError, JobId, JobReport, JobScope, JobState, JobSummary, LineReport, LineState,
    abandon_job, interrupt_unfinished_jobs, job_report, list_jobs, open_job, start_job,
};
pub use manifest::{LineError, Manifest, ManifestError, ManifestLine, ManifestPath};
pub use staging::{StagedFiles, StagingError};
