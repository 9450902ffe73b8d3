//! What the benchmarks that run the release server share: a throwaway PostgreSQL
//! database, and the server as a child process, both removed when dropped (also when a
//! scenario panics); and the voucher campaign they set up.

#![allow(dead_code, reason = "each benchmark uses its own part of this module")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use eguichet::agents::{self, Agent, AgentEmail, Role};
use eguichet::audit::Actor;
use eguichet::db::Conn;
use eguichet::tenants::Tenant;
use eguichet::vouchers::campaigns::{self, Campaign, CampaignInput, SiteInput};

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A loopback address with a port free at the moment, for the server to listen on.
pub fn free_listen_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The configuration file's text: where to listen, the data directory, and the
/// database when it is not the embedded SQLite.
pub fn config_text(data_dir: &Path, listen: &str, database_url: Option<&str>) -> String {
    let mut text = format!(
        "listen = \"{listen}\"\ndata_dir = \"{}\"\n",
        data_dir.display()
    );
    if let Some(url) = database_url {
        text.push_str(&format!("[database]\nurl = \"{url}\"\n"));
    }
    text
}

/// A fresh PostgreSQL database for one run, dropped afterwards.
pub struct PgDatabase {
    maintenance_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    /// Creates `eguichet_bench_{label}_{pid}` on the server of `maintenance_url`;
    /// `hint` says how to point the benchmark elsewhere when the server is not there.
    pub fn create(maintenance_url: &str, label: &str, hint: &str) -> Self {
        let name = format!("eguichet_bench_{label}_{}", std::process::id());
        let mut conn = PgConnection::establish(maintenance_url)
            .unwrap_or_else(|error| panic!("cannot reach PostgreSQL ({error}); {hint}"));
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut conn)
            .unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap();
        let mut url = url::Url::parse(maintenance_url).unwrap();
        url.set_path(&name);
        Self {
            maintenance_url: maintenance_url.to_owned(),
            url: url.to_string(),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.maintenance_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}

/// The release server as a child process, killed when dropped.
pub struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts the release binary with `--config config_file` (and no `EGUICHET_*`
    /// variable of the caller's), its log in `data_dir`, and waits until `GET /healthz`
    /// on `listen` answers.
    pub fn start(config_file: &Path, data_dir: &Path, listen: &str) -> Self {
        let log = data_dir.join("server.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_eguichet"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("EGUICHET_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg("--config")
            .arg(config_file)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let server = Self { child, log };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if healthz_answers(listen) {
                return server;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&server.log).unwrap_or_default();
                panic!("the server did not answer /healthz:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when `GET /healthz` answers 200 (a plain blocking request, no runtime needed).
fn healthz_answers(listen: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(listen) else {
        return false;
    };
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// A campaign of the tenant ("Masques lavables", 2026) created by a new agent, with a
/// distribution site for each name; returns the agent, the campaign and the sites' ids.
pub fn campaign_with_sites(
    conn: &mut Conn,
    tenant: &Tenant,
    site_names: &[&str],
) -> anyhow::Result<(Agent, Campaign, Vec<String>)> {
    let email = AgentEmail::parse("campagne@bench.example")?;
    let agent = agents::create_agent(conn, tenant, &email, Role::Agent, None, Actor::Operator)?;
    let input = CampaignInput {
        name: "Masques lavables".into(),
        item: "masques".into(),
        default_allotment: "2".into(),
        starts_on: "2026-01-01".into(),
        ends_on: "2026-12-31".into(),
    };
    let id = campaigns::create_campaign(conn, &agent, &input)?;
    let campaign = campaigns::find_campaign(conn, &tenant.id, &id)?
        .ok_or_else(|| anyhow::anyhow!("the campaign just created is missing"))?;
    let sites = site_names
        .iter()
        .map(|name| {
            let site = SiteInput {
                name: (*name).into(),
                address: "1 place de la Mairie".into(),
                opening_hours: "8 h – 18 h".into(),
            };
            campaigns::add_site(conn, &agent, &campaign, &site)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((agent, campaign, sites))
}
