//! `loadtest bench --history`: the data plane's targets across saved runs, one column per
//! run, each verdict computed by this version from the run's `bench.json` (as `--render`
//! does) — so a reader sees which targets every run meets and which turn from run to run.
//! Four tables follow it: the paced targets per load-core µs (`load_history`), how each
//! peer's paced CPU follows the load core (`load_follow`), echo latency against nginx pair
//! by pair (`echo_pairs`) and each relay's own hop per run (`hop_history`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::echo_pairs::echo_pairs;
use super::history_cells::{head, measured, pooled_cell, Measured};
use super::hop_history::hop_history;
use super::load_follow::load_follow;
use super::load_history::load_history;
use super::render::{bench_json, load};
use super::targets::{rows, Row, Verdict};
use super::{out_err, BenchError};

/// A run's column heading: the name of the directory its `bench.json` sits in (`bfull28`),
/// else the file's own name.
fn label(path: &Path) -> String {
    let file = bench_json(path);
    file.parent()
        .and_then(Path::file_name)
        .or_else(|| file.file_name())
        .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned())
}

/// One cell: the figure and the verdict, with what qualifies it.
fn cell(row: &Row) -> String {
    if row.verdict == Verdict::NotMeasured {
        return "—".into();
    }
    let mut notes: Vec<&str> = Vec::new();
    if row.within_spread {
        notes.push("spread");
    }
    if let Some(b) = row.bound {
        notes.push(b.word());
    }
    let mut c = format!("{} {}", row.figure, row.verdict.word());
    if !notes.is_empty() {
        let _ = write!(c, " ({})", notes.join(", "));
    }
    c
}

/// The history table of `runs` (label, result), in the order given. Targets appear in the
/// order of the first run that has them; a target a run does not have (another sweep rate,
/// no 9,000-session idle case) is "—" there.
pub(crate) fn table(runs: &[Measured]) -> String {
    let per_run: Vec<Vec<Row>> = runs.iter().map(|(_, m)| rows(m)).collect();
    let mut keys: Vec<String> = Vec::new();
    for r in per_run.iter().flatten() {
        if !keys.iter().any(|k| k == r.key()) {
            keys.push(r.key().to_string());
        }
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "### Targets of the data plane (issue 11) across {} runs\n\n\
         Each cell: the figure the verdict turns on (ratio of medians, KiB per session, \
         responses matched) and the verdict, from that run's `bench.json` with this \
         version's rules; *spread*: within the reps' spread (another run may turn it), \
         *load-bound* / *floor-bound* as in each run's report. \"met in\": the runs that \
         met it, of those that measured it. \"pairs, all runs\" (ratio targets): every \
         repetition's pair of runs (the two peers' runs of one repetition, next to each \
         other in the schedule) of every run pooled — their median ratio and how many are \
         within the limit; a target the relay meets by a margin has most pairs within, \
         one it ties has about half.\n",
        runs.len()
    );
    head(&mut o, "target", runs, &["met in", "pairs, all runs"]);
    for key in &keys {
        let _ = write!(o, "| {key} |");
        let (mut met, mut measured) = (0, 0);
        let mut pooled: Vec<f64> = Vec::new();
        let mut limit = None;
        for rs in &per_run {
            match rs.iter().find(|r| r.key() == key) {
                Some(r) => {
                    if let Some((l, p)) = &r.pairs {
                        limit = Some(*l);
                        pooled.extend(p);
                    }
                    if r.verdict != Verdict::NotMeasured {
                        measured += 1;
                    }
                    if r.verdict == Verdict::Met {
                        met += 1;
                    }
                    let _ = write!(o, " {} |", cell(r));
                }
                None => {
                    let _ = write!(o, " — |");
                }
            }
        }
        let _ = writeln!(
            o,
            " {met} of {measured} | {} |",
            pooled_cell(limit, &pooled)
        );
    }
    o
}

