//! Limits and policies (protocol.md, "Limits and policies").

use std::fmt;

/// Every limit the server enforces. `Config::default()` holds the protocol's
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most connections admitted at once; one more gets `* error: server full`.
    pub max_clients: usize,
    /// Most bytes in one line, CR and LF excluded, before sanitizing.
    pub max_line: usize,
    /// Most bytes the server holds for one client (queued or being written);
    /// a client that would go over it is disconnected as `too slow`.
    pub max_queue: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_clients: 10_000,
            max_line: 4096,
            max_queue: 1024 * 1024,
        }
    }
}

/// The smallest `max_line` accepted: room for `/nick` and a full-length nick.
pub const MIN_MAX_LINE: usize = 16;

/// A [`Config`] that cannot work, with what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `max_clients` is 0: nobody could join.
    NoClients,
    /// `max_line` is below [`MIN_MAX_LINE`].
    LineTooShort,
    /// `max_queue` cannot hold one line of the longest kind (a chat line of
    /// `max_line` invalid bytes, each shown as a 3-byte U+FFFD), so every
    /// client would be dropped as too slow by the first such line.
    QueueTooSmall {
        /// The smallest `max_queue` that works with this `max_line`.
        min: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoClients => write!(f, "max clients must be at least 1"),
            ConfigError::LineTooShort => {
                write!(f, "max line must be at least {MIN_MAX_LINE} bytes")
            }
            ConfigError::QueueTooSmall { min } => {
                write!(
                    f,
                    "max queue must be at least {min} bytes for this max line"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The smallest `max_queue` that holds the longest line this
    /// configuration can produce, with room for a few notices.
    pub fn min_queue(&self) -> usize {
        // Prefix `NICK: ` with a 32-character nick of up to 4 bytes each.
        const PREFIX: usize = 4 * crate::nick::MAX_NICK_CHARS + 2;
        self.max_line
            .saturating_mul(3)
            .saturating_add(PREFIX + 1 + 1024)
    }

    /// Checks that the configuration can work; call it before [`crate::Server::new`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_clients == 0 {
            return Err(ConfigError::NoClients);
        }
        if self.max_line < MIN_MAX_LINE {
            return Err(ConfigError::LineTooShort);
        }
        if self.max_queue < self.min_queue() {
            return Err(ConfigError::QueueTooSmall {
                min: self.min_queue(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_protocols() {
        let config = Config::default();
        assert_eq!(config.max_clients, 10_000);
        assert_eq!(config.max_line, 4096);
        assert_eq!(config.max_queue, 1 << 20);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn unworkable_configs_are_refused() {
        let base = Config::default();
        let none = Config {
            max_clients: 0,
            ..base.clone()
        };
        assert_eq!(none.validate(), Err(ConfigError::NoClients));
        let short = Config {
            max_line: 15,
            ..base.clone()
        };
        assert_eq!(short.validate(), Err(ConfigError::LineTooShort));
        let min = base.min_queue();
        let small = Config {
            max_queue: min - 1,
            ..base.clone()
        };
        assert_eq!(small.validate(), Err(ConfigError::QueueTooSmall { min }));
        assert_eq!(
            Config {
                max_queue: min,
                ..base
            }
            .validate(),
            Ok(())
        );
    }
}
