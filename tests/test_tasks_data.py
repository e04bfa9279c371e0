"""The dataset tasks (optional `data` extra): digits and MNIST-1D against the data as
scikit-learn / the mnist1d package give it, the fixed splits, sample_eval, chance, the
missing-extra error and the training loop's use of the test split."""

from __future__ import annotations

import functools
import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstmjax import tasks

N = 10_000
needs_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn (lstmjax[data])"
)
needs_mnist1d = pytest.mark.skipif(
    importlib.util.find_spec("mnist1d") is None, reason="needs mnist1d (lstmjax[data])"
)
MNIST1D = dict(length=40, num_samples=500)  # 400 train / 100 test, quick to generate


@functools.cache
def _draws(labels: tuple):
    """{label: (train batch of N, eval batch of the test split's size)} for the tasks
    ``labels``, from one compiled program (``sample`` vmapped over (k0, k0, k1))."""
    made = {"digits": tasks.make("digits"), "digits_permuted": tasks.make("digits", permuted=True),
            "mnist1d": tasks.make("mnist1d", **MNIST1D)}
    keys = jax.random.split(jax.random.key(0))[jnp.array([0, 0, 1])]

    def run(keys):
        return {lab: (jax.vmap(made[lab].sample, in_axes=(0, None))(keys, N // 2),
                      made[lab].sample_eval(keys[2], len(made[lab].split()[3])))
                for lab in labels}

    out = {}
    for lab, (train, test) in jax.jit(run)(keys).items():
        arrays = [np.asarray(a) for a in train]
        for a in arrays:
            np.testing.assert_array_equal(a[0], a[1])
        assert not np.array_equal(arrays[0][0], arrays[0][2])
        out[lab] = (made[lab], [np.concatenate([a[1], a[2]]) for a in arrays],
                    [np.asarray(a) for a in test])
    return out


def _labels_by_row(x_NT, y_N):
    table = {}
    for row, label in zip(x_NT, y_N, strict=True):
        table.setdefault(row.tobytes(), set()).add(int(label))
    return table


def _check_split(task, train, test, x_tr, y_tr, x_te, y_te):
    T = x_tr.shape[1]
    assert task.seq_len == T and task.input_size == 1 and task.output_size == 10
    for x, y, mask, lengths, (xs, ys) in [(*train, (x_tr, y_tr)), (*test, (x_te, y_te))]:
        assert x.shape[1:] == (T, 1) and (lengths == T).all()
        np.testing.assert_array_equal(mask, np.eye(T)[[T - 1] * len(x)])
        assert (y[:, :-1] == 0).all()
        table = _labels_by_row(xs.astype(np.float32), ys)
        for row, label in zip(x[..., 0], y[:, -1], strict=True):
            assert label in table[row.tobytes()]  # a row of this split, with its label
    # sample_eval with the test split's size: every test image once
    order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    np.testing.assert_array_equal(order(test[0][..., 0]), order(x_te.astype(np.float32)))
    # chance: the best input-blind predictor (the empirical class prior) vs ln 10
    prior = np.bincount(train[1][:, -1], minlength=10) / len(train[1])
    blind = -np.sum(prior * np.log(prior))
    assert abs(blind - task.chance_loss) <= 0.02 * task.chance_loss
    assert task.chance_loss == pytest.approx(math.log(10))
    assert_uniform_classes(train[1][:, -1])


def assert_uniform_classes(labels):
    freq = np.bincount(labels, minlength=10) / len(labels)
    np.testing.assert_array_less(np.abs(freq - 0.1), 5 * math.sqrt(0.09 / len(labels)) + 0.005)


@needs_sklearn
def test_digits_definition_split_and_permutation():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    draws = _draws(("digits", "digits_permuted"))
    task, train, test = draws["digits"]
    _check_split(task, train, test, x[:1437], y[:1437], x[1437:], y[1437:])
    perm = np.random.default_rng(0).permutation(64)
    task, train, test = draws["digits_permuted"]
    assert task.permuted and not np.array_equal(perm, np.arange(64))
    _check_split(task, train, test, x[:1437, perm], y[:1437], x[1437:, perm], y[1437:])
    with pytest.raises(ValueError, match="valid values: 64"):
        tasks.make("digits", length=63)


@needs_mnist1d
def test_mnist1d_definition_split_and_rng_hygiene():
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    (task, train, test), = _draws(("mnist1d",)).values()
    assert np.array_equal(np.random.get_state()[1], before), "global NumPy RNG left as it was"
    args = get_dataset_args()
    args.num_samples, args.final_seq_length = MNIST1D["num_samples"], MNIST1D["length"]
    data = make_dataset(args)
    assert len(data["y"]) == 400 and len(data["y_test"]) == 100
    _check_split(task, train, test, data["x"], data["y"], data["x_test"], data["y_test"])
    short = tasks.make("mnist1d", length=20, num_samples=100)
    assert short.split()[0].shape == (80, 20) and short.seq_len == 20


@needs_sklearn
def test_digits_evaluate():
    task, train, test = _draws(("digits", "digits_permuted"))["digits"]
    y = test[1]
    perfect = 20.0 * np.eye(10)[y]

    def right_fraction(frac):
        out = perfect.copy()
        bad = np.arange(len(y))[int(frac * len(y)):]
        out[bad, -1] = 20.0 * np.eye(10)[(y[bad, -1] + 1) % 10]
        return out

    outputs = np.stack(
        [perfect, np.zeros_like(perfect), right_fraction(0.95), right_fraction(0.85)]
    )
    metrics = jax.jit(jax.vmap(task.evaluate, in_axes=(0, None)))(
        jnp.asarray(outputs, jnp.float32), tasks.Batch(*test)
    )
    solved, accuracy = np.asarray(metrics["solved"]), np.asarray(metrics["accuracy"])
    np.testing.assert_array_equal(solved, [True, False, True, False])
    np.testing.assert_allclose(accuracy, [1.0, np.mean(y[:, -1] == 0), 0.95, 0.85], atol=0.003)
    assert float(metrics["loss"][1]) == pytest.approx(math.log(10), rel=1e-5)


def test_missing_extra_is_a_one_line_error_naming_the_extra(monkeypatch, tmp_path):
    import importlib.util as util

    real = util.find_spec
    hidden = ("sklearn", "mnist1d")
    monkeypatch.setattr(util, "find_spec", lambda n, *a: None if n in hidden else real(n, *a))
    for name, package in (("digits", "scikit-learn"), ("mnist1d", "mnist1d")):
        with pytest.raises(tasks.MissingExtraError) as info:
            tasks.make(name)
        message = str(info.value)
        assert "\n" not in message and package in message
        assert "pip install 'lstmjax[data]'" in message
        assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)
    rows = {r["name"]: r for r in tasks.describe()}
    assert math.isnan(rows["digits"]["chance_loss"])
    assert "lstmjax[data]" in rows["digits"]["summary"]
    assert "digits" in tasks.format_table()
    from lstmjax.experiment import load_config
    from lstmjax.experiment.config import ConfigError

    config = tmp_path / "digits.yaml"
    config.write_text("name: d\ntask: {name: digits, length: 64}\nmodel: {cell: lstm}\n")
    with pytest.raises(ConfigError, match=r"lstmjax\[data\]"):
        load_config(config)


@needs_sklearn
def test_training_evaluates_on_the_test_split(monkeypatch):
    from lstmjax.experiment.config import from_dict
    from lstmjax.train import make_trainer

    calls = []
    real = tasks.DigitsTask.sample_eval

    def spy(self, key, batch_size):
        calls.append(batch_size)
        return real(self, key, batch_size)

    monkeypatch.setattr(tasks.DigitsTask, "sample_eval", spy)
    cfg = from_dict({
        "name": "d", "task": {"name": "digits", "length": 64},
        "model": {"cell": "rnn", "hidden_size": 4},
        "train": {"steps": 2, "eval_every": 2, "batch_size": 4, "eval_batch_size": 7},
    })
    trainer = make_trainer(cfg)
    jax.eval_shape(trainer.chunk, trainer.init(jax.random.PRNGKey(0)))
    assert calls == [7]
