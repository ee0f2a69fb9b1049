"""Explicit-SIMD integer dot products of weight blocks with 8-bit activations, for numba kernels.

`block_dots` multiplies the codes of ROWS weight rows in q4_0 / q4_1 (nibbles) or q8_0 (int8) blocks of 32
with 8-bit activation codes, 64 weight bytes a step: four q4 blocks or two q8_0 blocks, one 512-bit load
per row. The products are unsigned x signed byte dot products in 16 int32 lanes: AVX512-VNNI's
`vpdpbusd`, one instruction per 64 products, where the compiling CPU has it; on AVX2, llama.cpp's pair
`vpmaddubsw` (byte pairs to int16) and `vpmaddwd` by ones (int16 pairs to int32); elsewhere the same sums
in generic vector IR (widen, multiply, add groups of four), which LLVM lowers for the host. q8_0's signed
codes are made unsigned by flipping their top bit (q + 128); the activations' lane bias takes the 128
back out, as it takes q4_0's offset 8. `vpmaddubsw` saturates its int16 pair sums, which q4's codes
(at most 15 x 127 x 2) never reach but flipped q8_0 codes would, so on AVX2 q8_0 takes the sign trick
instead (|q| times the activation with q's sign: at most 128 x 127 x 2) and needs no bias. The sums are
exact; floats appear once per lane and step, times the weight block's fp16 scale and the activation
block's scale.

Per step and weight row, about 11 instructions for 128 q4 weights (a load, a shift, two ands, two
`vpdpbusd`, an int-to-float conversion, a 4-scale load with `vcvtph2ps` and a permute, a multiply and
an FMA) where the float kernels (matmul/numba_fma.py) spend about 40.

The activations come arranged per step by `arrange_steps` (matmul/numba_int8.py): the 64 activation
codes each weight byte meets (q4: those of the four blocks' low nibbles, values 0..15, then those of
the high nibbles, values 16..31), each lane's integer bias (minus the code offset times the lane's
activation codes), each lane's activation scale and, for q4_1, d_a times the lane's code sum.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

from quantbench.kernels.common.numba_target import call_intrinsic, target_features

LANES = 16
ROWS = 4  # weight rows a call: the activation vectors are loaded once for all of them
STEP_BYTES = 64  # weight code bytes per row and step
_I8, _I32, _I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
_F32 = ir.FloatType()
_INTS = ir.VectorType(_I32, LANES)
_FLOATS = ir.VectorType(_F32, LANES)
_BYTES = ir.VectorType(_I8, STEP_BYTES)


class Layout:
    """How one format's weight codes fill a step: blocks per step, code bytes per block, nibbles or not."""

    def __init__(self, blocks: int, nibbles: bool):
        self.blocks, self.nibbles = blocks, nibbles
        self.code_bytes = STEP_BYTES // blocks
        self.activation_bytes = 2 * STEP_BYTES if nibbles else STEP_BYTES


Q4 = Layout(blocks=4, nibbles=True)
Q8 = Layout(blocks=2, nibbles=False)


def layout_of(codes_dtype) -> Layout:
    """The layout of weight codes of this numpy or numba dtype: uint8 nibbles (q4) or int8 (q8_0)."""
    return Q4 if str(codes_dtype) == "uint8" else Q8


def _require(array, dtype, ndim, what):
    if not (isinstance(array, types.Array) and array.dtype == dtype and array.ndim == ndim and array.layout == "C"):
        raise TypingError(f"block_dots: {what} must be a C-contiguous {ndim}-d {dtype} array, not {array}")


def dot_isa(context) -> str:
    """The byte dot product block_dots emits for the CPU numba compiles for (NUMBA_CPU_NAME /
    NUMBA_CPU_FEATURES count): "vnni", "avx2" or "generic"."""
    features = target_features(context)
    return "vnni" if "avx512vnni" in features else "avx2" if "avx2" in features else "generic"


def _halves(builder, vector):
    """A 64-byte vector as its two 32-byte halves (one ymm register each)."""
    as_bytes = builder.bitcast(vector, _BYTES)
    return [builder.shuffle_vector(as_bytes, ir.Constant(_BYTES, ir.Undefined),
                                   ir.Constant(ir.VectorType(_I32, 32), list(range(32 * h, 32 * h + 32))))
            for h in range(2)]


