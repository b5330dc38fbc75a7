//! Tests of the paced rows' comparison per load-core µs (`targets.rs`,
//! `with_load_control`) and of its paragraph (`targets_report.rs`).

use super::super::targets_report::section;
use super::super::test_runs::{line, paced_run, result, with_load};
use super::tests::find;
use super::*;

/// Paced runs of tunnel and tollgate at these host speeds (1.0 = a load core spending
/// 20 µs per frame), tollgate costing `cost` × the tunnel at equal speed; and `direct`,
/// whose load core spent 21 µs per frame in each repetition.
fn runs(cost: f64, load: bool) -> crate::bench::BenchResult {
    let mut v = Vec::new();
    let load_of = |x: f64| if load { x } else { 0.0 };
    for (rep, (tunnel_speed, tollgate_speed)) in
        [(1.0, 1.1), (0.9, 1.0), (1.1, 1.2)].into_iter().enumerate()
    {
        v.push(with_load(
            paced_run("tunnel", rep, 10.0 * tunnel_speed, None),
            load_of(20.0 * tunnel_speed),
        ));
        v.push(with_load(
            paced_run("tollgate", rep, 10.0 * cost * tollgate_speed, None),
            load_of(20.0 * tollgate_speed),
        ));
        let mut direct = with_load(paced_run("direct", rep, 1.0, None), load_of(21.0));
        direct["report"]["sut"] = serde_json::Value::Null;
        v.push(direct);
    }
    result(v)
}

#[test]
fn the_paced_rows_compare_per_load_core_us_and_keep_the_verdict_on_the_totals() {
    // Tollgate 2% over the tunnel at equal speed, but every tollgate run on a slower
    // minute of the host: the totals' medians are ×1.122 apart, the quotients ×1.020.
    let r = runs(1.02, true);
    let all = rows(&Medians::of(&r));
    let g = find(&all, "paced: tollgate ≤ 1.05");
    assert_eq!(
        g.verdict,
        Verdict::Missed,
        "the verdict stays on the totals"
    );
    assert!(
        g.measured.starts_with("11.2 vs 10.0 µs: ×1.122"),
        "{}",
        g.measured
    );
    assert!(
        g.measured.ends_with(
            "; per load-core µs (the host's speed divided out): ×1.020 (reps ×1.02–×1.02; \
             pairs 3 of 3 ≤ ×1.05): at or under ×1.05"
        ),
        "{}",
        g.measured
    );
    // 10% over at equal speed is over the limit per load-core µs too.
    let over = rows(&Medians::of(&runs(1.10, true)));
    let g = find(&over, "paced: tollgate ≤ 1.05");
    assert!(
        g.measured
            .ends_with("×1.100 (reps ×1.10–×1.10; pairs 0 of 3 ≤ ×1.05): over ×1.05"),
        "{}",
        g.measured
    );
    // The paragraph gives the load core's figures, direct's first, and how much narrower
    // tollgate's reps are with the host's speed divided out.
    let mut md = String::new();
    section(&mut md, &r);
    let p = line(&md, "*Per load-core µs*");
    assert!(
        p.contains(
            "medians: direct (no relay) 21.0 µs, the relays 20.0–22.0 µs (×0.95–×1.05 \
             direct's). Tollgate's reps spread ×1.20 (largest over smallest) in µs per \
             frame and ×1.00 per load-core µs."
        ),
        "{p}"
    );
}

#[test]
fn without_the_load_cores_cpu_the_paced_rows_and_the_report_say_nothing_of_it() {
    let r = runs(1.02, false);
    let all = rows(&Medians::of(&r));
    let g = find(&all, "paced: tollgate ≤ 1.05");
    assert!(!g.measured.contains("load-core"), "{}", g.measured);
    let mut md = String::new();
    section(&mut md, &r);
    assert!(!md.contains("Per load-core"), "{md}");
}
