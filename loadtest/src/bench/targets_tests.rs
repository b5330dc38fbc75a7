//! Tests of the targets section (`targets.rs`).

use super::*;
use crate::bench::peers::TlsMode;
use crate::bench::table::stat;

/// A median with its reps' range.
fn st(median: f64, min: f64, max: f64) -> Stat {
    Stat { median, min, max }
}

fn one(x: f64) -> Stat {
    st(x, x, x)
}

pub(super) fn medians(pairs: &[(Metric, Peer, f64)]) -> Medians {
    let mut m = Medians::default();
    for &(metric, peer, x) in pairs {
        m.map.insert((metric, peer), one(x));
    }
    m
}

pub(super) fn find<'a>(rows: &'a [Row], prefix: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.target.starts_with(prefix))
        .unwrap_or_else(|| panic!("no row {prefix}"))
}

#[test]
fn a_ratio_at_the_limit_is_met_and_just_above_it_missed() {
    let at = ratio_row("µs", "t".into(), Some(one(8.5)), Some(one(10.0)), &[], 0.85);
    assert_eq!(at.verdict, Verdict::Met);
    assert!(!at.within_spread);
    assert_eq!(at.measured, "8.50 vs 10.0 µs: ×0.850 (reps ×0.85–×0.85)");
    let above = ratio_row(
        "µs",
        "t".into(),
        Some(one(8.51)),
        Some(one(10.0)),
        &[],
        0.85,
    );
    assert_eq!(above.verdict, Verdict::Missed);
    let none = ratio_row("µs", "t".into(), Some(one(8.0)), None, &[], 0.85);
    assert_eq!(none.verdict, Verdict::NotMeasured);
}

#[test]
fn a_verdict_the_reps_put_on_both_sides_of_the_limit_is_within_the_spread() {
    let a = st(9.0, 8.0, 10.0);
    let b = st(10.0, 9.5, 10.5);
    // Medians ×0.90: met; reps from 8 / 10.5 = ×0.76 to 10 / 9.5 = ×1.05.
    let r = ratio_row("µs", "t".into(), Some(a), Some(b), &[], 1.0);
    assert_eq!(r.verdict, Verdict::Met);
    assert!(r.within_spread);
    assert_eq!(r.measured, "9.00 vs 10.0 µs: ×0.900 (reps ×0.76–×1.05)");
    // Every rep pair below ×1.1: settled.
    let r = ratio_row("µs", "t".into(), Some(a), Some(b), &[], 1.1);
    assert!(!r.within_spread);
    // Every rep pair above ×0.7: a settled miss.
    let r = ratio_row("µs", "t".into(), Some(a), Some(b), &[], 0.7);
    assert_eq!(r.verdict, Verdict::Missed);
    assert!(!r.within_spread);
}