def _avx2_byte_dots(builder, acc, *operands):
    """acc + vpdpbusd's sums of each (unsigned, signed) pair of operands, on AVX2: the int16 pair sums
    of all pairs are added before one widening to int32, exact while they fit int16 (see the module
    docstring)."""
    pairs, quads = ir.VectorType(ir.IntType(16), 16), ir.VectorType(_I32, 8)
    sums = []
    for h in range(2):
        total = None
        for unsigned, signed in operands:
            part = call_intrinsic(builder, "llvm.x86.avx2.pmadd.ub.sw", pairs, _halves(builder, unsigned)[h],
                        _halves(builder, signed)[h])
            total = part if total is None else builder.add(total, part)
        sums.append(call_intrinsic(builder, "llvm.x86.avx2.pmadd.wd", quads, total, ir.Constant(pairs, [1] * 16)))
    joined = builder.shuffle_vector(sums[0], sums[1], ir.Constant(_INTS, list(range(LANES))))
    return builder.add(acc, joined)


def _avx2_signed_dots(builder, codes, x):
    """Per lane, the sum over its four bytes of codes * x, both signed (q8_0 weights, 8-bit
    activations): |codes| times x with the codes' signs."""
    x = builder.bitcast(x, _BYTES)
    magnitude = call_intrinsic(builder, "llvm.abs.v64i8", _BYTES, codes, ir.Constant(ir.IntType(1), 0))
    signed = builder.select(builder.icmp_signed("<", codes, ir.Constant(_BYTES, [0] * STEP_BYTES)),
                            builder.neg(x), x)
    return _avx2_byte_dots(builder, ir.Constant(_INTS, [0] * LANES), (magnitude, signed))


def _byte_dots(builder, acc, unsigned, signed, isa):
    """acc + sum over each lane's four bytes of unsigned(byte) * signed(byte): vpdpbusd's sums."""
    if isa == "vnni":
        return call_intrinsic(builder, "llvm.x86.avx512.vpdpbusd.512", _INTS, acc, unsigned, signed)
    wide = ir.VectorType(_I32, STEP_BYTES)
    products = builder.mul(builder.zext(builder.bitcast(unsigned, _BYTES), wide),
                           builder.sext(builder.bitcast(signed, _BYTES), wide))
    for k in range(4):
        acc = builder.add(acc, builder.shuffle_vector(products, ir.Constant(wide, ir.Undefined),
                                                      ir.Constant(_INTS, [4 * lane + k for lane in range(LANES)])))
    return acc


def _horizontal_sum(builder, values):
    width = LANES
    while width > 1:
        width //= 2
        upper = builder.shuffle_vector(values, ir.Constant(_FLOATS, ir.Undefined),
                                       ir.Constant(_INTS, [width + j if j < width else j for j in range(LANES)]))
        values = builder.fadd(values, upper)
    return builder.extract_element(values, ir.Constant(_I32, 0))


def _row_pointer(builder, ary, row):
    """i8* to row `row` of a C-contiguous array (numba's array struct), by its byte stride."""
    stride = cgutils.unpack_tuple(builder, ary.strides)[0]
    return builder.gep(builder.bitcast(ary.data, _I8.as_pointer()), [builder.mul(row, stride)])


def _masked_load(builder, pointer, vector_type, valid):
    """The first `valid` elements at pointer, zeros after them; masked-off elements are not read."""
    lanes = vector_type.count
    indices = ir.VectorType(_I64, lanes)
    one = builder.insert_element(ir.Constant(indices, ir.Undefined), valid, ir.Constant(_I32, 0))
    bound = builder.shuffle_vector(one, ir.Constant(indices, ir.Undefined),
                                   ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))
    mask = builder.icmp_signed("<", ir.Constant(indices, list(range(lanes))), bound)
    element = f"i{vector_type.element.width}" if isinstance(vector_type.element, ir.IntType) else "f16"
    signature = ir.FunctionType(vector_type, [vector_type.as_pointer(), _I32, mask.type, vector_type])
    fn = cgutils.get_or_insert_function(builder.module, signature, f"llvm.masked.load.v{lanes}{element}.p0")
    return builder.call(fn, [builder.bitcast(pointer, vector_type.as_pointer()), ir.Constant(_I32, 1), mask,
                             ir.Constant(vector_type, None)])


