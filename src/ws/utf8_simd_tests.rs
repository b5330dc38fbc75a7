use super::*;

/// A validity check: `true` for complete, valid UTF-8.
type Kernel = fn(&[u8]) -> bool;

/// Every kernel this CPU can run, by name: the dispatching one, `simdutf8`'s, and the
/// AVX-512 and AVX2 kernels themselves when the CPU has them.
fn kernels() -> Vec<(&'static str, Kernel)> {
    let mut k: Vec<(&'static str, Kernel)> = vec![
        ("dispatch", is_valid),
        ("simdutf8", |b| simdutf8::basic::from_utf8(b).is_ok()),
    ];
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: only pushed when the CPU has AVX512F and AVX512BW.
        k.push(("avx512", |b| unsafe { avx512::is_valid(b) }));
    }
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: only pushed when the CPU has AVX2.
        k.push(("avx2", |b| unsafe { avx2::is_valid(b) }));
    }
    k
}

fn check(bytes: &[u8], what: &str) {
    let want = std::str::from_utf8(bytes).is_ok();
    for (name, f) in kernels() {
        assert_eq!(f(bytes), want, "{name}: {what}: {bytes:x?}");
    }
}

const CHARS: &[&str] = &[
    "a",
    "\u{7f}",
    "é",
    "\u{7ff}",
    "\u{800}",
    "☃",
    "\u{ffff}",
    "😀",
    "\u{10ffff}",
];

const BAD: &[&[u8]] = &[
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xf0\x80\x80\xaf",
    b"\xc1\xbf",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xff",
    b"\x80",
    b"\xe1\xbd",
    b"\xf0\x9f\x98",
    b"\xce",
    b"\xce\xba\xe1\x41",
];

/// Each character and each invalid sequence at every offset across two 64-byte block edges,
/// in ASCII and in non-ASCII surroundings (so the ASCII fast path and the full check both see
/// the previous block), and cut short at every length.
#[test]
fn every_offset_across_block_edges() {
    let samples: Vec<&[u8]> = CHARS
        .iter()
        .map(|c| c.as_bytes())
        .chain(BAD.iter().copied())
        .collect();
    for fill in ["x", "é"] {
        for s in &samples {
            for at in 0..140 {
                let mut buf: Vec<u8> = fill.repeat(at).into_bytes();
                buf.truncate(at);
                // A cut "é" at the end of the fill is itself invalid: std judges it too.
                buf.extend_from_slice(s);
                let whole = buf.len();
                for tail in 0..40 {
                    buf.truncate(whole);
                    buf.extend(fill.repeat(tail).bytes().take(tail));
                    check(&buf, &format!("fill {fill:?} at {at} tail {tail}"));
                }
                for cut in 0..whole {
                    check(&buf[..cut], &format!("fill {fill:?} at {at} cut {cut}"));
                }
            }
        }
    }
}

/// Random text of valid characters with one random corruption (or none), lengths 0..400.
#[test]
fn agrees_with_std_on_random_text() {
    let mut rng = fastrand::Rng::with_seed(0x75_74_66_38);
    for _ in 0..60_000 {
        let mut buf = Vec::new();
        let target = rng.usize(0..400);
        while buf.len() < target {
            let c = if rng.u8(..) < 200 {
                "a"
            } else {
                CHARS[rng.usize(..CHARS.len())]
            };
            buf.extend_from_slice(c.as_bytes());
        }
        if !buf.is_empty() {
            match rng.u8(0..4) {
                0 => {}
                1 => {
                    let i = rng.usize(..buf.len());
                    buf[i] = rng.u8(..);
                }
                2 => buf.truncate(rng.usize(..buf.len())),
                _ => {
                    let i = rng.usize(..=buf.len());
                    buf.insert(i, rng.u8(0x80..));
                }
            }
        }
        check(&buf, "random");
    }
}

/// The kernel this machine dispatches to is the AVX-512 one when the CPU has it.
#[test]
fn dispatch_uses_avx512_when_the_cpu_has_it() {
    #[cfg(target_arch = "x86_64")]
    {
        let has = std::arch::is_x86_feature_detected!("avx512bw");
        assert_eq!(avx512::available(), has);
    }
    assert!(is_valid("κόσμε".as_bytes()));
    assert!(!is_valid(b"\xce"));
}
