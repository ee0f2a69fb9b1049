"""Triton `native` attn_decode: attention straight on the packed KV cache, split-K over the context
(flash-decoding), for the turbo formats (rotated domain) and the ggml block formats.

The query is scaled and rotated once per head in torch (attn_split.query_rows); one program per
(batch, kv head, split) decodes BLOCK_N keys at a time into registers, scores them for all the
query heads that share the kv head, and accumulates the decoded values under an online softmax
(kernels/attention/triton_jit.py); the splits are merged exactly and the result rotated back once in
torch (attn_split.merge / finish). Triton is imported inside the factory.

turbo4 (QJL residual) is left out: its keys need a g x g projection per key, which is not a
codebook lookup.
"""
from __future__ import annotations

import torch

from quantbench.kernels.attention import split as attn_split
from quantbench.kernels.registry import Unavailable, variant

TURBO = ("turbo2", "turbo3", "turbo4_mse")
BLOCKS = {"q8_0": 1, "q4_0": 2, "q4_1": 3}  # format -> KIND of triton_jit_attn.decode_tile
FORMATS = TURBO + tuple(BLOCKS)
# Each program holds a [M_PAD, BLOCK_N, D] tile of products (scores, then weighted values): at most
# TILE_PRODUCTS of them. With 32 keys at D=128 the tile took 255 registers and spilled on sm_80..sm_90
# (`quantbench compile`); at 4096 products the kernel takes about 100-130 registers.
TILE_PRODUCTS = 4096
MIN_BLOCK_N, MAX_BLOCK_N = 8, 32


def keys_per_tile(m_pad: int, d: int) -> int:
    """BLOCK_N: the power of two of keys that keeps the product tile within TILE_PRODUCTS."""
    fit = max(1, TILE_PRODUCTS // (m_pad * d))
    return max(MIN_BLOCK_N, min(MAX_BLOCK_N, 1 << (fit.bit_length() - 1)))


def _fields(fmt, packed, dummy):
    """(codes, scale, offset) pointers of a packed cache for decode_tile."""
    if fmt.family == "codebook":
        return packed["codes"], packed["norms"], dummy
    return packed["qs"], packed["d"], packed.fields.get("m", dummy)


@variant("attn_decode", backend="triton", name="native", formats=FORMATS, needs=("triton",), device="cuda")
def attn_decode_triton_native(case):
    """split-K over the context; keys and values decoded in registers; turbo: query rotated once,
    values summed in the rotated domain and rotated back once; exact merge of the splits in torch"""
    from quantbench.kernels.attention.triton_jit import attn_split_kernel

    fmt = case.format_obj
    q, k, v = attn_split.encode_cache(case)
    B, H, n, D = q.shape
    if D & (D - 1):
        raise Unavailable(f"attn_decode/triton/native: head dim {D} is not a power of two (a Triton tile)")
    P = B * case.kv_heads
    M = (H // case.kv_heads) * n
    M_PAD = max(2, 1 << (M - 1).bit_length())
    BLOCK_N = keys_per_tile(M_PAD, D)
    device = q.device
    rows = attn_split.query_rows(q, case.kv_heads, fmt)
    limit = attn_split.row_limits(H, case.kv_heads, n, case.ctx, device)
    rotated = attn_split.is_rotated(fmt)
    g = fmt.group_for(D) if rotated else 32
    levels = fmt.codebook(g).to(device) if rotated else torch.zeros(1, device=device)
    kind = 0 if rotated else BLOCKS[fmt.name]
    splits = attn_split.split_count(case.ctx, P, BLOCK_N, attn_split.target_programs(device, P))
    chunk = attn_split.split_chunk(case.ctx, splits, BLOCK_N)
    splits = -(-case.ctx // chunk)
    m = torch.empty(P, splits, M, dtype=torch.float32, device=device)
    l = torch.empty_like(m)
    acc = torch.empty(P, splits, M, D, dtype=torch.float32, device=device)
    dummy = torch.zeros(1, dtype=torch.float16, device=device)
    meta = dict(M=M, M_PAD=M_PAD, D=D, BLOCK_N=BLOCK_N, KIND=kind, GS=g,
                BITS=getattr(fmt, "bits", 0))
    args = (rows, limit, *_fields(fmt, k, dummy), *_fields(fmt, v, dummy), levels, m, l, acc, case.ctx, chunk, P)

    def run():
        attn_split_kernel[(P, splits)](*args, **meta)
        return attn_split.finish(attn_split.merge(m, l, acc), fmt, B, H, n)

    return run
