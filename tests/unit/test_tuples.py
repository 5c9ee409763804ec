"""pyvirtualdomain.tuples.NamedTuple: what typing.NamedTuple gives, without typing's cost."""

from __future__ import annotations

import pickle
import typing

import pytest

from pyvirtualdomain.tuples import NamedTuple


class Point(NamedTuple):
    """A point."""

    x: int
    y: int = 0
    label: str | None = None

    @property
    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)

    def moved(self, dx: int) -> Point:
        return self._replace(x=self.x + dx)

    @classmethod
    def origin(cls) -> Point:
        return cls(0)


class TypingPoint(typing.NamedTuple):
    x: int
    y: int = 0
    label: str | None = None


def test_same_tuple_as_typing_makes() -> None:
    p = Point(1, label="a")
    t = TypingPoint(1, label="a")
    assert tuple(p) == tuple(t) == (1, 0, "a")
    assert p == t
    assert Point._fields == TypingPoint._fields
    assert Point._field_defaults == TypingPoint._field_defaults
    assert isinstance(p, tuple)
    assert repr(p) == "Point(x=1, y=0, label='a')"
    assert p._asdict() == {"x": 1, "y": 0, "label": "a"}


def test_body_methods_properties_and_docstring_kept() -> None:
    p = Point(-2, 3)
    assert p.norm1 == 5
    assert p.moved(5) == Point(3, 3)
    assert Point.origin() == Point(0, 0, None)
    assert Point.__doc__ == "A point."
    assert Point.__module__ == __name__
    assert Point.__qualname__ == "Point"
    assert pickle.loads(pickle.dumps(p)) == p


def test_immutable_and_missing_field_refused() -> None:
    p = Point(1)
    with pytest.raises(AttributeError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]


def test_field_without_default_after_one_with_refused() -> None:
    with pytest.raises(TypeError, match="without a default follows"):
        class Bad(NamedTuple):
            a: int = 1
            b: int  # type: ignore[misc]


def test_namedtuple_machinery_cannot_be_replaced() -> None:
    with pytest.raises(AttributeError, match="_replace"):
        class Bad(NamedTuple):
            a: int

            def _replace(self) -> None:  # type: ignore[override]
                pass


def test_typing_machinery_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the module: no ForwardRef per field (each one compiles its string)."""
    made: list[str] = []
    real = typing.ForwardRef.__init__

    def spy(self: typing.ForwardRef, arg: str, *a: object, **k: object) -> None:
        made.append(arg)
        real(self, arg, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(typing.ForwardRef, "__init__", spy)

    class Cheap(NamedTuple):
        a: int
        b: str | None = None

    assert Cheap(1) == (1, None)
    assert made == []

    class Dear(typing.NamedTuple):  # the spy works: typing's own makes ForwardRefs
        a: int

    assert made == ["int"]
