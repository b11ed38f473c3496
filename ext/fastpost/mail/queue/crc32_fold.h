/* zlib's CRC-32 of one buffer, folded 64 bytes at a time with carry-less multiplies.
 *
 * Used by _qframe_c.message_frame for a frame's payload (docs/accept.md, "Session 12:
 * cleanup's END pass"). The result is exactly zlib's crc32(crc, buf, len): the CRC's
 * polynomial arithmetic is linear, so 16-byte blocks of the message can be folded
 * forward (block(x) * x^D mod P, computed as two 64x32-bit carry-less products of its
 * halves with the constants x^(D+32) and x^(D-32) mod P, bit-reflected) and XORed into
 * the block D bits later without changing the remainder; the last 16-byte block that
 * is left, and the bytes after it, then go through zlib's crc32. The constants are
 * checked by tests/unit/mail/queue/test_commitrec.py. Without PCLMULQDQ (checked once at run
 * time), or for fewer than 64 bytes, the whole buffer goes through zlib.
 * Fails: never (no allocation, no error).
 */
#ifndef FASTPOST_CRC32_FOLD_H
#define FASTPOST_CRC32_FOLD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* x^(512+32), x^(512-32), x^(128+32), x^(128-32) mod P, bit-reflected, shifted left by one */
#define FP_K512_LO 0x154442bd4ULL
#define FP_K512_HI 0x1c6e41596ULL
#define FP_K128_LO 0x1751997d0ULL
#define FP_K128_HI 0x0ccaa009eULL

__attribute__((target("pclmul,sse2")))
static inline __m128i fp_fold16(__m128i acc, __m128i k, __m128i next)
{
    __m128i lo = _mm_clmulepi64_si128(acc, k, 0x00);  /* acc's first 8 bytes x k's low */
    __m128i hi = _mm_clmulepi64_si128(acc, k, 0x11);  /* acc's last 8 bytes x k's high */
    return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

__attribute__((target("pclmul,sse2")))
static uint32_t fp_crc32_fold(uint32_t crc, const unsigned char *buf, size_t len)
{
    /* len >= 64 */
    __m128i k512 = _mm_set_epi64x((long long)FP_K512_HI, (long long)FP_K512_LO);
    __m128i k128 = _mm_set_epi64x((long long)FP_K128_HI, (long long)FP_K128_LO);
    __m128i a0 = _mm_loadu_si128((const __m128i *)buf);
    __m128i a1 = _mm_loadu_si128((const __m128i *)(buf + 16));
    __m128i a2 = _mm_loadu_si128((const __m128i *)(buf + 32));
    __m128i a3 = _mm_loadu_si128((const __m128i *)(buf + 48));
    unsigned char last[16];
    /* zlib's register starts at ~crc: XORed into the first four bytes (little-endian,
       the reflected order), the register can start at zero */
    a0 = _mm_xor_si128(a0, _mm_cvtsi32_si128((int)~crc));
    buf += 64;
    len -= 64;
    while (len >= 64) {
        a0 = fp_fold16(a0, k512, _mm_loadu_si128((const __m128i *)buf));
        a1 = fp_fold16(a1, k512, _mm_loadu_si128((const __m128i *)(buf + 16)));
        a2 = fp_fold16(a2, k512, _mm_loadu_si128((const __m128i *)(buf + 32)));
        a3 = fp_fold16(a3, k512, _mm_loadu_si128((const __m128i *)(buf + 48)));
        buf += 64;
        len -= 64;
    }
    a0 = fp_fold16(a0, k128, a1);
    a0 = fp_fold16(a0, k128, a2);
    a0 = fp_fold16(a0, k128, a3);
    while (len >= 16) {
        a0 = fp_fold16(a0, k128, _mm_loadu_si128((const __m128i *)buf));
        buf += 16;
        len -= 16;
    }
    /* the register from zero over a0's 16 bytes equals it over everything folded so
       far: zlib's crc32 with crc = ~0 starts its register at zero */
    _mm_storeu_si128((__m128i *)last, a0);
    crc = (uint32_t)crc32(0xFFFFFFFFUL, last, 16);
    if (len)
        crc = (uint32_t)crc32(crc, buf, (unsigned int)len);
    return crc;
}

static int fp_have_pclmul = -1;

static inline unsigned long fp_crc32(unsigned long crc, const unsigned char *buf, size_t len)
{
    if (len >= 64) {
        if (fp_have_pclmul < 0) {
            __builtin_cpu_init();
            fp_have_pclmul = __builtin_cpu_supports("pclmul") ? 1 : 0;
        }
        if (fp_have_pclmul)
            return fp_crc32_fold((uint32_t)crc, buf, len);
    }
    return crc32(crc, buf, (unsigned int)len);
}

#else

static inline unsigned long fp_crc32(unsigned long crc, const unsigned char *buf, size_t len)
{
    return crc32(crc, buf, (unsigned int)len);
}

#endif
#endif
