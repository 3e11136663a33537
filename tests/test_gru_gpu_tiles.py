"""Every tile the dispatcher can pick on an H100 runs in CI.

Under the interpreter the dispatcher plans one tile over all of H (cheapest there), so the tiles
a GPU plan returns -- rows and stepwise tiles smaller than H with a K step below the hidden
block, 32-row batch blocks, the persistent kernel's padded K -- would otherwise never execute
before a GPU runs them. Here each one runs under the interpreter once per kernel family (rows,
stepwise, the cell; persistent with one hidden block: several need the grid barrier) and dtype
class (16-bit, fp32, fp64), forward and backward, against the float64 reference, at a shape
that makes it loop: H a little over the hidden block (two hidden blocks, the second and the K
loop's last step masked) and a batch that leaves rows of the batch block masked.
"""

import pytest
import torch

from fastgru.launchers import gru_cell as AC
from fastgru.launchers import gru_layer as AG
from fastgru.launchers import plan as planner
from test_gru_small_hidden import cell_against_reference, layer_against_reference

# Batch sizes and hidden sizes that reach every branch of the candidate lists.
_B = (1, 3, 16, 17, 40, 64, 512)
_H = (1, 8, 16, 17, 32, 33, 64, 100, 256, 300, 1024)


def _tiles(candidates):
    """The distinct (block_b, block_h, block_k) of the plans ``candidates(B, H)`` returns over
    the shape grid (warps do not matter to the interpreter)."""
    return sorted({(p.block_b, p.block_h, p.block_k) for B in _B for H in _H for p in candidates(B, H)})


ROW_TILES = _tiles(lambda B, H: planner.tile_candidates("rows", B, H))
STEP_TILES = _tiles(lambda B, H: planner.tile_candidates("stepwise", B, H))
PERSISTENT_TILES = _tiles(lambda B, H: [p for p in planner.persistent_candidates(B, H, 1) if p.hidden_blocks == 1])

# One dtype of each class; the 16-bit class alternates between bf16 and fp16 over the tiles.
_CLASSES = ("16-bit", torch.float32, torch.float64)


def _dtype(cls, i):
    return (torch.bfloat16, torch.float16)[i % 2] if cls == "16-bit" else cls


def _plan(strategy, B, H, tile):
    block_b, block_h, block_k = tile
    return planner.GRUPlan(strategy, block_b, block_h, block_k, -(-B // block_b), -(-H // block_h), 4)


def _replay(monkeypatch, module, plan):
    calls = []
    monkeypatch.setattr(module, "plan_gru", lambda *a, **k: calls.append(a) or plan)
    return calls


def test_the_tile_lists_cover_what_the_plans_can_return():
    """Sanity of the enumeration: the measured defaults and the leanest tiles are all in."""
    assert {(16, 64, 64), (32, 64, 64), (32, 64, 32), (16, 16, 16)} <= set(ROW_TILES)
    assert STEP_TILES == ROW_TILES
    assert {(16, 16, 16), (16, 32, 32), (16, 64, 64), (64, 64, 64)} <= set(PERSISTENT_TILES)
    assert all(min(t) >= 16 for t in ROW_TILES + PERSISTENT_TILES)


@pytest.mark.parametrize("cls", _CLASSES, ids=["16bit", "fp32", "fp64"])
@pytest.mark.parametrize("strategy", ["rows", "stepwise"])
def test_layer_tiles(strategy, cls, monkeypatch):
    for i, tile in enumerate(ROW_TILES if strategy == "rows" else STEP_TILES):
        block_b, block_h, _ = tile
        B, H = block_b // 2 + 1, block_h + 3
        calls = _replay(monkeypatch, AG, _plan(strategy, B, H, tile))
        layer_against_reference(2, B, 5, H, 2 if i == 0 else 1, _dtype(cls, i), reset_after=i % 4 < 2)
        assert len(calls) == 2, "forward and backward each plan once"


@pytest.mark.parametrize("cls", _CLASSES, ids=["16bit", "fp32", "fp64"])
def test_cell_tiles(cls, monkeypatch):
    for i, tile in enumerate(STEP_TILES):
        block_b, block_h, _ = tile
        B, H = block_b // 2 + 1, block_h + 3
        calls = _replay(monkeypatch, AC, _plan("stepwise", B, H, tile))
        cell_against_reference(H, _dtype(cls, i), B=B, I=block_h + 5)
        assert len(calls) == 2


@pytest.mark.parametrize("cls", _CLASSES, ids=["16bit", "fp32", "fp64"])
def test_persistent_single_block_tiles(cls, monkeypatch):
    for i, tile in enumerate(PERSISTENT_TILES):
        block_b, block_h, block_k = tile
        B, H = block_b // 2 + 1, min(block_h, block_k) - 3
        plan = _plan("persistent", B, H, tile)
        assert plan.hidden_blocks == 1
        calls = _replay(monkeypatch, AG, plan)
        layer_against_reference(2, B, 5, H, 2 if i == 0 else 1, _dtype(cls, i), reset_after=i % 4 < 2)
        assert len(calls) == 2
