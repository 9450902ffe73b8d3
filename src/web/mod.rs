//! The HTTP server: builds the actix application from an [`AppState`], binds (port 0
//! in tests), and runs the background tasks that belong to a serving instance.

pub mod agent_login;
pub mod agent_session;
pub mod client_address;
mod demo_outbox;
mod error_pages;
mod health;
mod login;
pub mod middleware;
pub mod page;
mod pages;
pub mod qr;
pub mod session;
pub mod static_files;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use url::Url;

use crate::auth::demo_idp::{DemoClient, DemoIdentityProvider};
use crate::auth::relying_party::{IdentityProvider, Providers};
use crate::auth::sessions::SessionPolicy;
use crate::auth::{DEMO_PROVIDER_ID, http::provider_http_client, sessions};
use crate::config::{Audience, Config, Mode, ProviderConfig, ProviderKind};
use crate::state::{AppState, StartError};
use session::AuthState;

/// How often unreferenced payloads are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// A bound, not yet running, server.
pub struct Application {
    server: Server,
    address: SocketAddr,
    state: AppState,
    notifier: crate::notify::Worker,
}

impl Application {
    /// Opens the state (migrations, keys, default tenant) and binds `config.listen`.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let state = tokio::task::spawn_blocking(move || {
            let state = AppState::open(config)?;
            crate::bulk::interrupt_unfinished_jobs(&state)?;
            Ok::<_, StartError>(state)
        })
        .await
        .map_err(|error| StartError::Config(error.to_string()))??;
        Self::with_state(state)
    }

    /// Binds a server around an already opened state.
    pub fn with_state(state: AppState) -> Result<Self, StartError> {
        let listen = state.config.listen;
        let listener = TcpListener::bind(listen)
            .map_err(|error| StartError::Config(format!("cannot listen on {listen}: {error}")))?;
        let address = listener
            .local_addr()
            .map_err(|error| StartError::Config(error.to_string()))?;
        page::check_templates().map_err(StartError::Config)?;
        crate::notify::texts::check_templates().map_err(StartError::Config)?;
        let notifier = crate::notify::Worker::new(state.clone()).map_err(StartError::Config)?;
        let base_url = match &state.config.public_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!("http://{address}/"))
                .map_err(|error| StartError::Config(error.to_string()))?,
        };
        let (auth, demo_idp) = build_auth(&state.config, &base_url)?;
        let data = web::Data::new(state.clone());
        let auth = web::Data::new(auth);
        let production = state.config.mode == Mode::Production;
        let demo_outbox = (!production)
            .then(|| crate::notify::demo_outbox::DemoOutbox::new(&state.config.data_dir));
        let server = HttpServer::new(move || {
            let demo_idp = demo_idp.clone();
            let demo_outbox = demo_outbox.clone();
            App::new()
                .app_data(data.clone())
                .app_data(auth.clone())
                .wrap(actix_web::middleware::from_fn(
                    error_pages::render_error_pages,
                ))
                .wrap(actix_web::middleware::Condition::new(
                    production,
                    actix_web::middleware::from_fn(middleware::host_prefixed_cookies),
                ))
                .wrap(middleware::security_headers(production))
                .wrap(actix_web::middleware::from_fn(middleware::log_request))
                .configure(health::configure)
                .configure(crate::api::configure)
                .configure(pages::configure)
                .configure(login::configure)
                .configure(agent_login::configure)
                .configure(crate::vault::pages::configure)
                .configure(crate::vault::security_pages::configure)
                .configure(crate::vault::agent_pages::configure)
                .configure(crate::bulk::pages::configure)
                .configure(crate::agents::admin_pages::configure)
                .configure(crate::vouchers::pages::configure)
                .configure(crate::vouchers::scan_pages::configure)
                .configure(crate::dashboard::pages::configure)
                .configure(move |cfg| {
                    if let Some(idp) = demo_idp {
                        idp.configure(cfg);
                    }
                })
                .configure(move |cfg| {
                    // Demo mode only, like the demonstration identity provider.
                    if let Some(outbox) = demo_outbox {
                        demo_outbox::configure(cfg, outbox);
                    }
                })
        })
        .client_request_timeout(Duration::from_secs(10))
        .client_disconnect_timeout(Duration::from_secs(5))
        .keep_alive(Duration::from_secs(30))
        .listen(listener)
        .map_err(|error| StartError::Config(error.to_string()))?
        .run();
        Ok(Self {
            server,
            address,
            state,
            notifier,
        })
    }

    /// The address actually bound.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The state shared with the handlers.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A handle that stops the server gracefully (what SIGTERM does).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the process is stopped, with the background tasks running; the
    /// audit chain's head is anchored once more after the last request.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let sweeper = tokio::spawn(sweep_orphans_periodically(self.state.clone()));
        let cleaner = tokio::spawn(crate::cleanup::cleanup_periodically(self.state.clone()));
        let notifier = tokio::spawn(self.notifier.run());
        let anchors_file = self.state.config.audit_anchors_file();
        let anchorer = tokio::spawn(crate::audit::anchors::anchor_periodically(
            self.state.db.clone(),
            anchors_file.clone(),
        ));
        let result = self.server.await;
        sweeper.abort();
        cleaner.abort();
        notifier.abort();
        anchorer.abort();
        let db = self.state.db.clone();
        let last = tokio::task::spawn_blocking(move || {
            crate::audit::anchors::anchor_head(&db, &anchors_file, None)
        })
        .await;
        if let Ok(Err(error)) = last {
            tracing::error!(%error, "cannot anchor the audit chain at stop");
        }
        result
    }
}

