//! Whole-chunk UTF-8 validity: AVX-512 where the CPU has it, else AVX2 (both here), else
//! `simdutf8`'s `basic`.
//!
//! Why hand-written: UTF-8 validation of every text byte is the relay's largest own cost
//! under a firehose of frames (4.0–4.2% of its CPU in `perf record -g -e cpu-clock` of the relay,
//! `simdutf8`'s AVX2 kernel), and `simdutf8` 0.1 has no AVX-512 kernel. This is the same
//! algorithm (Keiser and Lemire, "Validating UTF-8 In Less Than One Instruction Per Byte",
//! the "lookup" method `simdutf8` and simdjson use) on 64-byte vectors, with a masked load for
//! the tail instead of a copy into a padded buffer; and on 32-byte vectors for AVX2, where
//! the tail is loaded again overlapping instead of copied (the `avx2` module says why). `cargo bench
//! --bench walker -- utf8` measures the dispatch against `simdutf8` on the same input; see
//! `loadtest/BENCH.md`.
//!
//! The contract is `simdutf8::basic`'s: `true` when `input` is valid UTF-8 and does not end
//! inside a sequence. No error position — the caller re-checks a rejected chunk with
//! `simdutf8::compat` for that. Tested against `std::str::from_utf8` in `utf8_simd_tests.rs`.

