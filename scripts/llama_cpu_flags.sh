#!/bin/sh
# The cmake flags for llama.cpp's CPU kernels, from the instruction sets this CPU reports (/proc/cpuinfo), and a
# short tag naming them (`--tag`): the llama-cpp-python wheel is built with these and cached per tag.
# Explicit flags rather than GGML_NATIVE=ON: -march=native also emits instructions (AMX tiles) that some VMs list
# in cpuinfo but do not allow, and the binary dies with SIGILL (seen on this project's CI machines). AVX-512 with
# VNNI roughly doubles llama.cpp's prompt (compute-bound) throughput over the AVX2 kernels on those machines
# (bench/bench_llm.py).
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { case "$flags" in *" $1 "*) return 0 ;; esac; return 1; }
onoff() { if has "$1"; then echo ON; else echo OFF; fi; }
args="-DGGML_NATIVE=OFF"
tag=generic
if has avx2 && has fma && has f16c; then
  args="$args -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=$(onoff bmi2) -DGGML_AVX_VNNI=$(onoff avx_vnni)"
  tag=avx2
  if has avx512f && has avx512bw && has avx512vl && has avx512dq && has avx512cd; then
    args="$args -DGGML_AVX512=ON -DGGML_AVX512_VNNI=$(onoff avx512_vnni) -DGGML_AVX512_VBMI=$(onoff avx512vbmi) -DGGML_AVX512_BF16=$(onoff avx512_bf16)"
    tag=avx512
    has avx512_vnni && tag="$tag-vnni"
  fi
elif grep -q '^flags' /proc/cpuinfo 2>/dev/null; then  # an x86 CPU without AVX2: plain SSE kernels
  args="$args -DGGML_AVX=$(onoff avx) -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF"
  tag=sse
fi
if [ "$1" = "--tag" ]; then echo "$tag"; else echo "$args"; fi
