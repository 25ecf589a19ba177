"""Argument walking, FedObject identity and the allow-list unpickler."""

from __future__ import annotations

import pickle
from collections import OrderedDict, namedtuple

import numpy as np
import pytest

from silo import serde
from silo.errors import SerializationError
from silo.graph import FedObject, find_objects, substitute

Point = namedtuple("Point", "x y")


def test_find_and_substitute_nested_objects() -> None:
    a, b = FedObject("alice", 1, 0, 9), FedObject("bob", 2, 0, 9)
    args = ([a, (b, {"k": a})], Point(a, 3), "plain")
    kwargs = {"d": {"inner": [b]}}
    assert find_objects(args, kwargs) == [a, b]
    new_args, new_kwargs = substitute(args, kwargs, {a.id: "A", b.id: "B"})
    assert new_args == (["A", ("B", {"k": "A"})], Point("A", 3), "plain")
    assert isinstance(new_args[1], Point)
    assert new_kwargs == {"d": {"inner": ["B"]}}


class Bag(list):  # type: ignore[type-arg]
    """A list subclass: a value, not a container silo looks into."""


def test_finding_and_substituting_follow_one_rule() -> None:
    a = FedObject("alice", 1, 0, 9)
    hidden = Bag([a])
    ordered = OrderedDict(k=a)
    args = (hidden, ordered, Point(a, a), ())
    assert find_objects(args, {}) == [a]
    new_args, _ = substitute(args, {}, {a.id: "A"})
    assert new_args[0] is hidden and new_args[1] is ordered
    assert new_args[2] == Point("A", "A") and new_args[3] == ()
    assert find_objects((hidden, ordered), {}) == []


def test_fed_object_identity_and_pickling_refused() -> None:
    a = FedObject("alice", 1, 0, 9)
    assert a == FedObject("alice", 1, 0, 9) and a != FedObject("alice", 1, 0, 8)
    assert len({a, FedObject("alice", 1, 0, 9)}) == 1
    assert repr(a) == "FedObject(owner='alice', id=(1, 0))"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(a)


def _round_trip(value: object, allowed: serde.AllowList) -> object:
    data, buffers = serde.dumps(value)
    return serde.loads(data, [bytearray(b) for b in buffers], allowed)


def test_allow_list_admits_numpy_and_plain_containers() -> None:
    value = {"arr": np.arange(5.0), "items": [1, (2, 3)], "od": OrderedDict(a=1)}
    out = _round_trip(value, {"numpy": "*"})
    assert isinstance(out, dict) and np.array_equal(out["arr"], np.arange(5.0))
    assert out["items"] == [1, (2, 3)] and out["od"] == OrderedDict(a=1)


def test_allow_list_refuses_unlisted_globals_by_name() -> None:
    with pytest.raises(SerializationError, match=r"collections.namedtuple|tests|test_graph"):
        _round_trip(Point(1, 2), {"numpy": "*"})
    with pytest.raises(SerializationError, match="nor in serializing_allowed_list"):
        _round_trip(Point(1, 2), {"test_graph_serde.sub": "*"})


def test_allow_list_by_name() -> None:
    assert _round_trip(Point(1, 2), {"test_graph_serde": ["Point"]}) == Point(1, 2)
    with pytest.raises(SerializationError, match=r"test_graph_serde\.Point"):
        _round_trip(Point(1, 2), {"test_graph_serde": ["Other"]})


def test_with_full_trust_anything_cloudpickle_makes_loads() -> None:
    fn = _round_trip(lambda x: x * 2, "*")
    assert callable(fn) and fn(21) == 42


def test_corrupt_stream_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="cannot deserialise"):
        serde.loads(b"\x80\x05garbage", [], None)


def test_unpicklable_value_is_a_serialization_error() -> None:
    import threading

    with pytest.raises(SerializationError, match="cannot serialise lock"):
        serde.dumps(threading.Lock())
