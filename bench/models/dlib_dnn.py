"""Reader of dlib's binary serialization of DNN models (``dlib::serialize`` of a ``dlib::add_loss_layer`` network).

Hand-written on purpose: no Python package reads this format (dlib's Python bindings load a whole network, e.g.
``dlib.face_recognition_model_v1``, but never expose its tensors), and the format is small. It follows dlib's own
serialization code (``dlib/serialize.h``, ``dlib/float_details.h``, ``dlib/dnn/core.h``, ``tensor.h``,
``layers.h``, ``input.h``, ``loss.h``):

* integer: a control byte whose low nibble is the number (1-8) of little-endian magnitude bytes that follow; bit
  ``0x80`` marks a negative value of a signed type;
* ``float`` / ``double``: two integers, a 64-bit mantissa and a 16-bit exponent, value ``mantissa * 2**exponent``;
  exponents 32000, 32001 and 32002 stand for +inf, -inf and NaN (dlib's older ASCII float format is not supported);
* ``bool``: the ASCII character ``'1'`` or ``'0'``; string: its length (an integer) then its bytes;
* tensor: version 2, then ``num_samples, k, nr, nc`` and that many little-endian IEEE float32 values (NCHW order);
  alias tensor (a view into a layer's parameter vector): version 1, then ``num_samples, k, nr, nc``;
* network: the loss layer writes its version (1), its loss record, then the layer below it. Each computational
  layer (``add_layer``) writes its version (1 or 2), the layer below, its own record, three bools and the
  ``x_grad``, ``cached_output`` (and, in version 2, ``params_grad``) tensors. The lowest one wraps the input layer
  (version 2 or 3: input record, own record, three bools, three tensors, and in version 3 an integer). Tag and skip
  layers write a version (1) and the layer below, nothing else.

Tag and skip layers carry no type marker, so, like dlib (whose C++ network type drives its deserializer), the reader
is given the network's layer sequence (:class:`LayerSpec`, from the input upwards) and checks the file against it.
Every size read from the file is validated against that sequence and against the bytes left, and any problem is a
:class:`DlibFormatError` naming the file, the byte offset and the layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import WeightsError

__all__ = ["DlibFormatError", "DlibLayer", "DlibNetwork", "LayerSpec", "read_network"]

_KINDS = ("con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "tag", "skip", "fc")
_SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}


class DlibFormatError(WeightsError):
    """A dlib network file that is truncated, corrupted, or not the network it should be."""


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the expected network, listed from the input upwards.

    Args:
        kind: ``con``, ``affine``, ``relu``, ``max_pool``, ``avg_pool``, ``add_prev``, ``tag``, ``skip`` or ``fc``.
        outputs: ``con``: number of filters; ``fc``: number of outputs.
        window: ``con`` kernel / pooling window (rows = columns here); 0 for a pooling over the whole map.
        stride: ``con`` / pooling stride.
        tag: the tag id of a ``tag`` layer, or the tag a ``skip`` / ``add_prev`` layer refers to.
        bias: ``fc`` only: whether the layer has a bias (``fc`` vs ``fc_no_bias``).
    """

    kind: str
    outputs: int = 0
    window: int = 0
    stride: int = 1
    tag: int = 0
    bias: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown dlib layer kind {self.kind!r} (one of {', '.join(_KINDS)})")


@dataclass
class DlibLayer:
    """A layer read from the file: its spec, arrays (``con``: ``weight`` (N, K, R, C) and ``bias`` (N,) or absent;
    ``affine``: ``gamma`` and ``beta`` (C,); ``fc``: ``weight`` (inputs, outputs)) and attributes (``padding``,
    ``mode``...)."""

    spec: LayerSpec
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DlibNetwork:
    """A parsed network: the input layer's facts, the layers from the input upwards, and the loss record."""

    input_kind: str
    input_mean: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[DlibLayer]
    loss: dict[str, Any]


