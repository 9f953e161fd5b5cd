"""Hostile model files for the upload tests, a few hundred bytes each, written with a minimal
protobuf encoder (field numbers from TensorFlow's graph.proto, node_def.proto, attr_value.proto,
tensor.proto and tensor_shape.proto; no TensorFlow needed).

- `huge_const_graph`: one Const declaring `elements` floats with a single float_val, which
  TensorFlow semantics repeat to fill the shape (the 579-byte upload that froze the car).
- `fill_graph`: a Fill to `elements` floats summed into the output: small constants, so only
  running the conversion shows the memory it takes (the sandbox's memory cap, not the pre-check).
- `many_nodes_graph`: `count` tiny Const nodes.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence

DT_FLOAT, DT_INT32 = 1, 3


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes | int) -> bytes:
    """A varint field (int payload) or a length-delimited one (bytes payload)."""
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def shape(dims: list[int]) -> bytes:
    return b"".join(field(2, field(1, d)) for d in dims)  # TensorShapeProto.dim -> Dim.size


def tensor(dtype: int, dims: list[int], floats: Sequence[float] = (), ints: Sequence[int] = ()) -> bytes:
    out = field(1, dtype) + field(2, shape(dims))
    if floats:
        out += field(5, b"".join(struct.pack("<f", f) for f in floats))  # float_val, packed
    if ints:
        out += field(7, b"".join(varint(i) for i in ints))  # int_val, packed
    return out


def attr(key: str, value: bytes) -> bytes:
    return field(5, field(1, key.encode()) + field(2, value))  # NodeDef.attr map entry


def node(name: str, op: str, inputs: Sequence[str] = (), *attrs: bytes) -> bytes:
    body = field(1, name.encode()) + field(2, op.encode()) + b"".join(field(3, i.encode()) for i in inputs)
    return field(1, body + b"".join(attrs))  # GraphDef.node


def type_attr(key: str, dtype: int) -> bytes:
    return attr(key, field(6, dtype))


def const(name: str, value: bytes, dtype: int) -> bytes:
    return node(name, "Const", [], type_attr("dtype", dtype), attr("value", field(8, value)))


def placeholder(name: str = "x") -> bytes:
    return node(name, "Placeholder", [], type_attr("dtype", DT_FLOAT), attr("shape", field(7, shape([1, 120, 160, 1]))))


def huge_const_graph(elements: int = 805306370) -> bytes:
    big = const("big", tensor(DT_FLOAT, [elements], floats=[1.0]), DT_FLOAT)
    return placeholder() + big + node("out", "AddV2", ["x", "big"], type_attr("T", DT_FLOAT))


def fill_graph(elements: int) -> bytes:
    return (placeholder()
            + const("dims", tensor(DT_INT32, [1], ints=[elements]), DT_INT32)
            + const("one", tensor(DT_FLOAT, [], floats=[1.0]), DT_FLOAT)
            + node("big", "Fill", ["dims", "one"], type_attr("T", DT_FLOAT), type_attr("index_type", DT_INT32))
            + const("axis", tensor(DT_INT32, [1], ints=[0]), DT_INT32)
            + node("total", "Sum", ["big", "axis"], type_attr("T", DT_FLOAT), type_attr("Tidx", DT_INT32),
                   attr("keep_dims", field(5, 0)))
            + node("out", "AddV2", ["x", "total"], type_attr("T", DT_FLOAT)))


def many_nodes_graph(count: int) -> bytes:
    one = tensor(DT_FLOAT, [], floats=[1.0])
    return placeholder() + b"".join(const(f"c{i}", one, DT_FLOAT) for i in range(count))
