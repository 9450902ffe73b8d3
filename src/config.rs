//! Configuration: one typed tree read from an optional TOML file, then from
//! `EGUICHET_*` environment variables (`EGUICHET_DATABASE__URL` sets `database.url`).
//! Everything is checked once at start; secrets never appear in `Debug` output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

/// Environment variable naming the configuration file (same as `--config`).
pub const CONFIG_ENV: &str = "EGUICHET_CONFIG";

/// `EGUICHET_*` variables that belong to the command line, not to the configuration:
/// the file's name, the `deliver` client's token and server, the end-to-end tests'
/// binary. An operator who exported `EGUICHET_TOKEN` for a bulk delivery must still be
/// able to run every other command.
const CLI_ONLY_ENV: &[&str] = &["config", "token", "server", "bin"];

/// The whole configuration of one instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds to.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory for the embedded defaults: SQLite file, blobs, generated master key.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `demo` (the default: everything embedded) or `production`.
    #[serde(default)]
    pub mode: Mode,
    /// The address citizens and agents type, e.g. `https://guichet.ville.fr`.
    #[serde(default)]
    pub public_url: Option<Url>,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub tenant: DefaultTenantConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub oidc: OidcConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub dashboard: DashboardConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub vault: VaultConfig,
}

/// Locked vaults (passkeys).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// The WebAuthn relying-party id passkeys are bound to (default: `public_url`'s
    /// host). Never change it once vaults are locked: each passkey, and the key its PRF
    /// derives, belongs to this id; under another, locked vaults open only with their
    /// recovery codes.
    #[serde(default)]
    pub webauthn_rp_id: Option<String>,
}

/// The audit log.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Append-only file the chain's head is written to every minute while events
    /// happen and at every stop (default `DATA_DIR/audit-anchors.log`). Ship it off
    /// the host: `eguichet audit verify --anchors` checks the log against it.
    #[serde(default)]
    pub anchors_file: Option<PathBuf>,
}

/// The elected officials' dashboard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// A count from 1 to one less than this is shown as "< N", so that narrowing the
    /// filters cannot single anyone out (default 5; at least 2).
    #[serde(default = "default_small_count_threshold")]
    pub small_count_threshold: u32,
    /// Every count shown is rounded to the nearest multiple of this (default 5; 1 shows
    /// exact counts), so that subtracting two shown figures cannot reveal a hidden one.
    #[serde(default = "default_rounding_base")]
    pub rounding_base: u32,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            small_count_threshold: default_small_count_threshold(),
            rounding_base: default_rounding_base(),
        }
    }
}

fn default_small_count_threshold() -> u32 {
    5
}

fn default_rounding_base() -> u32 {
    5
}

/// Notices that tell a citizen a document is waiting: the outbox worker and channels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Documents for one citizen delivered within this many seconds share one notice (120).
    #[serde(default = "default_coalesce_seconds")]
    pub coalesce_seconds: u64,
    /// Tries before a notice is given up as `dead` (8).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay in seconds, doubled at each further try (30).
    #[serde(default = "default_backoff_base_seconds")]
    pub backoff_base_seconds: u64,
    /// Longest retry delay in seconds (21600, six hours).
    #[serde(default = "default_backoff_max_seconds")]
    pub backoff_max_seconds: u64,
    /// A claimed notice not finished after this many seconds is claimed again (300).
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
    /// One send (SMTP exchange or gateway request) is abandoned after this many seconds (30).
    #[serde(default = "default_send_timeout_seconds")]
    pub send_timeout_seconds: u64,
    /// Days after which one reminder goes out for a document still unopened (7; 0: none).
    #[serde(default = "default_reminder_days")]
    pub reminder_days: u32,
    /// How often the worker looks for documents to remind about, in seconds (3600).
    #[serde(default = "default_reminder_scan_seconds")]
    pub reminder_scan_seconds: u64,
    /// How often an idle worker looks for due notices, in milliseconds (1000).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Notices claimed at a time (200).
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Notices sent at the same time by one instance (16).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    #[serde(default)]
    pub email: Option<EmailConfig>,
    #[serde(default)]
    pub sms: Option<SmsConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            coalesce_seconds: default_coalesce_seconds(),
            max_attempts: default_max_attempts(),
            backoff_base_seconds: default_backoff_base_seconds(),
            backoff_max_seconds: default_backoff_max_seconds(),
            lease_seconds: default_lease_seconds(),
            send_timeout_seconds: default_send_timeout_seconds(),
            reminder_days: default_reminder_days(),
            reminder_scan_seconds: default_reminder_scan_seconds(),
            poll_interval_ms: default_poll_interval_ms(),
            batch_size: default_batch_size(),
            concurrency: default_concurrency(),
            email: None,
            sms: None,
        }
    }
}

