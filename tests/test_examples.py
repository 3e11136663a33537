"""The digits example: GRUAttention learns, and matches the same net built from torch.nn layers
step by step. The full training runs on the default CPU backend in a subprocess (the interpreter
would take minutes); a few steps run in-process on the kernels."""

import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("sklearn")

from fastgru.backend import uses_kernels  # noqa: E402
from fastgru.examples.digits import train_digits  # noqa: E402
from fastgru.testing import check_close  # noqa: E402

_SCRIPT = """
import json
from fastgru.examples.digits import train_digits
runs = {m: train_digits(epochs=4, seed=0, model=m) for m in ("fastgru", "torch")}
print(json.dumps({m: {"losses": r["losses"], "accuracy": r["accuracy"]} for m, r in runs.items()}))
"""


def test_digits_training_learns_and_matches_torch_nn():
    env = {**os.environ, "FASTGRU_BACKEND": "torch", "TRITON_INTERPRET": "0"}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    ours, theirs = runs["fastgru"], runs["torch"]
    losses = torch.tensor(ours["losses"], dtype=torch.float64)
    assert len(losses) > 80
    assert losses[-10:].mean() < 0.6 * losses[:10].mean(), "the loss does not fall"
    assert ours["accuracy"] > 0.5, f"test accuracy {ours['accuracy']:.3f} is not well above chance (0.1)"
    check_close(losses, torch.tensor(theirs["losses"], dtype=torch.float64), torch.float32, name="losses per step")


def test_digits_few_steps_on_kernels_match_torch_nn():
    ours = train_digits(epochs=1, seed=3, model="fastgru", batch_size=16, hidden_size=16, attention_size=16, max_steps=3,
                        evaluate=False)
    theirs = train_digits(epochs=1, seed=3, model="torch", batch_size=16, hidden_size=16, attention_size=16, max_steps=3,
                        evaluate=False)
    assert ours["steps"] == 3
    assert uses_kernels(torch.zeros(1)) == (os.environ.get("FASTGRU_BACKEND") == "interpret")
    check_close(torch.tensor(ours["losses"]), torch.tensor(theirs["losses"], dtype=torch.float64), torch.float32,
                name="losses per step")


_SEQ2SEQ = """
import json
from fastgru.examples.seq2seq import train_seq2seq
r = train_seq2seq(seed=0)
print(json.dumps({"losses": r["losses"], "accuracy": r["accuracy"], "token_accuracy": r["token_accuracy"]}))
"""


def test_seq2seq_learns_to_reverse_digit_strings():
    """The example's defaults (seed 0) on the CPU torch backend: about 6 s of training; measured
    exact-match accuracy 1.000 for seeds 0-5, asserted >= 0.97 so a change of BLAS does not flip it."""
    env = {**os.environ, "FASTGRU_BACKEND": "torch", "TRITON_INTERPRET": "0"}
    proc = subprocess.run([sys.executable, "-c", _SEQ2SEQ], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    losses = torch.tensor(run["losses"], dtype=torch.float64)
    assert len(losses) == 300
    assert losses[-20:].mean() < 0.05 * losses[:20].mean(), "the loss does not fall"
    assert run["accuracy"] >= 0.97, f"greedy exact-match accuracy {run['accuracy']:.3f}"
    assert run["token_accuracy"] >= run["accuracy"]


def test_seq2seq_few_steps_on_kernels_match_torch_backend():
    """Three training steps of a tiny model on the kernels (the interpreter under the test suite)
    and on the torch backend: the same losses per step."""
    from fastgru.backend import using
    from fastgru.examples.seq2seq import train_seq2seq

    small = dict(steps=3, seed=2, batch_size=8, n_train=64, n_test=8, embed_size=8, encoder_size=8, decoder_size=8,
                 attention_size=8)
    ours = train_seq2seq(**small)
    with using("torch"):
        theirs = train_seq2seq(**small)
    assert ours["steps"] == 3
    assert uses_kernels(torch.zeros(1)) == (os.environ.get("FASTGRU_BACKEND") == "interpret")
    check_close(torch.tensor(ours["losses"], dtype=torch.float64), torch.tensor(theirs["losses"], dtype=torch.float64),
                torch.float32, name="losses per step")
