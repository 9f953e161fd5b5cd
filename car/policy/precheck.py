"""A cheap look at a model file before OpenVINO reads it: refuse what no DeepRacer model is.

OpenVINO's TensorFlow frontend fills every declared constant while converting: a 579-byte
`model.pb` whose one Const claims 3 GiB (shape [805306370], a single float_val that TensorFlow
semantics repeat) costs 3 GiB and half a minute. Real DeepRacer policies are ~23 MB with a few
hundred nodes, so a graph that declares more than MAX_DECLARED_BYTES of constants or more than
MAX_NODES nodes is refused from its protobuf structure alone: the walk below reads tags and lengths
(protobuf wire format, https://protobuf.dev/programming-guides/encoding/) and skips every payload,
so it costs time in proportion to the number of fields, never to what they declare.

Field numbers are TensorFlow's graph.proto, node_def.proto, attr_value.proto, tensor.proto,
tensor_shape.proto and function.proto, and ONNX's onnx.proto. What this cannot see (a Fill or
Broadcast to a huge shape, computed at conversion) is bounded by the sandbox (car.policy.sandbox).
Stdlib only.
"""
from __future__ import annotations

import mmap
import re
from collections.abc import Callable, Iterator
from pathlib import Path

MAX_NODES = 5000
MAX_DECLARED_BYTES = 64 << 20
MAX_IR_XML_BYTES = 16 << 20

# TensorFlow DataType -> bytes per element; strings, resources and unknown types count as 8.
_TF_ITEM_BYTES = {1: 4, 2: 8, 3: 4, 4: 1, 5: 2, 6: 1, 8: 8, 9: 8, 10: 1, 11: 1, 12: 1, 13: 4, 14: 2, 15: 2,
                  16: 2, 17: 2, 18: 16, 19: 2, 22: 4, 23: 8}
# ONNX TensorProto.DataType -> bytes per element.
_ONNX_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16,
                    16: 2}
_ONNX_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


class PrecheckError(ValueError):
    """The model file is not a model the car runs; str() is the one-line reason."""