#[test]
fn pairs_settle_a_verdict_only_when_a_sign_test_says_so() {
    use Peer::*;
    fn put(m: &mut Medians, peer: Peer, reps: &[f64]) {
        let v: Vec<(usize, f64)> = reps.iter().copied().enumerate().collect();
        m.map
            .insert((Metric::Paced, peer), stat(reps).expect("reps"));
        m.reps.insert((Metric::Paced, peer), v);
    }
    // The machine slows down over the run; tollgate stays 5% under nginx in every rep.
    let slowing: Vec<f64> = (0..9).map(|i| 10.0 + i as f64).collect();
    let under: Vec<f64> = slowing.iter().map(|x| x * 0.95).collect();
    let mut m = Medians::default();
    put(&mut m, Tollgate, &under);
    put(&mut m, Nginx, &slowing);
    let r = ratio(&m, "t".into(), Metric::Paced, Tollgate, Nginx, 1.0);
    assert_eq!(r.verdict, Verdict::Met);
    assert_eq!(
        r.measured,
        "13.3 vs 14.0 µs: ×0.950 (reps ×0.53–×1.71; pairs 9 of 9 ≤ ×1)"
    );
    assert!(
        !r.within_spread,
        "the cross range straddles, the pairs settle it"
    );
    // Three such pairs are not enough (a sign test cannot reach 5% with three).
    let mut m3 = Medians::default();
    put(&mut m3, Tollgate, &under[..3]);
    put(&mut m3, Nginx, &slowing[..3]);
    let r = ratio(&m3, "t".into(), Metric::Paced, Tollgate, Nginx, 1.0);
    assert!(r.measured.ends_with("pairs 3 of 3 ≤ ×1)"), "{}", r.measured);
    assert!(r.within_spread, "{}", r.measured);
    // Eight of nine pairs settle it; seven of nine do not.
    let mut one_above = under.clone();
    one_above[0] = 10.5;
    put(&mut m, Haproxy, &slowing);
    put(&mut m, Tollgate, &one_above);
    let r = ratio(&m, "t".into(), Metric::Paced, Tollgate, Haproxy, 1.0);
    assert!(r.measured.ends_with("pairs 8 of 9 ≤ ×1)"), "{}", r.measured);
    assert!(!r.within_spread, "{}", r.measured);
    one_above[1] = 11.5;
    put(&mut m, Tollgate, &one_above);
    let r = ratio(&m, "t".into(), Metric::Paced, Tollgate, Haproxy, 1.0);
    assert!(r.measured.ends_with("pairs 7 of 9 ≤ ×1)"), "{}", r.measured);
    assert!(r.within_spread, "{}", r.measured);
    // Pairs on the other side of the verdict never settle it: medians met, while eight
    // of nine pairs are above the limit.
    let pairs = [1.01, 1.01, 1.01, 1.01, 1.01, 1.01, 1.01, 1.01, 0.5];
    let r = ratio_row(
        "µs",
        "t".into(),
        Some(st(9.9, 5.0, 12.0)),
        Some(st(10.0, 9.0, 11.0)),
        &pairs,
        1.0,
    );
    assert_eq!(r.verdict, Verdict::Met);
    assert!(r.within_spread, "{}", r.measured);
    // Pairs only where both peers measured the rep.
    m.reps.insert((Metric::Paced, Floor), vec![(1, 11.5)]);
    assert_eq!(m.paired(Metric::Paced, Tollgate, Floor), vec![1.0]);
}

#[test]
fn the_sign_test_matches_the_binomial_tail() {
    assert_eq!(sign_test_p(0, 3), 0.25);
    assert_eq!(sign_test_p(0, 6), 2.0 / 64.0);
    assert_eq!(sign_test_p(1, 9), 2.0 * 10.0 / 512.0);
    assert_eq!(sign_test_p(2, 9), 2.0 * 46.0 / 512.0);
    assert_eq!(sign_test_p(4, 9), 1.0);
}

#[test]
fn paced_targets_compare_tollgate_with_each_peer() {
    use Peer::*;
    let m = medians(&[
        (Metric::Paced, Floor, 7.0),
        (Metric::Paced, Tunnel, 7.5),
        (Metric::Paced, Tollgate, 8.0),
        (Metric::Paced, Nginx, 12.0),
        (Metric::Paced, Haproxy, 9.0),
    ]);
    let r = rows(&m);
    // 7.5 / 7.0 = 1.071: the tunnel misses the floor target.
    assert_eq!(find(&r, "paced: `--tunnel`").verdict, Verdict::Missed);
    // 8.0 / 7.5 = 1.067.
    assert_eq!(find(&r, "paced: tollgate ≤ 1.05").verdict, Verdict::Missed);
    assert_eq!(find(&r, "paced: tollgate ≤ 0.95").verdict, Verdict::Met);
    // 8.0 / 9.0 = 0.889 > 0.85.
    assert_eq!(find(&r, "paced: tollgate ≤ 0.85").verdict, Verdict::Missed);
}

