//! Weight buffers in cpu memory that the operating system is asked to back with 2 MiB pages.
//!
//! Decode reads every weight byte once a token, as a stream. With 4 KiB pages that stream
//! crosses a page, and misses the TLB, every 4 KiB; with 2 MiB pages it runs measurably
//! closer to the machine's read bandwidth (`examples/stream_probe.rs` compares the two, and
//! BENCHMARKS.md has the numbers). On Linux the buffers are marked `MADV_HUGEPAGE` before
//! they are first written, which is what transparent huge pages in `madvise` mode wait for;
//! elsewhere, or with `MOESCOPE_HUGEPAGES=0`, they are ordinary allocations.

use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};

use crate::error::{EngineError, Result};

/// One huge page.
const HUGE_PAGE: usize = 2 << 20;

/// A cpu tensor of `dtype` and `shape` holding `parts` (raw little-endian values, as
/// safetensors stores them) one after another, copied once into a buffer advised to use huge
/// pages. `what` names the tensor for the error when the byte count does not fit the shape.
pub fn tensor_from_parts(
    parts: &[&[u8]],
    dtype: DType,
    shape: &[usize],
    what: &str,
) -> Result<Tensor> {
    let bytes: usize = parts.iter().map(|p| p.len()).sum();
    let want = shape.iter().product::<usize>() * dtype.size_in_bytes();
    if bytes != want {
        return Err(EngineError::InvalidInput(format!(
            "{what}: {bytes} bytes stored, but {shape:?} {dtype:?} takes {want}; the checkpoint \
             is damaged"
        )));
    }
    let device = &Device::Cpu;
    Ok(match dtype {
        DType::BF16 => Tensor::from_vec(filled::<bf16>(parts), shape, device)?,
        DType::F16 => Tensor::from_vec(filled::<f16>(parts), shape, device)?,
        DType::F32 => Tensor::from_vec(filled::<f32>(parts), shape, device)?,
        DType::U8 => Tensor::from_vec(filled::<u8>(parts), shape, device)?,
        _ => Tensor::from_raw_buffer(&parts.concat(), dtype, shape, device)?,
    })
}

/// Plain values whose every bit pattern is valid, so raw bytes may be copied into them.
trait PlainValue: Copy {}
impl PlainValue for bf16 {}
impl PlainValue for f16 {}
impl PlainValue for f32 {}
impl PlainValue for u8 {}

/// A vector of `T` holding the bytes of `parts` in order (their total a multiple of `T`'s size,
/// checked by the caller), in memory advised to use huge pages.
fn filled<T: PlainValue>(parts: &[&[u8]]) -> Vec<T> {
    let bytes: usize = parts.iter().map(|p| p.len()).sum();
    let len = bytes / std::mem::size_of::<T>();
    let mut values = Vec::<T>::with_capacity(len);
    let dst = values.as_mut_ptr().cast::<u8>();
    advise_huge_pages(dst, len * std::mem::size_of::<T>());
    let mut at = 0;
    for part in parts {
        let n = part.len().min(len * std::mem::size_of::<T>() - at);
        // SAFETY: `dst` has room for `len` values, and `at + n` never passes their bytes.
        unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), dst.add(at), n) };
        at += n;
    }
    // SAFETY: every byte of the first `len` values was written above (the parts' total is
    // `len` values exactly), and any bit pattern is a valid `T`.
    unsafe { values.set_len(len) };
    values
}

/// Asks the kernel to back the whole 2 MiB pages inside `len` bytes at `ptr` with huge pages.
/// Advice only: nothing changes where the kernel declines.
fn advise_huge_pages(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        if len < 2 * HUGE_PAGE || !enabled() {
            return;
        }
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize + len) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: the range lies inside an allocation this process owns; MADV_HUGEPAGE
            // changes how it is backed, never its contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len, HUGE_PAGE);
}

/// Whether huge pages are asked for (`MOESCOPE_HUGEPAGES=0` turns them off, for comparison).
#[cfg(target_os = "linux")]
fn enabled() -> bool {
    std::env::var("MOESCOPE_HUGEPAGES").map_or(true, |v| v != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_joined_in_order_in_every_dtype() {
        let a = [bf16::from_f32(1.5), bf16::from_f32(-2.0)];
        let b = [bf16::from_f32(3.25)];
        let raw = |v: &[bf16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let t = tensor_from_parts(&[&raw(&a), &raw(&b)], DType::BF16, &[3], "t").unwrap();
        let got: Vec<f32> = t.to_dtype(DType::F32).unwrap().to_vec1().unwrap();
        assert_eq!(got, [1.5, -2.0, 3.25]);

        let f: Vec<u8> = [0.5f32, 7.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = tensor_from_parts(&[&f[..4], &f[4..]], DType::F32, &[1, 2], "t").unwrap();
        assert_eq!(t.to_vec2::<f32>().unwrap(), [[0.5, 7.0]]);

        let t = tensor_from_parts(&[&[1, 2], &[3]], DType::U8, &[3], "t").unwrap();
        assert_eq!(t.to_vec1::<u8>().unwrap(), [1, 2, 3]);
    }

    #[test]
    fn a_byte_count_that_does_not_fit_the_shape_is_an_error() {
        let err = tensor_from_parts(&[&[0; 5]], DType::BF16, &[3], "model.w").unwrap_err();
        assert!(err.to_string().contains("model.w: 5 bytes stored"), "{err}");
    }

    #[test]
    fn large_buffers_hold_their_values() {
        // Large enough to be advised (several huge pages), with a pattern to check.
        let n = 3 * HUGE_PAGE / 2 + 7;
        let raw: Vec<u8> = (0..2 * n).map(|i| (i % 251) as u8).collect();
        let t = tensor_from_parts(&[&raw[..1001], &raw[1001..]], DType::F16, &[n], "t").unwrap();
        let back: Vec<u8> = t
            .to_vec1::<f16>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(back, raw);
    }
}
