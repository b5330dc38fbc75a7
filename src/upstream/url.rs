//! The `--upstream` URL: `ws://`, `wss://`, `http://` (→ ws), `https://` (→ wss).

use std::net::Ipv6Addr;

/// A parsed upstream WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// Whether to dial TLS (`wss://` or `https://`).
    pub tls: bool,
    /// Host name or IP literal to dial and to use for SNI; IPv6 without brackets, lowercase.
    pub host: String,
    /// TCP port (the scheme's default when not given).
    pub port: u16,
    /// Path prefix put before the client's path, without a trailing `/` (`""` for the root).
    pub base_path: String,
    /// `Host` header value: host (IPv6 in brackets), plus `:port` only when not the default.
    pub host_header: String,
}

/// Why an `--upstream` URL was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// No `scheme://` prefix.
    #[error("missing scheme: expected ws://, wss://, http:// or https://")]
    MissingScheme,
    /// A scheme other than ws, wss, http or https.
    #[error("unsupported scheme: expected ws://, wss://, http:// or https://")]
    UnsupportedScheme,
    /// `user:pass@` in the authority (credentials belong in --upstream-header).
    #[error("credentials in the URL (user@host) are not supported; use --upstream-header")]
    Userinfo,
    /// A `?query` (the client's query string is forwarded instead).
    #[error("a query string is not allowed in the upstream URL (the client's query is forwarded)")]
    Query,
    /// A `#fragment`.
    #[error("a fragment (#...) is not allowed in the upstream URL")]
    Fragment,
    /// Nothing between `://` and the path.
    #[error("missing host")]
    EmptyHost,
    /// The host has characters outside letters, digits, `.`, `-`, `_`.
    #[error("invalid host name")]
    InvalidHost,
    /// A bracketed host that is not an IPv6 address (zone ids are not supported).
    #[error("invalid IPv6 literal")]
    InvalidIpv6,
    /// The port is empty, not a number, 0 or above 65535.
    #[error("invalid port")]
    InvalidPort,
    /// The path has spaces or control characters.
    #[error("invalid path: spaces and control characters are not allowed")]
    InvalidPath,
}

/// Parse an `--upstream` URL.
pub fn parse_upstream_url(s: &str) -> Result<UpstreamUrl, UrlError> {
    let s = s.trim();
    let (scheme, rest) = s.split_once("://").ok_or(UrlError::MissingScheme)?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => false,
        "wss" | "https" => true,
        _ => return Err(UrlError::UnsupportedScheme),
    };
    if rest.contains('#') {
        return Err(UrlError::Fragment);
    }
    if rest.contains('?') {
        return Err(UrlError::Query);
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(UrlError::Userinfo);
    }
    if authority.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    let (host, port_text, bracketed) = if let Some(inner) = authority.strip_prefix('[') {
        let (addr, after) = inner.split_once(']').ok_or(UrlError::InvalidIpv6)?;
        let ip: Ipv6Addr = addr.parse().map_err(|_| UrlError::InvalidIpv6)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UrlError::InvalidPort)?),
        };
        (ip.to_string(), port, true)
    } else {
        let (h, p) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if h.is_empty() {
            return Err(UrlError::EmptyHost);
        }
        if !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(UrlError::InvalidHost);
        }
        (h.to_ascii_lowercase(), p, false)
    };
    let default_port = if tls { 443 } else { 80 };
    let port = match port_text {
        None => default_port,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(UrlError::InvalidPort)?,
        Some(_) => return Err(UrlError::InvalidPort),
    };
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UrlError::InvalidPath);
    }
    let base_path = path.trim_end_matches('/').to_owned();
    let shown = if bracketed {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let host_header = if port == default_port {
        shown
    } else {
        format!("{shown}:{port}")
    };
    Ok(UpstreamUrl {
        tls,
        host,
        port,
        base_path,
        host_header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> UpstreamUrl {
        parse_upstream_url(s).unwrap()
    }

    #[test]
    fn schemes_and_default_ports() {
        let u = ok("wss://api.openai.com/v1");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (true, "api.openai.com", 443)
        );
        assert_eq!(
            (u.base_path.as_str(), u.host_header.as_str()),
            ("/v1", "api.openai.com")
        );
        let u = ok("http://127.0.0.1:9000/");
        assert_eq!((u.tls, u.port, u.base_path.as_str()), (false, 9000, ""));
        assert_eq!(u.host_header, "127.0.0.1:9000");
        let u = ok("HTTPS://X.openai.azure.com/openai/");
        assert_eq!(
            (u.tls, u.host.as_str(), u.base_path.as_str()),
            (true, "x.openai.azure.com", "/openai")
        );
        assert_eq!(ok("ws://h").port, 80);
        assert_eq!(ok("ws://h:80").host_header, "h");
        assert_eq!(ok("wss://h:80").host_header, "h:80");
    }

    #[test]
    fn ipv6_literals() {
        let u = ok("ws://[::1]:8080/v1");
        assert_eq!(
            (u.host.as_str(), u.port, u.host_header.as_str()),
            ("::1", 8080, "[::1]:8080")
        );
        let u = ok("wss://[2001:DB8::1]");
        assert_eq!(
            (u.host.as_str(), u.host_header.as_str()),
            ("2001:db8::1", "[2001:db8::1]")
        );
        assert_eq!(parse_upstream_url("ws://[zz]/"), Err(UrlError::InvalidIpv6));
        assert_eq!(parse_upstream_url("ws://[::1"), Err(UrlError::InvalidIpv6));
        assert_eq!(
            parse_upstream_url("ws://[::1]x"),
            Err(UrlError::InvalidPort)
        );
    }

    #[test]
    fn rejections() {
        let cases = [
            ("api.openai.com/v1", UrlError::MissingScheme),
            ("ftp://h/", UrlError::UnsupportedScheme),
            ("wss://user:pw@h/", UrlError::Userinfo),
            ("wss://h/v1?x=1", UrlError::Query),
            ("wss://h/v1#frag", UrlError::Fragment),
            ("wss:///v1", UrlError::EmptyHost),
            ("wss://:443/v1", UrlError::EmptyHost),
            ("wss://h:/v1", UrlError::InvalidPort),
            ("wss://h:0/v1", UrlError::InvalidPort),
            ("wss://h:70000/v1", UrlError::InvalidPort),
            ("wss://h:+1/v1", UrlError::InvalidPort),
            ("wss://h h/v1", UrlError::InvalidHost),
            ("wss://h/v 1", UrlError::InvalidPath),
        ];
        for (s, e) in cases {
            assert_eq!(parse_upstream_url(s), Err(e.clone()), "{s}");
            assert!(!e.to_string().is_empty());
        }
    }
}
