//! The fleet settings: usage export to NATS JetStream (`--usage-export*`) and budgets
//! shared through Redis (`--budget-*`), checked against the usage log they depend on.

use std::path::PathBuf;
use std::time::Duration;

use super::cli::Cli;
use super::routes::{check_scheme, valid_route_name};
use super::{ConfigError, UsageLog};

/// A server URL fit for a log line: a user or password in it (`redis://:secret@host`,
/// `nats://user:secret@host`) becomes `<redacted>`.
pub fn loggable_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.into();
    };
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..authority_end].rfind('@') {
        Some(at) => format!("{}<redacted>{}", &url[..start], &url[start + at..]).into(),
        None => url.into(),
    }
}

/// Usage export to NATS JetStream (`--usage-export`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// NATS server URL.
    pub url: String,
    /// Subject template (`{route}`, `{tenant}`).
    pub subject: String,
    /// Stream name.
    pub stream: String,
    /// The usage log to export from.
    pub log: PathBuf,
    /// The exporter's cursor file.
    pub cursor: PathBuf,
    /// Backlog (records) above which the relay is not ready.
    pub max_backlog: u64,
}

/// Fleet budgets in Redis (`--budget-redis`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Redis URL.
    pub url: String,
    /// What to do while Redis is unreachable.
    pub fail: crate::limits::FailMode,
    /// Tokens per lease.
    pub lease_tokens: u64,
}

/// The fleet settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// Usage export, if configured.
    pub export: Option<ExportConfig>,
    /// Shared budgets, if configured.
    pub budget: Option<BudgetConfig>,
    /// Session-count sync interval.
    pub sync_interval: Duration,
    /// This relay's name in the fleet.
    pub node_id: String,
}

impl Cli {
    pub(super) fn fleet_config(
        &self,
        usage_log: &UsageLog,
        defaults: &crate::limits::TenantLimits,
    ) -> Result<FleetConfig, ConfigError> {
        let export = match &self.usage_export {
            None => None,
            Some(url) => {
                let UsageLog::File(log) = usage_log else {
                    return Err(ConfigError::Fleet(
                        "--usage-export needs --usage-log FILE: records are exported from the durable log",
                    ));
                };
                check_scheme("usage-export", url, &["nats://", "tls://"])?;
                if self.usage_export_subject.is_empty()
                    || self.usage_export_subject.contains(char::is_whitespace)
                {
                    return Err(ConfigError::Range {
                        flag: "usage-export-subject",
                        why: "a NATS subject: no spaces, not empty",
                    });
                }
                let mut cursor = log.clone().into_os_string();
                cursor.push(".export-cursor");
                Some(ExportConfig {
                    url: url.clone(),
                    subject: self.usage_export_subject.clone(),
                    stream: self.usage_export_stream.clone(),
                    log: log.clone(),
                    cursor: self
                        .usage_export_cursor
                        .clone()
                        .unwrap_or_else(|| PathBuf::from(cursor)),
                    max_backlog: self.usage_export_max_backlog.max(1),
                })
            }
        };
        let budget = match &self.budget_redis {
            None => {
                if defaults.needs_fleet() {
                    return Err(ConfigError::Fleet(
                        "--tenant-tokens-per-day/-month and --tenant-fleet-max-sessions need --budget-redis",
                    ));
                }
                None
            }
            Some(url) => {
                check_scheme("budget-redis", url, &["redis://", "rediss://"])?;
                if self.budget_lease_tokens == 0 {
                    return Err(ConfigError::Range {
                        flag: "budget-lease-tokens",
                        why: "must be at least 1",
                    });
                }
                Some(BudgetConfig {
                    url: url.clone(),
                    fail: if self.budget_fail == "open" {
                        crate::limits::FailMode::Open
                    } else {
                        crate::limits::FailMode::Closed
                    },
                    lease_tokens: self.budget_lease_tokens,
                })
            }
        };
        if self.fleet_sync_interval < Duration::from_millis(10) {
            return Err(ConfigError::Range {
                flag: "fleet-sync-interval",
                why: "at least 10ms",
            });
        }
        let node_id = match &self.fleet_node_id {
            Some(n) if valid_route_name(n) => n.clone(),
            Some(_) => {
                return Err(ConfigError::Range {
                    flag: "fleet-node-id",
                    why: "1-64 characters of [A-Za-z0-9_.-]",
                })
            }
            None => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "node".into());
                format!("{host}-{}", std::process::id())
            }
        };
        Ok(FleetConfig {
            export,
            budget,
            sync_interval: self.fleet_sync_interval,
            node_id,
        })
    }
}

#[cfg(test)]
mod url_tests {
    use super::loggable_url;

    #[test]
    fn credentials_in_server_urls_are_redacted_for_logs() {
        for (url, logged) in [
            (
                "redis://:s3cret@10.0.0.1:6379/0",
                "redis://<redacted>@10.0.0.1:6379/0",
            ),
            ("rediss://user:s3cret@cache", "rediss://<redacted>@cache"),
            ("nats://u:p@a@nats:4222", "nats://<redacted>@nats:4222"),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("redis://cache/0?name=a@b", "redis://cache/0?name=a@b"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(loggable_url(url), logged, "{url}");
        }
    }
}