#[test]
fn cpu_rows_against_nginx_and_haproxy_carry_the_floors_ratio_and_are_floor_bound_above_the_limit() {
    use Peer::*;
    // bfull22's medians: the floor ×0.946 nginx (under 0.95: not floor-bound), ×0.718 HAProxy.
    let m = medians(&[
        (Metric::Paced, Floor, 15.8),
        (Metric::Paced, Tunnel, 13.8),
        (Metric::Paced, Tollgate, 16.0),
        (Metric::Paced, Nginx, 16.7),
        (Metric::Paced, Haproxy, 22.0),
        (Metric::Firehose, Floor, 0.72),
        (Metric::Firehose, Tollgate, 0.96),
        (Metric::Firehose, Nginx, 1.37),
        (Metric::Firehose, Haproxy, 0.88),
    ]);
    let r = rows(&m);
    let n = find(&r, "paced: tollgate ≤ 0.95");
    assert_eq!(n.verdict, Verdict::Missed);
    assert_eq!(n.bound, None, "{}", n.measured);
    assert!(
        n.measured
            .ends_with("; the floor (no WebSocket work) ×0.946 nginx"),
        "{}",
        n.measured
    );
    let h = find(&r, "paced: tollgate ≤ 0.85");
    assert!(
        h.measured
            .contains("the floor (no WebSocket work) ×0.718 haproxy"),
        "{}",
        h.measured
    );
    // The rows against the tunnel and the floor say nothing about the floor's ratio.
    assert!(!find(&r, "paced: tollgate ≤ 1.05")
        .measured
        .contains("the floor"));
    assert!(!find(&r, "paced: `--tunnel`")
        .measured
        .contains("(no WebSocket"));
    let f = find(&r, "firehose");
    assert!(f.measured.contains("×0.818 haproxy"), "{}", f.measured);
    assert_eq!(f.bound, None);

    // An hour where the floor itself costs more than 0.95 × nginx: the row is floor-bound
    // and names the floor's ratio.
    let m = medians(&[
        (Metric::Paced, Floor, 16.5),
        (Metric::Paced, Tollgate, 16.6),
        (Metric::Paced, Nginx, 16.7),
    ]);
    let r = rows(&m);
    let n = find(&r, "paced: tollgate ≤ 0.95");
    assert_eq!(n.bound, Some(Bound::Floor));
    assert!(
        n.measured
            .contains("; floor-bound: the floor (no WebSocket work) ×0.988 nginx"),
        "{}",
        n.measured
    );

    // No floor in the run: nothing appended.
    let m = medians(&[
        (Metric::Paced, Tollgate, 16.0),
        (Metric::Paced, Nginx, 16.7),
    ]);
    let n = rows(&m)
        .into_iter()
        .find(|x| x.target.starts_with("paced: tollgate ≤ 0.95"))
        .expect("row");
    assert_eq!(n.bound, None);
    assert!(!n.measured.contains("floor"), "{}", n.measured);
}

#[test]
fn firehose_compares_with_the_cheaper_of_nginx_and_haproxy() {
    use Peer::*;
    let m = medians(&[
        (Metric::Firehose, Tollgate, 0.45),
        (Metric::Firehose, Nginx, 0.80),
        (Metric::Firehose, Haproxy, 0.44),
    ]);
    let r = rows(&m);
    let f = find(&r, "firehose");
    assert!(f.target.ends_with("(haproxy)"), "{}", f.target);
    assert_eq!(f.verdict, Verdict::Missed, "0.45 > 0.44: {}", f.measured);
    // Only nginx ran: the better of the two is unknown.
    let m = medians(&[
        (Metric::Firehose, Tollgate, 0.45),
        (Metric::Firehose, Nginx, 0.80),
    ]);
    assert_eq!(find(&rows(&m), "firehose").verdict, Verdict::NotMeasured);
}

