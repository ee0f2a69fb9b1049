"""llama.cpp's k-quant mixes q4_k_m, q5_k_m and q3_k_m as weights specs for a given model.

A mix gives every tensor llama-quantize's type for it: the mix's base type, a higher type for some
roles in some layers, and, where a tensor's rows (its input dimension) are not a multiple of 256, the
fallback type for that (k-quants need whole super-blocks). The rules are those of
src/llama-quant.cpp (`llama_tensor_get_type_impl`, `tensor_type_fallback`) of llama.cpp 0c1e570,
the version llama-cpp-python 0.3.36 bundles (ggml 0.25.3), without an importance matrix, for a
Llama-architecture model (not Falcon, no experts, not a 70B):

    mix      base   attn_v (v)                        ffn_down (down)                   attn_output (o)  output
    q4_k_m   q4_k   q6_k in use_more_bits layers      q6_k in use_more_bits layers      base             q6_k
    q5_k_m   q5_k   q6_k in use_more_bits layers      q6_k in use_more_bits layers      base             q6_k
    q3_k_m   q3_k   q5_k in layers 0-1, else q4_k     q5_k in layers < n/16, else q4_k  q4_k             q6_k

use_more_bits(i, n): i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2 (integer division). The output
projection takes q8_0 instead of q6_k where its rows are not a multiple of 256; a model with tied
embeddings (SmolLM2) stores the one tensor with the output's type, an untied one its token
embeddings with the base type. Fallbacks: q2_k, q3_k -> q4_0; q4_k -> q5_0; q5_k -> q5_1; q6_k ->
q8_0; f16 where even those do not fit. On SmolLM2-135M (width 576) only ffn_down (1536) keeps a
k-quant: q4_k_m is mostly q5_0, with q8_0 for v in the use_more_bits layers and the embeddings.

`split_mix("q4_k_m,down@0=q8_0")` -> ("q4_k_m", "down@0=q8_0"): a spec may start with a mix and go
on with items of its own, which win. `mix_spec(mix, config)` is the mix as items for that model.
"""
from __future__ import annotations

SUPER_BLOCK = 256
FALLBACK = {"q2_k": "q4_0", "q3_k": "q4_0", "q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}
MIXES = {"q4_k_m": "q4_k", "q5_k_m": "q5_k", "q3_k_m": "q3_k"}


def split_mix(text: str) -> tuple[str | None, str]:
    """(the mix the spec starts with, or None; the rest of the spec)."""
    if not isinstance(text, str):
        return None, text
    first, _, rest = text.strip().partition(",")
    if first.strip() in MIXES:
        return first.strip(), rest.strip()
    return None, text


def use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def layer_types(mix: str, role: str, n_layers: int) -> list[str]:
    """The type llama.cpp picks for a per-layer role in each layer, before the fallback."""
    base = MIXES[mix]
    if role == "v":
        if mix == "q3_k_m":
            return ["q5_k" if i < 2 else "q4_k" for i in range(n_layers)]
        return ["q6_k" if use_more_bits(i, n_layers) else base for i in range(n_layers)]
    if role == "down":
        if mix == "q3_k_m":
            return ["q5_k" if i < n_layers // 16 else "q4_k" for i in range(n_layers)]
        return ["q6_k" if use_more_bits(i, n_layers) else base for i in range(n_layers)]
    if role == "o" and mix == "q3_k_m":
        return ["q4_k"] * n_layers
    return [base] * n_layers


def fitting(fmt: str, in_dim: int) -> str:
    """llama.cpp's type for a tensor of `in_dim` columns that was to get `fmt` (tensor_type_fallback)."""
    if fmt not in FALLBACK or in_dim % SUPER_BLOCK == 0:
        return fmt
    fallback = FALLBACK[fmt]
    return fallback if in_dim % 32 == 0 else "f16"


def input_dims(config) -> dict[str, int]:
    q = config.n_heads * config.head_dim
    return {"q": config.dim, "k": config.dim, "v": config.dim, "o": q, "gate": config.dim, "up": config.dim,
            "down": config.hidden_dim}


def mix_spec(mix: str, config) -> str:
    """The mix as weights spec items for a model of this configuration."""
    items = []
    for role, in_dim in input_dims(config).items():
        per_layer = [fitting(t, in_dim) for t in layer_types(mix, role, config.n_layers)]
        common = max(set(per_layer), key=per_layer.count)
        items.append(f"{role}={common}")
        for fmt in sorted(set(per_layer) - {common}):
            items.append(f"{role}@{layer_ranges([i for i, t in enumerate(per_layer) if t == fmt])}={fmt}")
    output = "q6_k" if config.dim % SUPER_BLOCK == 0 else "q8_0"
    if config.tie_embeddings:
        items.append(f"embeddings={output}")
    else:
        items += [f"embeddings={fitting(MIXES[mix], config.dim)}", f"output={output}"]
    return ",".join(items)


def layer_ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5, 8] -> '0-2+5+8'."""
    runs: list[list[int]] = []
    for i in sorted(layers):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return "+".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