fn default_coalesce_seconds() -> u64 {
    120
}
fn default_max_attempts() -> u32 {
    8
}
fn default_backoff_base_seconds() -> u64 {
    30
}
fn default_backoff_max_seconds() -> u64 {
    6 * 3600
}
fn default_lease_seconds() -> u64 {
    300
}
fn default_send_timeout_seconds() -> u64 {
    30
}
fn default_reminder_days() -> u32 {
    7
}
fn default_reminder_scan_seconds() -> u64 {
    3600
}
fn default_poll_interval_ms() -> u64 {
    1000
}
fn default_batch_size() -> u32 {
    200
}
fn default_concurrency() -> u32 {
    16
}

/// Email notices through an SMTP relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// lettre's URL form: `smtp://host:25`, `smtp://user:pass@host:587?tls=required`,
    /// `smtps://user:pass@host:465`. Secret: it may carry a password.
    pub smtp_url: SecretString,
    /// The sender mailbox, e.g. `Mairie <ne-pas-repondre@mairie.example>`.
    pub from: String,
    /// SMTP connections kept open (default 8).
    #[serde(default = "default_smtp_pool_size")]
    pub pool_size: u32,
}

fn default_smtp_pool_size() -> u32 {
    8
}

/// SMS notices through an HTTP gateway (JSON POST, see the README).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// Where the JSON request is posted.
    pub gateway_url: Url,
    /// One header sent with every request, `Name: value` (secret), e.g. a bearer token.
    #[serde(default)]
    pub auth_header: Option<SecretString>,
    /// Sender name or number shown on the phone (`from` in the request).
    pub sender: String,
}

/// How long a login lasts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// A citizen's session ends after this many minutes without a request (default 15).
    #[serde(default = "default_idle_minutes")]
    pub idle_minutes: u32,
    /// And in any case this many hours after login (default 12).
    #[serde(default = "default_absolute_hours")]
    pub absolute_hours: u32,
    /// An agent's session ends after this many minutes without a request (default 30).
    #[serde(default = "default_agent_idle_minutes")]
    pub agent_idle_minutes: u32,
    /// A new API token expires after this many days unless `eguichet agent token
    /// --days` says otherwise (default 365; 0: tokens never expire).
    #[serde(default = "default_api_token_days")]
    pub api_token_days: u32,
    /// Expired logins, sessions and other short-lived rows are purged this often by
    /// one of the serving instances (default 15).
    #[serde(default = "default_cleanup_interval_minutes")]
    pub cleanup_interval_minutes: u32,
    /// A revoked or expired API token is still listed (and refused as such) for this
    /// many days, then purged (default 90).
    #[serde(default = "default_ended_token_retention_days")]
    pub ended_token_retention_days: u32,
    /// Logins started and not finished that one client address may have pending at
    /// once; beyond, `/login/…` answers 429 and stores nothing (default 100).
    #[serde(default = "default_pending_logins_per_address")]
    pub pending_logins_per_address: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_minutes: default_idle_minutes(),
            absolute_hours: default_absolute_hours(),
            agent_idle_minutes: default_agent_idle_minutes(),
            api_token_days: default_api_token_days(),
            cleanup_interval_minutes: default_cleanup_interval_minutes(),
            ended_token_retention_days: default_ended_token_retention_days(),
            pending_logins_per_address: default_pending_logins_per_address(),
        }
    }
}

fn default_api_token_days() -> u32 {
    365
}

fn default_cleanup_interval_minutes() -> u32 {
    15
}

fn default_ended_token_retention_days() -> u32 {
    90
}

fn default_pending_logins_per_address() -> u32 {
    100
}

fn default_agent_idle_minutes() -> u32 {
    30
}

fn default_idle_minutes() -> u32 {
    15
}

fn default_absolute_hours() -> u32 {
    12
}

