//! Tests of the sampled user-space split on the CPU targets' rows (`targets.rs`,
//! `with_user_split`).

use super::tests::{find, medians};
use super::*;

#[test]
fn the_paced_rows_between_relays_on_one_kernel_path_carry_their_user_space_split() {
    use Peer::*;
    // The totals vary with the host; the sampled user space tells the code apart.
    let m = medians(&[
        (Metric::Paced, Floor, 14.65),
        (Metric::Paced, Tunnel, 16.0),
        (Metric::Paced, Tollgate, 15.0),
        (Metric::Paced, Nginx, 20.0),
        (Metric::PacedUser, Floor, 0.29),
        (Metric::PacedUser, Tunnel, 0.59),
        (Metric::PacedUser, Tollgate, 0.76),
        (Metric::PacedUser, Nginx, 3.0),
        (Metric::Paced, Haproxy, 22.0),
        (Metric::Firehose, Tollgate, 0.84),
        (Metric::Firehose, Haproxy, 0.83),
        (Metric::Firehose, Nginx, 1.2),
        (Metric::FirehoseUser, Tollgate, 0.15),
        (Metric::FirehoseUser, Haproxy, 0.11),
    ]);
    let all = rows(&m);
    let t = find(&all, "paced: `--tunnel`");
    assert_eq!(
        t.verdict,
        Verdict::Missed,
        "the verdict stays on the totals"
    );
    assert!(
        t.measured
            .ends_with("; user space (sampled) 0.59 vs 0.29 µs: +0.30 µs, +2.0% of floor's total"),
        "{}",
        t.measured
    );
    let g = find(&all, "paced: tollgate ≤ 1.05");
    assert!(
        g.measured
            .ends_with("; user space (sampled) 0.76 vs 0.59 µs: +0.17 µs, +1.1% of tunnel's total"),
        "{}",
        g.measured
    );
    // Against nginx the kernel paths differ: the split says how much of the gap is code,
    // and the floor's ratio follows.
    let n = find(&all, "paced: tollgate ≤ 0.95");
    assert!(
        n.measured.ends_with(
            "; user space (sampled) 0.76 vs 3.00 µs: -2.24 µs, -11.2% of nginx's total; \
             the floor (no WebSocket work) ×0.733 nginx"
        ),
        "{}",
        n.measured
    );
    // HAProxy's paced runs were not sampled (no `PacedUser`): its row has no split.
    let h = find(&all, "paced: tollgate ≤ 0.85");
    assert!(h.measured.starts_with("15.0 vs 22.0 µs"), "{}", h.measured);
    assert!(!h.measured.contains("user space"), "{}", h.measured);
    // The firehose row compares with the better of the two, sampled in the firehose.
    let f = find(&all, "firehose:");
    assert!(
        f.measured
            .contains("; user space (sampled) 0.15 vs 0.11 µs: +0.04 µs, +4.8% of haproxy's total"),
        "{}",
        f.measured
    );
    // Without the sampled split (perf missing), the rows are as before.
    let bare = medians(&[(Metric::Paced, Floor, 14.65), (Metric::Paced, Tunnel, 16.0)]);
    let bare_rows = rows(&bare);
    let t = find(&bare_rows, "paced: `--tunnel`");
    assert_eq!(t.measured, "16.0 vs 14.7 µs: ×1.092 (reps ×1.09–×1.09)");
}

#[test]
fn only_cpu_per_frame_metrics_have_a_user_space_part() {
    assert_eq!(Metric::Paced.user_part(), Some(Metric::PacedUser));
    assert_eq!(Metric::Firehose.user_part(), Some(Metric::FirehoseUser));
    for m in [
        Metric::PacedUser,
        Metric::FirehoseUser,
        Metric::Idle(4000),
        Metric::EchoP50(16_000),
        Metric::EchoP99(16_000),
        Metric::EchoLoad(16_000),
    ] {
        assert_eq!(m.user_part(), None, "{m:?}");
    }
    // A row on a metric without one is left alone, even with user samples in the run.
    let m = medians(&[
        (Metric::EchoP50(16_000), Peer::Tollgate, 100.0),
        (Metric::EchoP50(16_000), Peer::Nginx, 110.0),
        (Metric::PacedUser, Peer::Tollgate, 0.7),
        (Metric::PacedUser, Peer::Nginx, 2.0),
    ]);
    let row = ratio(
        &m,
        "echo".into(),
        Metric::EchoP50(16_000),
        Peer::Tollgate,
        Peer::Nginx,
        1.0,
    );
    let before = row.measured.clone();
    let after = with_user_split(
        row,
        &m,
        Metric::EchoP50(16_000),
        Peer::Tollgate,
        Peer::Nginx,
    );
    assert_eq!(after.measured, before);
}
