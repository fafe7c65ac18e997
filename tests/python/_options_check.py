"""The options bridge seen from a wrapper: every field of a C++ Options class (``_fields``)
is a keyword argument of the Python function that fills it, with the C++ default."""
import inspect


def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def check_wrapper(fn, cls, *, not_arguments=(), other_defaults=None):
    """``fn``'s keyword arguments cover ``cls._fields`` (less ``not_arguments``, fields the
    wrapper fixes itself) with the defaults of ``cls()``; ``other_defaults`` maps a field to
    the wrapper default that stands for the C++ one (e.g. None for an empty string)."""
    other_defaults = other_defaults or {}
    params = inspect.signature(fn).parameters
    options = cls()
    fields = [f for f in cls._fields if f not in not_arguments]
    missing = [f for f in fields if f not in params]
    assert not missing, f"{fn.__name__} lacks arguments for {cls.__name__} fields {missing}"
    for f in fields:
        default = params[f].default
        expected = other_defaults.get(f, getattr(options, f))
        assert _same(default, expected), f"{fn.__name__}({f}={default!r}) but {cls.__name__}().{f} is {expected!r}"
    # The repr names every field.
    text = repr(options)
    assert text.startswith(cls.__name__ + "(") and all(f + "=" in text for f in cls._fields), text