/// `true` when `input` is complete, valid UTF-8.
#[inline]
pub fn is_valid(input: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512::available() {
            // SAFETY: the CPU has AVX512F and AVX512BW (checked just above).
            return unsafe { avx512::is_valid(input) };
        }
        if avx2::available() {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { avx2::is_valid(input) };
        }
    }
    simdutf8::basic::from_utf8(input).is_ok()
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// Whether this CPU runs the AVX-512 kernel (the standard library caches the answer).
    #[inline]
    pub(crate) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
    }

    pub(super) const TOO_SHORT: u8 = 1 << 0;
    pub(super) const TOO_LONG: u8 = 1 << 1;
    pub(super) const OVERLONG_3: u8 = 1 << 2;
    pub(super) const TOO_LARGE: u8 = 1 << 3;
    pub(super) const SURROGATE: u8 = 1 << 4;
    pub(super) const OVERLONG_2: u8 = 1 << 5;
    pub(super) const TOO_LARGE_1000: u8 = 1 << 6;
    pub(super) const OVERLONG_4: u8 = 1 << 6;
    pub(super) const TWO_CONTS: u8 = 1 << 7;
    pub(super) const CARRY: u8 = TOO_SHORT | TOO_LONG | TWO_CONTS;

    /// Error bits by the high nibble of the previous byte.
    pub(super) const BYTE_1_HIGH: [u8; 16] = [
        TOO_LONG,
        TOO_LONG,
        TOO_LONG,
        TOO_LONG,
        TOO_LONG,
        TOO_LONG,
        TOO_LONG,
        TOO_LONG,
        TWO_CONTS,
        TWO_CONTS,
        TWO_CONTS,
        TWO_CONTS,
        TOO_SHORT | OVERLONG_2,
        TOO_SHORT,
        TOO_SHORT | OVERLONG_3 | SURROGATE,
        TOO_SHORT | TOO_LARGE | TOO_LARGE_1000 | OVERLONG_4,
    ];

    /// Error bits by the low nibble of the previous byte.
    pub(super) const BYTE_1_LOW: [u8; 16] = [
        CARRY | OVERLONG_3 | OVERLONG_2 | OVERLONG_4,
        CARRY | OVERLONG_2,
        CARRY,
        CARRY,
        CARRY | TOO_LARGE,
        CARRY | TOO_LARGE | TOO_LARGE_1000,
        CARRY | TOO_LARGE | TOO_LARGE_1000,
        CARRY | TOO_LARGE | TOO_LARGE_1000,
        CARRY | TOO_LARGE | TOO_LARGE_1000,
        CARRY | TOO_LARGE | TOO_LARGE_1000,
        CARRY | TOO_LARGE | TOO_LARGE_1000,
        CARRY | TOO_LARGE | TOO_LARGE_1000,
        CARRY | TOO_LARGE | TOO_LARGE_1000,
        CARRY | TOO_LARGE | TOO_LARGE_1000 | SURROGATE,
        CARRY | TOO_LARGE | TOO_LARGE_1000,
        CARRY | TOO_LARGE | TOO_LARGE_1000,
    ];

    /// Error bits by the high nibble of the byte itself.
    pub(super) const BYTE_2_HIGH: [u8; 16] = [
        TOO_SHORT,
        TOO_SHORT,
        TOO_SHORT,
        TOO_SHORT,
        TOO_SHORT,
        TOO_SHORT,
        TOO_SHORT,
        TOO_SHORT,
        TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE_1000 | OVERLONG_4,
        TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE,
        TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE,
        TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE,
        TOO_SHORT,
        TOO_SHORT,
        TOO_SHORT,
        TOO_SHORT,
    ];

    /// The vector of a block's bytes shifted by `N` (1..=3) with the previous block's last
    /// bytes shifted in: byte `j` is the byte `N` before byte `j` of `input`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn prev<const N: i32>(input: __m512i, prev_block: __m512i) -> __m512i {
        // Lane L of `lanes_back` is lane L-1 of the concatenation (prev_block, input); the
        // per-lane byte align then takes `N` bytes from it and `16 - N` from `input`'s lane.
        let lanes_back = _mm512_alignr_epi32::<12>(input, prev_block);
        match N {
            1 => _mm512_alignr_epi8::<15>(input, lanes_back),
            2 => _mm512_alignr_epi8::<14>(input, lanes_back),
            _ => _mm512_alignr_epi8::<13>(input, lanes_back),
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn table(t: &[u8; 16]) -> __m512i {
        // SAFETY: `t` is 16 readable bytes; the load is unaligned.
        let lane = unsafe { _mm_loadu_si128(t.as_ptr().cast()) };
        _mm512_broadcast_i32x4(lane)
    }

    /// Checks one 64-byte block against the previous one; error bits accumulate in `error`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn check_block(input: __m512i, prev_block: __m512i, t: &Tables) -> __m512i {
        let nibble = _mm512_set1_epi8(0x0F);
        let prev1 = prev::<1>(input, prev_block);
        let byte_1_high = _mm512_shuffle_epi8(
            t.byte_1_high,
            _mm512_and_si512(_mm512_srli_epi16::<4>(prev1), nibble),
        );
        let byte_1_low = _mm512_shuffle_epi8(t.byte_1_low, _mm512_and_si512(prev1, nibble));
        let byte_2_high = _mm512_shuffle_epi8(
            t.byte_2_high,
            _mm512_and_si512(_mm512_srli_epi16::<4>(input), nibble),
        );
        // byte_1_high & byte_1_low & byte_2_high in one instruction (truth table 0x80).
        let special = _mm512_ternarylogic_epi64::<0x80>(byte_1_high, byte_1_low, byte_2_high);
        // A byte two after a 3- or 4-byte lead, or three after a 4-byte lead, must be a
        // continuation; `special` has TWO_CONTS (0x80) set exactly where one is.
        let prev2 = prev::<2>(input, prev_block);
        let prev3 = prev::<3>(input, prev_block);
        let third = _mm512_subs_epu8(prev2, _mm512_set1_epi8((0b1110_0000u8 - 1) as i8));
        let fourth = _mm512_subs_epu8(prev3, _mm512_set1_epi8((0b1111_0000u8 - 1) as i8));
        // Nonzero → 0x80 or above: the high bit marks where a continuation must be. Kept in
        // vector registers (simdutf's form) rather than two mask tests, an OR of masks and a
        // masked broadcast: that chain through mask registers ended every call, and a
        // ~190-byte delta is one call of three blocks (`utf8/deltas` 594–603 → 495–497 ns,
        // `cargo bench --bench walker`, alternated; the long `utf8/mixed` loop unchanged).
        let must23 = _mm512_adds_epu8(_mm512_or_si512(third, fourth), _mm512_set1_epi8(0x7F));
        // (must23 & 0x80) ^ special (truth table 0x6A).
        _mm512_ternarylogic_epi64::<0x6A>(must23, _mm512_set1_epi8(0x80u8 as i8), special)
    }

    /// The largest byte each position of a block may hold without starting a sequence that
    /// runs past the block's end.
    const LAST_MAX: [u8; 64] = {
        let mut max = [0xFF; 64];
        max[61] = 0b1111_0000 - 1;
        max[62] = 0b1110_0000 - 1;
        max[63] = 0b1100_0000 - 1;
        max
    };

    struct Tables {
        byte_1_high: __m512i,
        byte_1_low: __m512i,
        byte_2_high: __m512i,
        last_max: __m512i,
    }

    /// `true` when `input` is complete, valid UTF-8.
    ///
    /// # Safety
    /// The CPU must support AVX512F and AVX512BW ([`available`]).
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(crate) unsafe fn is_valid(input: &[u8]) -> bool {
        let t = Tables {
            byte_1_high: table(&BYTE_1_HIGH),
            byte_1_low: table(&BYTE_1_LOW),
            byte_2_high: table(&BYTE_2_HIGH),
            // SAFETY: 64 readable bytes; the load is unaligned.
            last_max: unsafe { _mm512_loadu_si512(LAST_MAX.as_ptr().cast()) },
        };
        let mut error = _mm512_setzero_si512();
        let mut prev_block = _mm512_setzero_si512();
        let mut pending = _mm512_setzero_si512();
        let len = input.len();
        let base = input.as_ptr();
        let mut at = 0;
        while at < len {
            let rest = len - at;
            // SAFETY: `at < len`; a full load reads 64 bytes inside `input`; a masked load
            // reads only the `rest` bytes inside it (the others are zero: ASCII, so a sequence
            // cut by the end of `input` is caught as too short).
            let block = unsafe {
                if rest >= 64 {
                    _mm512_loadu_si512(base.add(at).cast())
                } else {
                    _mm512_maskz_loadu_epi8((1u64 << rest) - 1, base.add(at).cast())
                }
            };
            at += 64;
            if _mm512_movepi8_mask(block) != 0 {
                error = _mm512_or_si512(error, check_block(block, prev_block, &t));
                // Nonzero where the block's last bytes start a sequence it does not finish.
                pending = _mm512_subs_epu8(block, t.last_max);
                prev_block = block;
                continue;
            }
            // ASCII: only a sequence left open by the previous block is an error. Any ASCII
            // byte as the previous byte gives the same verdict as zero, so `prev_block` is
            // zeroed rather than carried through the run.
            error = _mm512_or_si512(error, pending);
            pending = _mm512_setzero_si512();
            prev_block = pending;
            // The rest of an ASCII run, 128 bytes per test.
            while at + 128 <= len {
                // SAFETY: both 64-byte loads lie inside `input` (`at + 128 <= len`).
                let (a, b) = unsafe {
                    (
                        _mm512_loadu_si512(base.add(at).cast()),
                        _mm512_loadu_si512(base.add(at + 64).cast()),
                    )
                };
                if _mm512_movepi8_mask(_mm512_or_si512(a, b)) != 0 {
                    break;
                }
                at += 128;
            }
        }
        error = _mm512_or_si512(error, pending);
        _mm512_test_epi8_mask(error, error) == 0
    }
}

