//! Configuration files for the third-party peers (nginx, HAProxy), plain or TLS.

use std::net::SocketAddr;
use std::path::Path;

use super::peers::{PeerEnv, TlsMode};

/// nginx: one worker, WebSocket upgrade headers, no buffering; `https://` upstream and an
/// `ssl` listener as `env.tls` asks.
pub(super) fn nginx_conf(
    dir: &Path,
    listen: SocketAddr,
    upstream: SocketAddr,
    env: &PeerEnv,
) -> String {
    let (scheme, upstream_tls) = match env.tls {
        TlsMode::None => ("http", String::new()),
        _ => (
            "https",
            "      proxy_ssl_verify off;\n      proxy_ssl_session_reuse on;\n".to_string(),
        ),
    };
    let (ssl, listen_tls) = match (&env.tls, &env.tls_files) {
        (TlsMode::Both, Some(f)) => (
            " ssl",
            format!(
                "    ssl_certificate {};\n    ssl_certificate_key {};\n",
                f.cert.display(),
                f.key.display()
            ),
        ),
        _ => ("", String::new()),
    };
    format!(
        "worker_processes 1;\ndaemon off;\nmaster_process on;\nuser root;\npid {d}/nginx.pid;\n\
error_log {d}/error.log warn;\nworker_rlimit_nofile 20000;\nevents {{ worker_connections 20000; }}\n\
http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
  server {{\n    listen {listen}{ssl} backlog=4096;\n{listen_tls}    location / {{\n      proxy_pass {scheme}://{upstream};\n{upstream_tls}\
      proxy_http_version 1.1;\n      proxy_set_header Upgrade $http_upgrade;\n\
      proxy_set_header Connection \"upgrade\";\n      proxy_buffering off;\n      tcp_nodelay on;\n\
      proxy_read_timeout 3600s;\n      proxy_send_timeout 3600s;\n    }}\n  }}\n}}\n",
        d = dir.display()
    )
}

/// HAProxy: one thread, `mode http` with a tunnel timeout; `ssl verify none` upstream and
/// a `bind … ssl crt` listener as `env.tls` asks.
pub(super) fn haproxy_conf(listen: SocketAddr, upstream: SocketAddr, env: &PeerEnv) -> String {
    let bind_tls = match (&env.tls, &env.tls_files) {
        (TlsMode::Both, Some(f)) => format!(" ssl crt {}", f.combined.display()),
        _ => String::new(),
    };
    let server_tls = if env.tls == TlsMode::None {
        ""
    } else {
        " ssl verify none"
    };
    format!(
        "global\n  nbthread 1\n  maxconn 9800\n\ndefaults\n  mode http\n  timeout connect 5s\n\
  timeout client 3600s\n  timeout server 3600s\n  timeout tunnel 3600s\n\n\
frontend fe\n  bind {listen}{bind_tls}\n  default_backend be\n\nbackend be\n  server mock {upstream}{server_tls}\n"
    )
}