def _size_text(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


class _Wire:
    """Protobuf wire-format fields over a buffer, payloads as (start, end) slices, never copied."""

    def __init__(self, buf: memoryview | bytes, name: str, kind: str):
        self.buf = buf
        self.name = name
        self.kind = kind

    def bad(self) -> PrecheckError:
        return PrecheckError(f"{self.name} is not {self.kind} (not a valid protobuf)")

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            if pos >= end or shift > 63:
                raise self.bad()
            byte = self.buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value, pos
            shift += 7

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
        """(field number, wire type, value or payload start, payload end) for each field in start..end."""
        pos = start
        while pos < end:
            tag, pos = self.varint(pos, end)
            number, kind = tag >> 3, tag & 7
            if kind == 0:
                value, pos = self.varint(pos, end)
                yield number, kind, value, pos
            elif kind == 2:
                length, pos = self.varint(pos, end)
                if pos + length > end:
                    raise self.bad()
                yield number, kind, pos, pos + length
                pos += length
            elif kind in (1, 5):
                pos += 8 if kind == 1 else 4
                if pos > end:
                    raise self.bad()
            else:  # groups (3, 4) are obsolete; neither format uses them
                raise self.bad()

    def packed_varints(self, start: int, end: int) -> Iterator[int]:
        pos = start
        while pos < end:
            value, pos = self.varint(pos, end)
            yield value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class _Budget:
    """Counts nodes and declared constant bytes; raises once either passes its limit."""

    def __init__(self, name: str, max_nodes: int, max_bytes: int):
        self.name, self.max_nodes, self.max_bytes = name, max_nodes, max_bytes
        self.nodes = 0
        self.bytes = 0

    def node(self) -> None:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise PrecheckError(f"{self.name} has more than {self.max_nodes} nodes; "
                                "a DeepRacer policy has a few hundred")

    def constant(self, dims: list[int], item: int) -> None:
        """A tensor of shape `dims` (negative = unknown, counted as 0), `item` bytes per element."""
        elements, whole = 1, True
        for dim in dims:
            elements *= max(dim, 0)
            if elements > self.max_bytes:  # already too large: no need to multiply out a long shape
                whole = False
                break
        size = elements * item
        self.bytes += size
        if self.bytes > self.max_bytes:
            declared = f"a constant of {'' if whole else 'over '}{_size_text(size)}" if size > self.max_bytes \
                else f"more than {_size_text(self.max_bytes)} of constants"
            raise PrecheckError(f"{self.name} declares {declared}; the car's limit is {_size_text(self.max_bytes)} "
                                "(a DeepRacer policy is ~23 MB)")


def _mapped(path: Path) -> tuple[memoryview, mmap.mmap | None]:
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return memoryview(b""), None
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return memoryview(mapped), mapped


def _walk_file(path: Path, kind: str, max_nodes: int, max_bytes: int,
               visit: Callable[[_Wire, int, int, int, int, _Budget], None]) -> tuple[int, int]:
    """(nodes, declared bytes) after `visit` has seen every top-level field of the file."""
    budget = _Budget(path.name, max_nodes, max_bytes)
    view, mapped = _mapped(path)
    try:
        w = _Wire(view, path.name, kind)
        for number, wire_type, a, b in w.fields(0, len(view)):
            visit(w, number, wire_type, a, b, budget)
    finally:
        view.release()
        if mapped is not None:
            mapped.close()
    return budget.nodes, budget.bytes


# TensorFlow ------------------------------------------------------------------------------------

def _tf_tensor(w: _Wire, start: int, end: int, budget: _Budget) -> None:
    dtype, dims, seen = 1, [], 0
    for number, kind, a, b in w.fields(start, end):
        if number == 1 and kind == 0:  # TensorProto.dtype
            dtype, seen = a, seen | 1
        elif number == 2 and kind == 2:  # TensorProto.tensor_shape
            for dn, dk, da, db in w.fields(a, b):
                if dn == 2 and dk == 2:  # TensorShapeProto.dim
                    dims.append(next((_signed(v) for n, k, v, _ in w.fields(da, db) if n == 1 and k == 0), 0))
            seen |= 2
        if seen == 3:
            break
    budget.constant(dims, _TF_ITEM_BYTES.get(dtype, 8))


def _tf_attr_value(w: _Wire, start: int, end: int, budget: _Budget) -> None:
    for number, kind, a, b in w.fields(start, end):
        if number == 8 and kind == 2:  # AttrValue.tensor
            _tf_tensor(w, a, b, budget)
        elif number == 1 and kind == 2:  # AttrValue.list -> ListValue.tensor
            for ln, lk, la, lb in w.fields(a, b):
                if ln == 8 and lk == 2:
                    _tf_tensor(w, la, lb, budget)


def _tf_node(w: _Wire, start: int, end: int, budget: _Budget) -> None:
    budget.node()
    for number, kind, a, b in w.fields(start, end):
        if number == 5 and kind == 2:  # NodeDef.attr map entry: key = 1, value = 2
            for en, ek, ea, eb in w.fields(a, b):
                if en == 2 and ek == 2:
                    _tf_attr_value(w, ea, eb, budget)


def frozen_graph_size(path: Path, max_nodes: int = MAX_NODES, max_bytes: int = MAX_DECLARED_BYTES) -> tuple[int, int]:
    """(nodes, declared constant bytes) of a TensorFlow GraphDef, functions included;
    PrecheckError past either limit or for a file that is not a protobuf."""
    def visit(w: _Wire, number: int, kind: int, a: int, b: int, budget: _Budget) -> None:
        if number == 1 and kind == 2:  # GraphDef.node
            _tf_node(w, a, b, budget)
        elif number == 2 and kind == 2:  # GraphDef.library -> FunctionDef (1) -> node_def (3)
            for fn, fk, fa, fb in w.fields(a, b):
                if fn == 1 and fk == 2:
                    for nn, nk, na, nb in w.fields(fa, fb):
                        if nn == 3 and nk == 2:
                            _tf_node(w, na, nb, budget)

    return _walk_file(path, "a TensorFlow frozen graph", max_nodes, max_bytes, visit)


# ONNX ------------------------------------------------------------------------------------------

def _onnx_tensor(w: _Wire, start: int, end: int, budget: _Budget) -> None:
    dims: list[int] = []
    dtype = 1
    for number, kind, a, b in w.fields(start, end):
        if number == 1 and kind == 0:  # TensorProto.dims, unpacked
            dims.append(_signed(a))
        elif number == 1 and kind == 2:  # TensorProto.dims, packed
            dims.extend(_signed(v) for v in w.packed_varints(a, b))
        elif number == 2 and kind == 0:
            dtype = a
        elif (number == 14 and kind == 0 and a == _ONNX_EXTERNAL) or (number == 13 and kind == 2):
            raise PrecheckError(f"{budget.name} keeps weights in external files; a bundle's model is one file")
    budget.constant(dims, _ONNX_ITEM_BYTES.get(dtype, 8))


def _onnx_graph(w: _Wire, start: int, end: int, budget: _Budget, depth: int = 0) -> None:
    if depth > 8:
        raise PrecheckError(f"{budget.name} nests subgraphs more than 8 deep")
    for number, kind, a, b in w.fields(start, end):
        if number == 1 and kind == 2:  # GraphProto.node
            _onnx_node(w, a, b, budget, depth)
        elif number in (5, 15) and kind == 2:  # initializer, sparse_initializer (its values: 1)
            if number == 15:
                for sn, sk, sa, sb in w.fields(a, b):
                    if sn == 1 and sk == 2:
                        _onnx_tensor(w, sa, sb, budget)
            else:
                _onnx_tensor(w, a, b, budget)


def _onnx_node(w: _Wire, start: int, end: int, budget: _Budget, depth: int) -> None:
    budget.node()
    for number, kind, a, b in w.fields(start, end):
        if number == 5 and kind == 2:  # NodeProto.attribute -> AttributeProto
            for an, ak, aa, ab in w.fields(a, b):
                if an in (5, 9) and ak == 2:  # t, tensors
                    _onnx_tensor(w, aa, ab, budget)
                elif an in (6, 11) and ak == 2:  # g, graphs
                    _onnx_graph(w, aa, ab, budget, depth + 1)


def onnx_size(path: Path, max_nodes: int = MAX_NODES, max_bytes: int = MAX_DECLARED_BYTES) -> tuple[int, int]:
    """(nodes, declared initializer bytes) of an ONNX model, subgraphs and functions included;
    PrecheckError past either limit, for external weights, or for a file that is not a protobuf."""
    def visit(w: _Wire, number: int, kind: int, a: int, b: int, budget: _Budget) -> None:
        if number == 7 and kind == 2:  # ModelProto.graph
            _onnx_graph(w, a, b, budget)
        elif number == 25 and kind == 2:  # ModelProto.functions -> FunctionProto.node (7)
            for fn, fk, fa, fb in w.fields(a, b):
                if fn == 7 and fk == 2:
                    _onnx_node(w, fa, fb, budget, 0)

    return _walk_file(path, "an ONNX model", max_nodes, max_bytes, visit)


# OpenVINO IR -----------------------------------------------------------------------------------

_LAYER = re.compile(rb"<layer[\s>]")


def ir_size(xml: Path, max_nodes: int = MAX_NODES, max_bytes: int = MAX_DECLARED_BYTES,
            max_xml_bytes: int = MAX_IR_XML_BYTES) -> tuple[int, int]:
    """(layers, weight file bytes) of an IR model.xml and the model.bin beside it; PrecheckError
    past a limit. OpenVINO checks that each Const's slice lies inside model.bin."""
    size = xml.stat().st_size
    if size > max_xml_bytes:
        raise PrecheckError(f"{xml.name} is {_size_text(size)}; the car's limit is {_size_text(max_xml_bytes)}")
    layers = len(_LAYER.findall(xml.read_bytes()))
    if layers > max_nodes:
        raise PrecheckError(f"{xml.name} has more than {max_nodes} layers; a DeepRacer policy has a few hundred")
    weights = xml.with_suffix(".bin")
    bin_size = weights.stat().st_size if weights.is_file() else 0
    if bin_size > max_bytes:
        raise PrecheckError(f"{weights.name} is {_size_text(bin_size)}; the car's limit is {_size_text(max_bytes)}")
    return layers, bin_size


def check_model_file(path: Path) -> None:
    """PrecheckError unless `path` (.pb, .onnx or IR .xml) is within the limits above."""
    suffix = path.suffix.lower()
    if suffix == ".pb":
        frozen_graph_size(path)
    elif suffix == ".onnx":
        onnx_size(path)
    elif suffix == ".xml":
        ir_size(path)
