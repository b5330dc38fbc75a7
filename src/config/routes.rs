//! Routes from the command line or the config file: the `--upstream*` flags describe one
//! route; `[[route]]` tables describe several (and then none of those flags may be set).
//! Header values expand `${ENV}`; paths, names and URL schemes are checked here.

use std::sync::Arc;

use super::cli::Cli;
use super::file::RouteTable;
use super::ConfigError;
use crate::route::{Route, Routes};
use crate::upstream::url::parse_upstream_url;
use clap::CommandFactory;

/// The [`ROUTE_FLAGS`] that `m` has a value for from anywhere but their defaults.
pub(super) fn given(m: &clap::ArgMatches) -> Vec<&'static str> {
    let cmd = Cli::command();
    ROUTE_FLAGS
        .iter()
        .copied()
        .filter(|flag| {
            cmd.get_arguments()
                .find(|a| a.get_long() == Some(flag))
                .and_then(|a| m.value_source(a.get_id().as_str()))
                .is_some_and(|src| src != clap::parser::ValueSource::DefaultValue)
        })
        .collect()
}

/// One `[[route]]` table, validated.
fn route_from_table(t: &RouteTable, managed: bool) -> Result<Route, ConfigError> {
    let fail = |why: String| ConfigError::Route {
        name: t.name.clone(),
        why,
    };
    if !valid_route_name(&t.name) {
        return Err(fail(
            "name: 1-64 characters of [A-Za-z0-9_.-] (it is a path segment and a model prefix)"
                .into(),
        ));
    }
    let upstream = parse_upstream_url(&t.upstream).map_err(|e| fail(format!("upstream: {e}")))?;
    let inject_headers = match (&t.headers, managed) {
        (_, false) => Vec::new(),
        (None, true) => {
            return Err(fail(
                "headers: required with --client-keys, e.g. headers = [\"Authorization: Bearer ${XAI_API_KEY}\"] (or [] for none)".into(),
            ))
        }
        (Some(h), true) => h
            .iter()
            .map(|h| parse_header_flag(h).map_err(|e| fail(format!("headers: {e}"))))
            .collect::<Result<_, _>>()?,
    };
    if let Some(p) = &t.ca {
        std::fs::metadata(p).map_err(|e| fail(format!("ca {}: {e}", p.display())))?;
    }
    let allow_paths = match &t.allow_paths {
        Some(v) if v.is_empty() => {
            return Err(fail(
                "allow-paths: empty (the route would serve nothing)".into(),
            ))
        }
        Some(v) => {
            for p in v {
                check_allow_path(p).map_err(|e| fail(e.to_string()))?;
            }
            v.clone()
        }
        None => default_allow_paths(&upstream.host),
    };
    if t.models
        .as_ref()
        .is_some_and(|m| m.iter().any(|m| m.is_empty()))
    {
        return Err(fail("models: empty model name".into()));
    }
    Ok(Route {
        name: Arc::from(t.name.as_str()),
        upstream,
        label: Arc::from(t.upstream.as_str()),
        inject_headers,
        ca: t.ca.clone(),
        allow_paths,
        models: t.models.clone(),
    })
}

/// Expand `${VAR}` references from the environment.
fn expand_env(name: &str, value: &str) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| ConfigError::HeaderSyntax(name.to_string()))?;
        let var = &after[..end];
        let val = std::env::var(var).map_err(|_| ConfigError::UnsetVariable {
            name: name.to_string(),
            var: var.to_string(),
        })?;
        out.push_str(&val);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parse one `--upstream-header` value.
fn parse_header_flag(raw: &str) -> Result<(String, String), ConfigError> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| ConfigError::HeaderSyntax(raw.to_string()))?;
    let name = name.trim();
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if !valid_name {
        return Err(ConfigError::HeaderSyntax(name.to_string()));
    }
    let value = expand_env(name, value.trim())?;
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(ConfigError::HeaderSyntax(name.to_string()));
    }
    Ok((name.to_string(), value))
}

