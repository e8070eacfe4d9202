// Peak arithmetic rate of one core from registers only, the ceiling the CPU kernels are
// measured against: AVX2 f32 FMA on every x86-64 host, and where the compiler is told the CPU
// has them, AVX-512 f32 FMA and the AVX512-BF16 dot product (`vdpbf16ps`).
//
//     gcc -O2 -mavx2 -mfma -o /tmp/cpu_peak tests/bench/cpu_peak.c && /tmp/cpu_peak
//     gcc -O2 -mavx2 -mfma -mavx512f -mavx512bf16 -o /tmp/cpu_peak tests/bench/cpu_peak.c
//
// Run two at once (`/tmp/cpu_peak & /tmp/cpu_peak; wait`) to check that the vCPUs are separate
// cores. Twelve independent accumulators hide the instructions' latency.
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double since(struct timespec t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
}

int main() {
  const long iters = 200000000;
  struct timespec t0;
  float sum = 0;
  {
    __m256 a[12];
    __m256 x = _mm256_set1_ps(1.0001f), y = _mm256_set1_ps(0.9999f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(i);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long n = 0; n < iters; n++) {
#pragma GCC unroll 12
      for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], x, y);
    }
    double s = since(t0);
    float lanes[8];
    for (int i = 0; i < 12; i++) {
      _mm256_storeu_ps(lanes, a[i]);
      for (int l = 0; l < 8; l++) sum += lanes[l];
    }
    printf("%.1f GFLOP/s AVX2 f32 FMA (sum %g)\n", iters * 12.0 * 16 / s / 1e9, sum);
  }
#ifdef __AVX512F__
  {
    __m512 a[12];
    __m512 x = _mm512_set1_ps(1.0001f), y = _mm512_set1_ps(0.9999f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(i);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long n = 0; n < iters; n++) {
#pragma GCC unroll 12
      for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
    }
    double s = since(t0);
    sum = 0;
    for (int i = 0; i < 12; i++) sum += _mm512_reduce_add_ps(a[i]);
    printf("%.1f GFLOP/s AVX-512 f32 FMA (sum %g)\n", iters * 12.0 * 32 / s / 1e9, sum);
#ifdef __AVX512BF16__
    __m512bh bx = (__m512bh)_mm512_set1_epi16(0x3f80), by = (__m512bh)_mm512_set1_epi16(0x3f80);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long n = 0; n < iters; n++) {
#pragma GCC unroll 12
      for (int i = 0; i < 12; i++) a[i] = _mm512_dpbf16_ps(a[i], bx, by);
    }
    s = since(t0);
    sum = 0;
    for (int i = 0; i < 12; i++) sum += _mm512_reduce_add_ps(a[i]);
    printf("%.1f GFLOP/s bf16 dot (sum %g)\n", iters * 12.0 * 64 / s / 1e9, sum);
#endif
  }
#endif
  return 0;
}
