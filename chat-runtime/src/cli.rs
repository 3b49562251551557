//! The command line all three servers share.

use std::net::{SocketAddr, ToSocketAddrs};

use chat_core::{Config, ConfigError};
use clap::{CommandFactory, FromArgMatches, Parser};

/// The flags of a chat server. Limits default to [`Config::default`].
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    version,
    after_help = "Join with `nc HOST PORT`; type /help once connected.\n\
                  Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to change how much."
)]
pub struct Cli {
    /// Address to listen on; port 0 picks a free port. The bound address is
    /// printed as `listening on ADDR` once the server accepts connections.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:12345", value_parser = parse_addr)]
    pub listen: SocketAddr,

    /// Most clients in the chat at once; one more is refused with `server full`.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_clients)]
    pub max_clients: usize,

    /// Longest line a client may send, in bytes; longer lines are discarded
    /// with an error.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_line)]
    pub max_line: usize,

    /// Most bytes held for one client that does not read; past it the client
    /// is disconnected as `too slow`.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_queue)]
    pub max_queue: usize,
}

/// Why the command line was refused, or what to print instead of running.
#[derive(Debug)]
pub enum CliError {
    /// `--help`, `--version` or a bad flag: clap prints it and picks the exit code.
    Clap(clap::Error),
    /// The flags parse but the limits cannot work together.
    Config(ConfigError),
}

impl Cli {
    /// Parses `args` (the program name first) for the program `name`, whose
    /// `--help` starts with `about`.
    pub fn parse_from<I, T>(
        name: &'static str,
        about: &'static str,
        args: I,
    ) -> Result<Cli, CliError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Cli::command().name(name).bin_name(name).about(about);
        command
            .try_get_matches_from(args)
            .and_then(|matches| Cli::from_arg_matches(&matches))
            .map_err(CliError::Clap)
    }

    /// The limits the flags ask for, if they can work together.
    pub fn config(&self) -> Result<Config, CliError> {
        let config = Config {
            max_clients: self.max_clients,
            max_line: self.max_line,
            max_queue: self.max_queue,
        };
        config.validate().map_err(CliError::Config)?;
        Ok(config)
    }
}

/// An IP address and port, or a host name and port resolved now (first address).
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{text} resolves to no address")),
        Err(_) => Err("expected HOST:PORT, e.g. 127.0.0.1:12345 or [::1]:0".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, CliError> {
        Cli::parse_from(
            "chat-test",
            "test",
            std::iter::once("chat-test").chain(args.iter().copied()),
        )
    }

    #[test]
    fn defaults_are_the_cores() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.listen, "127.0.0.1:12345".parse().unwrap());
        assert_eq!(cli.config().unwrap(), Config::default());
    }

    #[test]
    fn flags_set_the_config() {
        let cli = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--max-clients",
            "3",
            "--max-line",
            "100",
            "--max-queue=100000",
        ])
        .unwrap();
        assert_eq!(cli.listen.port(), 0);
        let config = cli.config().unwrap();
        assert_eq!(
            config,
            Config {
                max_clients: 3,
                max_line: 100,
                max_queue: 100_000
            }
        );
    }

    #[test]
    fn host_names_resolve() {
        let cli = parse(&["--listen", "localhost:0"]).unwrap();
        assert!(cli.listen.ip().is_loopback());
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--max-clients", "many"][..],
            &["--max-line", "-1"],
            &["--listen", "nowhere"],
            &["--bogus"],
        ] {
            match parse(args) {
                Err(CliError::Clap(e)) => assert_ne!(e.kind(), ErrorKind::DisplayHelp, "{args:?}"),
                other => panic!("{args:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn unworkable_limits_are_refused() {
        let cli = parse(&["--max-clients", "0"]).unwrap();
        assert!(matches!(
            cli.config(),
            Err(CliError::Config(ConfigError::NoClients))
        ));
        let cli = parse(&["--max-queue", "10"]).unwrap();
        assert!(matches!(
            cli.config(),
            Err(CliError::Config(ConfigError::QueueTooSmall { .. }))
        ));
    }

    #[test]
    fn help_and_version_are_not_errors() {
        for (flag, kind) in [
            ("--help", ErrorKind::DisplayHelp),
            ("--version", ErrorKind::DisplayVersion),
        ] {
            match parse(&[flag]) {
                Err(CliError::Clap(e)) => assert_eq!(e.kind(), kind),
                other => panic!("{flag} gave {other:?}"),
            }
        }
    }
}