pub(super) fn check_scheme(
    flag: &'static str,
    url: &str,
    schemes: &[&str],
) -> Result<(), ConfigError> {
    if schemes
        .iter()
        .any(|s| url.starts_with(s) && url.len() > s.len())
    {
        Ok(())
    } else {
        Err(ConfigError::Scheme {
            flag,
            url: url.to_string(),
            expected: if schemes[0] == "nats://" {
                "nats:// (or tls://)"
            } else {
                "redis:// (or rediss://)"
            },
        })
    }
}

/// Route names: what fits in a path segment and a model prefix.
pub(super) fn valid_route_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn check_allow_path(p: &str) -> Result<(), ConfigError> {
    if !p.starts_with('/') || p.contains('?') || p.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ConfigError::AllowPath(p.to_string()));
    }
    Ok(())
}

/// The paths a route serves when none are configured: the Responses endpoint, plus
/// Azure's own path on an Azure host.
fn default_allow_paths(host: &str) -> Vec<String> {
    let mut v = vec!["/v1/responses".to_string()];
    if host.ends_with(".openai.azure.com") || host.ends_with(".cognitiveservices.azure.com") {
        v.push("/openai/v1/responses".to_string());
    }
    v
}

/// Flags that the `[[route]]` tables replace (config file routes → none may be set).
const ROUTE_FLAGS: [&str; 5] = [
    "upstream",
    "upstream-header",
    "upstream-ca",
    "allow-path",
    "allow-model",
];

impl Cli {
    pub(super) fn build_routes(&self, managed: bool) -> Result<Routes, ConfigError> {
        let list = if self.file_routes.is_empty() {
            vec![self.flag_route(managed)?]
        } else {
            if let Some(flag) = self.route_flags_given.first() {
                return Err(ConfigError::RouteFlag(flag));
            }
            let mut list: Vec<Route> = Vec::with_capacity(self.file_routes.len());
            for t in &self.file_routes {
                let r = route_from_table(t, managed)?;
                if list.iter().any(|o| o.name == r.name) {
                    return Err(ConfigError::Route {
                        name: t.name.clone(),
                        why: "defined twice".into(),
                    });
                }
                list.push(r);
            }
            list
        };
        let default = match &self.default_route {
            None => 0,
            Some(n) => list
                .iter()
                .position(|r| &*r.name == n.as_str())
                .ok_or_else(|| ConfigError::DefaultRoute(n.clone()))?,
        };
        Ok(Routes { list, default })
    }

    /// The single route the `--upstream*` flags describe (no `[[route]]` tables).
    fn flag_route(&self, managed: bool) -> Result<Route, ConfigError> {
        let upstream =
            parse_upstream_url(&self.upstream).map_err(|e| ConfigError::Upstream(e.to_string()))?;
        let inject_headers = if managed {
            let raw = if self.upstream_headers.is_empty() {
                vec!["Authorization: Bearer ${OPENAI_API_KEY}".to_string()]
            } else {
                self.upstream_headers.clone()
            };
            raw.iter()
                .map(|h| parse_header_flag(h))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        if let Some(p) = &self.upstream_ca {
            std::fs::metadata(p).map_err(|source| ConfigError::File {
                flag: "upstream-ca",
                path: p.display().to_string(),
                source,
            })?;
        }
        for p in &self.allow_paths {
            check_allow_path(p)?;
        }
        let allow_paths = if self.allow_paths.is_empty() {
            default_allow_paths(&upstream.host)
        } else {
            self.allow_paths.clone()
        };
        Ok(Route {
            name: Arc::from("default"),
            upstream,
            label: Arc::from(self.upstream.as_str()),
            inject_headers,
            ca: self.upstream_ca.clone(),
            allow_paths,
            models: (!self.allow_models.is_empty()).then(|| self.allow_models.clone()),
        })
    }
}
