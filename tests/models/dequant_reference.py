#!/usr/bin/env python3
"""Checks kernels::dequantize_row and kernels::quantize_row against PyPI gguf's numpy code.

gguf-py (gguf.quants) is an independent implementation of ggml's block formats, so agreeing with
it on many random blocks checks our block layouts, nibble orders, scale unpacking and rounding.

  dequantize: for every type we read (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K,
    Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS), random
    block bytes with finite f16 scales (normal, subnormal, zero and negative ones); F16 and BF16
    also over all 65536 bit patterns. Tolerance: bit-identical, except that NaN matches any NaN
    (numpy may quiet a signalling NaN when it widens f16) and that 1 ulp of float32 is allowed
    where the two evaluate f16-scale products in a different order (none do today; the script
    reports how many values were not bit-identical).
  quantize: for the types we encode (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_1), random rows at several
    magnitudes plus edge blocks (zeros, constants, rounding ties, f16 overflow and subnormals).
    Expected bit-exact: gguf-py follows ggml's reference quantizers (Q8_0 rounds half away from
    zero like roundf, Q4_0/Q4_1/Q5_1 truncate x*id + 8.5 / + 0.5 like the (int8_t) cast).

  transcode: Q4_K rows rewritten as Q4_1 and Q5_K rows as Q5_1 (kernels::transcode_row, how the
    CPU loads them), random blocks as above. Each output block's d and m must be numpy's float16
    rounding of the K-quant sub-block's d·sc and −dmin·m (bit for bit), and gguf-py's Q4_1 (Q5_1)
    dequantization of the result must lie within that rounding of its Q4_K (Q5_K) dequantization
    of the input: (2^-11 + 2^-23)·(qmax·|d·sc| + |dmin·m|) + 2^-21 per value, qmax 15 (31).

  interleave: 8 rows of Q4_K, Q5_K, Q6_K, Q3_K, Q2_K and Q5_1 laid out as the CPU computes with
    a matrix (Q4_1x8, Q5_1x8, Q6_Kx8, Q3_Kx8, Q2_Kx8, Q5_1x8) and read back row by row: Q6_K,
    Q3_K, Q2_K and Q5_1 bit-identical to gguf-py's dequantization of the stored rows, Q4_K and
    Q5_K within the transcode bound.

Usage: dequant_reference.py --tool PATH/dequant_tool [--blocks N] [--seed S]
Exits 0 when everything matches, 1 on a mismatch, 77 (skipped) without numpy/gguf.
"""

import argparse
import subprocess
import sys

try:
    import numpy as np
    from gguf import GGMLQuantizationType as T
    from gguf import quants
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"dequant_reference: skipped, {e}; install the oracle with "
          "`python3 -m pip install gguf numpy`")
    sys.exit(77)

# name: (block elems, block bytes, byte offsets of f16 scale fields)
TYPES = {
    "F32": (1, 4, []),
    "F16": (1, 2, []),
    "BF16": (1, 2, []),
    "Q8_0": (32, 34, [0]),
    "Q4_0": (32, 18, [0]),
    "Q4_1": (32, 20, [0, 2]),
    "Q5_0": (32, 22, [0]),
    "Q5_1": (32, 24, [0, 2]),
    "Q4_K": (256, 144, [0, 2]),
    "Q6_K": (256, 210, [208]),
    "Q2_K": (256, 84, [80, 82]),
    "Q3_K": (256, 110, [108]),
    "Q5_K": (256, 176, [0, 2]),
    "IQ4_NL": (32, 18, [0]),
    "IQ4_XS": (256, 136, [0]),
}
QUANTIZABLE = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_1"]
# K-quant: (the type transcode_row writes, its largest q)
TRANSCODED = {"Q4_K": ("Q4_1", 15), "Q5_K": ("Q5_1", 31)}