/// Identity providers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Mount the built-in demonstration provider (demo mode only; default true there).
    #[serde(default)]
    pub demo_provider: Option<bool>,
    /// Seconds to wait for a provider before giving up (default 10).
    #[serde(default = "default_provider_timeout")]
    pub timeout_seconds: u64,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            demo_provider: None,
            timeout_seconds: default_provider_timeout(),
            providers: Vec::new(),
        }
    }
}

fn default_provider_timeout() -> u64 {
    10
}

/// Which family of provider, for the few things that differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// FranceConnect or FranceConnect+: pivot identity claims.
    Franceconnect,
    /// The Belgian Federal Authentication Service: `egovNRN` claim.
    Fas,
    /// Any standard OpenID provider.
    Generic,
}

/// Who logs in through a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    Citizen,
    Agent,
}

/// One identity provider, as registered with it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Appears in URLs: `/login/{id}` and `/login/{id}/callback`.
    pub id: String,
    pub kind: ProviderKind,
    pub audience: Audience,
    /// Issuer URL, exactly as the provider publishes it (FranceConnect: ends in `/api/v2`).
    /// Kept as written: discovery and token checks compare it character for character,
    /// and a parsed `Url` would add a `/` to an issuer without a path.
    pub issuer: openidconnect::IssuerUrl,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Required level, e.g. `eidas1`; sent as `acr_values` and checked in the ID token.
    #[serde(default)]
    pub acr_values: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Button label; defaults by kind.
    #[serde(default)]
    pub label: Option<String>,
    /// The operator's statement that this provider guarantees the identity it asserts
    /// (as FranceConnect and the FAS do), so its logins may open the documents
    /// addressed to that identity. Off by default for any other provider.
    #[serde(default)]
    pub identity_verified: bool,
}

/// The pivot identity and nothing more: what matching a citizen needs.
pub(crate) fn default_scopes() -> Vec<String> {
    [
        "openid",
        "given_name",
        "family_name",
        "birthdate",
        "birthplace",
        "birthcountry",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Whether demonstration shortcuts are allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Demo,
    Production,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://…`; defaults to `sqlite://DATA_DIR/eguichet.db`.
    /// Kept secret because a PostgreSQL URL usually carries a password.
    pub url: Option<SecretString>,
    /// Connections kept in the pool (default 10).
    pub pool_size: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    #[default]
    Local,
    S3,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `local` (default) or `s3`.
    #[serde(default)]
    pub backend: StorageBackend,
    /// Directory of the local backend; defaults to `DATA_DIR/blobs`.
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub s3: S3Config,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint of an S3-compatible server, e.g. `https://s3.fr-par.scw.cloud`.
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
    /// Path-style requests (`endpoint/bucket/key`), needed by most self-hosted servers.
    #[serde(default)]
    pub path_style: bool,
    /// Allow a plain `http://` endpoint (a server on the same host or private network).
    #[serde(default)]
    pub allow_http: bool,
    /// Key prefix inside the bucket, so several installations can share one bucket.
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// File holding the master key (an age X25519 identity, `AGE-SECRET-KEY-1…`).
    pub master_key_file: Option<PathBuf>,
    /// The master key itself, for deployments that inject secrets as variables.
    pub master_key: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest document accepted, in bytes (default 100 MiB).
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: u64,
    /// Largest bulk-delivery manifest, in bytes (default 32 MiB).
    #[serde(default = "default_max_manifest_bytes")]
    pub max_manifest_bytes: usize,
    /// Most lines in one bulk-delivery manifest (default 50,000).
    #[serde(default = "default_max_manifest_lines")]
    pub max_manifest_lines: usize,
    /// Largest upload of one bulk job, all files or the archive together (default 20 GiB).
    #[serde(default = "default_max_bulk_upload_bytes")]
    pub max_bulk_upload_bytes: u64,
    /// Voucher scans that match no code (unknown or mistyped) a distributor may make
    /// within `failed_scan_window_minutes` before scanning is paused (default 20).
    #[serde(default = "default_max_failed_scans")]
    pub max_failed_scans: u32,
    /// The window of that count, in minutes (default 10).
    #[serde(default = "default_failed_scan_window_minutes")]
    pub failed_scan_window_minutes: u32,
    /// Password checks (argon2, 19 MiB each) run at the same time; more wait their turn
    /// (default: the number of cores).
    #[serde(default = "default_password_checks_at_once")]
    pub password_checks_at_once: usize,
    /// How long a login waits for its turn before the answer is 503 "busy, try again"
    /// (default 2000 ms).
    #[serde(default = "default_password_check_wait_ms")]
    pub password_check_wait_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_document_bytes: default_max_document_bytes(),
            max_manifest_bytes: default_max_manifest_bytes(),
            max_manifest_lines: default_max_manifest_lines(),
            max_bulk_upload_bytes: default_max_bulk_upload_bytes(),
            max_failed_scans: default_max_failed_scans(),
            failed_scan_window_minutes: default_failed_scan_window_minutes(),
            password_checks_at_once: default_password_checks_at_once(),
            password_check_wait_ms: default_password_check_wait_ms(),
        }
    }
}

