"""A captured Triton launch compiled for a GPUTarget with no GPU present, the way a real launch would
compile it (triton/runtime/jit.py JITFunction.run): the same binder turns the arguments into the
signature, constants and alignment attributes, the same options, then `triton.compile`; the PTX is
assembled again by the ptxas Triton picks for the architecture, with its flags, for `ptxas -v`.
"""
from __future__ import annotations

from dataclasses import dataclass

from .capture import Launch
from .toolchain import Resources, ToolError, assemble, summary


@dataclass(frozen=True)
class CompiledTriton:
    name: str
    constants: dict[str, object]  # constexpr name -> value
    launch_shared_bytes: int  # dynamic shared memory each launch requests
    resources: Resources


def specialization(launch: Launch, arch: int):
    """(target, signature, constexprs, attrs, options) of the launch on architecture `arch` (90: sm_90)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    kernel = launch.kernel
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, spec, options = binder(*launch.args, **launch.kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, launch.kwargs, bound, spec, options)
    return target, signature, constexprs, attrs, options


def constant_names(launch: Launch, constexprs: dict) -> dict[str, object]:
    names = launch.kernel.arg_names
    return {names[path[0]]: value for path, value in sorted(constexprs.items())}


def compile_launch(launch: Launch, arch: int) -> CompiledTriton:
    """Compile for sm_<arch>; ToolError with ptxas's or Triton's first line when it fails."""
    import triton
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    target, signature, constexprs, attrs, options = specialization(launch, arch)
    source = triton.compiler.ASTSource(launch.kernel, signature, constexprs, attrs)
    try:
        compiled = triton.compile(source, target=target, options=options.__dict__)
    except Exception as exc:  # any compiler error, from the front end to ptxas, is this kernel's result
        raise ToolError(summary(exc)) from None
    flags = ["--regAllocOptLevel=2"] + ([] if options.enable_fp_fusion else ["--fmad=false"])
    try:
        ptxas = get_ptxas(arch).path
    except RuntimeError as exc:  # Triton's knobs: the tool is neither at $TRITON_PTXAS_PATH nor bundled
        raise ToolError(str(exc)) from None
    resources = assemble(compiled.asm["ptx"], compiled.metadata.name, sm_arch_from_capability(arch), ptxas,
                         tuple(flags))
    return CompiledTriton(compiled.metadata.name, constant_names(launch, constexprs), compiled.metadata.shared,
                          resources)
