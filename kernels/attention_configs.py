"""Launch configurations of the attention kernels (attention.py), host side only.

``attention_configs(score, ...)`` is the one list a shape gets, for either score: the launcher
hands it to ``fastgru.launch`` (so a compile check builds what would run) and the autotuner's
pruning returns it (so it is also what gets timed). A list depends on the shape's power-of-two
bucket and the dtype alone, holds at most four configurations, and keeps only those whose
estimated shared memory fits the target. The two scores size their blocks differently: the
additive score's [BQ, BT, BF] tanh tile lives in registers, the dot score's products are all
tl.dot. Also here: the dtypes a launch computes in, and the targets' shared-memory limits.
"""

import torch
import triton
import triton.language as tl

BLOCKS = ("BLOCK_Q", "BLOCK_T", "BLOCK_F", "BLOCK_D")  # query rows, keys, score features, value columns


def attention_configs(score, Tq=None, T=None, F=None, D=None, dtype=torch.float32, interpret=False, arch=None):
    """Launch configurations of the three kernels for ``score`` ("additive" or "dot").

    With a shape: at most four, decided by its bucket and dtype alone and fitting the shared
    memory of ``arch`` (default: the current target). Without one: every configuration a shape
    of that score can get. Under the interpreter: exactly one, without touching the driver
    (interpreter_config). Block sides that meet in a tl.dot are >= 16; the additive BLOCK_F
    never does (it only chunks the tanh tile), and an additive query block below 16 takes the
    broadcast path."""
    if interpret:
        return [interpreter_config(score, Tq)]
    if Tq is None:
        return _ALL[score]
    dot_b, cdt_b = element_bytes(dtype)
    candidates = _CANDIDATES[score](bucket(Tq, T, F, D), dot_b, cdt_b)
    return [c for c in candidates if shared_bytes(score, c, dot_b, cdt_b) <= shared_limit(arch)][:4]


def interpreter_config(score, Tq=None):
    """The one configuration the interpreter runs: the query block a GPU takes for this Tq
    (additive: the bucket up to 16, so a query block below 16 runs the broadcast path there
    too; dot: 16), with small key, feature and value blocks (16, 16, 32) so that the tests'
    small shapes still span several blocks of each. Every configuration a GPU can pick runs in
    tests/test_attention_gpu_configs.py."""
    bq = min(next_pow2(Tq), 16) if score == "additive" and Tq is not None else 16
    return triton.Config(dict(zip(BLOCKS, (bq, 16, 16, 32))), num_warps=4)


def every_config():
    """The autotuner's list: every configuration of either score, each once."""
    return list({str(c): c for c in _ALL["additive"] + _ALL["dot"]}.values())


def prune(configs, nargs, SCORE, CDT=None, **kwargs):
    """The autotuner's pruning: attention_configs of the launch's score, its bucket (the KEY_*
    arguments) and the dtype it computes in (float64 when CDT is, else its values' dtype)."""
    dtype = torch.float64 if CDT == tl.float64 else nargs["val"].dtype
    return attention_configs(SCORE, nargs["KEY_TQ"], nargs["KEY_T"], nargs["KEY_F"], nargs["KEY_D"], dtype=dtype)


def _config(bq, bt, bf, bd, warps, stages):
    return triton.Config(dict(zip(BLOCKS, (bq, bt, bf, bd))), num_warps=warps, num_stages=stages)


TILE_BYTES_PER_THREAD = 64  # of the additive [BQ, BT, BF] tanh tile, in the compute dtype