#[test]
fn idle_echo_and_accuracy_rows_follow_the_run() {
    use Peer::*;
    let mut m = medians(&[
        (Metric::Idle(1000), Tollgate, 2.3),
        (Metric::Idle(9000), Tollgate, 4.2),
        (Metric::EchoP50(16000), Tollgate, 172.0),
        (Metric::EchoP50(16000), Nginx, 165.0),
        (Metric::EchoP99(16000), Tollgate, 700.0),
        (Metric::EchoP99(16000), Nginx, 800.0),
    ]);
    m.idle_sizes = vec![200, 1000, 4000, 9000];
    m.map.insert((Metric::Idle(200), Tollgate), one(11.0));
    m.map
        .insert((Metric::Idle(4000), Tollgate), st(3.9, 3.8, 4.3));
    m.sweep_rates = vec![16000];
    m.accuracy = Some((10, 10));
    let r = rows(&m);
    assert_eq!(
        find(&r, "idle: tollgate ≤ 4 KiB per plain session (1000").verdict,
        Verdict::Met
    );
    assert_eq!(
        find(&r, "idle: tollgate ≤ 4 KiB per plain session (9000").verdict,
        Verdict::Missed
    );
    let mid = find(&r, "idle: tollgate ≤ 4 KiB per plain session (4000");
    assert_eq!(mid.verdict, Verdict::Met);
    assert!(mid.within_spread, "a rep measured 4.3 KiB");
    assert!(!r.iter().any(|x| x.target.contains("(200 sessions)")));
    assert_eq!(find(&r, "echo p50 at 16.0k/s").verdict, Verdict::Missed);
    assert_eq!(find(&r, "echo p99 at 16.0k/s").verdict, Verdict::Met);
    assert_eq!(find(&r, "usage accuracy").verdict, Verdict::Met);
    m.accuracy = Some((9, 10));
    assert_eq!(find(&rows(&m), "usage accuracy").verdict, Verdict::Missed);
    m.accuracy = None;
    assert_eq!(
        find(&rows(&m), "usage accuracy").verdict,
        Verdict::NotMeasured
    );
}

#[test]
fn with_tls_the_idle_rows_compare_with_haproxys_sessions_on_the_same_legs() {
    use Peer::*;
    let mut m = medians(&[
        (Metric::Idle(1000), Tollgate, 17.6),
        (Metric::Idle(1000), Haproxy, 24.9),
        (Metric::Idle(4000), Tollgate, 20.9),
        (Metric::Idle(4000), Haproxy, 20.4),
    ]);
    m.idle_sizes = vec![1000, 4000];
    m.tls = TlsMode::Upstream;
    let r = rows(&m);
    // A TLS session is not held to the plain 4 KiB.
    assert!(!r.iter().any(|x| x.target.contains("4 KiB")), "{r:?}");
    let k = find(
        &r,
        "idle with a TLS upstream leg: tollgate ≤ HAProxy per session (1000 sessions)",
    );
    assert_eq!(k.verdict, Verdict::Met);
    assert!(
        k.measured.starts_with("17.6 vs 24.9 KiB: ×0.707"),
        "{}",
        k.measured
    );
    let k4 = find(
        &r,
        "idle with a TLS upstream leg: tollgate ≤ HAProxy per session (4000",
    );
    assert_eq!(k4.verdict, Verdict::Missed);
    // Without HAProxy in the run the target is not measured, never met.
    m.map.remove(&(Metric::Idle(1000), Haproxy));
    m.tls = TlsMode::Both;
    let r = rows(&m);
    assert_eq!(
        find(
            &r,
            "idle with TLS on both legs: tollgate ≤ HAProxy per session (1000"
        )
        .verdict,
        Verdict::NotMeasured
    );
}

