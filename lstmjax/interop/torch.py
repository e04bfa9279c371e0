"""Import weights from ``torch.nn`` recurrent modules (and export them back).

Weight layout: torch stores ``weight_ih [G*H, D]``; lstmjax stores ``W_x = weight_ih.T``
with the same gate order (LSTM i, f, g, o; GRU r, z, n), and fuses the two
torch biases where the cell's equations allow (``b = b_ih + b_hh``; for the GRU
the candidate's ``b_hn`` stays separate because the reset gate multiplies it).
An LSTM projection ``weight_hr [P, H]`` becomes ``W_proj = weight_hr.T``.

Layers (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``) become a :class:`TorchLayerModel` around
an :class:`lstmjax.RNN`, whose params are ``params[layer][direction]``.
:func:`to_torch_state_dict` goes back: the fused bias is exported as ``bias_ih``
with ``bias_hh = 0`` (for the GRU, ``bias_hh`` carries ``b_hn``), which computes
the same function.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax import cells
from lstmjax.rnn import RNN, _check_cell_params


def _arr(t):
    """A torch tensor as a float64 NumPy array (exact for float32/bfloat16/float64); the
    importers fuse biases at this precision and cast once to the module's dtype."""
    return t.detach().cpu().double().numpy()


def _dtype_name(module) -> str:
    """The lstmjax dtype name of ``module``'s parameters, or a one-line error."""
    import torch

    names = {torch.float32: "float32", torch.float64: "float64", torch.bfloat16: "bfloat16"}
    found = {p.dtype for p in module.parameters()}
    cls = type(module).__name__
    if len(found) != 1:
        raise TypeError(
            f"from_torch: {cls} mixes parameter dtypes {sorted(map(str, found))}; "
            f"convert it to one first (module.float(), .double() or .bfloat16())"
        )
    (dtype,) = found
    if dtype not in names:
        raise TypeError(
            f"from_torch: {cls} has {str(dtype).removeprefix('torch.')} parameters; "
            f"supported: float32, float64, bfloat16 (convert first, e.g. module.float())"
        )
    if dtype == torch.float64 and jax.dtypes.canonicalize_dtype(jnp.float64) != jnp.float64:
        raise ValueError(
            "from_torch: the module is float64 but JAX's 64-bit mode is off, so its weights "
            'would silently become float32; call jax.config.update("jax_enable_x64", True) '
            "at program start, or import module.float()"
        )
    return names[dtype]


def _cast(params, dtype: str):
    """NumPy params as JAX arrays of ``dtype`` (the dtype the imported cell records)."""
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.dtype(dtype)), params)


def _cell_params(module, kind: str) -> dict:
    """lstmjax params from a torch ``*Cell`` or one (layer, direction) of a torch layer.

    ``kind`` is ``"rnn"``, ``"lstm"`` or ``"gru"``; ``module`` must expose
    ``weight_ih``, ``weight_hh`` and, if it has biases, ``bias_ih``, ``bias_hh``
    (pass a :class:`types.SimpleNamespace` to adapt torch's per-layer names).
    """
    params = {"W_x": _arr(module.weight_ih).T, "W_h": _arr(module.weight_hh).T}
    if getattr(module, "bias_ih", None) is not None:
        b_ih, b_hh = _arr(module.bias_ih), _arr(module.bias_hh)
        if kind == "gru":
            H = b_ih.shape[0] // 3
            params["b"] = np.concatenate([b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H :]])
            params["b_hn"] = b_hh[2 * H :]
        else:
            params["b"] = b_ih + b_hh
    return params


@dataclasses.dataclass(frozen=True)
class TorchCellModel:
    """A lstmjax cell that mimics a torch ``RNNCell``/``LSTMCell``/``GRUCell`` call.

    ``apply(params, x, state=None)`` with ``x [B, D]`` or ``[D]`` returns what torch
    returns: ``h'`` for RNNCell/GRUCell, ``(h', c')`` for LSTMCell (zeros when ``state``
    is None).
    """

    cell: cells.Cell
    kind: str

    def apply(self, params, x, state=None):
        x = jnp.asarray(x)
        _check_cell_params(self.cell, params, x.shape[-1], "TorchCellModel.apply: params")
        if state is None:
            state = self.cell.initial_carry(params, x.shape[:-1])
        elif self.kind == "lstm":
            state = tuple(jnp.asarray(s) for s in state)
        else:
            state = jnp.asarray(state)
        new_state, _ = self.cell.step(params, state, x)
        return new_state


