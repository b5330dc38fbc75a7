use super::*;

const VALID: &[&str] = &[
    "",
    "plain ascii",
    "κόσμε",
    "Hello-µ@ßöäüàá-UTF-8!!",
    "\u{80}\u{7FF}\u{800}\u{FFFF}\u{10000}\u{10FFFF}",
    "\u{D7FF}\u{E000}\u{FFFD}",
    "😀 emoji 🎉 mixed ✓ text 中文",
];

const INVALID: &[&[u8]] = &[
    b"\xc0\xaf",           // overlong '/'
    b"\xe0\x80\xaf",       // overlong 3-byte
    b"\xf0\x80\x80\xaf",   // overlong 4-byte
    b"\xc1\xbf",           // overlong 2-byte max
    b"\xed\xa0\x80",       // surrogate U+D800
    b"\xed\xbf\xbf",       // surrogate U+DFFF
    b"\xf4\x90\x80\x80",   // U+110000
    b"\xf5\x80\x80\x80",   // lead byte > F4
    b"\xff",               // never valid
    b"\x80",               // lone continuation
    b"abc\xce\xbaxyz\xbf", // stray continuation after valid text
    b"\xe1\xbd",           // truncated 3-byte (only at finish)
    b"\xf0\x9f\x98",       // truncated 4-byte (only at finish)
    b"\xce",               // truncated 2-byte (only at finish)
    b"\xce\xba\xe1\x41",   // sequence interrupted by ASCII
];

/// Feeds `parts` then finishes; returns the first error.
fn run(v: &mut Utf8Validator, parts: &[&[u8]]) -> Result<(), Utf8Error> {
    for p in parts {
        v.feed(p)?;
    }
    v.finish()
}

#[test]
fn valid_samples_pass_split_at_every_position() {
    let all = VALID.concat();
    let mut v = Utf8Validator::new();
    for s in VALID.iter().copied().chain([all.as_str()]) {
        let b = s.as_bytes();
        for i in 0..=b.len() {
            assert_eq!(
                run(&mut v, &[&b[..i], &b[i..]]),
                Ok(()),
                "{s:?} split at {i}"
            );
            for j in i..=b.len() {
                assert_eq!(
                    run(&mut v, &[&b[..i], &b[i..j], &b[j..]]),
                    Ok(()),
                    "{s:?} {i}/{j}"
                );
            }
        }
        let bytes: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(run(&mut v, &bytes), Ok(()), "{s:?} bytewise");
    }
}

#[test]
fn invalid_samples_fail_whole_split_and_bytewise() {
    let mut v = Utf8Validator::new();
    for bad in INVALID {
        assert!(run(&mut v, &[bad]).is_err(), "{bad:x?} whole");
        for i in 0..=bad.len() {
            assert!(
                run(&mut v, &[&bad[..i], &bad[i..]]).is_err(),
                "{bad:x?} split {i}"
            );
        }
        let bytes: Vec<&[u8]> = bad.chunks(1).collect();
        assert!(run(&mut v, &bytes).is_err(), "{bad:x?} bytewise");
        // After the error the validator accepts a fresh valid message.
        assert_eq!(run(&mut v, &["κόσμε".as_bytes()]), Ok(()));
    }
}

#[test]
fn truncated_sequence_is_only_an_error_at_finish() {
    let mut v = Utf8Validator::new();
    assert_eq!(v.feed(b"ok \xf0\x9f"), Ok(()));
    assert!(!v.is_at_boundary());
    assert_eq!(v.feed(b"\x98"), Ok(()));
    assert_eq!(v.finish(), Err(Utf8Error::Incomplete));
    assert!(v.is_at_boundary());
    // Completing it instead is fine.
    assert_eq!(run(&mut v, &[b"\xf0\x9f", b"\x98", b"\x80"]), Ok(()));
}

/// Autobahn case 6.4.x: "κόσμε" + ED A0 80 (U+D800) + "edited", fed one byte at a time,
/// must fail on the A0 byte (ED A0 cannot start any valid sequence), not later.
#[test]
fn autobahn_fail_fast_on_surrogate_prefix() {
    let msg = [
        0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65,
        0x64, 0x69, 0x74, 0x65, 0x64,
    ];
    let fail_at = 12;
    assert_eq!(msg[fail_at], 0xa0);
    let mut v = Utf8Validator::new();
    for (i, b) in msg.iter().enumerate() {
        let r = v.feed(&[*b]);
        if i < fail_at {
            assert_eq!(r, Ok(()), "byte {i}");
        } else {
            assert_eq!(r, Err(Utf8Error::Invalid), "byte {i}");
            break;
        }
    }
    // The same holds when the prefix arrives in one chunk and ends with the impossible pair.
    let mut v = Utf8Validator::new();
    assert_eq!(v.feed(&msg[..fail_at]), Ok(()));
    assert_eq!(v.feed(&msg[fail_at..=fail_at]), Err(Utf8Error::Invalid));
    let mut v = Utf8Validator::new();
    assert_eq!(v.feed(&msg[..=fail_at]), Err(Utf8Error::Invalid));
}

