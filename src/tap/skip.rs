//! Skipping the body of a JSON string: the SIMD skip (64-byte blocks on x86_64, AVX-512, AVX2
//! or SSE2, escapes resolved with bit arithmetic; memchr2 elsewhere), the memchr2 variant, and
//! the scalar twin. All three share one contract and are tested against each other.

/// Where a string skip ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The closing quote was found; the index just past it.
    Done(usize),
    /// The buffer ended inside the string; resume from this index.
    More(usize),
}

/// True for the four JSON whitespace bytes.
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Skips the body of a string that starts at `i` (just after its opening quote) with memchr2.
// On x86_64 only the tests use it (against the SSE2 skip and the scalar twin).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
pub(crate) fn skip_string_memchr(buf: &[u8], mut i: usize) -> Skip {
    loop {
        let Some(rest) = buf.get(i..) else {
            return Skip::More(buf.len());
        };
        let Some(off) = memchr::memchr2(b'"', b'\\', rest) else {
            return Skip::More(buf.len());
        };
        let at = i + off;
        if rest.get(off) == Some(&b'"') {
            return Skip::Done(at + 1);
        }
        // A backslash: the next byte is escaped (for `\uXXXX` the hex digits are harmless).
        if at + 1 < buf.len() {
            i = at + 2;
        } else {
            return Skip::More(at);
        }
    }
}

/// Alternating bits 1, 3, 5, … (odd byte positions of a 64-byte block).
const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;

/// Escapes in one 64-byte block, carried across blocks (simdjson's escape scanner: Langdale
/// and Lemire, "Parsing Gigabytes of JSON per Second", §3.1.1, in its branch-light form).
///
/// Given the backslash bits of a block and whether its first byte is escaped by a backslash
/// run that ended the block before, returns the bits of the escaped bytes (the byte after
/// each escaping backslash, whatever its run length), the bits of the escaping backslashes,
/// and updates `carry` for the next block. No loop per escape: a subtraction finds where each
/// run of backslashes ends, and the parity of its length decides whether the byte after it
/// is escaped.
#[inline(always)]
fn escapes(backslash: u64, carry: &mut u64) -> (u64, u64) {
    if backslash == 0 {
        let escaped = *carry;
        *carry = 0;
        return (escaped, 0);
    }
    // A backslash escaped by the previous block's run is not an escape itself.
    let potential = backslash & !*carry;
    // Runs that start on an even bit end (the subtraction's borrow stops) one past an escape
    // on an odd bit and vice versa; XOR with the odd bits leaves every escape and escaped byte.
    let code = ((potential << 1) | ODD_BITS).wrapping_sub(potential) ^ ODD_BITS;
    let escaped = code ^ (backslash | *carry);
    let escape = code & backslash;
    *carry = escape >> 63;
    (escaped, escape)
}

/// Bits of the `"` and `\\` bytes of the 64 bytes at `block` (SSE2, the x86_64 baseline:
/// [`stops16_sse2`] on each quarter).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stops64_sse2(block: &[u8; 64]) -> (u64, u64) {
    let mut quotes = 0u64;
    let mut slashes = 0u64;
    for (k, quarter) in block.chunks_exact(16).enumerate() {
        if let Some(quarter) = quarter.first_chunk::<16>() {
            let (q, s) = stops16_sse2(quarter);
            quotes |= u64::from(q) << (16 * k);
            slashes |= u64::from(s) << (16 * k);
        }
    }
    (quotes, slashes)
}

