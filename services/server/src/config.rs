//! Configuration of `naast serve`: defaults, overridden by a TOML file (`--config`), overridden by
//! environment variables (`NAAST_LISTEN`, `NAAST_DATA_DIR`), overridden by flags. Validated before
//! any port is bound or any file opened.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the service listens when nothing else is said.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Where the service keeps its data when nothing else is said.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// The settings of a running service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address of the gRPC listener; port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// Directory of the event log.
    pub data_dir: PathBuf,
}

/// The settings a TOML config file may hold; unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `listen = "127.0.0.1:50051"`
    pub listen: Option<String>,
    /// `data_dir = "/var/lib/naast"`
    pub data_dir: Option<PathBuf>,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the expected shape.
    #[error("config file {}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's description, with line and column.
        message: String,
    },
    /// The listen address is not `host:port`.
    #[error("listen address {value:?} is not an IP address and port such as {DEFAULT_LISTEN}")]
    Listen {
        /// The value given.
        value: String,
    },
    /// The data directory is empty.
    #[error("data_dir must not be empty")]
    EmptyDataDir,
}

impl Config {
    /// Resolves the settings: `listen` and `data_dir` are what flags or environment gave (clap
    /// merges the two, flags first), the file fills what they left open, defaults the rest.
    pub fn resolve(
        listen: Option<String>,
        data_dir: Option<PathBuf>,
        file: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let file = match file {
            Some(path) => load(path)?,
            None => FileConfig::default(),
        };
        let listen = listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen
            .parse()
            .map_err(|_| ConfigError::Listen { value: listen })?;
        let data_dir = data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::EmptyDataDir);
        }
        Ok(Self { listen, data_dir })
    }
}

fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("naast.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:7000\"\ndata_dir = \"/srv/naast\"\n",
        )
        .unwrap();
        assert_eq!(
            Config::resolve(None, None, None).unwrap(),
            Config {
                listen: DEFAULT_LISTEN.parse().unwrap(),
                data_dir: DEFAULT_DATA_DIR.into()
            }
        );
        let from_file = Config::resolve(None, None, Some(&file)).unwrap();
        assert_eq!(from_file.listen, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(from_file.data_dir, PathBuf::from("/srv/naast"));
        let flags = Config::resolve(Some("127.0.0.1:9".into()), None, Some(&file)).unwrap();
        assert_eq!(flags.listen, "127.0.0.1:9".parse().unwrap());
        assert_eq!(flags.data_dir, PathBuf::from("/srv/naast"));
    }

    #[test]
    fn bad_settings_are_refused_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("naast.toml");
        std::fs::write(&file, "listen = \"here\"\n").unwrap();
        assert!(matches!(
            Config::resolve(None, None, Some(&file)),
            Err(ConfigError::Listen { value }) if value == "here"
        ));
        std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let err = Config::resolve(None, None, Some(&file)).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        assert!(matches!(
            Config::resolve(None, None, Some(&dir.path().join("missing.toml"))),
            Err(ConfigError::Read { .. })
        ));
        assert!(matches!(
            Config::resolve(None, Some(PathBuf::new()), None),
            Err(ConfigError::EmptyDataDir)
        ));
    }
}