#[test]
fn echo_rows_where_the_load_side_queues_without_a_relay_are_marked_load_bound() {
    use Peer::*;
    let mut m = medians(&[
        // direct: 130 at 2k/s (×2.2, but below the lowest's rate: an idle load core), 59 at
        // 16k/s (its lowest), 372 at 32k/s (×6.3).
        (Metric::EchoP50(2000), Direct, 130.0),
        (Metric::EchoP50(16000), Direct, 59.0),
        (Metric::EchoP50(32000), Direct, 372.0),
        (Metric::EchoP50(2000), Tollgate, 221.0),
        (Metric::EchoP50(2000), Nginx, 218.0),
        (Metric::EchoP50(32000), Tollgate, 546.0),
        (Metric::EchoP50(32000), Nginx, 463.0),
        (Metric::EchoP99(32000), Tollgate, 2500.0),
        (Metric::EchoP99(32000), Nginx, 2600.0),
    ]);
    m.map
        .insert((Metric::EchoLoad(32000), Tollgate), st(0.97, 0.96, 0.98));
    m.map
        .insert((Metric::EchoLoad(32000), Nginx), st(0.975, 0.95, 0.99));
    m.sweep_rates = vec![2000, 16000, 32000];
    let r = rows(&m);
    let p50 = find(&r, "echo p50 at 32.0k/s");
    assert_eq!(p50.verdict, Verdict::Missed, "the verdict stands");
    assert_eq!(p50.bound, Some(Bound::Load));
    assert!(
        p50.measured.ends_with(
            "; load-bound: without a relay (direct) p50 372 µs, ×6.3 its lowest (59.0 at \
             16.0k/s); load core 95–99% in tollgate's and nginx's runs"
        ),
        "{}",
        p50.measured
    );
    let p99 = find(&r, "echo p99 at 32.0k/s");
    assert_eq!(p99.verdict, Verdict::Met);
    assert_eq!(p99.bound, Some(Bound::Load));
    // 130 µs at 2k/s is ×2.2 direct's lowest, at a lower rate: not load-bound.
    let low = find(&r, "echo p50 at 2000/s");
    assert_eq!(low.verdict, Verdict::Missed);
    assert_eq!(low.bound, None, "{}", low.measured);
    // 16k/s: tollgate and nginx did not run there, so no verdict to qualify.
    let none = find(&r, "echo p50 at 16.0k/s");
    assert_eq!(none.verdict, Verdict::NotMeasured);
    assert_eq!(none.bound, None);
    // Without direct in the run nothing is load-bound.
    m.map.retain(|(_, p), _| *p != Direct);
    assert!(!rows(&m).iter().any(|x| x.bound.is_some()));
}

#[test]
fn echo_rows_carry_the_floors_ratio_and_are_floor_bound_where_the_floor_was_slower_than_nginx() {
    use Peer::*;
    // bfull27's p50s at 2k/s (the floor 335 against nginx's 313: floor-bound) and 8k/s
    // p99s (the floor 2,734 against nginx's 2,734: ×1.000, not above the limit).
    let mut m = medians(&[
        (Metric::EchoP50(2000), Direct, 126.0),
        (Metric::EchoP50(8000), Direct, 95.7),
        (Metric::EchoP50(32000), Direct, 530.0),
        (Metric::EchoP50(2000), Floor, 335.0),
        (Metric::EchoP50(2000), Tollgate, 342.0),
        (Metric::EchoP50(2000), Nginx, 313.0),
        (Metric::EchoP99(8000), Floor, 2734.0),
        (Metric::EchoP99(8000), Tollgate, 1835.0),
        (Metric::EchoP99(8000), Nginx, 2734.0),
        (Metric::EchoP50(32000), Floor, 829.0),
        (Metric::EchoP50(32000), Tollgate, 634.0),
        (Metric::EchoP50(32000), Nginx, 816.0),
    ]);
    m.sweep_rates = vec![2000, 8000, 32000];
    let r = rows(&m);
    let p50 = find(&r, "echo p50 at 2000/s");
    assert_eq!(p50.verdict, Verdict::Missed, "the verdict stands");
    assert_eq!(p50.bound, Some(Bound::Floor));
    assert!(
        p50.measured
            .ends_with("; floor-bound: the floor (no WebSocket work) ×1.070 nginx"),
        "{}",
        p50.measured
    );
    let p99 = find(&r, "echo p99 at 8000/s");
    assert_eq!(p99.verdict, Verdict::Met);
    assert_eq!(p99.bound, None, "×1.000 is within the limit");
    assert!(
        p99.measured
            .ends_with("; the floor (no WebSocket work) ×1.000 nginx"),
        "{}",
        p99.measured
    );
    // Load-bound (direct ×5.5 its lowest at 32k/s): the load core's queue, not the floor.
    let lb = find(&r, "echo p50 at 32.0k/s");
    assert_eq!(lb.bound, Some(Bound::Load));
    assert!(!lb.measured.contains("the floor"), "{}", lb.measured);
    // Not measured rows (no p99 at 2k/s here) say nothing about the floor.
    let nm = find(&r, "echo p99 at 2000/s");
    assert_eq!(nm.verdict, Verdict::NotMeasured);
    assert_eq!(nm.bound, None);
    // Without the floor in the run, nothing is appended.
    m.map.retain(|(_, p), _| *p != Floor);
    let r = rows(&m);
    let p50 = find(&r, "echo p50 at 2000/s");
    assert_eq!(p50.bound, None);
    assert!(!p50.measured.contains("floor"), "{}", p50.measured);
}

