"""Sequential classification of small bundled/procedural datasets (optional ``data`` extra):
scikit-learn's 8x8 digits pixel by pixel, and MNIST-1D. Stand-ins for sequential and
permuted MNIST that need no download; their numbers are not comparable with MNIST's."""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax.tasks.base import (
    Batch,
    Task,
    argmax_correct,
    at_last_step,
    check_int,
    require_extra,
)

DIGITS_TRAIN = 1437  # the first 80% of the 1797 images train, the last 360 test
DIGITS_PERMUTATION_SEED = 0


@functools.cache
def _digits_split(permuted: bool):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    if permuted:
        x = x[:, np.random.default_rng(DIGITS_PERMUTATION_SEED).permutation(x.shape[1])]
    y = y.astype(np.int32)
    return x[:DIGITS_TRAIN], y[:DIGITS_TRAIN], x[DIGITS_TRAIN:], y[DIGITS_TRAIN:]


@functools.cache
def _mnist1d_split(length: int, num_samples: int):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.final_seq_length, args.num_samples = length, num_samples
    # make_dataset seeds NumPy's and Python's global generators; leave them as they were
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    f32, i32 = np.float32, np.int32
    return (data["x"].astype(f32), data["y"].astype(i32),
            data["x_test"].astype(f32), data["y_test"].astype(i32))


class _DatasetTask(Task):
    """Classification of a fixed dataset, one scalar feature per step, the class read at
    the last step. ``sample`` draws uniformly, with replacement, from the training split;
    ``sample_eval`` from the test split (without replacement while the batch fits)."""

    loss_type = "xent"
    input_size = 1
    output_size = 10

    def split(self):
        """(x_train [N, T], y_train [N], x_test [M, T], y_test [M]) as NumPy arrays."""
        raise NotImplementedError

    @property
    def chance_loss(self) -> float:
        return math.log(10)

    def _batch(self, x_NT, y_N, idx_B) -> Batch:
        B, T = idx_B.shape[0], x_NT.shape[1]
        inputs = jnp.asarray(x_NT)[idx_B][..., None]
        last_BT = jnp.broadcast_to(jnp.arange(T) == T - 1, (B, T))
        targets = jnp.where(last_BT, jnp.asarray(y_N)[idx_B][:, None], 0).astype(jnp.int32)
        return Batch(inputs, targets, last_BT.astype(jnp.float32), jnp.full((B,), T, jnp.int32))

    def _sample(self, key, batch_size):
        x, y, _, _ = self.split()
        return self._batch(x, y, jax.random.randint(key, (batch_size,), 0, len(y)))

    def sample_eval(self, key, batch_size):
        """A batch of the test split: distinct images while ``batch_size`` <= its size."""
        batch_size = self._checked_batch_size(batch_size)
        _, _, x, y = self.split()
        if batch_size <= len(y):
            idx_B = jax.random.permutation(key, len(y))[:batch_size]
        else:
            idx_B = jax.random.randint(key, (batch_size,), 0, len(y))
        return self._batch(x, y, idx_B)

    def correct(self, outputs, batch: Batch):
        self._check_outputs(outputs, batch)
        return at_last_step(argmax_correct(outputs, batch), batch.lengths)


@dataclass(frozen=True)
class DigitsTask(_DatasetTask):
    """Sequential (``permuted=False``) or permuted (``permuted=True``) pixel
    classification of scikit-learn's bundled 8x8 handwritten digits (UCI optdigits
    test set, 1797 images; ``pip install 'lstmjax[data]'``), a small stand-in for
    sequential/permuted MNIST (Le et al. 2015) whose numbers are NOT comparable.

    One pixel per step (row-major, or in a fixed random order drawn once with
    ``numpy.random.default_rng(0)``), scaled to [0, 1]: ``length`` = 64 steps, the only
    valid value. Split fixed: the first 1437 images train, the last 360 test;
    ``sample`` draws training images, ``sample_eval`` test images. The class (0-9) and
    the cross-entropy at the last step.

    chance_loss = ln 10: the uniform prediction; the training classes hold 141-146
    images each, so the fitted prior is better by under 1e-4 nats. No paper criterion:
    ``solved``: accuracy >= ``solved_threshold`` (default 0.9) on a test batch.
    """

    name = "digits"
    source = "scikit-learn digits (stand-in for sequential MNIST)"
    length: int = 64
    permuted: bool = False
    solved_threshold: float = 0.9

    def validate(self):
        if self.length != 64 or isinstance(self.length, bool):
            raise ValueError(
                f"{self.name}: length={self.length!r} is invalid; valid values: 64 "
                "(the 8x8 images have 64 pixels)"
            )
        if not isinstance(self.permuted, bool):
            raise ValueError(f"{self.name}: permuted={self.permuted!r} must be true or false")
        require_extra(self.name, "sklearn", "scikit-learn")
        super().validate()

    @property
    def seq_len(self) -> int:
        return 64

    def split(self):
        return _digits_split(self.permuted)


@dataclass(frozen=True)
class Mnist1dTask(_DatasetTask):
    """MNIST-1D, Greydanus 2020 (arXiv:2011.14439): ten 1-D digit templates padded,
    scaled, translated, sheared and noised by the ``mnist1d`` package's procedural
    generator (``mnist1d.data.make_dataset``, seed 42; never its download path;
    ``pip install 'lstmjax[data]'``), a stand-in for sequential MNIST whose numbers are
    NOT comparable.

    ``length`` = the generator's ``final_seq_length`` (40, one value per step);
    ``num_samples`` (5000) are generated, 500 per class, shuffled, the first 80% train
    and the rest test (the package's fixed split). ``sample`` draws training
    sequences, ``sample_eval`` test sequences; the class (0-9) and the cross-entropy
    at the last step.

    chance_loss = ln 10: the classes are balanced overall (the splits within a few
    percent), so the uniform prediction is the best input-blind one to < 1e-3 nats.
    No paper criterion: ``solved``: accuracy >= ``solved_threshold`` (default 0.9) on
    a test batch.
    """

    name = "mnist1d"
    source = "Greydanus 2020 (MNIST-1D; stand-in for sequential MNIST)"
    length: int = 40
    num_samples: int = 5000
    solved_threshold: float = 0.9

    def validate(self):
        check_int(self.name, "length", self.length, 1)
        check_int(self.name, "num_samples", self.num_samples, 20, "the test split needs images")
        require_extra(self.name, "mnist1d", "mnist1d")
        super().validate()

    @property
    def seq_len(self) -> int:
        return self.length

    def split(self):
        return _mnist1d_split(self.length, self.num_samples)