impl LimitsConfig {
    /// The bounds on a bulk-delivery manifest.
    pub fn manifest(&self) -> crate::bulk::manifest::ManifestLimits {
        crate::bulk::manifest::ManifestLimits {
            max_bytes: self.max_manifest_bytes,
            max_lines: self.max_manifest_lines,
        }
    }
}

fn default_max_manifest_bytes() -> usize {
    crate::bulk::manifest::DEFAULT_MAX_MANIFEST_BYTES
}

fn default_max_manifest_lines() -> usize {
    crate::bulk::manifest::DEFAULT_MAX_LINES
}

fn default_max_bulk_upload_bytes() -> u64 {
    20 * 1024 * 1024 * 1024
}

fn default_max_failed_scans() -> u32 {
    20
}

fn default_failed_scan_window_minutes() -> u32 {
    10
}

fn default_password_checks_at_once() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn default_password_check_wait_ms() -> u64 {
    2000
}

/// How the server sees its clients through a reverse proxy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Reverse proxies (CIDRs, e.g. `127.0.0.1/32`, `10.0.0.0/8`) whose client-address
    /// header is believed. Empty (the default): the socket's peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header a trusted proxy sets: `x-forwarded-for` (the default) or `forwarded`
    /// (RFC 7239). The rightmost address that is not a trusted proxy is the client.
    #[serde(default)]
    pub client_address_header: ClientAddressHeader,
    /// What the request log says of the client address: `truncated` (the default: the
    /// /24 of an IPv4 address, the /48 of an IPv6 one), `full` or `none`.
    #[serde(default)]
    pub log_client_address: ClientAddressLogging,
}

/// The header a trusted reverse proxy names the client in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAddressHeader {
    #[default]
    XForwardedFor,
    Forwarded,
}

/// How much of a client address the logs keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAddressLogging {
    Full,
    #[default]
    Truncated,
    None,
}

/// The tenant created on first start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultTenantConfig {
    #[serde(default = "default_tenant_slug")]
    pub slug: String,
    #[serde(default = "default_tenant_name")]
    pub name: String,
    /// Whether agents logging in through a provider must have used a second factor
    /// (its `amr` claim); local accounts always use one.
    #[serde(default)]
    pub agent_second_factor: SecondFactorPolicy,
    /// The commune's time zone, in which pages show times (`Europe/Paris`).
    #[serde(default = "default_time_zone", deserialize_with = "time_zone")]
    pub time_zone: chrono_tz::Tz,
}

fn default_time_zone() -> chrono_tz::Tz {
    chrono_tz::Europe::Paris
}

/// An IANA time zone name, such as `Europe/Paris` or `Europe/Brussels`.
fn time_zone<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<chrono_tz::Tz, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown time zone {name:?} (an IANA name such as \"Europe/Paris\")"
        ))
    })
}

/// Whether a second factor is demanded of agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecondFactorPolicy {
    #[default]
    Required,
    Optional,
}

