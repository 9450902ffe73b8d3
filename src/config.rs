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
    pub tenant: DefaultTenantConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub oidc: OidcConfig,
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
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_minutes: default_idle_minutes(),
            absolute_hours: default_absolute_hours(),
        }
    }
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
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_document_bytes: default_max_document_bytes(),
            max_manifest_bytes: default_max_manifest_bytes(),
            max_manifest_lines: default_max_manifest_lines(),
            max_bulk_upload_bytes: default_max_bulk_upload_bytes(),
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

/// The tenant created on first start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultTenantConfig {
    #[serde(default = "default_tenant_slug")]
    pub slug: String,
    #[serde(default = "default_tenant_name")]
    pub name: String,
}

impl Default for DefaultTenantConfig {
    fn default() -> Self {
        Self {
            slug: default_tenant_slug(),
            name: default_tenant_name(),
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
        figment = figment.merge(Env::prefixed("EGUICHET_").ignore(&["config"]).split("__"));
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
        if self.session.idle_minutes == 0 || self.session.absolute_hours == 0 {
            return invalid(
                "session.idle_minutes and session.absolute_hours must be greater than 0",
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
        if self.mode == Mode::Production {
            self.validate_production()?;
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

    /// Whether the built-in demonstration identity provider is mounted.
    pub fn demo_provider_enabled(&self) -> bool {
        self.mode == Mode::Demo && self.oidc.demo_provider.unwrap_or(true)
    }

    /// Where a generated master key is written in demo mode.
    pub fn generated_master_key_path(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }

    /// Directory of the local blob store.
    pub fn local_blob_dir(&self) -> PathBuf {
        self.storage
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
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
        let config = Config::from_toml(complete).unwrap();
        assert!(!config.allows_plain_http_cookies());
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
                    [storage.s3]\nsecret_access_key = \"s3cr3t\"";
        let debug = format!("{:?}", Config::from_toml(text).unwrap());
        for secret in ["hunter2", "AGE-SECRET-KEY-1SECRET", "s3cr3t"] {
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
