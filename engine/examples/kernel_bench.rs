//! Throughput of the reduced-precision matrix products on every kernel path this CPU has, for
//! the shapes a real-size MoE model runs: decode (one token) is bound by memory bandwidth,
//! prefill (many tokens) by arithmetic. bf16 weights on every path, and FP8 e4m3 weights with
//! 128-column block scales on the detected path. A benchmark, not a test.
//!
//!     cargo run --release -p moescope-engine --example kernel_bench [-- N K M]

use std::time::Instant;

use half::bf16;
use moescope_engine::kernels::{matmul_t_on, DenseMatrix, Fp8Matrix, KernelPath, WeightMatrix};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let shapes: Vec<(usize, usize, usize)> = if args.len() == 3 {
        vec![(args[0], args[1], args[2])]
    } else {
        // Decode of an OLMoE-shaped expert (gate+up) and LM head; prefill-sized expert batches.
        vec![
            (1, 2048, 2048),
            (1, 2048, 50304),
            (8, 2048, 2048),
            (16, 2048, 2048),
            (128, 2048, 2048),
            (512, 2048, 2048),
        ]
    };
    println!(
        "{} threads; paths: {}",
        rayon::current_num_threads(),
        KernelPath::ALL
            .iter()
            .filter(|p| p.supported())
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:>5} {:>6} {:>6} {:>11} {:>5} {:>9} {:>9} {:>9}",
        "n", "k", "m", "path", "W", "ms", "GFLOP/s", "GB/s W"
    );
    for (n, k, m) in shapes {
        let x: Vec<f32> = (0..n * k)
            .map(|i| ((i % 97) as f32 - 48.0) / 64.0)
            .collect();
        let w: Vec<bf16> = (0..m * k)
            .map(|i| bf16::from_f32(((i % 89) as f32 - 44.0) / 128.0))
            .collect();
        let w8: Vec<u8> = (0..m * k).map(|i| (i * 37 % 126) as u8).collect();
        let s8: Vec<f32> = vec![1e-3; m * k.div_ceil(128)];
        let fp8 = WeightMatrix::from(Fp8Matrix {
            values: &w8,
            scales: &s8,
            block: 128,
        });
        let mut out = vec![0f32; n * m];
        let mut runs: Vec<(KernelPath, &str, WeightMatrix, usize)> = KernelPath::ALL
            .into_iter()
            .filter(|p| p.supported())
            .map(|p| (p, "bf16", DenseMatrix::Bf16(&w).into(), 2))
            .collect();
        runs.push((KernelPath::detect(), "fp8", fp8, 1));
        for (path, format, matrix, bytes) in runs {
            let run = |out: &mut [f32]| matmul_t_on(path, &x, n, k, matrix, m, out);
            run(&mut out);
            let reps = (2e10 / (2.0 * (n * k * m) as f64)).clamp(10.0, 2000.0) as usize;
            let start = Instant::now();
            for _ in 0..reps {
                run(&mut out);
            }
            let s = start.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{n:>5} {k:>6} {m:>6} {:>11} {:>5} {:>9.3} {:>9.1} {:>9.1}",
                path.name(),
                format,
                s * 1e3,
                2.0 * (n * k * m) as f64 / s / 1e9,
                (m * k * bytes) as f64 / s / 1e9
            );
        }
    }
}
