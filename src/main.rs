//! The `eguichet` command: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eguichet::agents::api_tokens::{Revocation, TokenState};
use eguichet::agents::credentials::{self, NewPassword};
use eguichet::agents::{self, AgentEmail, Role, TokenName, TokenRequest};
use eguichet::audit::{self, Actor, ChainCheck};
use eguichet::cleanup::{self, CleanupOutcome, CleanupPolicy};
use eguichet::config::Config;
use eguichet::state::AppState;
use eguichet::tenants::{self, Slug};

/// e-guichet: documents from the commune, encrypted on arrival, waiting in each
/// citizen's vault.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file (TOML); `EGUICHET_*` variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the portal (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Manage departments.
    #[command(subcommand)]
    Department(DepartmentCommand),
    /// Manage the master key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Maintain the officials' dashboard.
    #[command(subcommand)]
    Dashboard(DashboardCommand),
    /// Deliver every line of a CSV manifest through a portal's API.
    Deliver(DeliverArgs),
    /// Purge expired logins, ended sessions and other short-lived rows once (what
    /// `serve` does every `[session] cleanup_interval_minutes`); prints the counts.
    Cleanup,
}

#[derive(Subcommand)]
enum DashboardCommand {
    /// Count the dashboard's figures again from the stored documents and notices
    /// (after restoring a backup of some tables, for instance).
    Refill,
}

