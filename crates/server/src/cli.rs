//! The `chat-server` command line: `chat-server [serve]` runs the server,
//! `chat-server migrate` migrates the configured database and exits.
//! Kept in the library so another binary can offer the same commands.

use crate::config::{Settings, CONFIG_DIR_ENV};
use crate::startup::{Application, StartupError};
use crate::{storage, telemetry};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Self-hosted real-time chat server.
#[derive(Debug, Parser)]
#[command(name = "chat-server", version, about)]
pub struct Cli {
    /// Directory of `default.toml` and `local.toml` (both optional).
    #[arg(long, env = CONFIG_DIR_ENV, default_value = "config", global = true)]
    pub config_dir: PathBuf,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Migrate the database if needed and serve HTTP and WebSocket clients (the default).
    Serve,
    /// Run the pending database migrations and exit.
    Migrate,
}

/// Parses the command line, loads the settings, sets up logging and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load_from(&cli.config_dir) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("chat-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = telemetry::init(&settings.log) {
        eprintln!("chat-server: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chat-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "chat-server stopped");
            eprintln!("chat-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command to completion.
pub async fn run(command: Command, settings: Settings) -> Result<(), CliError> {
    match command {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until_stopped().await.map_err(CliError::Serve)
        }
        Command::Migrate => {
            let target = settings.database_target().map_err(StartupError::from)?;
            let applied = storage::migrate(&target)
                .await
                .map_err(StartupError::Storage)?;
            println!(
                "{applied} migration(s) applied to {}",
                storage::describe(&target)
            );
            Ok(())
        }
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server or the migration could not start.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The server failed while serving.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn no_subcommand_means_serve() {
        let cli = Cli::try_parse_from(["chat-server"]).unwrap();
        assert_eq!(cli.command.unwrap_or(Command::Serve), Command::Serve);
    }

    #[test]
    fn serve_and_migrate_are_the_subcommands() {
        let serve = Cli::try_parse_from(["chat-server", "serve"]).unwrap();
        assert_eq!(serve.command, Some(Command::Serve));
        let migrate =
            Cli::try_parse_from(["chat-server", "migrate", "--config-dir", "/etc/chat"]).unwrap();
        assert_eq!(migrate.command, Some(Command::Migrate));
        assert_eq!(migrate.config_dir, PathBuf::from("/etc/chat"));
        assert!(Cli::try_parse_from(["chat-server", "explode"]).is_err());
    }
}
