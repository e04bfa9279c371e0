"""Hardening of the public API: params that do not fit their cell (case 8) and
``from_torch`` dispatch and dtypes (case 9).

Case 8: ``lj.scan``/``lj.RNN.apply`` compare params with ``jax.eval_shape(cell.init, ...)``
at trace time; a mismatch is a one-line error naming the key and the expected shape.
Case 9: ``from_torch`` dispatches on ``isinstance``, refuses subclasses that override
``forward`` and quantized modules, imports float32/float64/bfloat16 with the dtype they
have (never claiming another) and refuses float16.
"""

from __future__ import annotations

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _xla import jit as fast_compile_jit

import lstmjax as lj
from lstmjax import cells

D, H, B, T = 3, 8, 2, 4


def _name(cell) -> str:
    """The class name as the error messages print it (robust to the cell-class renames)."""
    return re.escape(type(cell).__name__)


@pytest.fixture(scope="module")
def lstm():
    cell = cells.make("lstm", H)
    return cell, cell.init(jax.random.key(0), D)


@pytest.fixture(scope="module")
def xs():
    return jax.random.normal(jax.random.key(1), (B, T, D))


# ---- case 8: params that do not match the cell ---------------------------------------------
def test_missing_bias_is_an_error_not_a_silent_bias_free_run(lstm, xs):
    cell, params = lstm
    no_b = {k: v for k, v in params.items() if k != "b"}
    msg = (rf"^lj\.scan: params for {_name(cell)}\(hidden_size=8\): missing key 'b' "
           rf"\(expected shape \(32,\)\); got keys W_h, W_x$")
    with pytest.raises(ValueError, match=msg):
        lj.scan(cell, no_b, xs)
    with pytest.raises(ValueError, match=msg[:-1]):  # under jit: once, at trace time
        jax.jit(lj.scan, static_argnums=0)(cell, no_b, xs)


def test_extra_wrong_shape_foreign_and_none_params(lstm, xs):
    cell, params = lstm
    head = rf"^lj\.scan: params for {_name(cell)}\(hidden_size=8\): "
    with pytest.raises(ValueError, match=head + r"unexpected key 'p_i' \(shape \(8,\)\); "
                       r"expected keys W_h, W_x, b$"):
        lj.scan(cell, {**params, "p_i": jnp.zeros(H)}, xs)
    with pytest.raises(ValueError, match=head + r"key 'W_h' has shape \(4, 32\); "
                       r"expected \(8, 32\)$"):
        lj.scan(cell, {**params, "W_h": jnp.zeros((4, 4 * H))}, xs)
    with pytest.raises(ValueError, match=head + r"key 'W_x' has shape \(5, 32\); "
                       r"expected \(3, 32\) \(input width 3\)$"):
        lj.scan(cell, {**params, "W_x": jnp.zeros((5, 4 * H))}, xs)
    gru_params = cells.make("gru", H).init(jax.random.key(2), D)
    with pytest.raises(ValueError, match=head + r".*key 'W_x' has shape \(3, 24\); expected "
                       r"\(3, 32\) \(input width 3\); .*unexpected key 'b_hn'"):
        lj.scan(cell, gru_params, xs)
    with pytest.raises(TypeError, match=head + r"expected a dict of arrays as returned by "
                       r"cell\.init\(key, input_size\); got None$"):
        lj.scan(cell, None, xs)
    with pytest.raises(TypeError, match=head + r"key 'b' is a list, not an array"):
        lj.scan(cell, {**params, "b": [0.0] * 32}, xs)


def test_a_cell_name_string_instead_of_a_cell(lstm, xs):
    _, params = lstm
    with pytest.raises(TypeError, match=r"^lj\.scan: expected a cell \(e\.g\. "
                       r"lj\.cells\.make\('lstm', 64\)\), got the string 'lstm'$"):
        lj.scan("lstm", params, xs)
    with pytest.raises(TypeError, match=r"^lj\.scan: expected a cell .*got dict$"):
        lj.scan(params, params, xs)
    with pytest.raises(TypeError, match=r"^RNN expects a cell or a non-empty sequence of cells "
                       r"\(e\.g\. lj\.cells\.make\('lstm', 64\)\); got the string 'gru'$"):
        lj.RNN("gru")


