//! `--config tollgate.toml`: every flag can be set in the file under its long name
//! (`idle-timeout = "300s"`, `allow-path = ["/v1/responses"]`, `passthrough-auth = true`),
//! and `[[route]]` tables define the routes.
//!
//! Precedence, highest first: the command line, `TOLLGATE_*` environment variables, the
//! file, the built-in defaults. The file's settings are turned into the flags they name and
//! parsed by the same clap definitions, so a value means exactly what it means on the
//! command line and is checked the same way.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use serde::Deserialize;

/// One `[[route]]` table, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteTable {
    /// Name: path prefix (`/NAME/v1/responses`), model prefix (`NAME/model`), the keys
    /// file's `route=NAME`, and the `route` of records and metrics.
    pub name: String,
    /// Upstream base URL (`wss://api.x.ai`).
    pub upstream: String,
    /// Headers injected upstream in managed mode (`Name: value`, `${VAR}` expanded).
    /// Required in managed mode (an empty list is allowed and means none).
    pub headers: Option<Vec<String>>,
    /// Extra PEM CA bundle for this upstream.
    pub ca: Option<PathBuf>,
    /// Paths clients may open on this route [default: /v1/responses; Azure hosts also
    /// /openai/v1/responses].
    pub allow_paths: Option<Vec<String>>,
    /// Models clients may ask for (without the route prefix); unset = any.
    pub models: Option<Vec<String>>,
}

/// A config file problem; the text names the file and the setting.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("--config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("--config {path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key that is no flag of tollgate.
    #[error("--config {path}: unknown setting `{key}` (settings are the long flag names, e.g. `idle-timeout`; routes are [[route]] tables)")]
    UnknownKey {
        /// The file.
        path: String,
        /// The key.
        key: String,
    },
    /// A value of the wrong kind (a table, a date, an array for a single-valued flag).
    #[error("--config {path}: `{key}`: {why}")]
    BadValue {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A `[[route]]` table is malformed.
    #[error("--config {path}: [[route]]: {message}")]
    Route {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
}

/// Settings that only make sense on the command line.
const NOT_IN_FILE: [&str; 3] = ["config", "check-config", "help"];

/// The file's flags (as extra command-line arguments for the settings neither the command
/// line nor the environment set) and its routes.
#[derive(Debug, Default)]
pub struct FileSettings {
    /// `--name=value` arguments to append.
    pub args: Vec<OsString>,
    /// The `[[route]]` tables.
    pub routes: Vec<RouteTable>,
}

/// Read `path` and translate it against the parsed command line `matches` of `cmd`.
pub fn load(path: &Path, cmd: &Command, matches: &ArgMatches) -> Result<FileSettings, FileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: shown.clone(),
        source,
    })?;
    translate(&shown, &text, cmd, matches)
}

/// [`load`] on text already read.
pub fn translate(
    path: &str,
    text: &str,
    cmd: &Command,
    matches: &ArgMatches,
) -> Result<FileSettings, FileError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| FileError::Syntax {
            path: path.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
    let mut out = FileSettings::default();
    for (key, value) in table {
        if key == "route" {
            out.routes = value
                .try_into()
                .map_err(|e: toml::de::Error| FileError::Route {
                    path: path.to_string(),
                    message: e.message().to_string(),
                })?;
            continue;
        }
        let unknown = || FileError::UnknownKey {
            path: path.to_string(),
            key: key.clone(),
        };
        if NOT_IN_FILE.contains(&key.as_str()) {
            return Err(unknown());
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .ok_or_else(unknown)?;
        let id = arg.get_id().as_str();
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let bad = |why| FileError::BadValue {
            path: path.to_string(),
            key: key.clone(),
            why,
        };
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let many = matches!(arg.get_action(), ArgAction::Append);
        let values = match value {
            toml::Value::Boolean(b) if switch => {
                if b {
                    out.args.push(format!("--{key}").into());
                }
                continue;
            }
            _ if switch => return Err(bad("expected true or false")),
            toml::Value::Array(items) if many => items,
            toml::Value::Array(_) => return Err(bad("takes one value, not a list")),
            v => vec![v],
        };
        for v in values {
            let s = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(bad("expected a string, a number or a boolean")),
            };
            out.args.push(format!("--{key}={s}").into());
        }
    }
    Ok(out)
}