#[test]
fn impossible_prefixes_fail_before_the_sequence_completes() {
    // Each pair is (prefix that is still fine, next byte that makes it impossible).
    let cases: &[(&[u8], u8)] = &[
        (b"\xf4", 0x90),     // > U+10FFFF
        (b"\xe0", 0x80),     // overlong 3-byte
        (b"\xf0", 0x80),     // overlong 4-byte
        (b"\xf0\x9f", 0x41), // interrupted 4-byte
        (b"\xe1", 0xc0),     // non-continuation
    ];
    for (prefix, next) in cases {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(prefix), Ok(()), "{prefix:x?}");
        assert_eq!(
            v.feed(&[*next]),
            Err(Utf8Error::Invalid),
            "{prefix:x?} + {next:x}"
        );
    }
    for lead in [0xc0u8, 0xc1, 0xf5, 0xf8, 0xff, 0x80] {
        assert_eq!(
            Utf8Validator::new().feed(&[lead]),
            Err(Utf8Error::Invalid),
            "{lead:x}"
        );
    }
}

#[test]
fn close_code_is_1007() {
    assert_eq!(Utf8Error::Invalid.close_code(), 1007);
    assert_eq!(Utf8Error::Incomplete.close_code(), 1007);
}

/// Cross-check against std on pseudo-random byte strings split at pseudo-random points.
#[test]
fn agrees_with_std_on_random_inputs() {
    let mut rng = fastrand::Rng::with_seed(6455);
    let alphabet: &[u8] = &[
        0x41, 0x7f, 0x80, 0xbf, 0xc2, 0xce, 0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xa0, 0x90,
        0x9f,
    ];
    let mut v = Utf8Validator::new();
    for _ in 0..20_000 {
        let len = rng.usize(0..10);
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.usize(..alphabet.len())])
            .collect();
        let cut = rng.usize(0..=len);
        let got = run(&mut v, &[&bytes[..cut], &bytes[cut..]]);
        assert_eq!(
            got.is_ok(),
            std::str::from_utf8(&bytes).is_ok(),
            "{bytes:x?} cut {cut}"
        );
    }
}

/// Long text (the SIMD kernels' sizes) split into chunks at random points, so reads end
/// inside characters: after every chunk the validator fails exactly when `std` says the bytes
/// so far hold an error that more bytes cannot mend (fail fast), and at the end it agrees with
/// `std` on the whole.
#[test]
fn agrees_with_std_chunk_by_chunk_on_long_inputs() {
    let mut rng = fastrand::Rng::with_seed(1007);
    let chars = ["a", " ", "é", "☃", "🚀", "中", "\u{7FF}", "\u{10FFFF}"];
    let bad: &[u8] = &[0x80, 0xbf, 0xc0, 0xc2, 0xe0, 0xed, 0xf0, 0xf4, 0xf5, 0xff];
    let mut v = Utf8Validator::new();
    for round in 0..4_000 {
        let mut bytes = Vec::new();
        let len = rng.usize(40..400);
        while bytes.len() < len {
            bytes.extend_from_slice(chars[rng.usize(..chars.len())].as_bytes());
        }
        // Half the inputs carry one stray byte somewhere.
        if round % 2 == 1 {
            let at = rng.usize(..=bytes.len());
            bytes.insert(at, bad[rng.usize(..bad.len())]);
        }
        let mut cuts: Vec<usize> = (0..rng.usize(1..4))
            .map(|_| rng.usize(..=bytes.len()))
            .collect();
        cuts.sort_unstable();
        cuts.push(bytes.len());
        let mut from = 0;
        let mut failed = false;
        for &to in &cuts {
            let got = v.feed(&bytes[from..to]);
            let hopeless =
                matches!(std::str::from_utf8(&bytes[..to]), Err(e) if e.error_len().is_some());
            assert_eq!(
                got.is_err(),
                hopeless,
                "round {round}: {bytes:x?} fed to {to}"
            );
            from = to;
            if hopeless {
                failed = true;
                break;
            }
        }
        if !failed {
            let whole = std::str::from_utf8(&bytes).is_ok();
            assert_eq!(
                v.finish().is_ok(),
                whole,
                "round {round}: {bytes:x?} at the end"
            );
        }
        v.reset();
    }
}
