//! Client authentication: relay-issued keys → tenant, or (passthrough mode) a fingerprint of
//! the client's own key.
//!
//! The keys file holds `<tenant> <key> [limit=N …]` per line; `#` starts a comment line. A key
//! may be written `sha256:<64 hex>` so the file holds no plaintext. Only SHA-256 digests are
//! kept in memory, and lookups compare the presented key's digest against every entry in
//! constant time. Optional per-tenant limits follow the key: `max_sessions=N` (concurrent
//! sessions on this relay), `turns_per_minute=N` (`response.create`s), the fleet-wide
//! `tokens_per_day=N`, `tokens_per_month=N` and `fleet_max_sessions=N` (need
//! `--budget-redis`), and `route=NAME` (the tenant's default route); a tenant with several keys may state them on any of its lines, but not
//! differently on two.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::limits::TenantLimits;

use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConditionallySelectable as _, ConstantTimeEq as _};

use super::handshake::{trim, UpgradeRequest};

/// What is wrong with one line of the keys file. Never carries the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line has a tenant but no key.
    #[error("expected `<tenant> <key>`, found only one field")]
    MissingKey,
    /// A field after the key is not one of the limits (N ≥ 1) or `route=NAME`.
    #[error("after the key only `max_sessions=N`, `turns_per_minute=N`, `tokens_per_day=N`, `tokens_per_month=N`, `fleet_max_sessions=N` (N ≥ 1) and `route=NAME` may follow")]
    ExtraFields,
    /// The tenant's route was already given differently on another line.
    #[error("the tenant's route differs from the one on an earlier line")]
    ConflictingRoute,
    /// The tenant's limits were already given differently on another line.
    #[error("the tenant's limits differ from those on an earlier line")]
    ConflictingLimits,
    /// The tenant is longer than 64 bytes or has characters outside `[A-Za-z0-9_.@:-]`.
    #[error("tenant must be 1-64 characters of [A-Za-z0-9_.@:-]")]
    InvalidTenant,
    /// A `sha256:` entry is not followed by exactly 64 hex digits.
    #[error("`sha256:` must be followed by 64 hex digits")]
    InvalidDigest,
}

/// Why a keys file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read (or is not UTF-8).
    #[error("cannot read keys file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is malformed; `line` is 1-based.
    #[error("keys file line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: LineError,
    },
    /// The same key is listed on two lines (it would map to two tenants, or is a copy-paste slip).
    #[error("keys file line {line}: same key as line {first_line}")]
    DuplicateKey {
        /// 1-based line number of the repeat.
        line: usize,
        /// 1-based line number of the first occurrence.
        first_line: usize,
    },
    /// The file has no keys: nobody could authenticate (on reload, keep the old keys).
    #[error("keys file has no keys")]
    Empty,
    /// A `route=NAME` names no configured route.
    #[error("keys file: route={0} names no configured route")]
    UnknownRoute(String),
}

/// One accepted key: its SHA-256 digest and the tenant it belongs to.
struct Entry {
    digest: [u8; 32],
    tenant: Arc<str>,
}

/// The relay's client keys (digests only) and the per-tenant limits of the file. Cheap to
/// share behind an `Arc`; replace the whole set on reload.
pub struct ClientKeys {
    entries: Vec<Entry>,
    limits: HashMap<Arc<str>, TenantLimits>,
    routes: HashMap<Arc<str>, Arc<str>>,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKeys")
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
thread_local! {
    /// Digest comparisons made by `authenticate` on this thread (tests check no early exit).
    static COMPARISONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl ClientKeys {
    /// Parse the keys file text. Errors name the line number, never the key.
    pub fn parse(text: &str) -> Result<ClientKeys, AuthError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut lines_of: Vec<usize> = Vec::new();
        let mut limits: HashMap<Arc<str>, TenantLimits> = HashMap::new();
        let mut routes: HashMap<Arc<str>, Arc<str>> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let mut fields = content.split_whitespace();
            let (tenant, key) = match (fields.next(), fields.next()) {
                (Some(t), Some(k)) => (t, k),
                _ => {
                    return Err(AuthError::Line {
                        line,
                        reason: LineError::MissingKey,
                    })
                }
            };
            let mut own = TenantLimits::default();
            let mut any = false;
            let bad = || AuthError::Line {
                line,
                reason: LineError::ExtraFields,
            };
            let mut route: Option<&str> = None;
            for f in fields {
                let (name, value) = f.split_once('=').ok_or_else(bad)?;
                if name == "route" {
                    if value.is_empty() {
                        return Err(bad());
                    }
                    route = Some(value);
                    continue;
                }
                let n: u64 = value.parse().ok().filter(|&n| n >= 1).ok_or_else(bad)?;
                let small = || u32::try_from(n).map_err(|_| bad());
                match name {
                    "max_sessions" => own.max_sessions = Some(small()? as usize),
                    "turns_per_minute" => own.turns_per_minute = Some(small()?),
                    "tokens_per_day" => own.tokens_per_day = Some(n),
                    "tokens_per_month" => own.tokens_per_month = Some(n),
                    "fleet_max_sessions" => own.fleet_max_sessions = Some(small()? as usize),
                    _ => return Err(bad()),
                }
                any = true;
            }
            if !valid_tenant(tenant) {
                return Err(AuthError::Line {
                    line,
                    reason: LineError::InvalidTenant,
                });
            }
            let digest = match key.strip_prefix("sha256:") {
                Some(hex) => parse_hex32(hex).ok_or(AuthError::Line {
                    line,
                    reason: LineError::InvalidDigest,
                })?,
                None => sha256(key.as_bytes()),
            };
            if let Some(pos) = entries.iter().position(|e| e.digest == digest) {
                let first_line = lines_of.get(pos).copied().unwrap_or_default();
                return Err(AuthError::DuplicateKey { line, first_line });
            }
            let tenant: Arc<str> = Arc::from(tenant);
            if any {
                match limits.get(&tenant) {
                    Some(prev) if *prev != own => {
                        return Err(AuthError::Line {
                            line,
                            reason: LineError::ConflictingLimits,
                        })
                    }
                    _ => {
                        limits.insert(Arc::clone(&tenant), own);
                    }
                }
            }
            if let Some(r) = route {
                match routes.get(&tenant) {
                    Some(prev) if &**prev != r => {
                        return Err(AuthError::Line {
                            line,
                            reason: LineError::ConflictingRoute,
                        })
                    }
                    _ => {
                        routes.insert(Arc::clone(&tenant), Arc::from(r));
                    }
                }
            }
            entries.push(Entry { digest, tenant });
            lines_of.push(line);
        }
        if entries.is_empty() {
            return Err(AuthError::Empty);
        }
        Ok(ClientKeys {
            entries,
            limits,
            routes,
        })
    }

