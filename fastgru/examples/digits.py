"""Train GRUAttention on scikit-learn's handwritten digits (shipped with scikit-learn, no
download): each 8x8 image is read as a sequence of 8 rows of 8 pixels.

    python -m fastgru.examples.digits [--epochs 20] [--model fastgru|torch]

``model="torch"`` trains the same network built from torch.nn layers only (nn.GRU, the pooling
written out with nn.Linear), starting from the same weights: the two runs' losses agree step by
step, which is what tests/test_examples.py checks.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from fastgru import reference
from fastgru import GRUAttention


class TorchPooling(nn.Module):
    """AttentionPooling written with torch.nn only (same parameter names)."""

    def __init__(self, input_size, attention_size):
        super().__init__()
        self.proj = nn.Linear(input_size, attention_size)
        self.context = nn.Parameter(torch.zeros(attention_size))

    def forward(self, h, lengths=None):
        scores = torch.tanh(self.proj(h)) @ self.context  # (N, T)
        ignore = reference.attention_ignore_mask(lengths, None, h.shape[0], h.shape[1], h.device)
        weights = reference.masked_softmax(scores[:, None, :], ignore)[:, 0]
        return (weights[:, :, None] * h).sum(1), weights


class TorchGRUAttention(nn.Module):
    """GRUAttention from torch.nn layers; its state_dict is interchangeable with GRUAttention's."""

    def __init__(self, input_size, hidden_size, output_size, attention_size=None):
        super().__init__()
        self.encoder = nn.GRU(input_size, hidden_size, batch_first=True)
        self.pooling = TorchPooling(hidden_size, attention_size or hidden_size)
        self.head = nn.Linear(hidden_size, output_size)

    def forward(self, x, lengths=None):
        h, _ = self.encoder(x)
        pooled, weights = self.pooling(h, lengths)
        return self.head(pooled), weights


def load_digits_sequences(seed=0, test_fraction=0.2):
    """(x_train, y_train, x_test, y_test): x (n, 8, 8) float32 in [0, 1], y (n,) int64."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def build_model(model="fastgru", seed=0, hidden_size=32, attention_size=16):
    """The network, with initial weights fixed by ``seed`` (the same for both kinds)."""
    torch.manual_seed(seed)
    net = GRUAttention(8, hidden_size, 10, attention_size=attention_size)
    if model == "fastgru":
        return net
    if model == "torch":
        twin = TorchGRUAttention(8, hidden_size, 10, attention_size=attention_size)
        twin.load_state_dict(net.state_dict())
        return twin
    raise ValueError(f"model must be 'fastgru' or 'torch', got {model!r}")


def train_digits(epochs=10, seed=0, model="fastgru", batch_size=64, hidden_size=32, attention_size=16, lr=1e-2,
                 max_steps=None, evaluate=True, verbose=False):
    """Train and evaluate; returns {"losses": per-step training losses, "accuracy": test
    accuracy, "train_accuracy", "steps", "seconds", "model"} (accuracies None when not
    ``evaluate``)."""
    x_train, y_train, x_test, y_test = load_digits_sequences(seed)
    net = build_model(model, seed, hidden_size, attention_size)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    shuffle = torch.Generator().manual_seed(seed + 1)
    losses, start = [], time.perf_counter()
    for epoch in range(epochs):
        net.train()
        for idx in torch.randperm(len(y_train), generator=shuffle).split(batch_size):
            logits, _ = net(x_train[idx])
            loss = nn.functional.cross_entropy(logits, y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if max_steps is not None and len(losses) >= max_steps:
                break
        if verbose:
            print(f"epoch {epoch + 1:3d}  loss {sum(losses[-10:]) / len(losses[-10:]):.4f}")
        if max_steps is not None and len(losses) >= max_steps:
            break

    def accuracy(x, y):
        net.eval()
        with torch.no_grad():
            return (net(x)[0].argmax(-1) == y).float().mean().item()

    return {
        "losses": losses,
        "accuracy": accuracy(x_test, y_test) if evaluate else None,
        "train_accuracy": accuracy(x_train, y_train) if evaluate else None,
        "steps": len(losses),
        "seconds": time.perf_counter() - start,
        "model": model,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=("fastgru", "torch"), default="fastgru")
    args = parser.parse_args(argv)
    result = train_digits(epochs=args.epochs, seed=args.seed, model=args.model, verbose=True)
    print(f"{args.model}: test accuracy {result['accuracy']:.3f} (chance 0.1) after {result['steps']} steps "
          f"in {result['seconds']:.1f} s")


if __name__ == "__main__":
    main()