impl Default for DefaultTenantConfig {
    fn default() -> Self {
        Self {
            slug: default_tenant_slug(),
            name: default_tenant_name(),
            agent_second_factor: SecondFactorPolicy::default(),
            time_zone: default_time_zone(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

fn default_max_document_bytes() -> u64 {
    100 * 1024 * 1024
}

fn default_tenant_slug() -> String {
    "commune".to_owned()
}

fn default_tenant_name() -> String {
    "Commune de démonstration".to_owned()
}

/// A configuration that cannot be used, with a message for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration: {0}")]
    Read(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads the file (if any) and the environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env_file = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        let mut figment = Figment::new();
        if let Some(path) = file.map(Path::to_path_buf).or(env_file) {
            if !path.is_file() {
                return Err(ConfigError::Invalid(format!(
                    "configuration file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("EGUICHET_").ignore(CLI_ONLY_ENV).split("__"));
        Self::from_figment(figment)
    }

    /// Builds a configuration from TOML text alone (tests and examples).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(text)))
    }

    /// The embedded defaults rooted in `data_dir`, as `cargo run` would use them.
    #[cfg(test)]
    pub(crate) fn demo(data_dir: &Path) -> Self {
        let base = Figment::new().merge(figment::providers::Serialized::default(
            "data_dir", data_dir,
        ));
        Self::from_figment(base).expect("the embedded defaults are valid")
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.to_owned()));
        if self.limits.max_document_bytes == 0 {
            return invalid("limits.max_document_bytes must be greater than 0");
        }
        if self.limits.max_manifest_bytes == 0
            || self.limits.max_manifest_lines == 0
            || self.limits.max_bulk_upload_bytes == 0
        {
            return invalid(
                "limits.max_manifest_bytes, max_manifest_lines and max_bulk_upload_bytes must be greater than 0",
            );
        }
        if self.database.pool_size == Some(0) {
            return invalid("database.pool_size must be greater than 0");
        }
        if self.limits.max_failed_scans == 0 || self.limits.failed_scan_window_minutes == 0 {
            return invalid(
                "limits.max_failed_scans and limits.failed_scan_window_minutes must be greater than 0",
            );
        }
        if self.limits.password_checks_at_once == 0 || self.limits.password_check_wait_ms == 0 {
            return invalid(
                "limits.password_checks_at_once and limits.password_check_wait_ms must be greater than 0",
            );
        }
        if self.dashboard.small_count_threshold < 2 {
            return invalid("dashboard.small_count_threshold must be at least 2");
        }
        if self.dashboard.rounding_base == 0 {
            return invalid("dashboard.rounding_base must be at least 1 (1: exact counts)");
        }
        crate::db::DatabaseUrl::parse(self.database_url().expose_secret())
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        crate::tenants::Slug::parse(&self.tenant.slug)
            .map_err(|error| ConfigError::Invalid(format!("tenant.slug: {error}")))?;
        if self.keys.master_key.is_some() && self.keys.master_key_file.is_some() {
            return invalid("set keys.master_key or keys.master_key_file, not both");
        }
        if self.storage.backend == StorageBackend::S3 && self.storage.s3.bucket.is_none() {
            return invalid("storage.backend = \"s3\" needs storage.s3.bucket");
        }
        if let Some(url) = &self.public_url
            && !matches!(url.scheme(), "http" | "https")
        {
            return invalid("public_url must be an http:// or https:// address");
        }
        if self.session.idle_minutes == 0
            || self.session.absolute_hours == 0
            || self.session.agent_idle_minutes == 0
        {
            return invalid(
                "session.idle_minutes, session.agent_idle_minutes and session.absolute_hours must be greater than 0",
            );
        }
        if self.session.cleanup_interval_minutes == 0
            || self.session.pending_logins_per_address == 0
        {
            return invalid(
                "session.cleanup_interval_minutes and session.pending_logins_per_address must be greater than 0",
            );
        }
        let mut seen = std::collections::HashSet::new();
        for provider in &self.oidc.providers {
            let valid_id = !provider.id.is_empty()
                && provider.id.len() <= 32
                && provider
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid_id {
                return Err(ConfigError::Invalid(format!(
                    "oidc.providers: id {:?} must be 1 to 32 lowercase letters, digits or hyphens",
                    provider.id
                )));
            }
            if !seen.insert(provider.id.as_str()) || provider.id == crate::auth::DEMO_PROVIDER_ID {
                return Err(ConfigError::Invalid(format!(
                    "oidc.providers: id {:?} is used twice or reserved",
                    provider.id
                )));
            }
            if !provider.scopes.iter().any(|scope| scope == "openid") {
                return Err(ConfigError::Invalid(format!(
                    "oidc.providers {:?}: scopes must include \"openid\"",
                    provider.id
                )));
            }
        }
        self.validate_notify()?;
        if self.mode == Mode::Production {
            self.validate_production()?;
        }
        Ok(())
    }

    fn validate_notify(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        let notify = &self.notify;
        if notify.max_attempts == 0 || notify.batch_size == 0 || notify.concurrency == 0 {
            return invalid(
                "notify.max_attempts, notify.batch_size and notify.concurrency must be greater than 0"
                    .to_owned(),
            );
        }
        if notify.send_timeout_seconds == 0 || notify.poll_interval_ms == 0 {
            return invalid(
                "notify.send_timeout_seconds and notify.poll_interval_ms must be greater than 0"
                    .to_owned(),
            );
        }
        // A send is abandoned before its claim can be taken over: while an instance is
        // alive, no other one sends the same notice.
        if notify.lease_seconds <= notify.send_timeout_seconds {
            return invalid(
                "notify.lease_seconds must be greater than notify.send_timeout_seconds".to_owned(),
            );
        }
        if let Some(email) = &notify.email {
            crate::notify::check_email_config(email)
                .map_err(|error| ConfigError::Invalid(format!("notify.email: {error}")))?;
        }
        if let Some(sms) = &notify.sms {
            crate::notify::check_sms_config(sms)
                .map_err(|error| ConfigError::Invalid(format!("notify.sms: {error}")))?;
        }
        Ok(())
    }

    /// Production refuses what is only acceptable on a laptop.
    fn validate_production(&self) -> Result<(), ConfigError> {
        let missing = |what: &str| {
            Err(ConfigError::Invalid(format!(
                "mode = \"production\" requires {what}"
            )))
        };
        match &self.public_url {
            None => return missing("public_url (the https:// address users type)"),
            Some(url) if url.scheme() != "https" => {
                return missing(
                    "an https:// public_url: session cookies are never sent over plain HTTP",
                );
            }
            Some(_) => {}
        }
        if self.keys.master_key.is_none() && self.keys.master_key_file.is_none() {
            return missing(
                "keys.master_key_file or keys.master_key: a generated key is for demonstrations only",
            );
        }
        if self.database.url.is_none() {
            return missing("database.url to be set explicitly");
        }
        if self.notify.email.is_none() && self.notify.sms.is_none() {
            return missing(
                "a notification channel: [notify.email] (SMTP relay) or [notify.sms] (SMS gateway); \
                 the local demonstration outbox sends nothing",
            );
        }
        if self.oidc.demo_provider == Some(true) {
            return Err(ConfigError::Invalid(
                "the demonstration identity provider cannot run in production (oidc.demo_provider)"
                    .to_owned(),
            ));
        }
        if let Some(provider) = self
            .oidc
            .providers
            .iter()
            .find(|p| p.issuer.url().scheme() != "https")
        {
            return Err(ConfigError::Invalid(format!(
                "oidc.providers {:?}: the issuer must be an https:// URL in production",
                provider.id
            )));
        }
        if self.storage.backend == StorageBackend::S3
            && self.storage.s3.allow_http
            && self.storage.s3.endpoint.is_none()
        {
            return missing("storage.s3.endpoint when storage.s3.allow_http is set");
        }
        self.validate_outbound_encryption()
    }

    /// Notices name the citizen's contact and the commune: in production they leave
    /// the host encrypted, unless the next hop is a relay on this very machine.
    fn validate_outbound_encryption(&self) -> Result<(), ConfigError> {
        if let Some(sms) = &self.notify.sms
            && sms.gateway_url.scheme() != "https"
            && !is_loopback(&sms.gateway_url)
        {
            return Err(ConfigError::Invalid(
                "notify.sms.gateway_url: mode = \"production\" requires an https:// gateway \
                 (plain http:// only to a gateway on this host)"
                    .to_owned(),
            ));
        }
        if let Some(email) = &self.notify.email
            && !smtp_is_encrypted(email.smtp_url.expose_secret())
        {
            // The URL is not echoed: it may carry a password.
            return Err(ConfigError::Invalid(
                "notify.email.smtp_url: mode = \"production\" requires TLS: smtps://host:465 or \
                 smtp://host:587?tls=required (plain smtp:// only to a relay on this host)"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The database URL, defaulting to the embedded SQLite file.
    pub fn database_url(&self) -> SecretString {
        match &self.database.url {
            Some(url) => url.clone(),
            None => SecretString::from(format!(
                "sqlite://{}",
                self.data_dir.join("eguichet.db").display()
            )),
        }
    }

    /// Whether the server may set cookies without the `Secure` flag (local demo only).
    /// Only a demonstration reached on this very machine qualifies: anywhere else a
    /// session cookie over plain HTTP could be read on the network.
    pub fn allows_plain_http_cookies(&self) -> bool {
        let local = match &self.public_url {
            None => self.listen.ip().is_loopback(),
            Some(url) => {
                url.scheme() == "http"
                    && match url.host() {
                        Some(url::Host::Domain(domain)) => domain == "localhost",
                        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                        None => false,
                    }
            }
        };
        self.mode == Mode::Demo && local
    }

    /// The WebAuthn relying-party id: `[vault] webauthn_rp_id`, else `public_url`'s host,
    /// else `localhost` (a demonstration on this machine).
    pub fn webauthn_rp_id(&self) -> String {
        self.vault
            .webauthn_rp_id
            .clone()
            .or_else(|| {
                self.public_url
                    .as_ref()
                    .and_then(|url| url.host_str().map(str::to_owned))
            })
            .unwrap_or_else(|| "localhost".to_owned())
    }

    /// The origin passkey ceremonies must come from: `public_url`'s, else this
    /// machine's demonstration address (browsers refuse passkeys on an IP address).
    pub fn webauthn_origin(&self) -> Result<Url, String> {
        match &self.public_url {
            Some(url) => Ok(url.clone()),
            None => Url::parse(&format!("http://localhost:{}", self.listen.port()))
                .map_err(|error| error.to_string()),
        }
    }

    /// Whether the built-in demonstration identity provider is mounted.
    pub fn demo_provider_enabled(&self) -> bool {
        self.mode == Mode::Demo && self.oidc.demo_provider.unwrap_or(true)
    }

    /// Where a generated master key is written in demo mode.
    pub fn generated_master_key_path(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }

    /// The audit anchors file.
    pub fn audit_anchors_file(&self) -> PathBuf {
        self.audit
            .anchors_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-anchors.log"))
    }

    /// Directory of the local blob store.
    pub fn local_blob_dir(&self) -> PathBuf {
        self.storage
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }
}

/// Whether `url` names this machine (`localhost` or a loopback address).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        // Outside http(s), the URL parser leaves an IPv4 address as a name.
        Some(url::Host::Domain(domain)) => {
            domain.eq_ignore_ascii_case("localhost")
                || domain
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether lettre's SMTP URL encrypts the connection: `smtps://` (TLS from the start),
/// `smtp://…?tls=required` (STARTTLS or nothing), or a relay on this host.
fn smtp_is_encrypted(smtp_url: &str) -> bool {
    let Ok(url) = Url::parse(smtp_url) else {
        return false;
    };
    match url.scheme() {
        "smtps" => true,
        "smtp" => {
            url.query_pairs()
                .any(|(name, value)| name == "tls" && value == "required")
                || is_loopback(&url)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_demo() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.mode, Mode::Demo);
        assert_eq!(config.limits.max_document_bytes, 100 * 1024 * 1024);
        assert_eq!(
            config.database_url().expose_secret(),
            "sqlite://./data/eguichet.db"
        );
        assert!(config.allows_plain_http_cookies());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = Config::from_toml("listn = \"0.0.0.0:80\"").unwrap_err();
        assert!(error.to_string().contains("listn"), "{error}");
    }

    #[test]
    fn mistyped_database_url_is_refused() {
        let error = Config::from_toml("[database]\nurl = \"postgress://x/y\"").unwrap_err();
        assert!(error.to_string().contains("sqlite://"), "{error}");
    }

    #[test]
    fn production_refuses_demo_shortcuts() {
        let error = Config::from_toml("mode = \"production\"").unwrap_err();
        assert!(error.to_string().contains("public_url"), "{error}");

        let plain_http = "mode = \"production\"\npublic_url = \"http://guichet.example\"";
        let error = Config::from_toml(plain_http).unwrap_err();
        assert!(error.to_string().contains("https"), "{error}");

        let no_key = "mode = \"production\"\npublic_url = \"https://guichet.example\"";
        let error = Config::from_toml(no_key).unwrap_err();
        assert!(error.to_string().contains("master_key"), "{error}");

        let complete = "mode = \"production\"\npublic_url = \"https://guichet.example\"\n\
                        [keys]\nmaster_key_file = \"/etc/eguichet/master.key\"\n\
                        [database]\nurl = \"postgres://eguichet@db/eguichet\"";
        let error = Config::from_toml(complete).unwrap_err();
        assert!(error.to_string().contains("notify.email"), "{error}");
        let complete = format!(
            "{complete}\n[notify.email]\nsmtp_url = \"smtps://relay:465\"\nfrom = \"m@mairie.example\""
        );
        let config = Config::from_toml(&complete).unwrap();
        assert!(!config.allows_plain_http_cookies());
    }

    #[test]
    fn production_refuses_plain_text_notices_leaving_the_host() {
        let production = "mode = \"production\"\npublic_url = \"https://guichet.example\"\n\
                          [keys]\nmaster_key_file = \"/etc/eguichet/master.key\"\n\
                          [database]\nurl = \"postgres://eguichet@db/eguichet\"\n";
        let email = |url: &str| {
            Config::from_toml(&format!(
                "{production}[notify.email]\nsmtp_url = \"{url}\"\nfrom = \"m@mairie.example\"\n"
            ))
        };
        let sms = |url: &str| {
            Config::from_toml(&format!(
                "{production}[notify.sms]\ngateway_url = \"{url}\"\nsender = \"Mairie\"\n"
            ))
        };
        for refused in [
            "smtp://u:pw@relay.example:25",
            "smtp://relay.example:587?tls=opportunistic",
        ] {
            let error = email(refused).unwrap_err().to_string();
            assert!(error.contains("TLS") && !error.contains("pw@"), "{error}");
        }
        for accepted in [
            "smtps://relay.example:465",
            "smtp://relay.example:587?tls=required",
            "smtp://127.0.0.1:25",
            "smtp://localhost:25",
        ] {
            email(accepted).unwrap();
        }
        let error = sms("http://sms.example/send").unwrap_err().to_string();
        assert!(error.contains("https://"), "{error}");
        sms("https://sms.example/send").unwrap();
        sms("http://127.0.0.1:9000/send").unwrap();
        sms("http://[::1]:9000/send").unwrap();
        // A demonstration may use anything.
        Config::from_toml(
            "[notify.sms]\ngateway_url = \"http://sms.example/send\"\nsender = \"M\"\n",
        )
        .unwrap();
    }

    #[test]
    fn plain_http_cookies_only_for_a_local_demo() {
        let allowed = |toml: &str| Config::from_toml(toml).unwrap().allows_plain_http_cookies();
        assert!(allowed(""));
        assert!(allowed("public_url = \"http://localhost:8080\""));
        assert!(allowed("public_url = \"http://127.0.0.1:8080\""));
        assert!(!allowed("listen = \"0.0.0.0:8080\""));
        assert!(!allowed("public_url = \"http://guichet.mairie.example\""));
        assert!(!allowed("public_url = \"https://localhost\""));
    }

    #[test]
    fn secrets_are_redacted_from_debug() {
        let text = "[database]\nurl = \"postgres://u:hunter2@db/e\"\n\
                    [keys]\nmaster_key = \"AGE-SECRET-KEY-1SECRET\"\n\
                    [storage.s3]\nsecret_access_key = \"s3cr3t\"\n\
                    [notify.email]\nsmtp_url = \"smtp://u:smtppw@relay:587?tls=required\"\n\
                    from = \"m@mairie.example\"\n\
                    [notify.sms]\ngateway_url = \"https://sms.example/send\"\n\
                    auth_header = \"Authorization: Bearer smstoken\"\nsender = \"Mairie\"";
        let debug = format!("{:?}", Config::from_toml(text).unwrap());
        for secret in [
            "hunter2",
            "AGE-SECRET-KEY-1SECRET",
            "s3cr3t",
            "smtppw",
            "smstoken",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
    }

    #[test]
    fn s3_backend_needs_a_bucket() {
        let error = Config::from_toml("[storage]\nbackend = \"s3\"").unwrap_err();
        assert!(error.to_string().contains("bucket"), "{error}");
    }

    #[test]
    fn provider_issuers_are_kept_exactly_as_written() {
        for issuer in [
            "https://accounts.example",
            "https://tenant.example/",
            "https://oidc.example/api/v2",
        ] {
            let text = format!(
                "[[oidc.providers]]\nid = \"p\"\nkind = \"generic\"\naudience = \"citizen\"\n\
                 issuer = \"{issuer}\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
            );
            let config = Config::from_toml(&text).unwrap();
            assert_eq!(config.oidc.providers[0].issuer.as_str(), issuer);
        }
    }
}
