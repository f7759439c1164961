"""Settings value checks: one small validator per key kind (:data:`VALIDATORS`)."""
from __future__ import annotations

import math
import numbers
import re

from .keys import value_range

class _Invalid(Exception):
    """A value that does not fit its key; the message says what was expected."""


def _is_num(v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return False
    return isinstance(v, numbers.Integral) or math.isfinite(float(v))  # float() of a 400-digit int overflows


_NUM_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _num(v, what="a number"):
    # PyYAML reads "1e-4" (no dot) as a string; accept numeric strings so that is not a trap
    if isinstance(v, str) and _NUM_RE.match(v.strip()):
        v = float(v)
    if not _is_num(v):
        raise _Invalid(what)
    try:
        return float(v)
    except OverflowError:
        raise _Invalid(what) from None


def _int(v, what="an integer"):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        if _is_num(v) and not isinstance(v, numbers.Integral) and float(v).is_integer():
            return int(v)
        raise _Invalid(what)
    return int(v)


def _seq(v, what):
    if not isinstance(v, (list, tuple)):
        raise _Invalid(what)
    return list(v)


def _fixed(v, what, n, convert, ok=lambda x: True):
    """A list of exactly ``n`` items, each converted and accepted by ``ok``, as a tuple."""
    items = _seq(v, what)
    if len(items) != n:
        raise _Invalid(what)
    out = tuple(convert(c, what) for c in items)
    if not all(ok(c) for c in out):
        raise _Invalid(what)
    return out


def _str_pairs(v, what):
    """A list of [str, str] pairs as a tuple of tuples."""
    out = []
    for pair in _seq(v, what):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(s, str) for s in pair):
            raise _Invalid(what)
        out.append(tuple(pair))
    return tuple(out)


def _fmt(x):
    return str(x) if isinstance(x, int) else f"{x:g}"


def _in_range(spec, convert, v):
    """``convert(v)`` checked against the key's :func:`value_range`."""
    lo, hi, unit = value_range(spec.name)
    what = f"{'an integer' if convert is _int else 'a number'} in [{_fmt(lo)}, {_fmt(hi)}] ({unit})"
    x = convert(v, what)
    if not lo <= x <= hi or (spec.kind in ("pos", "opt_pos") and x <= 0):
        raise _Invalid(what)
    return x


# -- one validator per kind: (spec, value) -> the value to keep, or _Invalid -------------------
def _number(spec, v):
    if v is None and spec.kind.startswith("opt_"):
        return None
    return _in_range(spec, _int if spec.kind.endswith("int") else _num, v)


def _bool(spec, v):
    if not isinstance(v, bool):
        raise _Invalid("true or false")
    return v


def _opt_str(spec, v):
    if v is not None and not isinstance(v, str):
        raise _Invalid("a string or null")
    return v


def _choice(spec, v):
    if v not in spec.opts["choices"]:
        raise _Invalid("one of " + ", ".join(spec.opts["choices"]))
    return v


def _regex(spec, v):
    if v is None and spec.kind == "opt_regex":
        return None
    if not isinstance(v, str):
        raise _Invalid("a regular expression (string)")
    try:
        re.compile(v)
    except re.error as err:
        raise _Invalid(f"a valid regular expression ({err})") from None
    return v


def _font(spec, v):
    import cv2

    if not (isinstance(v, str) and v.startswith("FONT_") and isinstance(getattr(cv2, v, None), int)):
        raise _Invalid("an OpenCV font name such as FONT_HERSHEY_COMPLEX_SMALL")
    return v


def _color(spec, v):
    return _fixed(v, "an RGB colour [r, g, b] with values in [0, 1]", 3, _num, lambda c: 0 <= c <= 1)


def _loc(spec, v):
    lo, hi, _ = value_range(spec.name)
    return _fixed(v, f"[row, col] integers in [{lo}, {hi}]", 2, _int, lambda c: lo <= c <= hi)


def _fractions4(spec, v):
    return _fixed(v, "[top, left, height, width] fractions in [0, 1]", 4, _num, lambda c: 0 <= c <= 1)