def _cell_importer(kind: str):
    def importer(module):
        dtype = _dtype_name(module)
        options = {"activation": module.nonlinearity} if kind == "rnn" else {}
        cell = cells.make(kind, module.hidden_size, use_bias=module.bias, dtype=dtype, **options)
        return TorchCellModel(cell, kind), _cast(_cell_params(module, kind), dtype)

    return importer


@dataclasses.dataclass(frozen=True)
class TorchLayerModel:
    """An :class:`lstmjax.RNN` that mimics a torch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` call.

    ``apply(params, xs, state=None, *, seq_lengths=None, key=None)`` returns what the
    torch module returns: ``(output, h_n)``, or ``(output, (h_n, c_n))`` for the LSTM.
    ``xs`` is ``[B, T, D]`` if ``batch_first`` else ``[T, B, D]``, or unbatched ``[T, D]``;
    ``state`` and ``h_n``/``c_n`` are ``[num_layers * num_directions, B, H]`` in torch's
    order (layer-major, forward before backward; no ``B`` axis when unbatched).
    ``seq_lengths [B]`` gives what ``pack_padded_sequence(xs, seq_lengths,
    enforce_sorted=False)`` and then ``pad_packed_sequence(out, total_length=T)`` give:
    zero outputs past each length, ``h_n`` at each sequence's last valid step. Dropout
    between layers runs only when a ``key`` is given (torch's training mode).
    """

    rnn: RNN
    kind: str
    batch_first: bool = False

    def _unstack(self, state, batch_shape):
        if self.kind == "lstm":
            if not (isinstance(state, (tuple, list)) and len(state) == 2):
                raise ValueError(
                    f"LSTM state must be a pair (h_0, c_0) as torch.nn.LSTM takes; "
                    f"got {type(state).__name__}"
                )
            arrays = [jnp.asarray(s) for s in state]
        else:
            arrays = [jnp.asarray(state)]
        nd = self.rnn.num_directions
        cell = self.rnn.cells[0]
        widths = (cell.output_size, cell.hidden_size)
        for name, a, width in zip(("h_0", "c_0"), arrays, widths, strict=False):
            expected = (self.rnn.num_layers * nd, *batch_shape, width)
            if a.shape != expected:
                raise ValueError(
                    f"{name} has shape {list(a.shape)}; expected {list(expected)} "
                    f"= [num_layers * num_directions, *batch, {width}]"
                )
        pick = lambda k: tuple(a[k] for a in arrays) if self.kind == "lstm" else arrays[0][k]
        return [[pick(l * nd + d) for d in range(nd)] for l in range(self.rnn.num_layers)]

    def _stack(self, carries):
        flat = [c for layer in carries for c in layer]
        if self.kind == "lstm":
            return jnp.stack([c[0] for c in flat]), jnp.stack([c[1] for c in flat])
        return jnp.stack(flat)

    def apply(self, params, xs, state=None, *, seq_lengths=None, key=None):
        xs = jnp.asarray(xs)
        if xs.ndim not in (2, 3):
            layout = "[B, T, D]" if self.batch_first else "[T, B, D]"
            raise ValueError(
                f"input has shape {list(xs.shape)}; expected {layout} or unbatched [T, D]"
            )
        batched = xs.ndim == 3
        batch_shape = (xs.shape[0 if self.batch_first else 1],) if batched else ()
        carry = None if state is None else self._unstack(state, batch_shape)
        ys, carries = self.rnn.apply(
            params, xs, carry, seq_lengths=seq_lengths, key=key,
            time_major=not (batched and self.batch_first),
        )
        return ys, self._stack(carries)


def _layer_params(module, kind: str, layer: int, suffix: str) -> dict:
    """Cell params of one (layer, direction) of a torch layer; ``suffix`` is "" or "_reverse"."""
    get = lambda name: getattr(module, f"{name}_l{layer}{suffix}", None)
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    params = _cell_params(types.SimpleNamespace(**{n: get(n) for n in names}), kind)
    if get("weight_hr") is not None:
        params["W_proj"] = _arr(get("weight_hr")).T
    return params