def test_rnn_apply_names_the_layer_and_direction(xs):
    net = lj.RNN(cells.make("gru", H), num_layers=2, bidirectional=True)
    params = net.init(jax.random.key(0), D)
    bad = [list(layer) for layer in params]
    bad[1][1] = {k: v for k, v in bad[1][1].items() if k != "b_hn"}
    with pytest.raises(ValueError, match=rf"^lj\.RNN\.apply: params\[1\]\[1\] \(layer 1 "
                       rf"backward\) for {_name(net.cells[0])}\(hidden_size=8\): missing key "
                       r"'b_hn' \(expected shape \(8,\)\); got keys W_h, W_x, b$"):
        net.apply(bad, xs)
    # Layer 1 sees the concatenated width 2H: a layer-0-shaped W_x there is caught too.
    bad = [list(layer) for layer in params]
    bad[1][0] = params[0][0]
    with pytest.raises(ValueError, match=r"params\[1\]\[0\] \(layer 1 forward\).*key 'W_x' has "
                       r"shape \(3, 24\); expected \(16, 24\) \(input width 16\)"):
        net.apply(bad, xs)


# Cells with optional param entries: peepholes, FGR's W_a, projection, GRU's b_hn, MGU, LRU
# (dense and diagonal D), minGRU, bias-free.
VARIANTS = [
    ("peephole", {}), ("fgr", {}), ("lstm", {"proj_size": 3}), ("gru", {}),
    ("gru", {"reset_after": False}), ("mgu", {}), ("lru", {}), ("lru", {"state_size": 5}),
    ("mingru", {}), ("rnn", {"use_bias": False}), ("cifg", {}),
]


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=[f"{n}{o}" for n, o in VARIANTS])
def test_valid_params_still_run_under_jit_vmap_grad(name, options):
    cell = cells.make(name, H, **options)
    params = cell.init(jax.random.key(0), D)
    xs_KBTD = jax.random.normal(jax.random.key(1), (2, B, T, D))

    def loss(p, x):
        return jnp.sum(lj.scan(cell, p, x)[0] ** 2)

    grads = fast_compile_jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(params, xs_KBTD)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    # Params in another float dtype are legal (shapes are compared, not dtypes).
    ys16 = lj.scan(cell, jax.tree.map(lambda a: a.astype(jnp.bfloat16), params), xs_KBTD[0])[0]
    assert ys16.shape == (B, T, cell.output_size)
    # Square input (D == H): the LRU's diagonal skip D [H] is the expected shape then.
    square = cell.init(jax.random.key(3), H)
    assert lj.scan(cell, square, jnp.ones((B, T, H)))[0].shape == (B, T, cell.output_size)


def test_rnn_variants_still_run(xs):
    lengths, resets = jnp.array([T, 2]), jnp.zeros((B, T), bool).at[:, 2].set(True)
    nets = [
        lj.RNN(cells.make("lstm", H), num_layers=2, bidirectional=True, proj_size=3),
        lj.RNN(cells.make("gru", H), num_layers=3, residual=True, dropout=0.2,
               recurrent_dropout=0.1),
        lj.RNN([cells.make("peephole", H), cells.make("lru", H)], bidirectional=True),
    ]
    for net in nets:
        params = net.init(jax.random.key(0), D)
        ys, _ = jax.jit(lambda p, x, net=net: net.apply(
            p, x, seq_lengths=lengths, resets=resets, key=jax.random.key(1)))(params, xs)
        assert ys.shape == (B, T, net.output_size)


def test_check_adds_nothing_to_the_compiled_program(lstm, xs, monkeypatch):
    """The check is trace-time only: ``lj.scan``'s jaxpr is the same without it."""
    cell, params = lstm
    trace = lambda: str(jax.make_jaxpr(lambda p, x: lj.scan(cell, p, x))(params, xs))
    checked = trace()
    monkeypatch.setattr(lj.rnn, "_check_cell_params", lambda *args, **kwargs: None)
    assert trace() == checked


def test_torch_cell_model_checks_params():
    torch = pytest.importorskip("torch")
    model, params = lj.interop.from_torch(torch.nn.GRUCell(D, H))
    with pytest.raises(ValueError, match=r"missing key 'b_hn' \(expected shape \(8,\)\)"):
        model.apply({k: v for k, v in params.items() if k != "b_hn"}, jnp.ones((B, D)))


# ---- case 9: from_torch dispatch and dtypes -------------------------------------------------
torch = pytest.importorskip("torch")


def _seeded(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_((0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64)).to(p.dtype))
    return module.eval()