/// AVX-512 block stops: one 64-byte load and two compares into mask registers; the last,
/// short block is a masked load (bytes past the end read as 0, which is neither stop).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        _mm512_cmpeq_epi8_mask, _mm512_loadu_si512, _mm512_maskz_loadu_epi8, _mm512_set1_epi8,
    };

    /// Whether this CPU runs the AVX-512 kernel (the standard library caches the answer).
    #[inline(always)]
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
    }

    /// `"` and `\\` bits of `bytes[..min(len, 64)]`.
    ///
    /// # Safety
    /// The CPU must have AVX512F and AVX512BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    pub(super) unsafe fn stops(bytes: &[u8]) -> (u64, u64) {
        let v = match bytes.first_chunk::<64>() {
            // SAFETY: an unaligned load of the 64 bytes of `block`.
            Some(block) => unsafe { _mm512_loadu_si512(block.as_ptr().cast()) },
            None => {
                // len < 64 here.
                let mask = (1u64 << bytes.len()) - 1;
                // SAFETY: a masked load reads (and may fault on) only the bytes whose mask
                // bit is set: bytes[..len].
                unsafe { _mm512_maskz_loadu_epi8(mask, bytes.as_ptr().cast()) }
            }
        };
        (
            _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b'"' as i8)),
            _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b'\\' as i8)),
        )
    }

    /// [`super::skip_string_simd`] on AVX-512 (the block loop compiled with the feature, so
    /// the kernel is inlined into it).
    ///
    /// # Safety
    /// The CPU must have AVX512F and AVX512BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn skip(buf: &[u8], i: usize) -> super::Skip {
        // SAFETY: this function's own precondition.
        super::skip_blocks(buf, i, |bytes| unsafe { stops(bytes) })
    }
}

/// AVX2 block stops: two 32-byte loads and four compares per 64 bytes (SSE2 takes four
/// loads and eight); the last, short block is copied into zeros first (`padded`), as in
/// SSE2.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
    };

    /// Whether this CPU runs the AVX2 kernel (the standard library caches the answer).
    #[inline(always)]
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }

    /// `"` and `\\` bits of the 64 bytes at `block`.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn stops64(block: &[u8; 64]) -> (u64, u64) {
        let p = block.as_ptr().cast::<__m256i>();
        // SAFETY: two unaligned 32-byte loads of the 64 bytes of `block`.
        let (lo, hi) = unsafe { (_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1))) };
        let (quote, slash) = (_mm256_set1_epi8(b'"' as i8), _mm256_set1_epi8(b'\\' as i8));
        let bits = |v: __m256i, c: __m256i| _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, c)) as u32;
        (
            u64::from(bits(lo, quote)) | u64::from(bits(hi, quote)) << 32,
            u64::from(bits(lo, slash)) | u64::from(bits(hi, slash)) << 32,
        )
    }

    /// [`super::skip_string_simd`] on AVX2 (the block loop compiled with the feature, so the
    /// kernel is inlined into it).
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn skip(buf: &[u8], i: usize) -> super::Skip {
        super::skip_blocks(buf, i, |bytes| {
            // SAFETY: this function's own precondition.
            super::padded(bytes, |block| unsafe { stops64(block) })
        })
    }
}

/// `stops64` of `bytes[..min(len, 64)]`: a short block is copied into zeros first.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn padded(bytes: &[u8], stops64: impl Fn(&[u8; 64]) -> (u64, u64)) -> (u64, u64) {
    match bytes.first_chunk::<64>() {
        Some(block) => stops64(block),
        None => {
            let mut pad = [0u8; 64];
            if let Some(head) = pad.get_mut(..bytes.len()) {
                head.copy_from_slice(bytes);
            }
            stops64(&pad)
        }
    }
}

/// The block loop of the x86_64 skips, over a `stops` kernel (`"` and `\\` bits of the first
/// `min(len, 64)` bytes of its argument, zeros past the end).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn skip_blocks(buf: &[u8], mut i: usize, stops: impl Fn(&[u8]) -> (u64, u64)) -> Skip {
    let mut carry = 0u64;
    loop {
        let rest = match buf.get(i..) {
            Some(rest) if !rest.is_empty() => rest,
            // The buffer ended on a block edge; an escaping backslash just before it is
            // re-read when the string resumes.
            _ if carry != 0 => return Skip::More(i.saturating_sub(1)),
            _ => return Skip::More(buf.len()),
        };
        let (quotes, backslash) = stops(rest);
        let (escaped, escape) = escapes(backslash, &mut carry);
        let closing = quotes & !escaped;
        if closing != 0 {
            return Skip::Done(i + closing.trailing_zeros() as usize + 1);
        }
        if rest.len() < 64 {
            // The buffer ends inside the string (the bytes past its end were zeros).
            let last = rest.len() - 1;
            return if escape >> last & 1 == 1 {
                Skip::More(i + last)
            } else {
                Skip::More(buf.len())
            };
        }
        i += 64;
    }
}

