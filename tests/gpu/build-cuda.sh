#!/usr/bin/env bash
# Builds `moescope` with the `cuda` feature on a machine without a GPU or a CUDA install, for
# the GPU machine to run. Gets nvcc, the CUDA headers and the libraries to link against from
# PyPI wheels (pinned to CUDA 13.0: candle's kernels are compiled to PTX, and a driver accepts
# PTX only from its own CUDA version or older), and builds for sm_90 (H100/H200).
#
#   bash tests/gpu/build-cuda.sh    # → .gpu-carry/: moescope and the parity tests, xz-packed
#
# .gpu-carry/ is what a `device` call carries (the working tree plus it must stay under
# 64 MiB); tests/gpu/run-on-device.sh unpacks and runs it there.
# Environment: CUDA_ENV (where the toolchain goes; default ~/.cache/moescope-cuda13),
# CUDA_COMPUTE_CAP (default 90). Needs python3 with venv and network access to PyPI once.
set -euo pipefail
cd "$(dirname "$0")/../.."

CUDA_ENV=${CUDA_ENV:-$HOME/.cache/moescope-cuda13}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

if [ ! -x "$CUDA_ENV/bin/pip" ]; then
  python3 -m venv "$CUDA_ENV"
fi
site=$("$CUDA_ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
toolkit="$site/nvidia/cu13"
if [ ! -d "$toolkit/include/cccl" ]; then
  "$CUDA_ENV/bin/pip" install -q \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 \
    nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
fi

# The linker wants unversioned names (libcublas.so) and a libcuda.so; the wheels ship only
# versioned runtime libraries and no driver. Link against a stub driver library that exports
# the driver API's names (the real libcuda.so.1 of the GPU machine's driver is loaded at run
# time), as the CUDA toolkit's own lib64/stubs does.
linkdir="$CUDA_ENV/link/lib64"
mkdir -p "$linkdir"
for lib in cublas cublasLt curand nvrtc cudart; do
  versioned=$(ls "$toolkit/lib/lib$lib.so."* | grep -E "lib$lib\.so\.[0-9]+$" | head -n1)
  ln -sf "$versioned" "$linkdir/lib$lib.so"
done
if [ ! -f "$linkdir/libcuda.so" ]; then
  cudarc=$(cargo metadata --format-version 1 --features cuda 2>/dev/null |
    python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc" and p["version"].startswith("0.19")))')
  names=$(grep -oE "pub (unsafe )?fn cu[A-Za-z0-9_]+" "$(dirname "$cudarc")/src/driver/sys/mod.rs" |
    awk '{print $NF}' | sort -u)
  stub_c="$CUDA_ENV/link/cuda_stub.c"
  for n in $names; do echo "void $n(void) {}"; done >"$stub_c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$linkdir/libcuda.so" "$stub_c"
fi

export PATH="$toolkit/bin:$PATH"
export CUDA_ROOT="$CUDA_ENV/link"
# bindgen_cuda (candle's kernels) looks for the headers under CUDA_ROOT/include.
ln -sfn "$toolkit/include" "$CUDA_ENV/link/include"
nvcc --version | tail -n 2
cargo build --release --locked --no-default-features --features cuda --bin moescope
tests=$(cargo test --release --locked --no-default-features --features cuda --no-run --test parity --test parity_bf16 \
  --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])')
rm -rf .gpu-carry && mkdir -p .gpu-carry
cp target/release/moescope .gpu-carry/moescope
echo "$tests" | while read -r name exe; do cp "$exe" ".gpu-carry/$name"; done
strip .gpu-carry/*
xz -T0 -6 .gpu-carry/*
ls -l .gpu-carry
