"""The Python half of the options bridge: C++ Options classes (``cnnviz._C.*Options``) are
filled from a wrapper's own arguments, so an option is written once in C++ (its row in the
Options struct, with its default) and once in the wrapper's signature."""
from typing import Any, Collection, Mapping, Optional, Type, TypeVar

O = TypeVar("O")


def fill_options(cls: Type[O], values: Mapping[str, Any], base: Optional[O] = None,
                 none_is_default: Collection[str] = ()) -> O:
    """A ``cls`` (default-constructed, or a copy of ``base``'s values) with every field of
    ``cls._fields`` that ``values`` names set from it; other keys of ``values`` are ignored,
    so a wrapper can pass ``locals()``.

    ``None`` sets a field whose default is None (a tensor, an optional tolerance). For any
    other field ``None`` is refused with the default named (``seed=None`` must not quietly
    mean seed 0), except for the fields in ``none_is_default``: arguments whose wrapper
    documents ``None`` as "the default"."""
    options = cls()
    if base is not None:
        for name in cls._fields:
            setattr(options, name, getattr(base, name))
    for name in cls._fields:
        if name in values:
            value = values[name]
            if value is None and getattr(options, name) is not None:
                if name in none_is_default:
                    continue
                raise TypeError(f"cnnviz: {name}=None is not accepted; give a value (its default is "
                                f"{getattr(cls(), name)!r})")
            setattr(options, name, value)
    return options