def _err(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


class PlainLSTM(torch.nn.LSTM):
    """A subclass that keeps torch's forward: imports."""

    def extra_repr(self):
        return "plain"


class ScaledGRU(torch.nn.GRU):
    """Overrides forward: its semantics are unknown, so it must be refused."""

    def forward(self, x, h=None):
        out, h = super().forward(x, h)
        return 2 * out, h


class LSTM(torch.nn.Module):
    """Unrelated to torch.nn.LSTM, but named LSTM."""

    hidden_size = 4


def test_plain_subclass_imports_and_matches_torch():
    with jax.enable_x64(True):
        module = _seeded(PlainLSTM(D, 4, num_layers=2, dtype=torch.float64))
        model, params = lj.interop.from_torch(module)
        x = np.random.default_rng(0).normal(size=(T, B, D))
        with torch.no_grad():
            ref, (h, c) = module(torch.tensor(x))
        ys, (h_j, c_j) = model.apply(params, x)
        assert max(_err(ys, ref), _err(h_j, h), _err(c_j, c)) < 1e-10


def test_subclass_overriding_forward_is_refused():
    with pytest.raises(TypeError, match=r"^from_torch: ScaledGRU subclasses torch\.nn\.GRU but "
                       r"overrides forward"):
        lj.interop.from_torch(ScaledGRU(D, 4))

    class MyCell(torch.nn.LSTMCell):
        def forward(self, x, hx=None):
            return super().forward(x, hx)

    with pytest.raises(TypeError, match=r"MyCell subclasses torch\.nn\.LSTMCell but overrides"):
        lj.interop.from_torch(MyCell(D, 4))


def test_forward_hooks_are_refused():
    module = torch.nn.GRU(D, 4)
    module.register_forward_hook(lambda m, args, out: out)
    with pytest.raises(TypeError, match=r"^from_torch: GRU has forward hooks"):
        lj.interop.from_torch(module)


def test_unrelated_class_named_like_a_torch_layer_is_refused():
    with pytest.raises(TypeError, match=r"^from_torch: unsupported module type 'LSTM'; supported: "
                       r"\[.*'LSTM'.*\] of torch\.nn .*\(got test_hardening_api\.LSTM\)$"):
        lj.interop.from_torch(LSTM())


def test_quantized_modules_are_refused():
    import torch.ao.nn.quantized.dynamic as qd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        quantized = quantize_dynamic(torch.nn.Sequential(torch.nn.LSTM(D, 4)), {torch.nn.LSTM},
                                     dtype=torch.qint8)[0]
        cell = qd.GRUCell(D, 4)
    for module in (quantized, cell):
        name = type(module).__name__
        with pytest.raises(TypeError, match=rf"^from_torch: {name} \(torch\.ao\.nn\.quantized"
                           r".*\) is a quantized module; .*import the float module"):
            lj.interop.from_torch(module)


def test_float64_imports_as_float64_and_needs_x64():
    module = _seeded(torch.nn.RNN(D, 4, dtype=torch.float64))
    with jax.enable_x64(True):
        model, params = lj.interop.from_torch(module)
        assert model.rnn.cells[0].dtype == "float64"
        assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype("float64")}
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"^from_torch: the module is float64 but JAX's "
                           r"64-bit mode is off.*jax\.config\.update\(\"jax_enable_x64\", True\)"):
            lj.interop.from_torch(module)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"])
def test_bfloat16_imports_as_bfloat16_and_matches_torch(kind):
    module = _seeded(getattr(torch.nn, kind)(D, 4)).bfloat16()
    model, params = lj.interop.from_torch(module)
    cell = model.cell if kind.endswith("Cell") else model.rnn.cells[0]
    assert cell.dtype == "bfloat16"  # the dtype claimed is the dtype used
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype("bfloat16")}
    x = np.random.default_rng(0).normal(size=(B, D) if kind.endswith("Cell") else (T, B, D))
    with torch.no_grad():
        ref = module(torch.tensor(x, dtype=torch.bfloat16))
        ref32 = module.float()(torch.tensor(x, dtype=torch.float32))
    out = model.apply(params, x)
    first = lambda o: o[0] if isinstance(o, tuple) else o
    ref, ref32, out = first(ref), first(ref32), first(out)
    assert out.dtype == jnp.bfloat16
    assert _err(out, ref.float()) < 2e-2 and _err(out, ref32) < 2e-2
    # ...and exports back as bfloat16 tensors.
    state = lj.interop.to_torch_state_dict(model, params)
    assert {t.dtype for t in state.values()} == {torch.bfloat16}


def test_float16_and_mixed_dtypes_are_refused():
    with pytest.raises(TypeError, match=r"^from_torch: LSTM has float16 parameters; supported: "
                       r"float32, float64, bfloat16.*module\.float\(\)"):
        lj.interop.from_torch(torch.nn.LSTM(D, 4).half())
    mixed = torch.nn.GRUCell(D, 4)
    mixed.bias_hh.data = mixed.bias_hh.data.double()
    with pytest.raises(TypeError, match=r"^from_torch: GRUCell mixes parameter dtypes"):
        lj.interop.from_torch(mixed)