/// `loadtest bench --history`: reads every run (a `bench.json`, or a directory holding
/// one), writes `history.md` into `out` and returns its text.
pub fn history(paths: &[PathBuf], out: &Path) -> Result<String, BenchError> {
    let runs = paths
        .iter()
        .map(|p| Ok((label(p), load(p)?)))
        .collect::<Result<Vec<_>, BenchError>>()?;
    let medians = measured(&runs);
    let md = table(&medians)
        + &load_history(&medians)
        + &load_follow(&medians)
        + &echo_pairs(&runs)
        + &hop_history(&runs);
    std::fs::create_dir_all(out).map_err(out_err(out))?;
    let file = out.join("history.md");
    std::fs::write(&file, &md).map_err(out_err(&file))?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::super::test_runs::{echo_run, line, result};
    use super::super::BenchResult;
    use super::*;

    /// Two runs: nginx at 161 µs both times; tollgate meets p50 at 2000/s in the first and
    /// misses it in the second; only the second ran 16,000/s for tollgate.
    fn two_runs() -> Vec<(String, BenchResult)> {
        let a = result(vec![
            echo_run("nginx", 2000.0, 0, 161.0, 0.2),
            echo_run("tollgate", 2000.0, 0, 150.0, 0.2),
        ]);
        let b = result(vec![
            echo_run("nginx", 2000.0, 0, 161.0, 0.2),
            echo_run("tollgate", 2000.0, 0, 170.0, 0.2),
            echo_run("nginx", 16000.0, 0, 100.0, 0.5),
            echo_run("tollgate", 16000.0, 0, 90.0, 0.5),
        ]);
        vec![("bfull1".into(), a), ("bfull2".into(), b)]
    }

    #[test]
    fn each_run_is_a_column_and_the_last_counts_the_runs_that_met_the_target() {
        let md = table(&measured(&two_runs()));
        assert!(
            md.contains(
                "| target | bfull1 | bfull2 | met in | pairs, all runs |\n|---|---|---|---|---|\n"
            ),
            "{md}"
        );
        assert_eq!(
            line(&md, "| echo p50 at 2000/s"),
            "| echo p50 at 2000/s: tollgate ≤ nginx | ×0.932 met | ×1.056 **missed** | 1 of 2 | ×0.994; 1 of 2 ≤ ×1 |"
        );
        // p99 is 4 × p50 in these runs: the same ratios.
        assert!(line(&md, "| echo p99 at 2000/s").ends_with("| 1 of 2 | ×0.994; 1 of 2 ≤ ×1 |"));
        // Not run in the first: "—", and not counted as measured there.
        assert_eq!(
            line(&md, "| echo p50 at 16.0k/s"),
            "| echo p50 at 16.0k/s: tollgate ≤ nginx | — | ×0.900 met | 1 of 1 | ×0.900; 1 of 1 ≤ ×1 |"
        );
        // Targets no run measured: not measured in both, met in none of none.
        assert!(line(&md, "| paced: tollgate ≤ 0.95 × nginx").ends_with("| — | — | 0 of 0 | — |"));
        // Idle and accuracy rows have no pairs.
        assert!(line(&md, "| usage accuracy").ends_with("| 0 of 0 | — |"));
    }

    #[test]
    fn the_firehose_row_is_one_target_whichever_peer_was_the_better() {
        let fire = |peer: &str, us: f64| {
            let mut v = echo_run(peer, 2000.0, 0, 100.0, 0.2);
            v["case"] = "firehose".into();
            v["kind"] = "firehose".into();
            v["report"]["sut"] = serde_json::json!({"pids": [1], "cpu_s": 1.0,
                "cpu_util": 0.5, "cpu_us_per_frame": us, "cpu_us_per_mb": 1.0,
                "rss_before_kib": 1, "rss_loaded_kib": null, "kib_per_session": null,
                "window": {"seconds": 1.0, "frames": 1000, "cpu_s": 1.0,
                    "cpu_us_per_frame": us, "syscalls_per_frame": null, "threads": [],
                    "hops": null}});
            v
        };
        let nginx_better = result(vec![
            fire("tollgate", 0.9),
            fire("nginx", 1.0),
            fire("haproxy", 1.1),
        ]);
        let haproxy_better = result(vec![
            fire("tollgate", 0.9),
            fire("nginx", 1.1),
            fire("haproxy", 0.8),
        ]);
        let md = table(&measured(&[
            ("a".into(), nginx_better),
            ("b".into(), haproxy_better),
        ]));
        assert_eq!(
            line(&md, "| firehose"),
            "| firehose: tollgate ≤ 1.0 × the better of nginx and HAProxy | ×0.900 met | ×1.125 **missed** | 1 of 2 | ×1.012; 1 of 2 ≤ ×1 |"
        );
    }

    #[test]
    fn history_reads_directories_or_files_writes_history_md_and_names_a_run_it_cannot_read() {
        let dir = std::env::temp_dir().join(format!("loadtest-history-{}", std::process::id()));
        let runs = two_runs();
        let mut paths = Vec::new();
        for (i, (name, r)) in runs.iter().enumerate() {
            let d = dir.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("bench.json"), serde_json::to_vec(r).unwrap()).unwrap();
            // The first by its directory, the second by its file.
            paths.push(if i == 0 { d } else { d.join("bench.json") });
        }
        let out = dir.join("out");
        let md = history(&paths, &out).unwrap();
        assert!(
            md.contains("| target | bfull1 | bfull2 | met in | pairs, all runs |"),
            "{md}"
        );
        assert_eq!(std::fs::read_to_string(out.join("history.md")).unwrap(), md);
        assert!(
            md.contains("### Echo latency against nginx, pair by pair, 2 runs pooled"),
            "{md}"
        );
        let missing = dir.join("bfull3");
        let e = history(&[paths[0].clone(), missing.clone()], &out).unwrap_err();
        assert!(
            matches!(&e, BenchError::Input { path, .. } if *path == missing),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