def _additive_candidates(key, dot_b, cdt_b):
    """Best first. The [BQ, BT, BF] tanh tile lives in registers, so it is sized per thread:
    up to 64 bytes (16 fp32 values) with 4 warps, twice that with 8 warps, which only get
    tiles too big for 4 (past that the backward kernels spill on sm_90). Per warp count, the
    largest tiles that fit, the widest BLOCK_F first (fewer passes over F), two each. BLOCK_Q
    is the bucket up to 16: below 16 the products run as broadcast sums (no tl.dot), which
    makes [BQ, BT, BD] a register tile as well (allowed twice the budget). BLOCK_D is at most
    64: the key-block backward holds [BT, BD] and two [BT, BF] accumulators.
    Every bucket gets one: [BQ, 16, 8] fits 4 warps below BQ = 16 and 8 warps at 16."""
    tq, t, f, d = key
    budget = {w: TILE_BYTES_PER_THREAD * 32 * w // cdt_b for w in (4, 8)}  # tile elements
    bq, bd = min(tq, 16), clamp(d, 16, 64)
    if bq < 16:
        bd = min(bd, 2 * budget[4] // (16 * bq))  # so that BLOCK_T = 16 fits 4 warps
    out = []
    for w, floor in ((4, 0), (8, budget[4])):
        tiles = [
            (bq * bt * bf, bf, bt)
            for bt in (16, 32, 64, 128) if bt <= max(16, t)
            for bf in (8, 16, 32) if bf <= max(8, f)
            if floor < bq * bt * bf <= budget[w] and (bq >= 16 or bq * bt * bd <= 2 * budget[w])
        ]
        out += [_config(bq, bt, bf, bd, w, 2) for _, bf, bt in sorted(tiles, reverse=True)[:2]]
    return out


def _dot_candidates(key, dot_b, cdt_b):
    """Best first: the bucket's query and key blocks (up to 64; 16 query rows and 32 keys for
    4- and 8-byte operands, which spill past that on sm_90), then a half key block with one
    stage less, and a half query block (more programs for small batches). One feature block
    (up to 128; 64 for 4- and 8-byte operands) and one value block (up to 128, 64 for fp64)
    bound the register accumulators of the backward; 8 warps once a [BQ, max(BT, BD, BF)]
    operand tile reaches 4 KB (32 bytes a thread)."""
    tq, t, f, d = key
    wide = 64 if cdt_b == 8 else 128
    bf, bd = clamp(f, 16, 64 if dot_b >= 4 else wide), clamp(d, 16, wide)
    bq, bt = clamp(tq, 16, 64 if dot_b == 2 else 16), clamp(t, 16, 64 if dot_b == 2 else 32)
    warps = lambda q, t_: 4 if dot_b * q * max(t_, bd, bf) < 4096 else 8  # noqa: E731
    blocks = [
        (bq, bt, warps(bq, bt), 3),
        (bq, max(bt // 2, 16), warps(bq, max(bt // 2, 16)), 2),
        (max(bq // 2, 16), bt, warps(max(bq // 2, 16), bt), 3),
    ]
    return [_config(q, t_, bf, bd, w, st) for q, t_, w, st in dict.fromkeys(blocks)]  # distinct, in order


_CANDIDATES = {"additive": _additive_candidates, "dot": _dot_candidates}


def shared_bytes(score, cfg, dot_b, cdt_b):
    """Shared memory a configuration may need, an upper estimate (checked against sm_90
    compiles, docs/DECISIONS.md). Additive: each 2-D tile [BQ, BT], [BT, BD], [BQ, BD] once in
    the compute dtype for layout conversions and, on the tl.dot path (BQ >= 16), num_stages
    times as a dot operand. Dot: the software pipeline keeps num_stages - 1 copies of the
    tl.dot operands loaded in a loop (q, k, dO, v: (BQ + BT) x (BF + BD)), plus the [BQ, BT]
    p and ds tiles in the compute dtype for layout conversions."""
    bq, bt, bf, bd = (cfg.kwargs[n] for n in BLOCKS)
    if score == "additive":
        per_element = cdt_b + (cfg.num_stages * dot_b if bq >= 16 else 0)
        return per_element * (bq * bt + bt * bd + bq * bd)
    return (cfg.num_stages - 1) * dot_b * (bq + bt) * (bf + bd) + 2 * cdt_b * bq * bt


_ALL = {
    "additive": [
        _config(bq, bt, bf, bd, w, 2)
        for bq in (1, 2, 4, 8, 16) for bt in (16, 32, 64, 128) for bf in (8, 16, 32) for bd in (16, 32, 64, 128)
        for w in (4, 8)
    ],
    "dot": [
        _config(bq, bt, bf, bd, w, st)
        for bq in (16, 32, 64) for bt in (16, 32, 64) for bf in (16, 32, 64, 128) for bd in (16, 32, 64, 128)
        for w in (4, 8) for st in (2, 3)
    ],
}


# ------------------------------------------------------------------------------ shapes and dtypes


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def bucket(*sizes) -> tuple:
    """The autotune key of a shape: each size rounded up to a power of two, so a new sequence
    length re-tunes only when it crosses one (the kernels take these as ``KEY_*`` arguments)."""
    return tuple(next_pow2(s) for s in sizes)


def clamp(n: int, lo: int, hi: int) -> int:
    return min(max(n, lo), hi)


# Shared memory one program may opt in to, in bytes, by CUDA compute capability: sm_80/87
# 163 KB, sm_86/89 99 KB, sm_90 227 KB (CUDA C Programming Guide, compute capabilities table).
SHARED_LIMIT = {80: 166912, 86: 101376, 87: 166912, 89: 101376, 90: 232448}
SHARED_LIMIT_OTHER = 65536  # any other target (sm_75, an AMD LDS): the smallest, to be safe


def target_arch():
    """The arch of the target being compiled for (an int such as 90 on CUDA); touches the driver."""
    return triton.runtime.driver.active.get_current_target().arch


def shared_limit(arch=None) -> int:
    return SHARED_LIMIT.get(target_arch() if arch is None else arch, SHARED_LIMIT_OTHER)


def element_bytes(dtype: torch.dtype, interpret: bool = False) -> tuple:
    """(bytes of a tl.dot operand, bytes of a compute-dtype value) for inputs of ``dtype``."""
    cdt = 8 if dtype == torch.float64 else 4
    return (cdt if interpret or dtype in (torch.float32, torch.float64) else 2), cdt


def compute_dtype(dtype: torch.dtype):
    """Triton dtype of the statistics and accumulators: float64 only for float64 inputs."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def dot_dtype(dtype: torch.dtype, interpret: bool):
    """Triton dtype of tl.dot operands: the input dtype on a GPU, the compute dtype when
    interpreting (bf16 arithmetic is wrong in the interpreter)."""
    if interpret or dtype in (torch.float32, torch.float64):
        return compute_dtype(dtype)
    return {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}[dtype]
