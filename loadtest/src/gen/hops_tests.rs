use super::*;

fn switch(tid_now: u32, t_ns: u64, prev: u32, next: u32) -> String {
    format!(
        "{tid_now:>6} [000] {}.{:09}: sched:sched_switch: prev_comm=x prev_pid={prev} prev_prio=120 prev_state=S ==> next_comm=y next_pid={next} next_prio=120",
        t_ns / 1_000_000_000,
        t_ns % 1_000_000_000
    )
}

fn packet(tid: u32, t_ns: u64, len: u32) -> String {
    format!(
        "{tid:>6} [000] {}.{:09}:  net:net_dev_queue: dev=lo skbaddr=0xffff888102a13e00 len={len}",
        t_ns / 1_000_000_000,
        t_ns % 1_000_000_000
    )
}

const BASE: u64 = 50_052_166_259_669;

/// Within the histogram's precision (3 significant digits).
fn near(got: f64, want: f64) -> bool {
    (got - want).abs() <= want * 0.002
}

#[test]
fn a_line_of_each_event_parses() {
    assert_eq!(
        parse_line(&switch(0, BASE, 0, 31426)),
        Some((
            0,
            BASE,
            Event::Switch {
                prev: 0,
                next: 31426
            }
        ))
    );
    assert_eq!(
        parse_line(&packet(27421, BASE + 5, 74)),
        Some((27421, BASE + 5, Event::Packet { len: 74 }))
    );
    assert_eq!(parse_line("garbage"), None);
    assert_eq!(
        parse_line("    18 [000] 50052.166279028: sched:sched_waking: comm=perf pid=1"),
        None
    );
}

#[test]
fn the_hop_runs_from_switch_in_to_the_first_data_packet() {
    let relay = 700;
    let lines = [
        // Wake-up 1: an ACK first (not a frame), then two frames.
        switch(0, BASE, 0, relay),
        packet(relay, BASE + 1_000, 66),
        packet(relay, BASE + 6_000, 270),
        packet(relay, BASE + 7_500, 270),
        switch(relay, BASE + 9_000, relay, 0),
        // Another process's frame while the relay sleeps: not the relay's.
        packet(900, BASE + 10_000, 270),
        // Wake-up 2: one frame after 8 µs.
        switch(0, BASE + 20_000, 0, relay),
        packet(relay, BASE + 28_000, 270),
        switch(relay, BASE + 30_000, relay, 0),
        // Wake-up 3: only an ACK — not counted.
        switch(0, BASE + 40_000, 0, relay),
        packet(relay, BASE + 41_000, 66),
        switch(relay, BASE + 42_000, relay, 0),
        // Wake-up 4: one frame after 7 µs.
        switch(0, BASE + 50_000, 0, relay),
        packet(relay, BASE + 57_000, 270),
        switch(relay, BASE + 58_000, relay, 0),
    ]
    .join("\n");
    let h = hops(&lines, &HashSet::from([relay])).expect("wake-ups");
    assert_eq!(h.wakeups, 3);
    // 6, 7 and 8 µs (the histogram keeps 3 significant digits).
    assert!(near(h.p50_us, 7.0) && near(h.p90_us, 8.0), "{h:?}");
    // The single-frame wake-ups: 7 and 8 µs.
    assert!(h.single_p50_us.is_some_and(|p| near(p, 7.0)), "{h:?}");
    assert_eq!(h.frames_per_wakeup, 4.0 / 3.0);
}

#[test]
fn other_threads_and_unfinished_wakeups_do_not_count() {
    let relay = 700;
    let lines = [
        // A thread that is not the SUT's runs and sends.
        switch(0, BASE, 0, 900),
        packet(900, BASE + 2_000, 270),
        switch(900, BASE + 3_000, 900, 0),
        // The relay sends but the trace ends before it is switched out.
        switch(0, BASE + 10_000, 0, relay),
        packet(relay, BASE + 12_000, 270),
    ]
    .join("\n");
    assert_eq!(hops(&lines, &HashSet::from([relay])), None);
    let h = hops(&lines, &HashSet::from([900])).expect("the other thread's wake-up");
    assert_eq!(h.wakeups, 1);
    assert!(near(h.p50_us, 2.0), "{h:?}");
}

#[test]
fn no_trace_no_hop() {
    assert_eq!(hops("", &HashSet::from([1])), None);
}