#[derive(clap::Args)]
struct DeliverArgs {
    /// Address of the portal, e.g. https://guichet.example.org
    #[arg(long, env = "EGUICHET_SERVER")]
    server: url::Url,
    /// An agent's API token (better from the environment: it stays out of shell history).
    #[arg(long, env = "EGUICHET_TOKEN", hide_env_values = true)]
    token: String,
    /// The CSV manifest: one line per document.
    #[arg(long, value_name = "FILE.csv")]
    manifest: PathBuf,
    /// The folder holding the files the manifest names.
    #[arg(long, value_name = "DIR")]
    files: PathBuf,
    /// Documents sent at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Send the documents in clear (over HTTPS) for the server to encrypt as they
    /// arrive. By default each is encrypted here for its vault's key, so that no
    /// plaintext reaches the server (end to end).
    #[arg(long)]
    server_encryption: bool,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Create an agent account.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        role: Role,
        /// Tenant slug (default: the configured default tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Department slug within the tenant.
        #[arg(long)]
        department: Option<String>,
    },
    /// Print a new API token for an agent (shown once, stored hashed); or, with
    /// `--list`, the agent's tokens; or, with `--revoke`, revoke one.
    Token {
        #[arg(long)]
        email: String,
        #[arg(long)]
        tenant: Option<String>,
        /// What the token is for, e.g. "bulk delivery" (default "cli").
        #[arg(long, default_value = "cli")]
        name: String,
        /// Days until it expires; 0: never (default: `[session] api_token_days`).
        #[arg(long)]
        days: Option<u32>,
        /// List the agent's tokens (name, dates, state; never the secret).
        #[arg(long, conflicts_with_all = ["revoke", "days"])]
        list: bool,
        /// Revoke the agent's token with this id or name.
        #[arg(long, value_name = "ID_OR_NAME", conflicts_with = "days")]
        revoke: Option<String>,
    },
    /// Set an agent's password, read from standard input (never from the command
    /// line, which other users of the machine can see); lifts a lock-out.
    Password {
        #[arg(long)]
        email: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove an agent's second factor and recovery codes (lost phone): they enrol
    /// again at their next login. Their sessions end.
    #[command(name = "reset-2fa")]
    ResetSecondFactor {
        #[arg(long)]
        email: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum DepartmentCommand {
    /// Create a department (service) in a tenant.
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-wrap every citizen key under a new master key (documents are not re-encrypted).
    Rotate {
        /// Where to write the new key (required when the key comes from the environment).
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check that the audit log's hash chain is intact.
    Verify {
        /// Also check it against the anchored heads (by default the configured
        /// `[audit] anchors_file`): catches a cut tail or a head set back.
        #[arg(long, value_name = "FILE")]
        anchors: Option<Option<PathBuf>>,
    },
}

fn main() -> ExitCode {
    eguichet::telemetry::init();
    let cli = Cli::parse();
    let result = Config::load(cli.config.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|config| run(config, cli.command.unwrap_or(Command::Serve)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config, command: Command) -> anyhow::Result<()> {
    // Only the server creates a portal; the client needs none.
    if !matches!(command, Command::Serve | Command::Deliver(_)) {
        eguichet::state::require_existing_instance(&config)?;
    }
    match command {
        Command::Serve => actix_web::rt::System::new().block_on(eguichet::web::serve(config)),
        Command::Migrate => {
            let db = eguichet::db::Database::connect(&config.database_url(), 1)?;
            let applied = eguichet::db::run_migrations(&mut *db.get_blocking()?)?;
            eprintln!("{applied} migration(s) applied");
            Ok(())
        }
        Command::Agent(command) => run_agent(AppState::open(config)?, command),
        Command::Department(DepartmentCommand::Create { slug, name, tenant }) => {
            let state = AppState::open(config)?;
            let slug = Slug::parse(&slug)?;
            let tenant = tenant_or_default(&state, tenant)?;
            let department = state.db.write_blocking(|conn| {
                tenants::create_department(conn, &tenant, &slug, name.trim(), Actor::Operator)
            })?;
            eprintln!("department {} created in {}", department.slug, tenant.slug);
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate { new_key_file }) => {
            let state = AppState::open(config)?;
            let report = eguichet::keys::rotate_master_key(
                &state.config,
                &state.db,
                new_key_file.as_deref(),
            )?;
            eprintln!(
                "master key rotated: {} citizen key(s) re-wrapped; the new key is in {}",
                report.citizens,
                report.new_key_file.display()
            );
            if let Some(previous) = report.previous_key_file {
                eprintln!(
                    "the previous key is kept in {} (backups of the database made before now need it)",
                    previous.display()
                );
            }
            Ok(())
        }
        Command::Dashboard(DashboardCommand::Refill) => {
            let state = AppState::open(config)?;
            state
                .db
                .write_blocking(eguichet::dashboard::refill::refill)?;
            eprintln!("dashboard figures counted again from the stored data");
            Ok(())
        }
        // The client needs no database or keys of its own.
        Command::Deliver(args) => deliver(args),
        Command::Cleanup => {
            let state = AppState::open(config)?;
            let policy = CleanupPolicy::from_config(&state.config);
            match cleanup::run_cleanup_blocking(&state.db, policy, eguichet::now())? {
                CleanupOutcome::Done(report) => {
                    print!("{report}");
                    Ok(())
                }
                CleanupOutcome::Skipped => {
                    eprintln!("another instance is cleaning up right now; nothing done");
                    Ok(())
                }
            }
        }
        Command::Audit(AuditCommand::Verify { anchors }) => {
            let anchors_file =
                anchors.map(|file| file.unwrap_or_else(|| config.audit_anchors_file()));
            let anchors = match &anchors_file {
                Some(file) => audit::anchors::read(file)?,
                None => Vec::new(),
            };
            let state = AppState::open(config)?;
            let key = state
                .db
                .audit_chain_key()
                .ok_or_else(|| anyhow::anyhow!("the audit chain's key is not loaded"))?;
            match audit::verify_chain(&mut *state.db.get_blocking()?, &key, &anchors)? {
                ChainCheck::Intact { events } => {
                    match anchors_file {
                        Some(file) => println!(
                            "audit log intact: {events} event(s), matching {} anchor(s) of {}",
                            anchors.len(),
                            file.display()
                        ),
                        None => println!("audit log intact: {events} event(s)"),
                    }
                    Ok(())
                }
                ChainCheck::Broken { seq, reason } => {
                    anyhow::bail!("audit log broken at event {seq}: {reason}")
                }
            }
        }
    }
}

fn run_agent(state: AppState, command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::Create {
            email,
            role,
            tenant,
            department,
        } => {
            let email = AgentEmail::parse(&email)?;
            let tenant = tenant_or_default(&state, tenant)?;
            let agent = state.db.write_blocking(|conn| -> anyhow::Result<_> {
                let department = match department {
                    Some(slug) => Some(
                        tenants::find_department(conn, &tenant.id, &slug)?.ok_or_else(|| {
                            anyhow::anyhow!("no department {slug:?} in {}", tenant.slug)
                        })?,
                    ),
                    None => None,
                };
                Ok(agents::create_agent(
                    conn,
                    &tenant,
                    &email,
                    role,
                    department.as_ref(),
                    Actor::Operator,
                )?)
            })?;
            eprintln!(
                "agent {} created in {} with role {}",
                agent.email,
                tenant.slug,
                agent.role.as_str()
            );
            Ok(())
        }
        AgentCommand::Token {
            email,
            tenant,
            name,
            days,
            list,
            revoke,
        } => {
            let agent = existing_agent(&state, &email, tenant)?;
            if list {
                let tokens = state.db.write_blocking(|conn| {
                    agents::api_tokens::list_api_tokens(conn, &agent.id, eguichet::now())
                })?;
                print_tokens(&tokens);
                return Ok(());
            }
            if let Some(id_or_name) = revoke {
                let revoked = state.db.write_blocking(|conn| {
                    agents::revoke_api_token(conn, &agent, &id_or_name, Actor::Operator)
                })?;
                return match revoked {
                    Revocation::Revoked(id) => {
                        eprintln!("token {id} of {} revoked", agent.email);
                        Ok(())
                    }
                    Revocation::NotFound => anyhow::bail!(
                        "{} has no unrevoked token with the id or name {id_or_name:?}",
                        agent.email
                    ),
                    Revocation::Ambiguous => anyhow::bail!(
                        "several tokens of {} are named {id_or_name:?}: revoke by id (see --list)",
                        agent.email
                    ),
                };
            }
            let name = TokenName::parse(&name)?;
            let days = days.unwrap_or(state.config.session.api_token_days);
            let request = TokenRequest::lasting(name, days, eguichet::now());
            let issued = state.db.write_blocking(|conn| {
                agents::issue_api_token(conn, &agent, &request, Actor::Operator)
            })?;
            match request.expires_at {
                Some(at) => eprintln!(
                    "token {} expires on {} UTC",
                    issued.id,
                    at.format("%Y-%m-%d %H:%M")
                ),
                None => eprintln!("token {} never expires", issued.id),
            }
            // The only line on standard output, so scripts can capture it.
            println!("{}", issued.token.reveal());
            Ok(())
        }
        AgentCommand::Password { email, tenant } => {
            let agent = existing_agent(&state, &email, tenant)?;
            let line = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                // Typed at a terminal: not echoed, so it is not left on the screen.
                rpassword::prompt_password(format!(
                    "new password ({}-{} characters), then Enter: ",
                    credentials::PASSWORD_MIN_CHARS,
                    credentials::PASSWORD_MAX_CHARS
                ))?
            } else {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line
            };
            let password = NewPassword::parse(line.trim_end_matches(['\r', '\n']))?;
            drop(line);
            let hash = password.hash()?;
            state.db.write_blocking(|conn| {
                credentials::set_password_hash(conn, &agent, &hash, Actor::Operator)
            })?;
            eprintln!(
                "password set for {}; they enrol a second factor at their first login",
                agent.email
            );
            Ok(())
        }
        AgentCommand::ResetSecondFactor { email, tenant } => {
            let agent = existing_agent(&state, &email, tenant)?;
            state.db.write_blocking(|conn| {
                credentials::reset_second_factor(conn, &agent, Actor::Operator)
            })?;
            eprintln!(
                "second factor removed for {}; they enrol again at their next login",
                agent.email
            );
            Ok(())
        }
    }
}

/// One line per token, tab-separated: id, name, created, expires, last used, state.
fn print_tokens(tokens: &[agents::api_tokens::TokenListing]) {
    let date = |at: Option<chrono::NaiveDateTime>, none: &str| {
        at.map_or_else(
            || none.to_owned(),
            |at| at.format("%Y-%m-%d %H:%M").to_string(),
        )
    };
    println!("id\tname\tcreated\texpires\tlast used\tstate");
    for token in tokens {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            token.id,
            token.name,
            date(Some(token.created_at), ""),
            date(token.expires_at, "never"),
            date(token.last_used_at, "never"),
            match token.state {
                TokenState::Active => "active",
                TokenState::Expired => "expired",
                TokenState::Revoked => "revoked",
            }
        );
    }
}

fn existing_agent(
    state: &AppState,
    email: &str,
    tenant: Option<String>,
) -> anyhow::Result<agents::Agent> {
    let email = AgentEmail::parse(email)?;
    let tenant = tenant_or_default(state, tenant)?;
    let mut conn = state.db.get_blocking()?;
    Ok(agents::find_agent(&mut conn, &tenant.id, &email)?.ok_or(agents::AgentError::Unknown)?)
}

fn tenant_or_default(state: &AppState, slug: Option<String>) -> anyhow::Result<tenants::Tenant> {
    match slug {
        None => Ok(state.default_tenant.clone()),
        Some(slug) => {
            let mut conn = state.db.get_blocking()?;
            Ok(tenants::require_tenant(&mut conn, &slug)?)
        }
    }
}

fn deliver(args: DeliverArgs) -> anyhow::Result<()> {
    use eguichet::bulk::client;
    use std::io::IsTerminal;
    let manifest = client::load_manifest(&args.manifest, &args.files)?;
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let options = client::ClientOptions {
        server: args.server,
        token: args.token,
        concurrency: args.concurrency.max(1),
        encrypt_locally: !args.server_encryption,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(client::deliver_manifest(
        &options,
        manifest,
        &args.files,
        &progress,
    ))?;
    print!("{report}");
    if report.is_complete() {
        Ok(())
    } else {
        anyhow::bail!("{} line(s) refused", report.refused.len())
    }
}
