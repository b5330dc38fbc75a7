//! `loadtest bench --render`: a saved run's report written again.

use std::path::{Path, PathBuf};

use super::peers::Peer;
use super::{markdown, out_err, sections, BenchError, BenchResult};

/// `loadtest bench --render`: an earlier run's report written again from its `bench.json`
/// (`bench.md` and `sweep.svg` into `out`) with this version's tables and verdicts, running
/// nothing. `peers` orders the tables; the run's own peers in their usual order when empty.
pub fn render(
    json: &Path,
    out: &Path,
    peers: &[Peer],
) -> Result<(BenchResult, Vec<Peer>), BenchError> {
    let result = load(json)?;
    let peers: Vec<Peer> = if peers.is_empty() {
        Peer::KNOWN
            .into_iter()
            .filter(|p| result.samples.iter().any(|s| s.peer == *p))
            .collect()
    } else {
        peers.to_vec()
    };
    std::fs::create_dir_all(out).map_err(out_err(out))?;
    let md = out.join("bench.md");
    std::fs::write(&md, markdown(&result, &peers)).map_err(out_err(&md))?;
    let svg = out.join("sweep.svg");
    std::fs::write(&svg, sections::sweep_plot(&result, &peers)).map_err(out_err(&svg))?;
    Ok((result, peers))
}

/// A saved run's report file: `path` itself, or its `bench.json` when it is a directory.
pub(crate) fn bench_json(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("bench.json")
    } else {
        path.to_path_buf()
    }
}

/// A saved run: `json` is its `bench.json`, or the directory that holds one.
pub(crate) fn load(json: &Path) -> Result<BenchResult, BenchError> {
    let file = bench_json(json);
    let bad = |reason: String| BenchError::Input {
        path: file.clone(),
        reason,
    };
    let body = std::fs::read(&file).map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::test_runs::{echo_run, result};
    use super::*;

    /// `--render` writes the report of a `bench.json` again, and says which file it could
    /// not read.
    #[test]
    fn render_writes_the_report_of_a_saved_run_again() {
        let dir = std::env::temp_dir().join(format!("loadtest-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = result(vec![
            echo_run("nginx", 2000.0, 0, 161.0, 0.2),
            echo_run("tollgate", 2000.0, 0, 164.0, 0.2),
        ]);
        let json = dir.join("bench.json");
        std::fs::write(&json, serde_json::to_vec(&r).unwrap()).unwrap();
        let out = dir.join("again");
        let (back, peers) = render(&json, &out, &[]).unwrap();
        assert_eq!(back.samples.len(), 2);
        assert_eq!(peers, [Peer::Tollgate, Peer::Nginx], "the usual order");
        let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
        assert!(md.contains("| tollgate | 2000 | 164 / 656 |"), "{md}");
        assert!(
            md.contains("echo p50 at 2000/s: tollgate ≤ nginx | 164 vs 161 µs"),
            "{md}"
        );
        assert!(std::fs::read_to_string(out.join("sweep.svg"))
            .unwrap()
            .contains("<svg"));
        let (_, peers) = render(&json, &out, &[Peer::Nginx]).unwrap();
        assert_eq!(peers, [Peer::Nginx]);
        for bad in [dir.join("missing.json"), out.join("bench.md")] {
            let e = render(&bad, &out, &[]).unwrap_err();
            assert!(
                matches!(&e, BenchError::Input { path, .. } if *path == bad),
                "{e}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
