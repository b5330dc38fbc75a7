//! Tests of the report's tables (`table.rs`).

use super::*;
use crate::bench::window_cpu::win_split;

#[test]
fn stats_and_formatting() {
    assert_eq!(
        stat(&[3.0, 1.0, 2.0]),
        Some(Stat {
            median: 2.0,
            min: 1.0,
            max: 3.0
        })
    );
    assert_eq!(stat(&[1.0, 4.0]).map(|s| s.median), Some(2.5));
    assert_eq!(stat(&[]), None);
    assert_eq!(fmt(412_345.0), "412.3k");
    assert_eq!(fmt(1_250_000.0), "1.25M");
    assert_eq!(fmt(3.214), "3.21");
}

#[test]
fn the_sampled_split_divides_the_windows_clock() {
    use super::super::test_runs::{paced_run, result};
    // The samples came to 9.5 of the clock's 10.0 µs per frame, 2% of them in user
    // space: the columns show 2% and 98% of 10.0.
    let r = result(vec![
        paced_run("tollgate", 0, 10.0, Some((0.19, 9.31))),
        paced_run("nginx", 0, 12.0, None),
    ]);
    let (u, k) = win_split(&r.samples[0]).expect("split");
    assert!((u - 0.2).abs() < 1e-9 && (k - 9.8).abs() < 1e-9, "{u} {k}");
    assert_eq!(win_split(&r.samples[1]), None);
    // A run of an older loadtest, without the fields, reads as not sampled.
    let mut old = paced_run("tunnel", 0, 9.0, None);
    let w = old["report"]["sut"]["window"]
        .as_object_mut()
        .expect("window");
    w.remove("user_us_per_frame");
    w.remove("kernel_us_per_frame");
    let r2 = result(vec![old]);
    assert_eq!(win_user(&r2.samples[0]), None);
    // The report's cost table shows the split, and "—" where there is none.
    let md = markdown(&r, &[Peer::Tollgate, Peer::Nginx]);
    let split = ["paced user µs/frame", "paced kernel µs/frame"];
    assert_eq!(cost_cells(&md, "tollgate", &split), ["0.20", "9.80"]);
    assert_eq!(cost_cells(&md, "nginx", &split), ["—", "—"]);
}

/// `peer`'s cells of the cost table in `md` under each of `columns` (a test fails naming
/// a column or row that is not there).
fn cost_cells(md: &str, peer: &str, columns: &[&str]) -> Vec<String> {
    use super::super::test_runs::line;
    let head = line(md, "| peer | paced frames/s |");
    let after = md.split(head).nth(1).expect("the cost table");
    let row: Vec<&str> = line(after, &format!("| {peer} |"))
        .split('|')
        .map(str::trim)
        .collect();
    columns
        .iter()
        .map(|name| {
            let at = head
                .split('|')
                .position(|c| c.trim() == *name)
                .unwrap_or_else(|| panic!("no column {name}: {head}"));
            row[at].to_string()
        })
        .collect()
}

#[test]
fn the_cost_table_shows_the_load_cores_cpu_per_frame_and_the_suts_per_load_core_us() {
    use super::super::test_runs::{paced_run, result, with_load};
    let mut direct = with_load(paced_run("direct", 0, 1.0, None), 20.0);
    direct["report"]["sut"] = serde_json::Value::Null;
    let r = result(vec![
        direct,
        with_load(paced_run("tollgate", 0, 10.0, None), 25.0),
    ]);
    let md = markdown(&r, &[Peer::Direct, Peer::Tollgate]);
    let cols = ["paced load core µs/frame", "paced SUT per load-core µs"];
    assert_eq!(cost_cells(&md, "direct", &cols), ["20.0", "—"]);
    let t = cost_cells(&md, "tollgate", &cols);
    // 10 µs of the SUT per frame over 25 of the load core's; ×1.25 direct's load.
    assert!(t[0].starts_with("25.0<br>×1.25 d"), "{}", t[0]);
    assert_eq!(t[1], "0.40");
}

#[test]
fn the_quotient_is_taken_inside_the_window_when_the_run_measured_the_load_core_there() {
    use super::super::test_runs::{paced_run, result, with_load};
    // Whole run: 25 µs of the load core per frame received; the window: the SUT 4 ms
    // (10 µs per frame over 400 frames) against the load core's 8 ms.
    let mut run = with_load(paced_run("tollgate", 0, 10.0, None), 25.0);
    let r = result(vec![run.clone()]);
    let q = win_per_load(&r.samples[0]).expect("a quotient");
    assert!((q - 0.4).abs() < 1e-9, "{q}");
    run["report"]["sut"]["window"]["frames"] = serde_json::json!(400);
    run["report"]["sut"]["window"]["cpu_s"] = serde_json::json!(0.004);
    run["report"]["sut"]["window"]["load_cpu_s"] = serde_json::json!(0.008);
    let r = result(vec![run]);
    let q = win_per_load(&r.samples[0]).expect("a quotient");
    assert!((q - 0.5).abs() < 1e-9, "{q}");
    // The column of the load core stays the whole run's, as direct (no window) has it.
    let l = load_us_frame(&r.samples[0]).expect("the load core");
    assert!((l - 25.0).abs() < 1e-9, "{l}");
}

/// A probe repetition (perf's syscall count and sampler attached) gives the syscalls and
/// the user/kernel split; its CPU, raised by the probes, stays out of every CPU column and
/// of the targets' medians. Without the flag (a report from before probe repetitions) the
/// same run counts as it always did.
#[test]
fn a_probe_repetition_gives_the_split_but_not_the_cpu() {
    use super::super::medians::{Medians, Metric};
    use super::super::test_runs::{paced_run, result, with_load};
    let mut probe = with_load(paced_run("tollgate", 2, 20.0, Some((1.0, 19.0))), 40.0);
    probe["report"]["sut"]["window"]["syscalls_per_frame"] = serde_json::json!(0.2);
    let runs = |probe_rep: bool| {
        let mut p = probe.clone();
        p["probe_rep"] = serde_json::json!(probe_rep);
        result(vec![
            with_load(paced_run("tollgate", 0, 10.0, None), 30.0),
            with_load(paced_run("tollgate", 1, 12.0, None), 30.0),
            p,
        ])
    };
    let r = runs(true);
    let md = markdown(&r, &[Peer::Tollgate]);
    let cells = cost_cells(
        &md,
        "tollgate",
        &[
            "paced SUT µs/frame",
            "paced load core µs/frame",
            "paced syscalls/frame",
            "paced user µs/frame",
            "paced kernel µs/frame",
        ],
    );
    assert!(cells[0].starts_with("11.0 (10.0–12.0)"), "{cells:?}");
    // The probe's load core (40) would widen the cell to "30.0 (30.0–40.0)".
    assert_eq!(cells[1], "30.0", "{cells:?}");
    assert_eq!(cells[2..], ["0.20", "1.00", "19.0"], "{cells:?}");
    let m = Medians::of(&r);
    assert_eq!(
        m.get(Metric::Paced, Peer::Tollgate).map(|s| s.median),
        Some(11.0)
    );
    assert_eq!(
        m.get(Metric::PacedUser, Peer::Tollgate).map(|s| s.median),
        Some(1.0)
    );
    // The same three runs with none marked a probe: all three count.
    let m = Medians::of(&runs(false));
    assert_eq!(
        m.get(Metric::Paced, Peer::Tollgate).map(|s| s.median),
        Some(12.0)
    );
}
