"""@ga.elementwise: trace scalar Python into an expression graph, derive VJP/JVP on that graph, and
generate fused kernels for NumPy (reference), Numba (CPU) and CUDA.

Contract with backends (each backend's array namespace `xp` provides the hook):

    xp.pointwise(program, *arrays) -> array | tuple[array, ...]

evaluates a `Program` elementwise with NumPy broadcasting and dtype promotion (float16 computes in
float32); a program with several outputs returns a tuple. Optionally,

    xp.pointwise_kernel(program) -> callable(*arrays)

gives the same evaluation as one callable made once per program (`Program.kernel_for` keeps it per
backend; without the hook it binds `xp.pointwise` to the program). Op forwards call only these hooks,
so they stay backend-agnostic. A `Program` exposes:

- `key`: a stable, hashable canonical text of the expression (equal programs have equal keys, in
  every process); `digest` is a short hash of it, safe in identifiers and file names.
- `n_inputs`, `n_outputs`, `name`.
- `cuda_spec(in_dtypes) -> dict(in_params=, out_params=, operation=, name=, preamble=)`: exactly
  cupy.ElementwiseKernel's constructor arguments for inputs of those dtypes (all inputs broadcast
  by CuPy; outputs named o0, o1, ...). Cache the kernel per (program.key, in_dtypes).
- `cuda_source(in_dtypes) -> str`: a standalone CUDA C translation unit with one
  `extern "C" __global__` kernel over flat, same-length arrays (for nvcc compile checks).

The CPU backend's hook is `host.pointwise`. Compiled CPU kernels are cached in memory and on disk
(`cache.py`, directory `$GPUAD_CACHE_DIR` or ~/.cache/gpuad).
"""