@intrinsic
def block_dots(typingctx, qs, d_bits, m_bits, rows, xq, xbias, xscale, xmin):
    """For the ROWS weight rows `rows` (a tuple of row indices) of qs (uint8 [n, nb, 16]: q4 nibbles,
    value j low and j + 16 high in byte j; or int8 [n, nb, 32]: q8_0 codes), d_bits uint16 [n, nb]
    (fp16 scales) and m_bits uint16 [n, nb] (q4_1's fp16 block minimums; empty otherwise): the float32
    sums over the row's blocks of d_w d_a (sum_j q_j a_j + bias) + m_w d_a sum_j a_j, a tuple of ROWS.

    xq int8 [steps, 128 (q4) or 64 (q8_0)], xbias int32 [steps, 16], xscale float32 [steps, 16] and
    xmin float32 [steps, 16] (read only with m_bits), steps = ceil(nb / blocks a step): the activations
    as the module docstring arranges them, zeros for the blocks past nb of the last step. That last
    step reads past a row's own codes where qs goes on (they meet those zeros), and loads only the
    row's own blocks (masked loads) where it would end past qs, and for the scales and minimums.
    Row indices are not bounds-checked."""
    if not (isinstance(qs, types.Array) and qs.dtype in (types.uint8, types.int8)):
        raise TypingError(f"block_dots: qs must be uint8 q4 nibbles or int8 q8_0 codes, not {qs}")
    layout = layout_of(qs.dtype)
    _require(qs, qs.dtype, 3, "qs")
    _require(d_bits, types.uint16, 2, "d_bits")
    _require(m_bits, types.uint16, 2, "m_bits")
    _require(xq, types.int8, 2, "xq")
    _require(xbias, types.int32, 2, "xbias")
    _require(xscale, types.float32, 2, "xscale")
    _require(xmin, types.float32, 2, "xmin")
    if not (isinstance(rows, types.UniTuple) and len(rows) == ROWS and isinstance(rows.dtype, types.Integer)):
        raise TypingError(f"block_dots: rows must be a tuple of {ROWS} integers, not {rows}")
    result = types.UniTuple(types.float32, ROWS)
    sig = result(qs, d_bits, m_bits, rows, xq, xbias, xscale, xmin)

    def codegen(context, builder, signature, args):
        names = ("qs", "d", "m", "rows", "xq", "bias", "scale", "min")
        arrays = {name: context.make_array(ty)(context, builder, value)
                  for name, ty, value in zip(names, signature.args, args) if isinstance(ty, types.Array)}
        row_index = [context.cast(builder, r, signature.args[3].dtype, types.intp)
                     for r in cgutils.unpack_tuple(builder, args[3])]
        rows_of = {name: [_row_pointer(builder, arrays[name], r) for r in row_index] for name in ("qs", "d", "m")}
        blocks = cgutils.unpack_tuple(builder, arrays["qs"].shape)[1]
        sums = [cgutils.alloca_once_value(builder, ir.Constant(_FLOATS, [0.0] * LANES)) for _ in range(ROWS)]
        per_step = ir.Constant(_I64, layout.blocks)
        full, tail = builder.sdiv(blocks, per_step), builder.srem(blocks, per_step)
        steps = _Step(builder, layout, rows_of, arrays, sums, dot_isa(context),
                      _whole_last_step_fits(builder, arrays["qs"], row_index, full))
        with_min = builder.icmp_signed(">", cgutils.unpack_tuple(builder, arrays["m"].shape)[0], ir.Constant(_I64, 0))
        with builder.if_else(with_min) as (q4_1, others):
            for branch, minimums in ((q4_1, True), (others, False)):
                with branch:
                    with cgutils.for_range(builder, full) as loop:
                        steps.emit(loop.index, None, minimums)
                    with builder.if_then(builder.icmp_signed(">", tail, ir.Constant(_I64, 0))):
                        steps.emit(full, tail, minimums)
        totals = [_horizontal_sum(builder, builder.load(s)) for s in sums]
        return context.make_tuple(builder, result, totals)

    return sig, codegen


def _whole_last_step_fits(builder, qs, row_index, full):
    """Per row, whether a whole last step of codes (STEP_BYTES from step `full`) lies inside qs: the
    bytes past the row's own blocks are the next rows' codes, which meet zero activations."""
    n, blocks, width = cgutils.unpack_tuple(builder, qs.shape)
    row_bytes = builder.mul(blocks, width)
    step_end = builder.mul(builder.add(full, ir.Constant(_I64, 1)), ir.Constant(_I64, STEP_BYTES))
    total = builder.mul(n, row_bytes)
    return [builder.icmp_signed("<=", builder.add(builder.mul(r, row_bytes), step_end), total) for r in row_index]


