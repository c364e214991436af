/*
 * memcpy for the static musl build (functions/build.rs links it there only).
 *
 * musl's x86_64 memcpy starts `rep movsq` on every call and moves the odd bytes one
 * `movsb` at a time: some 40-80 cycles however small the copy. polars copies short
 * strings one call each (13.3 million calls in a medallion run on the full flights file,
 * 9.1 million of them 16 bytes or less), which made memcpy about a fifth of the
 * pipeline's CPU time. Here a short copy is two overlapping loads and stores of the
 * widest fitting size, a middling one a loop of 32-byte blocks, and a long one `rep movsb`
 * (fast strings on every x86_64 this runs on).
 *
 * FLOWFORGE_MEMCPY names the function: `memcpy` in the musl build, another name where the
 * unit test (functions/src/native_memcpy.rs) checks it against the C library's. Built
 * with -fno-builtin and -fno-tree-loop-distribute-patterns so the compiler does not turn
 * the loop back into a call to memcpy.
 */
#include <stddef.h>
#include <stdint.h>

#ifndef FLOWFORGE_MEMCPY
#define FLOWFORGE_MEMCPY flowforge_memcpy
#endif

typedef uint16_t u16u __attribute__((aligned(1), may_alias));
typedef uint32_t u32u __attribute__((aligned(1), may_alias));
typedef uint64_t u64u __attribute__((aligned(1), may_alias));

/* 16 bytes through one SSE register (every x86_64 has SSE2). */
typedef long long v16u __attribute__((vector_size(16), aligned(1), may_alias));

/* No `restrict`: the musl build also answers musl's `__memcpy_fwd` with this function,
 * which memmove calls for overlapping regions whose destination lies before the source.
 * Every path is right for that case as written: each path loads before it stores what
 * it loaded, and the block loop only stores below the source bytes it has yet to read. */
void *FLOWFORGE_MEMCPY(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	if (n <= 16) {
		if (n >= 8) {
			uint64_t head = *(const u64u *)s, tail = *(const u64u *)(s + n - 8);
			*(u64u *)d = head;
			*(u64u *)(d + n - 8) = tail;
		} else if (n >= 4) {
			uint32_t head = *(const u32u *)s, tail = *(const u32u *)(s + n - 4);
			*(u32u *)d = head;
			*(u32u *)(d + n - 4) = tail;
		} else if (n >= 2) {
			uint16_t head = *(const u16u *)s, tail = *(const u16u *)(s + n - 2);
			*(u16u *)d = head;
			*(u16u *)(d + n - 2) = tail;
		} else if (n == 1) {
			*d = *s;
		}
		return dst;
	}
	if (n <= 32) {
		v16u head = *(const v16u *)s, tail = *(const v16u *)(s + n - 16);
		*(v16u *)d = head;
		*(v16u *)(d + n - 16) = tail;
		return dst;
	}
	if (n < 2048) {
		/* The last 32 bytes are loaded first and stored after the whole blocks from
		 * the start (which may cover some of them). */
		v16u last0 = *(const v16u *)(s + n - 32), last1 = *(const v16u *)(s + n - 16);
		size_t blocks = (n - 1) / 32;
		for (size_t i = 0; i < blocks; i++) {
			v16u a = *(const v16u *)(s + 32 * i), b = *(const v16u *)(s + 32 * i + 16);
			*(v16u *)(d + 32 * i) = a;
			*(v16u *)(d + 32 * i + 16) = b;
		}
		*(v16u *)(d + n - 32) = last0;
		*(v16u *)(d + n - 16) = last1;
		return dst;
	}
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return dst;
}

#ifdef FLOWFORGE_MEMCPY_FWD
/* musl's x86_64 memmove jumps to `__memcpy_fwd` (defined beside its memcpy) for a
 * forward copy; defining it here keeps musl's memcpy object, and a second memcpy, out of
 * the link. */
void *__memcpy_fwd(void *dst, const void *src, size_t n) __attribute__((alias("memcpy")));
#endif