def run_tool(tool, op, name, n, data):
    r = subprocess.run([tool, op, name, str(n)], input=data, capture_output=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{tool} {op} {name} {n} failed ({r.returncode}): {r.stderr.decode()}")
    return r.stdout


def sane_f16(rng, count):
    """Finite f16 scales: mostly normal magnitudes in [2^-14, 2^3], some subnormal, some zero."""
    mag = np.exp2(rng.uniform(-14, 3, count)).astype(np.float16)
    sub = rng.random(count) < 0.05
    mag[sub] = (rng.integers(1, 1024, int(sub.sum())).astype(np.uint16)).view(np.float16)
    mag[rng.random(count) < 0.01] = 0
    sign = np.where(rng.random(count) < 0.5, -1, 1).astype(np.float16)
    return (mag * sign).astype(np.float16)


def random_blocks(rng, name, num_blocks):
    elems, size, scales = TYPES[name]
    if name == "F32":
        # random bit patterns: every float, NaNs and infinities included
        return rng.integers(0, 256, num_blocks * 4, dtype=np.uint8), num_blocks
    if name in ("F16", "BF16"):
        every = np.arange(65536, dtype=np.uint16).view(np.uint8)
        extra = rng.integers(0, 256, num_blocks * 2, dtype=np.uint8)
        data = np.concatenate([every, extra])
        return data, data.size // 2
    raw = rng.integers(0, 256, (num_blocks, size), dtype=np.uint8)
    for off in scales:
        raw[:, off:off + 2] = sane_f16(rng, num_blocks).view(np.uint8).reshape(num_blocks, 2)
    return raw.reshape(-1), num_blocks * elems


def compare(name, ours, ref):
    """Returns (failures, not bit-identical) for float32 arrays."""
    ours = ours.astype(np.float32)
    ref = ref.astype(np.float32).reshape(-1)
    both_nan = np.isnan(ours) & np.isnan(ref)
    same_bits = ours.view(np.uint32) == ref.view(np.uint32)
    close = np.abs(ours.astype(np.float64) - ref.astype(np.float64)) <= np.spacing(
        np.maximum(np.abs(ours), np.abs(ref)))
    ok = same_bits | both_nan | (ours == ref) | close
    bad = np.flatnonzero(~ok)
    for i in bad[:5]:
        print(f"  {name}[{i}] (block {i // TYPES[name][0]}): ours {ours[i]!r} "
              f"gguf-py {ref[i]!r}")
    return bad.size, int((~same_bits & ~both_nan).sum())


def check_dequantize(tool, rng, num_blocks):
    failed = False
    for name in TYPES:
        data, n = random_blocks(rng, name, num_blocks)
        ours = np.frombuffer(run_tool(tool, "dequantize", name, n, data.tobytes()),
                             dtype=np.float32)
        size = TYPES[name][1]
        ref = quants.dequantize(data.reshape(-1, size), T[name])
        bad, inexact = compare(name, ours, ref)
        print(f"dequantize {name:5s}: {n:7d} values, {bad} beyond tolerance, "
              f"{inexact} not bit-identical")
        failed |= bad != 0
    return failed


def quantize_inputs(rng, elems, num_blocks):
    rows = [rng.standard_normal(num_blocks * elems).astype(np.float32) * scale
            for scale in (1e-6, 1e-3, 0.02, 1.0, 300.0)]
    edge = []
    edge.append(np.zeros(32, np.float32))
    edge.append(np.full(32, 0.375, np.float32))
    edge.append(np.full(32, -7.0, np.float32))
    # rounding ties for Q8_0 (d = 1: x * id lands on .5) and Q4_0/Q4_1
    edge.append(np.array([127.0] + [k + 0.5 for k in range(-15, 16)], np.float32))
    edge.append(np.array([-8.0] + [k * 0.5 for k in range(-15, 16)], np.float32))
    edge.append(np.linspace(-1, 1, 32, dtype=np.float32))
    edge.append(np.array([65504.0, 65519.0, 65520.0, 1e6, -1e6, 6e-8, 3e-8, 1e-9] * 4,
                         np.float32))
    edge.append(np.array([1.0] * 31 + [-1.0], np.float32))  # max == -min: first index wins
    edge.append(np.array([-1.0] + [1.0] * 31, np.float32))
    e = np.concatenate(edge)
    return np.concatenate(rows + [e])


def check_quantize(tool, rng, num_blocks):
    failed = False
    for name in QUANTIZABLE:
        elems, size, _ = TYPES[name]
        x = quantize_inputs(rng, 32, num_blocks)
        ours = np.frombuffer(run_tool(tool, "quantize", name, x.size, x.tobytes()), dtype=np.uint8)
        ref = np.ascontiguousarray(quants.quantize(x.reshape(-1, 32), T[name])).view(np.uint8)
        ref = ref.reshape(-1)
        if ours.size != ref.size:
            print(f"quantize {name}: {ours.size} bytes, gguf-py {ref.size}")
            failed = True
            continue
        diff = np.flatnonzero(ours != ref)
        blocks = np.unique(diff // size)
        print(f"quantize   {name:5s}: {x.size:7d} values, {blocks.size} blocks differ")
        for b in blocks[:5]:
            lo = b * size
            print(f"  block {b}: input {x[b * elems:(b + 1) * elems][:8]}...\n"
                  f"    ours    {ours[lo:lo + size].tobytes().hex()}\n"
                  f"    gguf-py {ref[lo:lo + size].tobytes().hex()}")
        failed |= blocks.size != 0
    return failed


def k4_scales_mins(raw):
    """Per sub-block (d·sc, dmin·m) of Q4_K or Q5_K blocks as float32, shape [blocks, 8] each."""
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)
    dmin = raw[:, 2:4].copy().view(np.float16).astype(np.float32)
    s = raw[:, 4:16].astype(np.int32)
    sc = np.empty((raw.shape[0], 8), np.int32)
    m = np.empty((raw.shape[0], 8), np.int32)
    for j in range(8):
        if j < 4:
            sc[:, j] = s[:, j] & 63
            m[:, j] = s[:, j + 4] & 63
        else:
            sc[:, j] = (s[:, j + 4] & 0xF) | ((s[:, j - 4] >> 6) << 4)
            m[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
    return d * sc.astype(np.float32), dmin * m.astype(np.float32)


def check_transcode(tool, rng, num_blocks):
    failed = False
    for name, (to, qmax) in TRANSCODED.items():
        failed |= check_transcode_type(tool, rng, num_blocks, name, to, qmax)
    return failed


def check_transcode_type(tool, rng, num_blocks, name, to, qmax):
    data, n = random_blocks(rng, name, num_blocks)
    raw = data.reshape(-1, TYPES[name][1])
    ours = np.frombuffer(run_tool(tool, "transcode", name, n, data.tobytes()), dtype=np.uint8)
    out = ours.reshape(-1, TYPES[to][1])
    if out.shape[0] != num_blocks * 8:
        print(f"transcode  {name} : {ours.size} bytes, expected {num_blocks * 8 * TYPES[to][1]}")
        return True
    dsc, dm = k4_scales_mins(raw)
    want_d = dsc.astype(np.float16).reshape(-1)
    want_m = (-dm).astype(np.float16).reshape(-1)
    got_d = out[:, 0:2].copy().view(np.float16).reshape(-1)
    got_m = out[:, 2:4].copy().view(np.float16).reshape(-1)
    bad_scales = int((got_d.view(np.uint16) != want_d.view(np.uint16)).sum() +
                     (got_m.view(np.uint16) != want_m.view(np.uint16)).sum())
    ref = quants.dequantize(raw, T[name]).astype(np.float64).reshape(-1)
    got = quants.dequantize(out, T[to]).astype(np.float64).reshape(-1)
    bound = transcode_bound(raw, qmax)
    bad = np.flatnonzero(~(np.abs(got - ref) <= bound))
    for i in bad[:5]:
        print(f"  {name}->{to}[{i}]: ours {got[i]!r} gguf-py {name} {ref[i]!r} bound {bound[i]!r}")
    moved = int((got != ref).sum())
    print(f"transcode  {name} : {n:7d} values, {bad_scales} scales differ from numpy's f16 "
          f"rounding, {bad.size} values beyond the bound ({moved} moved within it)")
    return bad_scales != 0 or bad.size != 0


def transcode_bound(raw, qmax):
    """What the transcode may move each value: the f16 rounding of its sub-block's d*sc and dmin*m."""
    dsc, dm = k4_scales_mins(raw)
    span = (qmax * np.abs(dsc) + np.abs(dm)).astype(np.float64).reshape(-1)
    return (2.0**-11 + 2.0**-23) * np.repeat(span, 32) + 2.0**-21


def check_interleave(tool, rng, num_blocks):
    failed = False
    for name in ("Q4_K", "Q5_K", "Q6_K", "Q3_K", "Q2_K", "Q5_1"):
        elems, size, _ = TYPES[name]
        per_row = max(1, num_blocks // 8)
        data, n = random_blocks(rng, name, 8 * per_row)
        raw = data.reshape(-1, size)
        ours = np.frombuffer(run_tool(tool, "interleave", name, n, data.tobytes()),
                             dtype=np.float32).astype(np.float64)
        ref = quants.dequantize(raw, T[name]).astype(np.float64).reshape(-1)
        if name in TRANSCODED:
            bound = transcode_bound(raw, TRANSCODED[name][1])
            bad = np.flatnonzero(~(np.abs(ours - ref) <= bound))
            how = "within the transcode bound"
        else:
            same = ours.astype(np.float32).view(np.uint32) == ref.astype(np.float32).view(np.uint32)
            bad = np.flatnonzero(~same)
            how = "bit-identical"
        for i in bad[:5]:
            print(f"  {name} interleaved[{i}]: ours {ours[i]!r} gguf-py {ref[i]!r}")
        print(f"interleave {name} : {n:7d} values in 8 rows, {bad.size} not {how}")
        failed |= bad.size != 0
    return failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", required=True, help="path of the dequant_tool executable")
    ap.add_argument("--blocks", type=int, default=4096, help="random blocks per type")
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    # NaN/inf inputs and f16 overflow are part of the test: numpy's warnings about them are noise.
    with np.errstate(all="ignore"):
        failed = check_dequantize(args.tool, rng, args.blocks)
        failed |= check_quantize(args.tool, rng, args.blocks // 8)
        failed |= check_transcode(args.tool, rng, args.blocks)
        failed |= check_interleave(args.tool, rng, args.blocks)
    print("dequant_reference: " + ("MISMATCH" if failed else "all types agree with gguf-py"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
