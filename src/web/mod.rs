//! The HTTP server: builds the actix application from an [`AppState`], binds (port 0
//! in tests), and runs the background tasks that belong to a serving instance.

mod health;
mod middleware;
mod pages;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use crate::config::Config;
use crate::state::{AppState, StartError};

/// How often unreferenced payloads are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// A bound, not yet running, server.
pub struct Application {
    server: Server,
    address: SocketAddr,
    state: AppState,
}

impl Application {
    /// Opens the state (migrations, keys, default tenant) and binds `config.listen`.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let state = tokio::task::spawn_blocking(move || AppState::open(config))
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
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .wrap(middleware::security_headers())
                .wrap(actix_web::middleware::from_fn(middleware::log_request))
                .configure(health::configure)
                .configure(crate::api::configure)
                .configure(pages::configure)
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

    /// Serves until the process is stopped, with the background tasks running.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let sweeper = tokio::spawn(sweep_orphans_periodically(self.state.clone()));
        let result = self.server.await;
        sweeper.abort();
        result
    }
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
