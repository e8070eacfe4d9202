//! Decode-shaped products (one token, 2048 × 2048 bf16 weights, 768 MiB in all, so every
//! byte comes from memory) over weights held three ways: read in place from a mapped file
//! (the page cache), copied into ordinary memory, and copied into memory advised to use
//! 2 MiB pages; beside a plain read of the same bytes. Interleaved rounds, mean GB/s. A
//! benchmark, not a test.
//!
//!     cargo run --release -p moescope-engine --example stream_probe -- FILE_OF_768_MIB_OR_MORE

use std::collections::BTreeMap;
use std::time::Instant;

use half::bf16;
use moescope_engine::kernels::{matmul_t, DenseMatrix};
use rayon::prelude::*;

const K: usize = 2048;
const M: usize = 2048;
const COUNT: usize = 96;

fn main() {
    let Some(file) = std::env::args().nth(1) else {
        eprintln!(
            "usage: stream_probe FILE (any file of 768 MiB or more, e.g. a checkpoint shard)"
        );
        std::process::exit(2);
    };
    let per = K * M;
    let total = per * COUNT;
    let f = std::fs::File::open(&file).expect("open the file");
    // SAFETY: the file is only read, and not changed while mapped (a benchmark's input).
    let map = unsafe { memmap2::Mmap::map(&f) }.expect("map the file");
    assert!(map.len() >= 2 * total, "the file must hold 768 MiB");
    let mapped: &[bf16] = unsafe { std::slice::from_raw_parts(map.as_ptr().cast(), total) };
    let copy = |huge: bool| -> Vec<bf16> {
        let mut w = Vec::<bf16>::with_capacity(total);
        if huge {
            let p = w.as_mut_ptr() as usize;
            let (start, end) = (
                p.next_multiple_of(2 << 20),
                (p + total * 2) / (2 << 20) * (2 << 20),
            );
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
        w.extend_from_slice(mapped);
        w
    };
    let (plain, huge) = (copy(false), copy(true));
    let held: [(&str, &[bf16]); 3] = [
        ("mapped file", mapped),
        ("4 KiB pages", &plain),
        ("2 MiB pages", &huge),
    ];
    let x: Vec<f32> = (0..K).map(|i| (i % 7) as f32 / 7.0).collect();
    let mut out = vec![0f32; M];
    let mut sums = BTreeMap::<String, (f64, usize)>::new();
    let mut add = |name: String, seconds: f64| {
        let e = sums.entry(name).or_default();
        e.0 += (total * 2) as f64 / seconds / 1e9;
        e.1 += 1;
    };
    for _round in 0..10 {
        for (name, w) in held {
            let start = Instant::now();
            for e in 0..COUNT {
                matmul_t(
                    &x,
                    1,
                    K,
                    DenseMatrix::Bf16(&w[e * per..(e + 1) * per]).into(),
                    M,
                    &mut out,
                );
            }
            add(format!("{name}: products"), start.elapsed().as_secs_f64());
            let words: &[u64] = unsafe { std::slice::from_raw_parts(w.as_ptr().cast(), total / 4) };
            let start = Instant::now();
            let t = words
                .par_chunks(1 << 16)
                .map(|c| c.iter().fold(0, |a, &b| a ^ b))
                .reduce(|| 0, |a, b| a ^ b);
            std::hint::black_box(t);
            add(format!("{name}: plain read"), start.elapsed().as_secs_f64());
        }
    }
    println!("{} threads", rayon::current_num_threads());
    for (name, (s, n)) in sums {
        println!("{name:<28} {:>6.1} GB/s", s / n as f64);
    }
}
