//! The `myelin` command: the server and its admin tools.

use clap::{Args, Parser, Subcommand};
use myelin::{admin, server};
use myelin_core::Config;
use myelin_media::PurgeScope;
use std::{path::PathBuf, process::ExitCode};

/// mimalloc rather than glibc's malloc: a server makes and frees many small strings on many
/// threads (rows, JSON), where it measured much cheaper (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "myelin", version, about = "Myelin, a Matrix homeserver")]
struct Cli {
    /// Config file (TOML). Default: ./myelin.toml if present, else built-in defaults.
    #[arg(long, global = true, env = "MYELIN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print or check configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage registration tokens.
    #[command(subcommand, name = "registration-token")]
    RegistrationToken(TokenCommand),
    /// Inspect and remove media.
    #[command(subcommand)]
    Media(MediaCommand),
    /// Manage the server's signing key.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Replace the signing key with a new one (at the next start); the old one stays published
    /// as an old verify key so that what it signed can still be verified.
    Rotate,
}

#[derive(Subcommand)]
enum MediaCommand {
    /// Show the metadata of an mxc:// URI.
    Info { mxc: String },
    /// Hide media from everyone but server admins.
    Quarantine { mxc: String },
    /// Undo a quarantine.
    Unquarantine { mxc: String },
    /// Delete media and its thumbnails for good.
    Delete { mxc: String },
    /// Delete all media created before DATE (RFC 3339, e.g. 2026-01-01T00:00:00Z).
    Purge {
        #[arg(long)]
        before: String,
        /// Only media uploaded to this server.
        #[arg(long, conflicts_with = "remote")]
        local: bool,
        /// Only media cached from other servers.
        #[arg(long)]
        remote: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a fully commented example config with every default.
    Example,
    /// Validate the config (file and environment) and say exactly what is wrong.
    Check,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct PasswordChoice {
    /// The password to set.
    #[arg(long)]
    password: Option<String>,
    /// Generate a random password and print it.
    #[arg(long)]
    random_password: bool,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user with a localpart NAME.
    Create {
        name: String,
        #[command(flatten)]
        password: PasswordChoice,
        /// Make the user a server admin.
        #[arg(long)]
        admin: bool,
    },
    /// List all users.
    List,
    /// Deactivate a user for good: sessions end and the ID is never reused.
    Deactivate { name: String },
    /// Set a new password.
    ResetPassword {
        name: String,
        #[command(flatten)]
        password: PasswordChoice,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token (random unless --token is given) and print it.
    Create {
        #[arg(long)]
        token: Option<String>,
        /// How many registrations may use it (default: unlimited).
        #[arg(long)]
        uses: Option<i64>,
        /// When it expires, RFC 3339 (e.g. 2027-01-31T00:00:00Z).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens with their use counts.
    List,
    /// Delete a token.
    Delete { token: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Config(ConfigCommand::Example)) = &cli.command {
        print!("{}", myelin_core::config_example::example_toml());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("invalid configuration:\n{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Config(ConfigCommand::Check)) = &cli.command {
        println!(
            "configuration OK (server_name {}, database {})",
            config.server_name,
            redact_url(&config.database_url())
        );
        return ExitCode::SUCCESS;
    }
    init_logging(&config, matches!(cli.command, None | Some(Command::Serve)));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> Result<(), String> {
    match command {
        Command::Serve => server::serve(config).await,
        Command::Config(_) => Ok(()),
        Command::User(UserCommand::Create { name, password, admin }) => {
            admin::user_create(config, &name, password.password, password.random_password, admin).await
        }
        Command::User(UserCommand::List) => admin::user_list(config).await,
        Command::User(UserCommand::Deactivate { name }) => admin::user_deactivate(config, &name).await,
        Command::User(UserCommand::ResetPassword { name, password }) => {
            admin::user_reset_password(config, &name, password.password, password.random_password).await
        }
        Command::RegistrationToken(TokenCommand::Create { token, uses, expires }) => {
            admin::token_create(config, token, uses, expires).await
        }
        Command::RegistrationToken(TokenCommand::List) => admin::token_list(config).await,
        Command::RegistrationToken(TokenCommand::Delete { token }) => admin::token_delete(config, &token).await,
        Command::Media(MediaCommand::Info { mxc }) => admin::media_info(config, &mxc).await,
        Command::Media(MediaCommand::Quarantine { mxc }) => admin::media_quarantine(config, &mxc, true).await,
        Command::Media(MediaCommand::Unquarantine { mxc }) => admin::media_quarantine(config, &mxc, false).await,
        Command::Media(MediaCommand::Delete { mxc }) => admin::media_delete(config, &mxc).await,
        Command::Media(MediaCommand::Purge { before, local, remote }) => {
            let scope = match (local, remote) {
                (true, _) => PurgeScope::Local,
                (_, true) => PurgeScope::Remote,
                _ => PurgeScope::All,
            };
            admin::media_purge(config, &before, scope).await
        }
        Command::Keys(KeysCommand::Rotate) => admin::keys_rotate(config).await,
    }
}

/// `RUST_LOG` wins over `log.level`. Admin commands log warnings only, unless asked.
fn init_logging(config: &Config, serving: bool) {
    use tracing_subscriber::EnvFilter;
    let mut default = if serving { config.log.level.clone() } else { "warn".to_owned() };
    // ruma's event auth logs every check at INFO: two lines per event sent. Quiet unless the
    // level names it (or RUST_LOG is set).
    if !default.contains("ruma_state_res") {
        default.push_str(",ruma_state_res=warn");
    }
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&default))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt().with_env_filter(filter).with_target(true).with_ansi(ansi).init();
}

/// Hides a password in a database URL before printing it.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