def _layer_importer(kind: str):
    def importer(module):
        H, dtype = module.hidden_size, _dtype_name(module)
        options = {"activation": module.nonlinearity} if kind == "rnn" else {}
        cell = cells.make(kind, H, use_bias=module.bias, dtype=dtype, **options)
        net = RNN(
            cell, num_layers=module.num_layers, bidirectional=module.bidirectional,
            dropout=float(module.dropout), proj_size=getattr(module, "proj_size", 0),
        )
        suffixes = ("", "_reverse")[: net.num_directions]
        params = [
            [_layer_params(module, kind, l, s) for s in suffixes] for l in range(net.num_layers)
        ]
        return TorchLayerModel(net, kind, bool(module.batch_first)), _cast(params, dtype)

    return importer


# torch.nn class name -> importer(module) -> (model, params); dispatch is by isinstance.
IMPORTERS: dict[str, Callable[[Any], tuple[Any, Any]]] = {
    "RNNCell": _cell_importer("rnn"),
    "LSTMCell": _cell_importer("lstm"),
    "GRUCell": _cell_importer("gru"),
    "RNN": _layer_importer("rnn"),
    "LSTM": _layer_importer("lstm"),
    "GRU": _layer_importer("gru"),
}


def _torch_class(module) -> str:
    """The ``torch.nn`` class (a key of ``IMPORTERS``) ``module`` is an instance of, or a
    one-line ``TypeError``: unrelated classes, quantized modules, overridden ``forward``."""
    import torch

    cls = type(module)
    qualname = f"{cls.__module__}.{cls.__qualname__}"
    if ".quantized." in cls.__module__ or ".quantizable." in cls.__module__:
        raise TypeError(
            f"from_torch: {cls.__name__} ({qualname}) is a quantized module; lstmjax imports "
            f"float weights only: import the float module (before quantize_dynamic) instead"
        )
    name = next((n for n in IMPORTERS if isinstance(module, getattr(torch.nn, n))), None)
    if name is None:
        raise TypeError(
            f"from_torch: unsupported module type {cls.__name__!r}; supported: "
            f"{sorted(IMPORTERS)} of torch.nn and subclasses that keep torch's forward "
            f"(got {qualname})"
        )
    if cls.forward is not getattr(torch.nn, name).forward:
        raise TypeError(
            f"from_torch: {cls.__name__} subclasses torch.nn.{name} but overrides forward, so "
            f"what it computes is unknown; import a plain torch.nn.{name} holding its weights "
            f"(load_state_dict) if that is what it computes"
        )
    if module._forward_hooks or module._forward_pre_hooks:
        raise TypeError(
            f"from_torch: {cls.__name__} has forward hooks, which may change what it "
            f"computes; remove them (handle.remove()) before importing"
        )
    return name


def from_torch(module):
    """``(model, params)`` reproducing a torch recurrent module; ``model.apply(params, ...)``
    takes the same arguments and returns the same values (as JAX arrays) as the module.

    Supported: ``torch.nn.RNN``/``LSTM``/``GRU`` and their ``*Cell`` variants (checked with
    ``isinstance``), and subclasses that do not override ``forward`` (one that does, a
    module with forward hooks, a quantized module or any other class raises ``TypeError``).

    Dtypes: the params and the cell's ``dtype`` are the module's parameter dtype, so the
    model computes in it. float32 and bfloat16 import as they are; float64 needs
    ``jax.config.update("jax_enable_x64", True)`` at program start (otherwise a
    ``ValueError``, instead of silently computing in float32). float16 (which lstmjax
    cells do not compute in) and mixed dtypes raise ``TypeError``: convert the module
    first (``module.float()`` or ``module.bfloat16()``). A module on the meta device (no
    weight values) raises ``ValueError``: materialise it first (``module.to_empty(...)``).
    """
    name = _torch_class(module)
    if any(p.is_meta for p in module.parameters()):
        raise ValueError(
            f"from_torch: the {type(module).__name__}'s weights are on the meta device (shapes "
            f"only, no values); materialise them first, e.g. module.to_empty(device='cpu') "
            f"then initialise them (module.reset_parameters()) or load a state dict"
        )
    return IMPORTERS[name](module)


# ---- export ------------------------------------------------------------------------------
_INIT_ONLY = ("kernel_init", "recurrent_init", "bias_init", "forget_bias", "chrono")


def _semantics(cell) -> dict:
    """The fields of ``cell`` that change what it computes (not how it is initialised)."""
    return {
        f.name: getattr(cell, f.name) for f in dataclasses.fields(cell) if f.name not in _INIT_ONLY
    }