class _Step:
    """Emits one step of block_dots: a layout's blocks of every row, added into the rows' lane sums."""

    def __init__(self, builder, layout, rows_of, arrays, sums, isa, whole_step_fits):
        self.b, self.layout, self.rows_of, self.sums, self.isa = builder, layout, rows_of, sums, isa
        self.whole_step_fits = whole_step_fits
        self.x = {name: arrays[name].data for name in ("xq", "bias", "scale", "min")}
        self.fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_FLOATS, [_FLOATS] * 3),
                                                  "llvm.fma.v16f32")
        self.halves = ir.VectorType(ir.HalfType(), layout.blocks)
        self.lane_block = ir.Constant(_INTS, [lane * layout.blocks // LANES for lane in range(LANES)])

    def _constant(self, t, size):
        return self.b.mul(t, ir.Constant(_I64, size))

    def _lanes(self, name, t, vector_type):
        at = self.b.gep(self.x[name], [self._constant(t, LANES)])
        return self.b.load(self.b.bitcast(at, vector_type.as_pointer()), align=4)

    def _activations(self, t, half):
        at = self.b.gep(self.x["xq"], [self.b.add(self._constant(t, self.layout.activation_bytes),
                                                   ir.Constant(_I64, half * STEP_BYTES))])
        return self.b.load(self.b.bitcast(at, _INTS.as_pointer()), align=1)

    def _scales(self, name, row, t, tail):
        """A row's fp16 block scales (or minimums) of the step, each spread over its block's lanes."""
        at = self.b.gep(self.rows_of[name][row], [self._constant(t, 2 * self.layout.blocks)])
        if tail is None:
            values = self.b.load(self.b.bitcast(at, self.halves.as_pointer()), align=2)
        else:
            values = _masked_load(self.b, at, self.halves, tail)
        floats = ir.VectorType(_F32, self.layout.blocks)
        return self.b.shuffle_vector(self.b.fpext(values, floats), ir.Constant(floats, ir.Undefined), self.lane_block)

    def _tail_codes(self, at, tail, row):
        """The last step's codes of a row: a whole load where it stays inside qs (exact: the bytes past
        the row's blocks meet zero activations and zero scales), else a masked one (AVX2 has no byte
        mask: LLVM splits it into 64 conditional loads, which doubled q4_0's time at k = 576)."""
        b = self.b
        with b.if_else(self.whole_step_fits[row]) as (inside, at_the_end):
            with inside:
                whole = b.load(b.bitcast(at, _BYTES.as_pointer()), align=1)
                from_inside = b.basic_block
            with at_the_end:
                masked = _masked_load(b, at, _BYTES, b.mul(tail, ir.Constant(_I64, self.layout.code_bytes)))
                from_the_end = b.basic_block
        codes = b.phi(_BYTES)
        codes.add_incoming(whole, from_inside)
        codes.add_incoming(masked, from_the_end)
        return codes

    def _dots(self, codes, bias, x):
        b = self.b
        if not self.layout.nibbles:
            if self.isa == "avx2":  # the signed sums themselves: bias + sum (q + 128) a, bias = -128 sum a
                return _avx2_signed_dots(b, codes, x[0])
            flipped = b.xor(codes, ir.Constant(_BYTES, [-128] * STEP_BYTES))
            return _byte_dots(b, bias, b.bitcast(flipped, _INTS), x[0], self.isa)
        low = b.bitcast(b.and_(codes, ir.Constant(_BYTES, [15] * STEP_BYTES)), _INTS)
        high = b.bitcast(b.lshr(codes, ir.Constant(_BYTES, [4] * STEP_BYTES)), _INTS)
        if self.isa == "avx2":  # both nibbles' int16 pair sums, at most 2 x 2 x 15 x 127, before widening
            return _avx2_byte_dots(b, bias, (low, x[0]), (high, x[1]))
        return _byte_dots(b, _byte_dots(b, bias, low, x[0], self.isa), high, x[1], self.isa)

    def emit(self, t, tail, minimums):
        """Step t; tail: how many of its blocks the rows have (masked loads), or None for all."""
        b = self.b
        x = [self._activations(t, half) for half in range(2 if self.layout.nibbles else 1)]
        bias, x_scale = self._lanes("bias", t, _INTS), self._lanes("scale", t, _FLOATS)
        x_min = self._lanes("min", t, _FLOATS) if minimums else None
        for row in range(ROWS):
            at = b.gep(self.rows_of["qs"][row], [self._constant(t, STEP_BYTES)])
            codes = b.load(b.bitcast(at, _BYTES.as_pointer()), align=1) if tail is None else self._tail_codes(
                at, tail, row)
            lane_scale = b.fmul(self._scales("d", row, t, tail), x_scale)
            dots = b.sitofp(self._dots(codes, bias, x), _FLOATS)
            total = b.call(self.fma, [dots, lane_scale, b.load(self.sums[row])])
            if minimums:
                total = b.call(self.fma, [self._scales("m", row, t, tail), x_min, total])
            b.store(total, self.sums[row])
