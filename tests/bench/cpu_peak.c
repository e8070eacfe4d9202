// Peak arithmetic rate of one core for AVX-512 f32 FMA and the AVX512-BF16 dot product
// (`vdpbf16ps`), from registers only: the ceiling the CPU kernels are measured against.
//
//     gcc -O2 -mavx512f -mavx512bf16 -o /tmp/cpu_peak tests/bench/cpu_peak.c && /tmp/cpu_peak
//
// Run two at once (`/tmp/cpu_peak & /tmp/cpu_peak; wait`) to check that the vCPUs are separate
// cores. Twelve independent accumulators hide the instructions' latency.
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
int main(){
  __m512 a[12]; __m512 x=_mm512_set1_ps(1.0001f), y=_mm512_set1_ps(0.9999f);
  for(int i=0;i<12;i++) a[i]=_mm512_set1_ps(i);
  struct timespec t0,t1; clock_gettime(CLOCK_MONOTONIC,&t0);
  long iters=200000000;
  for(long n=0;n<iters;n++){
    #pragma GCC unroll 12
    for(int i=0;i<12;i++) a[i]=_mm512_fmadd_ps(a[i],x,y);
  }
  clock_gettime(CLOCK_MONOTONIC,&t1);
  double s=(t1.tv_sec-t0.tv_sec)+(t1.tv_nsec-t0.tv_nsec)*1e-9;
  float sum=0; for(int i=0;i<12;i++) sum+=_mm512_reduce_add_ps(a[i]);
  printf("%.1f GFLOP/s (sum %g)\n", iters*12.0*32/s/1e9, sum);
  // bf16 dot
  __m512bh bx=(__m512bh)_mm512_set1_epi16(0x3f80), by=(__m512bh)_mm512_set1_epi16(0x3f80);
  clock_gettime(CLOCK_MONOTONIC,&t0);
  for(long n=0;n<iters;n++){
    #pragma GCC unroll 12
    for(int i=0;i<12;i++) a[i]=_mm512_dpbf16_ps(a[i],bx,by);
  }
  clock_gettime(CLOCK_MONOTONIC,&t1);
  s=(t1.tv_sec-t0.tv_sec)+(t1.tv_nsec-t0.tv_nsec)*1e-9;
  sum=0; for(int i=0;i<12;i++) sum+=_mm512_reduce_add_ps(a[i]);
  printf("%.1f GFLOP/s bf16 dot (sum %g)\n", iters*12.0*64/s/1e9, sum);
}
