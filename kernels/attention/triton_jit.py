"""Triton JIT code of the native split-K attention decode (imported lazily by attention/triton.py).

Program (p, s) serves the M query rows of (batch, kv head) p over split s of the context: it
decodes BLOCK_N keys at a time straight from their packed codes into registers (never to memory),
scores them against the prepared query rows, keeps an online softmax (running max m, sum l) and
accumulates the decoded values, then writes m, l and acc for the exact merge (attn_split.merge).

KIND selects the decoder of a [BLOCK_N, D] tile:
  0 turbo bit planes: codes uint8 [row, D/GS groups, BITS, GS/8], fp16 norms [row, D/GS];
    value = levels[code] * norm (the rotated domain)
  1 q8_0: qs int8 [row, D/32, 32] times fp16 d [row, D/32]
  2 q4_0: nibble bytes uint8 [row, D/32, 16] (value j low, j + 16 high): (nibble - 8) * d
  3 q4_1: nibble * d + m
The cache row of key t of program p is t * P + p ([ctx, batch, kv_heads] flattened).
"""
import triton
import triton.language as tl


@triton.jit
def decode_tile(codes_ptr, scale_ptr, offset_ptr, levels_ptr, rows, live, col, BLOCK_N: tl.constexpr,
                KIND: tl.constexpr, D: tl.constexpr, GS: tl.constexpr, BITS: tl.constexpr):
    r = rows[:, None]
    lv = live[:, None]
    if KIND == 0:
        within = col % GS
        base = r * (D * BITS // 8) + (col // GS) * (BITS * GS // 8) + within // 8
        code = tl.zeros((BLOCK_N, D), tl.int32)
        for k in tl.static_range(BITS):
            byte = tl.load(codes_ptr + base + k * (GS // 8), mask=lv, other=0)
            code |= ((byte.to(tl.int32) >> (within % 8)) & 1) << k
        norm = tl.load(scale_ptr + r * (D // GS) + col // GS, mask=lv, other=0.0).to(tl.float32)
        value = tl.load(levels_ptr + code) * norm
    elif KIND == 1:
        q = tl.load(codes_ptr + r * D + col, mask=lv, other=0).to(tl.float32)
        d = tl.load(scale_ptr + r * (D // 32) + col // 32, mask=lv, other=0.0).to(tl.float32)
        value = q * d
    else:
        j = col % 32
        byte = tl.load(codes_ptr + r * (D // 2) + (col // 32) * 16 + j % 16, mask=lv, other=0).to(tl.int32)
        nibble = ((byte >> ((j // 16) * 4)) & 15).to(tl.float32)
        d = tl.load(scale_ptr + r * (D // 32) + col // 32, mask=lv, other=0.0).to(tl.float32)
        if KIND == 2:
            value = (nibble - 8.0) * d
        else:
            m = tl.load(offset_ptr + r * (D // 32) + col // 32, mask=lv, other=0.0).to(tl.float32)
            value = nibble * d + m
    return value


@triton.jit
def attn_split_kernel(q_ptr, limit_ptr, k_codes, k_scale, k_offset, v_codes, v_scale, v_offset, levels_ptr,
                      m_ptr, l_ptr, acc_ptr, ctx, chunk, programs,
                      M: tl.constexpr, M_PAD: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr,
                      KIND: tl.constexpr, GS: tl.constexpr, BITS: tl.constexpr):
    p = tl.program_id(0)
    split = tl.program_id(1)
    splits = tl.num_programs(1)
    row = tl.arange(0, M_PAD)
    col = tl.arange(0, D)
    has_row = row < M
    q = tl.load(q_ptr + (p * M + row[:, None]) * D + col[None, :], mask=has_row[:, None], other=0.0)
    limit = tl.load(limit_ptr + row, mask=has_row, other=-1)
    start = split * chunk
    end = tl.minimum(start + chunk, ctx)
    m_i = tl.full((M_PAD,), float("-inf"), tl.float32)
    l_i = tl.zeros((M_PAD,), tl.float32)
    acc = tl.zeros((M_PAD, D), tl.float32)
    for t0 in range(start, end, BLOCK_N):
        t = t0 + tl.arange(0, BLOCK_N)
        live = t < end
        rows = t * programs + p
        k = decode_tile(k_codes, k_scale, k_offset, levels_ptr, rows, live, col, BLOCK_N, KIND, D, GS, BITS)
        s = tl.sum(q[:, None, :] * k[None, :, :], axis=2)
        visible = live[None, :] & (t[None, :] <= limit[:, None])
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # no visible key yet: keep exp() finite
        alpha = tl.exp(m_i - m_ref)
        prob = tl.exp(s - m_ref[:, None])
        l_i = l_i * alpha + tl.sum(prob, axis=1)
        v = decode_tile(v_codes, v_scale, v_offset, levels_ptr, rows, live, col, BLOCK_N, KIND, D, GS, BITS)
        acc = acc * alpha[:, None] + tl.sum(prob[:, :, None] * v[None, :, :], axis=1)
        m_i = m_new
    out = (p * splits + split) * M + row
    tl.store(m_ptr + out, m_i, mask=has_row)
    tl.store(l_ptr + out, l_i, mask=has_row)
    tl.store(acc_ptr + out[:, None] * D + col[None, :], acc, mask=has_row[:, None])