#[test]
fn echo_rows_carry_the_runs_a_a_pair_and_are_below_its_resolution_when_no_farther_from_1() {
    use Peer::*;
    // At 2k/s tollgate ×1.040 nginx, and the A/A pair (tollgate-nolog against tollgate)
    // ×0.950: one relay twice lands farther apart (|ln 0.950| > |ln 1.040|). At 8k/s the
    // A/A pair ×1.010 is closer than tollgate's ×0.900 (met) — no bound.
    let mut m = medians(&[
        (Metric::EchoP50(2000), Tollgate, 104.0),
        (Metric::EchoP50(2000), Nginx, 100.0),
        (Metric::EchoP50(2000), TollgateNoLog, 98.8),
        (Metric::EchoP50(8000), Tollgate, 90.0),
        (Metric::EchoP50(8000), Nginx, 100.0),
        (Metric::EchoP50(8000), TollgateNoLog, 90.9),
    ]);
    m.sweep_rates = vec![2000, 8000];
    let r = rows(&m);
    let p50 = find(&r, "echo p50 at 2000/s");
    assert_eq!(p50.verdict, Verdict::Missed, "the verdict stands");
    assert_eq!(p50.bound, Some(Bound::Resolution));
    assert!(
        p50.measured.ends_with(
            "; A/A (tollgate-nolog, the same relay on echo, vs tollgate) ×0.950: within it"
        ),
        "{}",
        p50.measured
    );
    let p8 = find(&r, "echo p50 at 8000/s");
    assert_eq!(p8.verdict, Verdict::Met);
    assert_eq!(p8.bound, None);
    assert!(
        p8.measured.ends_with(" vs tollgate) ×1.010"),
        "{}",
        p8.measured
    );
    // A floor-bound row keeps the floor as its bound and still shows the A/A pair.
    m.map.insert((Metric::EchoP50(2000), Floor), one(110.0));
    let r = rows(&m);
    let fb = find(&r, "echo p50 at 2000/s");
    assert_eq!(fb.bound, Some(Bound::Floor));
    assert!(fb.measured.contains("×0.950: within it"), "{}", fb.measured);
    // Without tollgate-nolog in the run, nothing is appended.
    m.map.retain(|(_, p), _| *p != TollgateNoLog);
    let r = rows(&m);
    let p50 = find(&r, "echo p50 at 2000/s");
    assert!(!p50.measured.contains("A/A"), "{}", p50.measured);
    assert_eq!(find(&r, "echo p50 at 8000/s").bound, None);
}
