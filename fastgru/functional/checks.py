"""Input checks shared by the families' public functions."""

from __future__ import annotations

import torch

from .. import backend

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Same device, an unindexed device ("cuda") matching any index of its type."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def check_lengths(lengths, n: int, lo: int, hi: int, meaning: str, device=None) -> torch.Tensor:
    """``lengths`` as an int64 tensor of shape (n,) on ``device`` (default: where it is), after
    checking it: integers, one per batch row, each in [lo, hi] (``meaning`` says what hi is).

    The range needs the values. In eager mode they are read and a ValueError names the offending
    range. Where reading a value on the host is not allowed -- inside torch.compile (it would
    break the graph) and while a CUDA graph is being captured (backend.capturing: a host read
    synchronises, which a capture forbids) -- the same condition becomes an asynchronous
    assertion with the same message, checked on the device when the graph runs. Under capture
    ``lengths`` must already be on ``device``: copying host memory into a graph would replay the
    values of the capture, so a RuntimeError says to pass it on the device instead."""
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.is_complex():
        raise TypeError(f"lengths must be an integer tensor of shape ({n},), got dtype {lengths.dtype}")
    if tuple(lengths.shape) != (n,):
        raise ValueError(f"lengths must have shape ({n},) (one length per batch row), got {tuple(lengths.shape)}")
    if device is not None and lengths.device.type != "cpu" and lengths.device != torch.device(device):
        raise RuntimeError(f"lengths is on {lengths.device} but the inputs are on {device}")
    message = f"lengths must lie in [{lo}, {hi}] ({meaning})"
    if torch.compiler.is_compiling():
        torch._assert_async(((lengths >= lo) & (lengths <= hi)).all(), message)
    elif backend.capturing():
        target = torch.device(device) if device is not None else lengths.device
        if not _same_device(lengths.device, target):
            raise RuntimeError(
                f"lengths is on {lengths.device} while a CUDA graph is being captured: a graph cannot copy host "
                f"memory at replay, nor check host values. Pass lengths as an integer tensor on the inputs' device "
                f"({target}), e.g. lengths.to(device) before the capture"
            )
        torch._assert_async(((lengths >= lo) & (lengths <= hi)).all(), message)
    elif n and (int(lengths.min()) < lo or int(lengths.max()) > hi):
        raise ValueError(f"{message}, got values in [{int(lengths.min())}, {int(lengths.max())}]")
    return lengths.to(device=device if device is not None else lengths.device, dtype=torch.int64)


def check_weights_match(x: torch.Tensor, w: torch.Tensor, what: str) -> None:
    """``x`` (named ``what`` in the messages) has the weights' dtype (ValueError, saying how to
    convert either) and device (RuntimeError)."""
    if x.dtype != w.dtype:
        raise ValueError(
            f"{what} dtype ({x.dtype}) does not match weight dtype ({w.dtype}). "
            f"Convert the input: {what}.to({w.dtype}), or the module: module.to({x.dtype})"
        )
    if x.device != w.device:
        raise RuntimeError(f"{what} is on {x.device} but the weights are on {w.device}; move both to one device")


def check_sequence(name: str, input, w_ih, batch_first: bool) -> tuple[int, int]:
    """The checks nn's recurrent modules make of a batched (3-D) input, with their exception
    types: a floating tensor of the weights' dtype and device, input_size features, at least one
    step. Returns (T, B). ``name`` (GRU, LSTM) opens the messages that are fastgru's own."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
    if input.dim() != 3:
        raise ValueError(f"{name}: expected a 3-D batched input, got {input.dim()}-D")
    if input.dtype not in FLOAT_DTYPES:
        raise ValueError(f"RNN input dtype ({input.dtype}) does not match weight dtype ({w_ih.dtype})")
    check_weights_match(input, w_ih, "input")
    if input.shape[-1] != w_ih.shape[1]:
        raise RuntimeError(
            f"input.size(-1) must be equal to input_size. Expected {w_ih.shape[1]}, got {input.shape[-1]}"
        )
    T, B = (input.shape[1], input.shape[0]) if batch_first else (input.shape[0], input.shape[1])
    if T == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    return T, B


def check_state(state: torch.Tensor, expected: tuple, input: torch.Tensor, size_name: str, name: str) -> None:
    """One initial state of a batched call, as nn checks it (RuntimeErrors): shape ``expected``
    ("Expected ``size_name`` size ..."), then input's dtype and device (the state called ``name``).
    The GRU's one state is hidden / hx, the LSTM's two hidden[k] / hx[k]."""
    if tuple(state.shape) != expected:
        raise RuntimeError(f"Expected {size_name} size {expected}, got {list(state.shape)}")
    if state.dtype != input.dtype:
        raise RuntimeError(f"{name} dtype ({state.dtype}) must match input dtype ({input.dtype})")
    if state.device != input.device:
        raise RuntimeError(f"Input and hidden tensors are not at the same device, found input on {input.device} "
                           f"and {name} on {state.device}")


def check_cell_states(input: torch.Tensor, states, w_ih: torch.Tensor, w_hh: torch.Tensor, names) -> None:
    """nn's checks of one cell step (input (B, I) and states (B, H), ranks already checked):
    input_size, each state's batch and hidden size (hidden0, hidden1, ... in nn's messages), the
    weights' dtype and device, then each state's dtype and device (the state called names[k])."""
    if input.shape[1] != w_ih.shape[1]:
        raise RuntimeError(f"input has inconsistent input_size: got {input.shape[1]} expected {w_ih.shape[1]}")
    for k, state in enumerate(states):
        if state.shape[0] != input.shape[0]:
            raise RuntimeError(f"Input batch size {input.shape[0]} doesn't match hidden{k} batch size {state.shape[0]}")
        if state.shape[1] != w_hh.shape[1]:
            raise RuntimeError(
                f"hidden{k} has inconsistent hidden_size: got {state.shape[1]}, expected {w_hh.shape[1]}"
            )
    check_weights_match(input, w_ih, "input")
    for name, state in zip(names, states):
        if state.dtype != input.dtype or state.device != input.device:
            raise RuntimeError(f"{name} must have input's dtype and device ({input.dtype}, {input.device}), "
                               f"got ({state.dtype}, {state.device})")
