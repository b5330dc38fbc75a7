//! Usage accuracy: the relay's usage log (JSON Lines) against the mock's ledger.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ledger::LedgerEntry;

/// The outcome of comparing a usage log with a ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageCheck {
    /// Terminal events the mock sent (ledger entries).
    pub ledger: usize,
    /// Records in the relay's log.
    pub records: usize,
    /// Ledger entries with exactly one record of equal tokens and status.
    pub matched: usize,
    /// The first few discrepancies, in words.
    pub problems: Vec<String>,
}

impl UsageCheck {
    /// `matched ÷ max(ledger, records)`: 1.0 only when every response is
    /// accounted for once with equal tokens and there are no extra records.
    pub fn accuracy(&self) -> f64 {
        let n = self.ledger.max(self.records);
        if n == 0 {
            1.0
        } else {
            self.matched as f64 / n as f64
        }
    }
}

/// Reads JSON Lines (skipping blank and unparsable lines).
pub fn read_jsonl(path: &Path) -> std::io::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Reads a ledger file written by the mock (`MockConfig::ledger_path`).
pub fn read_ledger(path: &Path) -> std::io::Result<Vec<LedgerEntry>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn num(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// Compares relay records (JSON objects with `response_id`, `input_tokens`,
/// `cached_tokens`, `output_tokens`, `reasoning_tokens`, `status`) to the ledger.
pub fn compare(records: &[Value], ledger: &[LedgerEntry]) -> UsageCheck {
    let mut by_id: HashMap<&str, Vec<&Value>> = HashMap::new();
    for r in records {
        let id = r.get("response_id").and_then(Value::as_str).unwrap_or("");
        by_id.entry(id).or_default().push(r);
    }
    let mut problems = Vec::new();
    let mut note = |p: String| {
        if problems.len() < 5 {
            problems.push(p);
        }
    };
    let mut matched = 0;
    for l in ledger {
        match by_id.get(l.response_id.as_str()).map(Vec::as_slice) {
            None | Some([]) => note(format!("{}: no record", l.response_id)),
            Some([r]) => {
                let got = (
                    num(r, "input_tokens"),
                    num(r, "cached_tokens"),
                    num(r, "output_tokens"),
                    num(r, "reasoning_tokens"),
                    r.get("status").and_then(Value::as_str).unwrap_or(""),
                );
                let want = (
                    l.input_tokens,
                    l.cached_tokens,
                    l.output_tokens,
                    l.reasoning_tokens,
                    l.status.as_str(),
                );
                if got == want {
                    matched += 1;
                } else {
                    note(format!(
                        "{}: record {got:?} ≠ ledger {want:?}",
                        l.response_id
                    ));
                }
            }
            Some(rs) => note(format!("{}: {} records", l.response_id, rs.len())),
        }
    }
    let known: std::collections::HashSet<&str> =
        ledger.iter().map(|l| l.response_id.as_str()).collect();
    for id in by_id.keys().filter(|id| !known.contains(*id)) {
        note(format!("{id}: record without a ledger entry"));
    }
    UsageCheck {
        ledger: ledger.len(),
        records: records.len(),
        matched,
        problems,
    }
}

/// [`compare`] on files.
pub fn compare_files(usage_log: &Path, ledger: &Path) -> std::io::Result<UsageCheck> {
    let records = if usage_log.exists() {
        read_jsonl(usage_log)?
    } else {
        Vec::new()
    };
    let ledger = if ledger.exists() {
        read_ledger(ledger)?
    } else {
        Vec::new()
    };
    Ok(compare(&records, &ledger))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, out: u64) -> LedgerEntry {
        LedgerEntry {
            response_id: id.into(),
            stream_id: None,
            model: "m".into(),
            status: "completed".into(),
            service_tier: "default".into(),
            input_tokens: 10,
            cached_tokens: 0,
            output_tokens: out,
            reasoning_tokens: 0,
        }
    }

    fn rec(id: &str, out: u64) -> Value {
        serde_json::json!({"response_id": id, "input_tokens": 10, "cached_tokens": 0,
            "output_tokens": out, "reasoning_tokens": 0, "status": "completed"})
    }

    #[test]
    fn exact_match_is_one_and_every_flaw_lowers_it() {
        let ledger = [entry("a", 3), entry("b", 4)];
        let ok = compare(&[rec("a", 3), rec("b", 4)], &ledger);
        assert_eq!((ok.matched, ok.accuracy()), (2, 1.0));
        let wrong = compare(&[rec("a", 3), rec("b", 5)], &ledger);
        assert_eq!(wrong.matched, 1);
        assert!(wrong.problems[0].contains("b"));
        let missing = compare(&[rec("a", 3)], &ledger);
        assert_eq!(missing.accuracy(), 0.5);
        let extra = compare(&[rec("a", 3), rec("b", 4), rec("c", 1)], &ledger);
        assert!(extra.accuracy() < 1.0);
        let dup = compare(&[rec("a", 3), rec("a", 3), rec("b", 4)], &ledger);
        assert_eq!(dup.matched, 1);
    }
}
