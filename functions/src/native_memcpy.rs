//! The unit test of `native/memcpy.c` (the static musl build's `memcpy`), built here
//! under the name `flowforge_memcpy` and checked against the C library's copy.

extern "C" {
    fn flowforge_memcpy(
        dst: *mut std::ffi::c_void,
        src: *const std::ffi::c_void,
        n: usize,
    ) -> *mut std::ffi::c_void;
}

/// A buffer of recognisable bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Copies `n` bytes from `src[from..]` to `dst[to..]` and checks the copy and that nothing
/// around it changed.
fn check(n: usize, from: usize, to: usize) {
    let src = pattern(from + n + 64, 7);
    let mut dst = pattern(to + n + 64, 101);
    let mut expected = dst.clone();
    expected[to..to + n].copy_from_slice(&src[from..from + n]);
    // SAFETY: both ranges lie inside their buffers, which do not overlap.
    #[allow(unsafe_code)]
    let returned = unsafe {
        flowforge_memcpy(
            dst.as_mut_ptr().add(to).cast(),
            src.as_ptr().add(from).cast(),
            n,
        )
    };
    assert_eq!(returned.cast::<u8>(), dst[to..].as_mut_ptr(), "n={n}");
    assert!(dst == expected, "n={n} from={from} to={to}");
}

#[test]
fn every_length_and_alignment_copies_exactly_its_bytes() {
    for n in 0..=600 {
        for from in 0..8 {
            for to in [0, 1, 3, 8, 13] {
                check(n, from, to);
            }
        }
    }
    for n in [
        1023,
        1024,
        2047,
        2048,
        2049,
        4096 + 5,
        65_536,
        1 << 20,
        (1 << 20) + 3,
    ] {
        for (from, to) in [(0, 0), (1, 0), (0, 7), (5, 3)] {
            check(n, from, to);
        }
    }
}

#[test]
fn a_forward_copy_into_an_overlapping_lower_destination_is_right() {
    // memmove's forward case, which the musl build answers with this function.
    for n in (0..=300).chain([2047, 2048, 5000]) {
        for shift in [1, 2, 7, 16, 31, 33, 100] {
            let mut buffer = pattern(n + shift + 16, 3);
            let mut expected = buffer.clone();
            expected.copy_within(shift..shift + n, 0);
            // SAFETY: both ranges lie inside the buffer; the destination is below the source.
            #[allow(unsafe_code)]
            unsafe {
                let base = buffer.as_mut_ptr();
                flowforge_memcpy(base.cast(), base.add(shift).cast(), n);
            }
            assert!(buffer == expected, "n={n} shift={shift}");
        }
    }
}
