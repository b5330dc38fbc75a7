//! What is checked before the relay starts (and by `--check-config`): the keys file and
//! the routes and fleet settings it needs, the listener's TLS material, each route's CA
//! bundle.

use super::StartError;
use crate::config::{AuthMode, Config, UsageLog};
use crate::route::Routes;
use crate::server::auth::ClientKeys;
use crate::upstream::dial::{client_tls_config, server_tls_config};

/// Every route the keys file names must exist.
pub(super) fn check_key_routes(
    keys: &ClientKeys,
    routes: &Routes,
) -> Result<(), crate::server::auth::AuthError> {
    match keys.route_names().find(|r| routes.index_of(r).is_none()) {
        Some(r) => Err(crate::server::auth::AuthError::UnknownRoute(r.to_string())),
        None => Ok(()),
    }
}

/// Check what `--check-config` checks beyond the flags: the keys file (and the routes it
/// names), the listener's TLS material, each route's CA bundle. No socket is opened and no
/// host resolved. Returns a one-line summary.
pub fn check_files(config: &Config) -> Result<String, StartError> {
    let keys = match &config.auth {
        AuthMode::Managed { keys_file } => {
            let k = ClientKeys::load(keys_file)?;
            check_key_routes(&k, &config.routes)?;
            check_key_fleet(&k, config)?;
            Some(k.len())
        }
        AuthMode::Passthrough => None,
    };
    if let Some((cert, key)) = &config.tls {
        server_tls_config(cert, key)?;
    }
    for r in &config.routes.list {
        if r.upstream.tls {
            client_tls_config(r.ca.as_deref())?;
        }
    }
    let routes: Vec<String> = config
        .routes
        .list
        .iter()
        .map(|r| format!("{}={}", r.name, r.label))
        .collect();
    Ok(format!(
        "configuration OK: listen {} ({}), {}, routes [{}] (default {}), usage log {}",
        config.listen,
        if config.tls.is_some() { "wss" } else { "ws" },
        match keys {
            Some(n) => format!("{n} client keys"),
            None => "passthrough auth".to_string(),
        },
        routes.join(", "),
        config.routes.list[config.routes.default].name,
        match &config.usage_log {
            UsageLog::Disabled => "off".to_string(),
            UsageLog::Stdout => "stdout".to_string(),
            UsageLog::File(p) => p.display().to_string(),
        }
    ))
}

/// Fleet limits in the keys file need `--budget-redis`.
pub(super) fn check_key_fleet(keys: &ClientKeys, config: &Config) -> Result<(), StartError> {
    if config.fleet.budget.is_none() && keys.limits().values().any(|l| l.needs_fleet()) {
        return Err(StartError::Fleet(
            "--client-keys: tokens_per_day, tokens_per_month and fleet_max_sessions need --budget-redis".into(),
        ));
    }
    Ok(())
}
