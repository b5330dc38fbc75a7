//! The whole-chunk UTF-8 check (AVX-512 where the CPU has it) must agree with the standard
//! library on every input, at every length and alignment.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let want = std::str::from_utf8(data).is_ok();
    // Every suffix start within one block, so each byte is seen at every vector position.
    for skip in 0..data.len().min(64) {
        let part = &data[skip..];
        assert_eq!(
            tollgate::ws::utf8_simd::is_valid(part),
            std::str::from_utf8(part).is_ok(),
            "skip {skip}"
        );
    }
    assert_eq!(tollgate::ws::utf8_simd::is_valid(data), want);
});