def _torch_kind(cell) -> str:
    """``"rnn"``, ``"lstm"`` or ``"gru"`` when torch has a cell computing the same function."""
    common = {"use_bias": cell.use_bias, "dtype": cell.dtype}
    if isinstance(cell, cells.LSTMCell):
        kind, ref = "lstm", cells.LSTMCell(cell.hidden_size, proj_size=cell.proj_size, **common)
    elif isinstance(cell, cells.GRUCell):
        kind, ref = "gru", cells.GRUCell(cell.hidden_size, **common)
    elif isinstance(cell, cells.ElmanCell) and cell.activation in ("tanh", "relu"):
        kind, ref = "rnn", cells.ElmanCell(cell.hidden_size, activation=cell.activation, **common)
    else:
        kind, ref = None, None
    if ref is None or _semantics(cell) != _semantics(ref):
        raise ValueError(
            f"to_torch_state_dict: {cell!r} has no torch equivalent; torch has the tanh/relu "
            f"RNN, the plain LSTM (with optional proj_size) and the GRU with reset_after=True"
        )
    return kind


def _export_cell(kind: str, params, suffix: str = "") -> dict:
    state = {f"weight_ih{suffix}": params["W_x"].T, f"weight_hh{suffix}": params["W_h"].T}
    if "b" in params:
        b = params["b"]
        state[f"bias_ih{suffix}"] = b
        if kind == "gru":
            H = b.shape[0] // 3
            b_hh = jnp.concatenate([jnp.zeros_like(b[: 2 * H]), params["b_hn"]])
            state[f"bias_hh{suffix}"] = b_hh
        else:
            state[f"bias_hh{suffix}"] = jnp.zeros_like(b)
    if "W_proj" in params:
        state[f"weight_hr{suffix}"] = params["W_proj"].T
    return state


def _export_rnn(net: RNN, params) -> dict:
    net._check_params(params)
    if net.residual:
        raise ValueError("to_torch_state_dict: residual=True has no torch equivalent")
    for name, off in (("zoneout", 0.0), ("weight_drop", 0.0), ("learn_initial_carry", False)):
        if getattr(net, name) != off:
            raise ValueError(
                f"to_torch_state_dict: {name}={getattr(net, name)!r} has no torch equivalent "
                f"(torch.nn.RNN/LSTM/GRU have no {name}); export an RNN without it"
            )
    kinds = [_torch_kind(c) for c in net.cells]
    shape = {(k, c.hidden_size, c.output_size, c.use_bias, getattr(c, "activation", None))
             for k, c in zip(kinds, net.cells, strict=True)}
    if len(shape) != 1:
        raise ValueError(
            f"to_torch_state_dict: torch layers share one cell type, hidden_size, proj_size "
            f"and bias across layers; got {[repr(c) for c in net.cells]}"
        )
    state = {}
    for l, layer in enumerate(params):
        for d, p in enumerate(layer):
            state.update(_export_cell(kinds[l], p, f"_l{l}" + ("_reverse" if d else "")))
    return state


def to_torch_state_dict(model, params) -> dict:
    """A torch ``state_dict`` (tensors of the params' dtype) computing what ``model`` computes.

    ``model`` is a model from :func:`from_torch`, an :class:`lstmjax.RNN` or a cell whose
    torch twin exists (tanh/relu RNN, LSTM with optional ``proj_size``, GRU with
    ``reset_after=True``). Load it with ``module.load_state_dict(state)`` into e.g.
    ``torch.nn.LSTM(D, H, num_layers, bidirectional=..., proj_size=..., bias=...)``
    (``batch_first`` as you like), or the matching ``*Cell`` for a cell.
    """
    import torch

    if isinstance(model, TorchLayerModel):
        model = model.rnn
    elif isinstance(model, TorchCellModel):
        model = model.cell
    if isinstance(model, RNN):
        state = _export_rnn(model, params)
    elif isinstance(model, cells.Cell):
        state = _export_cell(_torch_kind(model), params)
    else:
        raise TypeError(
            f"to_torch_state_dict: expected a from_torch model, an lstmjax.RNN or a cell; "
            f"got {type(model).__name__}"
        )
    return {k: _tensor(torch, v) for k, v in state.items()}


def _tensor(torch, v):
    """A torch tensor of ``v``'s dtype (bfloat16 goes through float32: NumPy has none)."""
    if v.dtype == jnp.bfloat16:
        return torch.from_numpy(np.asarray(v, np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.array(v))
