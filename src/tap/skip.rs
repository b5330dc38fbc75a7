//! Skipping the body of a JSON string: the SIMD skip (SSE2 blocks on x86_64, memchr2
//! elsewhere), the memchr2 variant, and the scalar twin. All three share one contract and are
//! tested against each other.

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

/// Bit `k` set when byte `k` of the block is `"` or `\\` (SSE2, part of the x86_64 baseline).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stops32(block: &[u8; 32]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is enabled on every x86_64 target (this fn is cfg'd to x86_64), and the
    // two unaligned 16-byte loads read bytes 0..16 and 16..32 of a 32-byte array.
    unsafe {
        let ptr = block.as_ptr().cast::<__m128i>();
        let lo = _mm_loadu_si128(ptr);
        let hi = _mm_loadu_si128(ptr.add(1));
        let quote = _mm_set1_epi8(b'"' as i8);
        let slash = _mm_set1_epi8(b'\\' as i8);
        let m_lo = _mm_movemask_epi8(_mm_or_si128(
            _mm_cmpeq_epi8(lo, quote),
            _mm_cmpeq_epi8(lo, slash),
        ));
        let m_hi = _mm_movemask_epi8(_mm_or_si128(
            _mm_cmpeq_epi8(hi, quote),
            _mm_cmpeq_epi8(hi, slash),
        ));
        (m_lo as u32 & 0xffff) | ((m_hi as u32 & 0xffff) << 16)
    }
}

/// Skips the body of a string that starts at `i` (just after its opening quote): 32-byte
/// blocks, one SSE2 compare pair + movemask each; escapes are handled inside the block mask,
/// so the escape-dense text of real outputs (`\n`, `\"`) costs a few cycles per escape.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn skip_string_simd(buf: &[u8], mut i: usize) -> Skip {
    loop {
        let Some(block) = buf.get(i..).and_then(<[u8]>::first_chunk::<32>) else {
            return skip_string_scalar(buf, i);
        };
        let mut m = stops32(block);
        loop {
            if m == 0 {
                i += 32;
                break;
            }
            let t = m.trailing_zeros() as usize;
            let at = i + t;
            if block.get(t) == Some(&b'"') {
                return Skip::Done(at + 1);
            }
            if at + 1 >= buf.len() {
                return Skip::More(at);
            }
            let next = t + 2;
            if next >= 32 {
                i += next;
                break;
            }
            m &= u32::MAX << next;
        }
    }
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