def _hw(spec, v):
    lo, hi, _ = value_range(spec.name)
    return None if v is None else _fixed(v, f"[height, width] integers in [{lo}, {hi}], or null", 2, _int,
                                         lambda c: lo <= c <= hi)


def _perm(spec, v):
    if v is None:
        return None
    what = "a permutation of 0..n-1 such as [2, 1, 0], or null"
    items = tuple(_int(c, what) for c in _seq(v, what))
    if sorted(items) != list(range(len(items))) or not items:
        raise _Invalid(what)
    return items


def _str_list(spec, v):
    if v is None:
        return None if spec.kind == "opt_str_list" else ()
    what = "a list of strings"
    items = _seq(v, what)
    if not all(isinstance(s, str) for s in items):
        raise _Invalid(what)
    return tuple(items)


def _str_map(spec, v):
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(a, str) and isinstance(b, str) for a, b in v.items()):
        raise _Invalid("a mapping of string to string")
    return dict(v)


def _pairs(spec, v):
    if v is None:
        return ()
    what = "a list of [from, to] string pairs"
    out = _str_pairs(v, what)
    if not all(a for a, _ in out):
        raise _Invalid(what + " with a non-empty 'from'")
    return out


def _apps(spec, v):
    return _str_pairs(v, "a list of [module, class] pairs")


def _number_list(spec, v):
    lo, hi, _ = (0, 1, "") if spec.kind == "unit_list" else value_range(spec.name)
    what = f"a non-empty list of numbers in [{_fmt(lo)}, {_fmt(hi)}]"
    items = tuple(_num(c, what) for c in _seq(v, what))
    if not items or len(items) > 1000 or any(not lo <= c <= hi for c in items):
        raise _Invalid(what)
    return items


def _std(spec, v):
    if v is None:
        return None
    what = "null, a positive number or a list of per-channel positive numbers"
    items = (v,) if _is_num(v) else _seq(v, what)
    if not items or not all(_is_num(c) and c > 0 for c in items):
        raise _Invalid(what)
    return tuple(float(c) for c in items)


def _mean(spec, v):
    if v is None:
        return None
    lo, hi, _ = value_range(spec.name)
    what = f"null, numbers in [{_fmt(lo)}, {_fmt(hi)}], or a path to a .npy/.binaryproto mean"
    if _is_num(v):
        return _fixed([v], what, 1, _num, lambda c: lo <= c <= hi)[0]
    if isinstance(v, (list, tuple)) and v and all(_is_num(c) for c in v):
        return _fixed(v, what, len(v), _num, lambda c: lo <= c <= hi)
    if isinstance(v, str) or (isinstance(v, (list, tuple)) and v and all(isinstance(c, str) for c in v)):
        return v  # a path (or candidates); resolved by the caller
    raise _Invalid("null, a number, a list of per-channel numbers, or a path to a .npy/.binaryproto mean")


def _panes(spec, v):
    return v  # merged and checked by the loader


def _path(spec, v):
    if v is None and spec.kind != "path":
        return None
    if isinstance(v, str) and v:
        return v
    if isinstance(v, (list, tuple)) and v and all(isinstance(c, str) and c for c in v):
        return list(v)
    raise _Invalid("a path, or a list of candidate paths" + ("" if spec.kind == "path" else ", or null"))


#: Key kind -> its validator.
VALIDATORS = {
    "int": _number, "opt_int": _number, "pos": _number, "opt_pos": _number, "nonneg": _number,
    "bool": _bool, "opt_str": _opt_str, "choice": _choice, "regex": _regex, "opt_regex": _regex,
    "font": _font, "color": _color, "loc": _loc, "fractions4": _fractions4, "hw": _hw, "perm": _perm,
    "str_list": _str_list, "opt_str_list": _str_list, "str_map": _str_map, "pairs": _pairs, "apps": _apps,
    "unit_list": _number_list, "pos_list": _number_list, "std": _std, "mean": _mean, "panes": _panes,
    "path": _path, "dir": _path, "file": _path, "model_path": _path,
}


def check_value(spec, v):
    """``v`` validated for the key ``spec`` (converted to what the Settings keep); raises
    ``_Invalid`` saying what was expected."""
    return VALIDATORS[spec.kind](spec, v)