class _Reader:
    """Cursor over the bytes of one file; every read checks what it gets and fails with a DlibFormatError."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = memoryview(data)
        self.source = source
        self.pos = 0
        self.where = "the file header"  # the layer being read, for messages

    def fail(self, what: str, at: int | None = None) -> DlibFormatError:
        at = self.pos if at is None else at
        return DlibFormatError(f"{self.source}: not a valid dlib network file: {what} at byte {at} ({self.where}); "
                               "use an unmodified copy of the original .dat file")

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated: {what} needs {n} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def integer(self, what: str, signed: bool = True) -> int:
        start = self.pos
        control = self.take(1, what)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70 or (control & 0x80 and not signed):
            raise self.fail(f"bad integer control byte 0x{control:02x} for {what}", start)
        value = int.from_bytes(self.take(size, what), "little")
        return -value if control & 0x80 else value

    def count(self, what: str) -> int:
        """A non-negative size (``long`` / ``size_t`` in dlib)."""
        start = self.pos
        value = self.integer(what)
        if value < 0:
            raise self.fail(f"negative {what} {value}", start)
        return value

    def real(self, what: str) -> float:
        start = self.pos
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail(f"{what} uses dlib's old ASCII float format, which is not supported", start)
        mantissa = self.integer(f"{what} (mantissa)")
        exponent = self.integer(f"{what} (exponent)")
        if exponent in _SPECIAL_EXPONENTS:
            return _SPECIAL_EXPONENTS[exponent]
        if not -32768 <= exponent < 32000:
            raise self.fail(f"bad exponent {exponent} for {what}", start)
        return math.ldexp(float(mantissa), exponent)

    def boolean(self, what: str) -> bool:
        start = self.pos
        ch = bytes(self.take(1, what))
        if ch not in (b"0", b"1"):
            raise self.fail(f"expected '0' or '1' for {what}, got {ch!r}", start)
        return ch == b"1"

    def string(self, what: str, limit: int = 256) -> str:
        start = self.pos
        n = self.count(f"length of {what}")
        if n > limit:
            raise self.fail(f"{what} of {n} bytes (at most {limit} expected)", start)
        raw = bytes(self.take(n, what))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not ASCII: {raw[:32]!r}", start) from None

    def version(self, what: str, allowed: tuple[int, ...]) -> int:
        start = self.pos
        v = self.integer(f"version of {what}")
        if v not in allowed:
            raise self.fail(f"{what} has version {v}, expected {' or '.join(map(str, allowed))}", start)
        return v

    def record_name(self, allowed: tuple[str, ...]) -> str:
        start = self.pos
        name = self.string("layer record name")
        if name not in allowed:
            raise self.fail(f"found a {name!r} record where {' or '.join(map(repr, allowed))} was expected", start)
        return name

    def tensor(self, what: str) -> np.ndarray:
        """A resizable_tensor as a float32 (num_samples, k, nr, nc) array."""
        self.version(what, (2,))
        shape = tuple(self.count(f"{what} size") for _ in range(4))
        n = math.prod(shape)
        raw = self.take(4 * n, f"{what} of shape {shape}")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        self.version(what, (1,))
        return tuple(self.count(f"{what} size") for _ in range(4))  # type: ignore[return-value]

    def expect(self, ok: bool, what: str, at: int) -> None:
        if not ok:
            raise self.fail(what, at)


# -- layer records ---------------------------------------------------------------------------------------------------
def _read_con(r: _Reader, spec: LayerSpec, channels: int) -> DlibLayer:
    name = r.record_name(("con_4", "con_5", "con_6"))
    start = r.pos
    params = r.tensor("con parameters")
    filters = r.count("num_filters")
    nr, nc = r.count("filter rows"), r.count("filter columns")
    sy, sx = r.count("stride_y"), r.count("stride_x")
    py, px = r.count("padding_y"), r.count("padding_x")
    f_shape = r.alias("filters")
    b_shape = r.alias("biases")
    for m in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        r.real(f"{m} multiplier")
    use_bias = r.boolean("use_bias") if name in ("con_5", "con_6") else True
    use_relu = r.boolean("use_relu") if name == "con_6" else False
    want = (spec.outputs, spec.window, spec.window, spec.stride, spec.stride)
    r.expect((filters, nr, nc, sy, sx) == want, f"convolution (filters, rows, cols, stride_y, stride_x) = "
             f"{(filters, nr, nc, sy, sx)}, expected {want}", start)
    r.expect(py < nr and px < nc, f"convolution padding ({py}, {px}) not smaller than its {nr}x{nc} kernel", start)
    r.expect(f_shape == (filters, channels, nr, nc), f"filters of shape {f_shape}, expected "
             f"{(filters, channels, nr, nc)} ({channels} input channels)", start)
    r.expect(b_shape == ((1, filters, 1, 1) if use_bias else (0, 0, 0, 0)), f"biases of shape {b_shape} "
             f"(use_bias={use_bias}, {filters} filters)", start)
    n_w = filters * channels * nr * nc
    r.expect(params.size == n_w + (filters if use_bias else 0), f"{params.size} convolution parameters, expected "
             f"{n_w + (filters if use_bias else 0)}", start)
    r.expect(not use_relu, "a convolution with a fused ReLU (con_6 use_relu), which this reader does not support",
             start)
    flat = params.reshape(-1)
    arrays = {"weight": flat[:n_w].reshape(filters, channels, nr, nc)}
    if use_bias:
        arrays["bias"] = flat[n_w:].copy()
    return DlibLayer(spec, arrays, {"padding": (py, px), "stride": (sy, sx)})


def _read_affine(r: _Reader, spec: LayerSpec, channels: int) -> DlibLayer:
    name = r.record_name(("affine_", "affine_2"))
    start = r.pos
    params = r.tensor("affine parameters")
    g_shape, b_shape = r.alias("gamma"), r.alias("beta")
    mode = r.integer("affine mode")
    disabled = r.boolean("affine disabled") if name == "affine_2" else False
    if disabled:
        return DlibLayer(spec, {}, {"disabled": True})
    r.expect(mode == 0, f"affine layer in mode {mode}; only CONV_MODE (0, one scale per channel) is supported", start)
    r.expect(g_shape == (1, channels, 1, 1) and b_shape == g_shape, f"gamma/beta of shapes {g_shape}/{b_shape}, "
             f"expected (1, {channels}, 1, 1)", start)
    r.expect(params.size == 2 * channels, f"{params.size} affine parameters, expected {2 * channels}", start)
    flat = params.reshape(-1)
    return DlibLayer(spec, {"gamma": flat[:channels].copy(), "beta": flat[channels:].copy()}, {"disabled": False})


def _read_pool(r: _Reader, spec: LayerSpec) -> DlibLayer:
    r.record_name(("max_pool_2",) if spec.kind == "max_pool" else ("avg_pool_2",))
    start = r.pos
    nr, nc = r.count("pool rows"), r.count("pool columns")
    sy, sx = r.count("stride_y"), r.count("stride_x")
    py, px = r.count("padding_y"), r.count("padding_x")
    want = (spec.window, spec.window, spec.stride, spec.stride)
    r.expect((nr, nc, sy, sx) == want, f"pooling (rows, cols, stride_y, stride_x) = {(nr, nc, sy, sx)}, expected "
             f"{want}", start)
    r.expect(py == px == 0, f"pooling padding ({py}, {px}); only unpadded pooling is supported", start)
    return DlibLayer(spec, {}, {"padding": (py, px)})


def _read_fc(r: _Reader, spec: LayerSpec, channels: int) -> DlibLayer:
    name = r.record_name(("fc_2", "fc_3"))
    start = r.pos
    outputs, inputs = r.count("num_outputs"), r.count("num_inputs")
    params = r.tensor("fc parameters")
    w_shape, b_shape = r.alias("weights"), r.alias("biases")
    bias_mode = r.integer("fc bias mode")
    for m in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        r.real(f"{m} multiplier")
    use_bias = r.boolean("use_bias") if name == "fc_3" else True
    has_bias = bias_mode == 0 and use_bias
    r.expect(bias_mode == (0 if spec.bias else 1), f"fc bias mode {bias_mode}, expected {0 if spec.bias else 1} "
             f"({'fc' if spec.bias else 'fc_no_bias'})", start)
    r.expect(outputs == spec.outputs and inputs == channels, f"fc of {inputs} -> {outputs}, expected {channels} -> "
             f"{spec.outputs}", start)
    r.expect(w_shape == (inputs, outputs, 1, 1), f"fc weights of shape {w_shape}, expected ({inputs}, {outputs}, 1, 1)",
             start)
    rows = inputs + (1 if has_bias else 0)
    r.expect(params.shape == (rows, outputs, 1, 1), f"fc parameters of shape {params.shape}, expected "
             f"({rows}, {outputs}, 1, 1)", start)
    r.expect(not has_bias or b_shape == (1, outputs, 1, 1), f"fc biases of shape {b_shape}", start)
    flat = params.reshape(rows, outputs)
    arrays = {"weight": flat[:inputs].copy()}
    if has_bias:
        arrays["bias"] = flat[inputs].copy()
    return DlibLayer(spec, arrays, {})


def _read_details(r: _Reader, spec: LayerSpec, channels: int) -> DlibLayer:
    if spec.kind == "con":
        return _read_con(r, spec, channels)
    if spec.kind == "affine":
        return _read_affine(r, spec, channels)
    if spec.kind in ("max_pool", "avg_pool"):
        return _read_pool(r, spec)
    if spec.kind == "fc":
        return _read_fc(r, spec, channels)
    r.record_name(("relu_",) if spec.kind == "relu" else ("add_prev_",))
    return DlibLayer(spec)


def _read_input(r: _Reader) -> tuple[str, tuple[float, float, float], tuple[int, int]]:
    name = r.record_name(("input_rgb_image_sized", "input_rgb_image"))
    mean = (r.real("avg_red"), r.real("avg_green"), r.real("avg_blue"))
    size = (r.count("input rows"), r.count("input columns")) if name == "input_rgb_image_sized" else (0, 0)
    return name, mean, size  # type: ignore[return-value]


def _read_loss(r: _Reader) -> dict[str, Any]:
    name = r.record_name(("loss_metric_", "loss_metric_2"))
    if name == "loss_metric_":  # dlib's first metric loss had these two values hard-coded
        return {"name": name, "margin": 0.1, "distance_threshold": 0.75}
    return {"name": name, "margin": r.real("margin"), "distance_threshold": r.real("distance threshold")}


def _channels_after(spec: LayerSpec, channels: int, tags: dict[int, int]) -> int:
    if spec.kind == "tag":
        tags[spec.tag] = channels
        return channels
    if spec.kind in ("skip", "add_prev"):
        if spec.tag not in tags:
            raise ValueError(f"layer {spec.kind} refers to tag{spec.tag}, which no layer below defines")
        return tags[spec.tag] if spec.kind == "skip" else max(channels, tags[spec.tag])
    if spec.kind in ("con", "fc"):
        return spec.outputs
    return channels


def read_network(source: str | Path | bytes, layers: list[LayerSpec], name: str | None = None) -> DlibNetwork:
    """Parse a dlib network file whose layers (from the input upwards) are ``layers``.

    Args:
        source: the file's path, or its bytes.
        layers: the expected layer sequence; the lowest one must be a ``con`` (it wraps the input layer).
        name: how to call the source in messages (default: the path, or ``"<bytes>"``).

    Raises:
        DlibFormatError: a truncated or corrupted file, or one holding another network.
    """
    if not layers or layers[0].kind != "con":
        raise ValueError("the lowest layer of a dlib network spec must be a con layer")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), name or "<bytes>"
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DlibFormatError(f"{path}: cannot read the dlib network file ({exc.strerror or exc})") from None
        label = name or str(path)
    r = _Reader(data, label)
    r.version("the loss layer", (1,))
    r.where = "the loss layer"
    loss = _read_loss(r)

    # versions of the layers above the lowest one, top down (each writes its version before the layer below it)
    versions: list[int] = []
    for i in range(len(layers) - 1, 0, -1):
        r.where = f"layer {i} ({layers[i].kind}) of {len(layers)}, counted from the input"
        plain = layers[i].kind in ("tag", "skip")
        versions.append(r.version(f"a {layers[i].kind} layer", (1,) if plain else (1, 2)))
    versions.reverse()  # versions[i - 1] belongs to layers[i]

    r.where = f"layer 0 ({layers[0].kind}) of {len(layers)}, on the input layer"
    v0 = r.version("the input-side layer", (2, 3))
    input_kind, mean, size = _read_input(r)
    tags: dict[int, int] = {}
    channels = 3
    out = [_read_details(r, layers[0], channels)]
    channels = _channels_after(layers[0], channels, tags)
    for flag in ("this_layer_setup_called", "gradient_input_is_stale", "get_output_and_gradient_input_disabled"):
        r.boolean(flag)
    for t in ("x_grad", "cached_output", "grad_final"):
        r.tensor(t)
    if v0 == 3:
        r.count("sample_expansion_factor")

    for i in range(1, len(layers)):
        spec = layers[i]
        r.where = f"layer {i} ({spec.kind}) of {len(layers)}, counted from the input"
        if spec.kind in ("tag", "skip"):
            out.append(DlibLayer(spec))
        else:
            out.append(_read_details(r, spec, channels))
            for flag in ("this_layer_setup_called", "gradient_input_is_stale",
                         "get_output_and_gradient_input_disabled"):
                r.boolean(flag)
            for t in ("x_grad", "cached_output") + (("params_grad",) if versions[i - 1] == 2 else ()):
                r.tensor(t)
        channels = _channels_after(spec, channels, tags)
    r.where = "the end of the network"
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} unexpected bytes after the network")
    return DlibNetwork(input_kind, mean, size, out, loss)
