//! Throughput of the reduced-precision matrix products on every kernel path this CPU has, for
//! the shapes a real-size MoE model runs: decode (one token) is bound by memory bandwidth,
//! prefill (many tokens) by arithmetic. A benchmark, not a test.
//!
//!     cargo run --release -p moescope-engine --example kernel_bench [-- N K M]

use std::time::Instant;

use half::bf16;
use moescope_engine::kernels::{matmul_t_on, HalfMatrix, KernelPath};

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
        "{:>5} {:>6} {:>6} {:>11} {:>9} {:>9} {:>9}",
        "n", "k", "m", "path", "ms", "GFLOP/s", "GB/s W"
    );
    for (n, k, m) in shapes {
        let x: Vec<f32> = (0..n * k)
            .map(|i| ((i % 97) as f32 - 48.0) / 64.0)
            .collect();
        let w: Vec<bf16> = (0..m * k)
            .map(|i| bf16::from_f32(((i % 89) as f32 - 44.0) / 128.0))
            .collect();
        let mut out = vec![0f32; n * m];
        for path in KernelPath::ALL.into_iter().filter(|p| p.supported()) {
            let run = |out: &mut [f32]| matmul_t_on(path, &x, n, k, HalfMatrix::Bf16(&w), m, out);
            run(&mut out);
            let reps = (2e10 / (2.0 * (n * k * m) as f64)).clamp(10.0, 2000.0) as usize;
            let start = Instant::now();
            for _ in 0..reps {
                run(&mut out);
            }
            let s = start.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{n:>5} {k:>6} {m:>6} {:>11} {:>9.3} {:>9.1} {:>9.1}",
                path.name(),
                s * 1e3,
                2.0 * (n * k * m) as f64 / s / 1e9,
                (m * k * 2) as f64 / s / 1e9
            );
        }
    }
}