/// Skips the body of a string that starts at `i` (just after its opening quote): 64-byte
/// blocks, the `"` and `\\` bits of each in two compares (AVX-512), four (AVX2) or eight
/// (SSE2), escapes resolved by [`escapes`] without a loop per escape, so escape-dense text
/// (`\n`, `\"` every dozen bytes in real outputs) costs the same per block as plain text.
/// Most strings the tap walks are keys and short values: the first 16 bytes are looked at
/// with one SSE2 compare pair first, without the CPU feature check.
///
/// Why hand-written: the bytes of a terminal event's output text are most of what the tap
/// reads. A skip that stops at every escape (`memchr2`, or a loop over each escape's mask
/// bit, the previous version) ran at 10.7 GiB/s on `cargo bench --bench tap`'s escape-dense
/// terminal (4.67 µs for 53.5 KB); this one at 26 GiB/s (2.05 µs). `simd-json` would parse
/// (and copy) the whole event to find its end. The AVX2 kernel (for CPUs without AVX-512),
/// against SSE2 on an AMD EPYC (family 25, AVX2), the two bench binaries alternated three
/// times (`taskset -c 1 <bench> --bench 'tap/terminal(_escaped)?/tap$'`): the escape-dense
/// terminal 4.72–5.49 → 3.51–4.46 µs, the fixture's 26.7 KB terminal 3.46–4.47 → 2.72–3.85.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn skip_string_simd(buf: &[u8], i: usize) -> Skip {
    let mut from = i;
    if let Some(head) = buf.get(i..).and_then(<[u8]>::first_chunk::<16>) {
        let (quotes, backslash) = stops16_sse2(head);
        // A quote before the first backslash closes the string (16: no backslash).
        let first_escape = (backslash | 1 << 16).trailing_zeros();
        let closing = quotes & ((1u32 << first_escape) - 1);
        if closing != 0 {
            return Skip::Done(i + closing.trailing_zeros() as usize + 1);
        }
        if first_escape == 16 {
            // Neither stop in these 16 bytes: the blocks start after them, unescaped.
            from = i + 16;
        }
    }
    if avx512::available() {
        // SAFETY: the CPU has AVX512F and AVX512BW (checked just above).
        return unsafe { avx512::skip(buf, from) };
    }
    if avx2::available() {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { avx2::skip(buf, from) };
    }
    skip_string_sse2(buf, from)
}

/// [`skip_string_simd`]'s AVX2 kernel, for the tests: `None` when the CPU has no AVX2.
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn skip_string_avx2(buf: &[u8], i: usize) -> Option<Skip> {
    // SAFETY: the CPU has AVX2 (checked first).
    avx2::available().then(|| unsafe { avx2::skip(buf, i) })
}

/// Bits of the `"` and `\\` bytes of 16 bytes (SSE2).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stops16_sse2(bytes: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is enabled on every x86_64 target (this fn is cfg'd to x86_64), and the
    // unaligned 16-byte load reads the 16 bytes of `bytes`.
    unsafe {
        let v = _mm_loadu_si128(bytes.as_ptr().cast::<__m128i>());
        let q = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8))) as u32;
        let s = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8))) as u32;
        (q & 0xffff, s & 0xffff)
    }
}

/// [`skip_string_simd`] with the SSE2 kernel (every x86_64 CPU; tested on AVX-512 machines too).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn skip_string_sse2(buf: &[u8], i: usize) -> Skip {
    skip_blocks(buf, i, |bytes| padded(bytes, stops64_sse2))
}

/// Off x86_64 the SIMD skip is memchr2 (NEON etc. inside memchr).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(crate) fn skip_string_simd(buf: &[u8], i: usize) -> Skip {
    skip_string_memchr(buf, i)
}

/// Scalar twin of [`skip_string_simd`]: a plain byte loop with the same contract.
#[inline]
pub(crate) fn skip_string_scalar(buf: &[u8], mut i: usize) -> Skip {
    while let Some(&b) = buf.get(i) {
        match b {
            b'"' => return Skip::Done(i + 1),
            b'\\' if i + 1 < buf.len() => i += 2,
            b'\\' => return Skip::More(i),
            _ => i += 1,
        }
    }
    Skip::More(buf.len())
}

/// The string skip selected at compile time (`SIMD = false` → scalar twin, for tests/benches).
#[inline(always)]
pub(crate) fn skip_string<const SIMD: bool>(buf: &[u8], i: usize) -> Skip {
    if SIMD {
        skip_string_simd(buf, i)
    } else {
        skip_string_scalar(buf, i)
    }
}