    /// Per-tenant limits stated in the file.
    pub fn limits(&self) -> &HashMap<Arc<str>, TenantLimits> {
        &self.limits
    }

    /// The route named for `tenant` in the file (`route=NAME`), if any.
    pub fn route_of(&self, tenant: &str) -> Option<&str> {
        self.routes.get(tenant).map(|r| &**r)
    }

    /// Every route name the file uses (checked against the configured routes at start and
    /// on reload).
    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.routes.values().map(|r| &**r)
    }

    /// Read and parse a keys file.
    pub fn load(path: &Path) -> Result<ClientKeys, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// The tenant owning `presented`, if any. Hashes the key once, then compares the digest with
    /// every entry using `subtle` (no early exit), so timing does not depend on which entry
    /// matched or how many leading bytes agreed.
    pub fn authenticate(&self, presented: &[u8]) -> Option<Arc<str>> {
        let digest = sha256(presented);
        let mut found = Choice::from(0);
        let mut index: u32 = 0;
        for (i, entry) in self.entries.iter().enumerate() {
            #[cfg(test)]
            COMPARISONS.with(|c| c.set(c.get() + 1));
            let hit = digest.ct_eq(&entry.digest);
            index = u32::conditional_select(&index, &u32::try_from(i).unwrap_or(u32::MAX), hit);
            found |= hit;
        }
        if bool::from(found) {
            usize::try_from(index)
                .ok()
                .and_then(|i| self.entries.get(i))
                .map(|e| Arc::clone(&e.tenant))
        } else {
            None
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn valid_tenant(t: &str) -> bool {
    (1..=64).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@' | b':'))
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let hi = char::from(*pair.first()?).to_digit(16)?;
        let lo = char::from(*pair.get(1)?).to_digit(16)?;
        *o = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// The client's credential: `Authorization: Bearer <key>` (scheme case-insensitive), else
/// `api-key: <key>` (Azure style). `None` when neither carries a non-empty key.
pub fn presented_key(req: &UpgradeRequest) -> Option<&[u8]> {
    let bearer = req.header("authorization").and_then(|v| {
        let v = trim(v);
        let (scheme, rest) = v.split_at(v.iter().position(|&b| b == b' ').unwrap_or(v.len()));
        scheme
            .eq_ignore_ascii_case(b"bearer")
            .then(|| trim(rest))
            .filter(|k| !k.is_empty())
    });
    bearer.or_else(|| req.header("api-key").map(trim).filter(|k| !k.is_empty()))
}

/// Two credential headers with different values in one request (passthrough mode: which one
/// would pay is ambiguous).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request carries two different credentials")]
pub struct ConflictingCredentials;

/// Passthrough mode: the one credential of the request, from every `Authorization: Bearer`,
/// `api-key` and `x-api-key` header; `Err` when they disagree. Never logs the values.
pub fn single_credential(req: &UpgradeRequest) -> Result<Option<&[u8]>, ConflictingCredentials> {
    let bearer = req.header_all("authorization").filter_map(|v| {
        let v = trim(v);
        let (scheme, rest) = v.split_at(v.iter().position(|&b| b == b' ').unwrap_or(v.len()));
        scheme.eq_ignore_ascii_case(b"bearer").then(|| trim(rest))
    });
    let others = req
        .header_all("api-key")
        .chain(req.header_all("x-api-key"))
        .map(trim);
    let mut found: Option<&[u8]> = None;
    for k in bearer.chain(others).filter(|k| !k.is_empty()) {
        match found {
            Some(f) if f != k => return Err(ConflictingCredentials),
            _ => found = Some(k),
        }
    }
    Ok(found)
}

/// Passthrough-mode tenant: `fp-` + the first 12 hex digits of sha256(key). Never the key.
pub fn fingerprint(key: &[u8]) -> String {
    let digest = sha256(key);
    let mut out = String::with_capacity(15);
    out.push_str("fp-");
    for b in digest.iter().take(6) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;

/// A fresh relay key: `tg-` and 32 random bytes from the OS-seeded CSPRNG, base64url.
pub fn new_key() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "tg-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The keys-file line that accepts `key` for `tenant`, with the key hashed
/// (`<tenant> sha256:<hex>`).
pub fn keys_file_line(tenant: &str, key: &str) -> Result<String, LineError> {
    if !valid_tenant(tenant) {
        return Err(LineError::InvalidTenant);
    }
    if key.is_empty()
        || key
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(LineError::MissingKey);
    }
    let digest = sha256(key.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    Ok(format!("{tenant} sha256:{hex}"))
}