/// The identity providers (and, in demo mode, the demonstration one) and session rules.
fn build_auth(
    config: &Config,
    base_url: &Url,
) -> Result<(AuthState, Option<Arc<DemoIdentityProvider>>), StartError> {
    let invalid = |error: String| StartError::Config(error);
    let http = provider_http_client(Duration::from_secs(config.oidc.timeout_seconds))
        .map_err(|error| invalid(error.to_string()))?;
    let join = |path: &str| {
        base_url
            .join(path)
            .map_err(|error| invalid(error.to_string()))
    };
    let mut providers = Vec::new();
    let demo_idp = if config.demo_provider_enabled() {
        let issuer = join("demo-idp")?;
        let client_secret = sessions::new_secret();
        let idp = DemoIdentityProvider::new(
            issuer.clone(),
            DemoClient {
                client_id: "eguichet-demo".to_owned(),
                client_secret: client_secret.clone(),
                redirect_uris: vec![join(&format!("login/{DEMO_PROVIDER_ID}/callback"))?],
                post_logout_redirect_uris: vec![join("logout/callback")?],
            },
        );
        let demo = ProviderConfig {
            id: DEMO_PROVIDER_ID.to_owned(),
            kind: ProviderKind::Franceconnect,
            audience: Audience::Citizen,
            issuer: openidconnect::IssuerUrl::from_url(issuer),
            client_id: "eguichet-demo".to_owned(),
            client_secret: client_secret.into(),
            acr_values: Some("eidas1".to_owned()),
            scopes: crate::config::default_scopes(),
            label: None,
            identity_verified: false,
        };
        providers.push(IdentityProvider::new(demo, base_url, http.clone()).map_err(invalid)?);
        Some(Arc::new(idp))
    } else {
        None
    };
    for provider in &config.oidc.providers {
        providers.push(
            IdentityProvider::new(provider.clone(), base_url, http.clone()).map_err(invalid)?,
        );
    }
    let auth = AuthState {
        providers: Providers::new(providers),
        policy: SessionPolicy::from_config(&config.session),
        agent_policy: SessionPolicy::for_agents(&config.session),
        agent_second_factor: config.tenant.agent_second_factor,
        secure_cookies: !config.allows_plain_http_cookies(),
    };
    Ok((auth, demo_idp))
}

/// Runs the orphan sweep a minute after start, then every hour.
async fn sweep_orphans_periodically(state: AppState) {
    tokio::time::sleep(Duration::from_secs(60)).await;
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        interval.tick().await;
        if let Err(error) =
            crate::vault::sweep_orphan_payloads(&state, crate::vault::ORPHAN_GRACE).await
        {
            tracing::warn!(%error, "orphan sweep failed; will retry");
        }
    }
}

/// `eguichet serve`: open everything, log where to go, serve.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let application = Application::build(config).await?;
    tracing::info!(
        listen = %application.address(),
        mode = ?application.state().config.mode,
        "e-guichet is ready at http://{}/",
        application.address()
    );
    application.run_until_stopped().await?;
    Ok(())
}