/// The same check on 32-byte vectors, for CPUs with AVX2 but not AVX-512 (`simdutf8`'s
/// `basic` is the same algorithm; see its `validate_utf8_basic`).
///
/// Why not `simdutf8` here: in a profile of the relay under the firehose on an AVX2 host
/// (`perf record -C 0 -F 10000 -g -- target/release/loadtest bench --peers tollgate --only
/// firehose --reps 1`, `perf annotate` of `validate_utf8_basic`), about a quarter of
/// its samples (27%) were its tail: the last `len % 64` bytes of every ~190-byte delta are copied byte
/// by byte into a stack buffer and loaded back as one vector, which stalls on store
/// forwarding. Here nothing is copied: the tail is the last 32 bytes of `input`, loaded
/// again where they overlap the block before, and the tail's three previous bytes are loaded
/// from `input` (one, two and three bytes back) instead of being shifted in from the previous
/// vector, so it is checked against its true predecessors and each position's verdict is
/// exact. Inputs under 64 bytes go to `std`, as in `simdutf8`.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::avx512::{BYTE_1_HIGH, BYTE_1_LOW, BYTE_2_HIGH};

    /// Whether this CPU runs the AVX2 kernel (the standard library caches the answer).
    #[inline]
    pub(crate) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }

    /// The largest byte each position of a block may hold without starting a sequence that
    /// runs past the block's end.
    const LAST_MAX: [u8; 32] = {
        let mut max = [0xFF; 32];
        max[29] = 0b1111_0000 - 1;
        max[30] = 0b1110_0000 - 1;
        max[31] = 0b1100_0000 - 1;
        max
    };

    struct Tables {
        byte_1_high: __m256i,
        byte_1_low: __m256i,
        byte_2_high: __m256i,
        last_max: __m256i,
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn table(t: &[u8; 16]) -> __m256i {
        // SAFETY: `t` is 16 readable bytes; the load is unaligned.
        let lane = unsafe { _mm_loadu_si128(t.as_ptr().cast()) };
        _mm256_broadcastsi128_si256(lane)
    }

    /// Error bits of one 32-byte block, given the vectors of the bytes one, two and three
    /// positions before each of its bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn check_block(
        input: __m256i,
        prev1: __m256i,
        prev2: __m256i,
        prev3: __m256i,
        t: &Tables,
    ) -> __m256i {
        let nibble = _mm256_set1_epi8(0x0F);
        let byte_1_high = _mm256_shuffle_epi8(
            t.byte_1_high,
            _mm256_and_si256(_mm256_srli_epi16::<4>(prev1), nibble),
        );
        let byte_1_low = _mm256_shuffle_epi8(t.byte_1_low, _mm256_and_si256(prev1, nibble));
        let byte_2_high = _mm256_shuffle_epi8(
            t.byte_2_high,
            _mm256_and_si256(_mm256_srli_epi16::<4>(input), nibble),
        );
        let special = _mm256_and_si256(_mm256_and_si256(byte_1_high, byte_1_low), byte_2_high);
        // A byte two after a 3- or 4-byte lead, or three after a 4-byte lead, must be a
        // continuation; `special` has TWO_CONTS (0x80) set exactly where one is.
        let third = _mm256_subs_epu8(prev2, _mm256_set1_epi8((0b1110_0000u8 - 1) as i8));
        let fourth = _mm256_subs_epu8(prev3, _mm256_set1_epi8((0b1111_0000u8 - 1) as i8));
        let must23 = _mm256_and_si256(
            _mm256_adds_epu8(_mm256_or_si256(third, fourth), _mm256_set1_epi8(0x7F)),
            _mm256_set1_epi8(0x80u8 as i8),
        );
        _mm256_xor_si256(must23, special)
    }

    /// `true` when `input` is complete, valid UTF-8.
    ///
    /// # Safety
    /// The CPU must support AVX2 ([`available`]).
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn is_valid(input: &[u8]) -> bool {
        let len = input.len();
        if len < 64 {
            return std::str::from_utf8(input).is_ok();
        }
        let t = Tables {
            byte_1_high: table(&BYTE_1_HIGH),
            byte_1_low: table(&BYTE_1_LOW),
            byte_2_high: table(&BYTE_2_HIGH),
            // SAFETY: 32 readable bytes; the load is unaligned.
            last_max: unsafe { _mm256_loadu_si256(LAST_MAX.as_ptr().cast()) },
        };
        let base = input.as_ptr();
        let mut error = _mm256_setzero_si256();
        // Nonzero where the last non-ASCII block's last bytes start a sequence it does not
        // finish (an error if the next block is ASCII).
        let mut pending = _mm256_setzero_si256();
        // The block before (zero, i.e. ASCII, before the first).
        let mut prev_block = _mm256_setzero_si256();
        let mut at = 0;
        while at + 32 <= len {
            // SAFETY: `at + 32 <= len`.
            let block = unsafe { _mm256_loadu_si256(base.add(at).cast()) };
            at += 32;
            if _mm256_movemask_epi8(block) != 0 {
                // [prev_block's high lane, block's low lane]: the lane each byte's
                // predecessors come from, as in `simdutf8`.
                let back = _mm256_permute2x128_si256::<0x21>(prev_block, block);
                let prev1 = _mm256_alignr_epi8::<15>(block, back);
                let prev2 = _mm256_alignr_epi8::<14>(block, back);
                let prev3 = _mm256_alignr_epi8::<13>(block, back);
                error = _mm256_or_si256(error, check_block(block, prev1, prev2, prev3, &t));
                pending = _mm256_subs_epu8(block, t.last_max);
            } else {
                error = _mm256_or_si256(error, pending);
                pending = _mm256_setzero_si256();
                // The rest of an ASCII run, 64 bytes per test. Any ASCII byte as the
                // previous byte gives the same verdict, so `prev_block` need not follow it.
                while at + 64 <= len {
                    // SAFETY: both 32-byte loads lie inside `input` (`at + 64 <= len`).
                    let (a, b) = unsafe {
                        (
                            _mm256_loadu_si256(base.add(at).cast()),
                            _mm256_loadu_si256(base.add(at + 32).cast()),
                        )
                    };
                    if _mm256_movemask_epi8(_mm256_or_si256(a, b)) != 0 {
                        break;
                    }
                    at += 64;
                }
            }
            prev_block = block;
        }
        if at < len {
            // The tail: the last 32 bytes, overlapping the block before, with their
            // predecessors loaded from `input` rather than shifted in.
            // SAFETY: `len >= 64`, so `len - 35 >= 0`: every load lies inside `input`.
            let (block, prev1, prev2, prev3) = unsafe {
                let p = base.add(len - 32);
                (
                    _mm256_loadu_si256(p.cast()),
                    _mm256_loadu_si256(p.sub(1).cast()),
                    _mm256_loadu_si256(p.sub(2).cast()),
                    _mm256_loadu_si256(p.sub(3).cast()),
                )
            };
            if _mm256_movemask_epi8(block) != 0 {
                error = _mm256_or_si256(error, check_block(block, prev1, prev2, prev3, &t));
                pending = _mm256_subs_epu8(block, t.last_max);
            } else {
                error = _mm256_or_si256(error, pending);
                pending = _mm256_setzero_si256();
            }
        }
        error = _mm256_or_si256(error, pending);
        _mm256_testz_si256(error, error) == 1
    }
}

#[cfg(test)]
#[path = "utf8_simd_tests.rs"]
mod tests;
