"""``NamedTuple`` with typing's class syntax, built without typing's per-field work.

``typing.NamedTuple`` turns each field's annotation (a string here, under ``from __future__
import annotations``) into a ForwardRef, which compiles it: about 1.4 ms per recurring monitor
for the package's ~10 record classes, 4% of the whole run. The class made here is the same
``collections.namedtuple`` that typing would make, with the body's defaults, methods,
properties and docstring; type checkers see ``typing.NamedTuple`` itself.

Use: ``from .tuples import NamedTuple`` and write ``class Point(NamedTuple): x: int`` as
usual. Generic named tuples and ``typing.get_type_hints`` on them are not supported.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple
else:
    # What a class body holds that is not the class's own attribute.
    _BODY_ONLY = frozenset(("__module__", "__qualname__", "__annotations__", "__doc__",
                            "__classcell__"))
    # What collections.namedtuple defines and a body must not replace.
    _NAMEDTUPLE_OWN = frozenset(("__new__", "__init__", "__slots__", "__getnewargs__",
                                 "_fields", "_field_defaults", "_make", "_replace", "_asdict"))

    class _NamedTupleMeta(type):
        def __new__(mcls, name, bases, ns):
            if ns.get("_root"):
                return super().__new__(mcls, name, bases, ns)
            fields = list(ns.get("__annotations__", {}))
            defaults = []
            for field in fields:
                if field in ns:
                    defaults.append(ns[field])
                elif defaults:
                    raise TypeError(f"{name}: field {field} without a default follows a "
                                    "field with one")
            cls = collections.namedtuple(name, fields, defaults=defaults or None,
                                         module=ns.get("__module__"))
            for key, value in ns.items():
                if key in cls._fields or key in _BODY_ONLY:
                    continue
                if key in _NAMEDTUPLE_OWN:
                    raise AttributeError(f"{name}: cannot overwrite namedtuple attribute {key}")
                setattr(cls, key, value)
            cls.__qualname__ = ns.get("__qualname__", name)
            cls.__annotations__ = dict(ns.get("__annotations__", {}))
            if ns.get("__doc__"):
                cls.__doc__ = ns["__doc__"]
            return cls

    class NamedTuple(metaclass=_NamedTupleMeta):
        _root = True
