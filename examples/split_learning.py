"""Split learning: alice holds the features, bob holds the labels; neither sees the other's data.

The model is cut in two. alice owns the bottom half (features -> hidden activations, tanh) and
bob the top half (activations -> probability). Each step, for a batch of sample ids both
parties agree on:

1. alice computes the batch's activations and pushes them to bob;
2. bob computes the loss on his labels, updates his half, and pushes the gradient of the loss
   with respect to the activations back to alice;
3. alice back-propagates it through her half and updates it.

Only activations and gradients cross; the features stay with alice and the labels with bob.
Bob prints the loss (averaged over 10 steps), which falls.

    python -m silo run examples/split_learning.yaml
    python examples/split_learning.py
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

import silo

STEPS = 60
BATCH = 128
HIDDEN = 8
FEATURES = 6
SAMPLES = 1000
LEARNING_RATE = 0.3

Array = np.ndarray[Any, np.dtype[np.float64]]


def _make_dataset() -> tuple[Array, Array]:
    """Synthetic records: in real life alice loads the features and bob the labels, joined by id."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, FEATURES))
    score = x[:, 0] * x[:, 1] + x[:, 2] - 0.5 * x[:, 3]
    return x, (score > 0).astype(np.float64)


def batch_ids(step: int) -> Array:
    """The sample ids of a step; both parties compute the same ones from the shared seed."""
    return np.random.default_rng(step).choice(SAMPLES, size=BATCH, replace=False)


@silo.remote
class FeatureOwner:
    """alice: the features and the bottom half of the model."""

    def __init__(self) -> None:
        features, _ = _make_dataset()
        self.x = np.hstack([features, np.ones((SAMPLES, 1))])
        self.w = np.random.default_rng(1).normal(scale=0.5, size=(FEATURES + 1, HIDDEN))
        self.batch: Array | None = None
        self.acts: Array | None = None

    def forward(self, step: int) -> Array:
        self.batch = self.x[batch_ids(step)]
        self.acts = np.tanh(self.batch @ self.w)
        return self.acts

    def backward(self, grad_acts: Array) -> None:
        assert self.batch is not None and self.acts is not None
        grad_pre = grad_acts * (1.0 - self.acts**2)
        self.w -= LEARNING_RATE * self.batch.T @ grad_pre


@silo.remote
class LabelOwner:
    """bob: the labels and the top half of the model."""

    def __init__(self) -> None:
        _, self.y = _make_dataset()
        self.w = np.zeros(HIDDEN)
        self.b = 0.0

    def step(self, step: int, acts: Array) -> tuple[float, Array]:
        y = self.y[batch_ids(step)]
        p = 1.0 / (1.0 + np.exp(-(acts @ self.w + self.b)))
        eps = 1e-9
        loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
        grad_logits = (p - y) / len(y)
        grad_acts = np.outer(grad_logits, self.w)
        self.w -= LEARNING_RATE * acts.T @ grad_logits
        self.b -= LEARNING_RATE * float(grad_logits.sum())
        return loss, grad_acts


async def main(party: str) -> list[float]:
    """Train for ``STEPS`` steps; bob returns the losses, alice an empty list.

    alice never waits: her program returns at once, and her clean shutdown lets the calls it
    scheduled run as bob's gradients arrive.
    """
    bottom = FeatureOwner.party("alice").remote()
    top = LabelOwner.party("bob").remote()
    losses: list[float] = []
    for step in range(1, STEPS + 1):
        acts = bottom.forward.remote(step)
        loss, grad_acts = top.step.options(num_returns=2).remote(step, acts)
        bottom.backward.remote(grad_acts)
        if party == "bob":
            losses.append(await silo.get(loss))
            if step % 10 == 0:
                mean = sum(losses[-10:]) / 10
                print(f"steps {step - 9}-{step}: loss {mean:.4f}", flush=True)
    if party == "bob":
        first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
        print(f"bob: mean loss fell from {first:.4f} to {last:.4f}")
    return losses


if __name__ == "__main__":
    asyncio.run(silo.simulate(main, ["alice", "bob"]))
