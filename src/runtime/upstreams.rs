//! How each route's upstream is reached: its TLS client and its addresses, resolved at
//! start and re-resolved in the background for host names.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::{Shared, StartError};
use crate::route::Route;
use crate::upstream::dial::client_tls_config;

/// How to reach one route's upstream.
pub struct Upstream {
    /// TLS connector for a `wss://` upstream, with the SNI name.
    pub tls: Option<(crate::tls::TlsConnector, ServerName<'static>)>,
    /// Its addresses (re-resolved in the background for host names).
    pub addrs: RwLock<Arc<Vec<SocketAddr>>>,
}

impl Upstream {
    /// Resolve the route's host and build its TLS client (once, at start).
    pub(super) fn new(route: &Route) -> Result<Upstream, StartError> {
        let up = &route.upstream;
        let addrs = resolve(&up.host, up.port).map_err(|source| StartError::Resolve {
            route: route.name.to_string(),
            host: up.host.clone(),
            source,
        })?;
        let tls = if up.tls {
            let cfg = client_tls_config(route.ca.as_deref())?;
            let name = ServerName::try_from(up.host.clone()).map_err(|e| StartError::Resolve {
                route: route.name.to_string(),
                host: up.host.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
            })?;
            Some((crate::tls::TlsConnector::from(cfg), name))
        } else {
            None
        };
        Ok(Upstream {
            tls,
            addrs: RwLock::new(Arc::new(addrs)),
        })
    }
}

fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no addresses",
        ));
    }
    Ok(addrs)
}

/// Re-resolve a named upstream every 30 s so DNS changes are followed without blocking a
/// worker (a failed lookup keeps the last good addresses).
pub(super) fn spawn_resolver(shared: &Arc<Shared>, route: usize) {
    let host = shared.route(route).upstream.host.clone();
    if host.parse::<std::net::IpAddr>().is_ok() {
        return;
    }
    let port = shared.route(route).upstream.port;
    let weak = Arc::downgrade(shared);
    let _ = std::thread::Builder::new().name("tollgate-dns".into()).spawn(move || loop {
        std::thread::sleep(Duration::from_secs(30));
        let Some(shared) = weak.upgrade() else { return };
        if shared.shutting_down() {
            return;
        }
        match resolve(&host, port) {
            Ok(a) => {
                if let Ok(mut w) = shared.upstreams[route].addrs.write() {
                    *w = Arc::new(a);
                }
            }
            Err(e) => tracing::warn!(host = %host, error = %e, "upstream re-resolve failed; keeping previous addresses"),
        }
    });
}
