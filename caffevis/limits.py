"""Bounds on what input files may ask for, checked where the values enter.

A file (prototxt, caffemodel, settings, idx, image) states sizes and nesting that the
program then allocates or recurses over; a hostile or damaged file could ask for
terabytes or blow the interpreter's stack. These helpers check such values up front so
the error is one line naming the file, never a traceback, a hang or an out-of-memory.
"""
from __future__ import annotations

import re

#: Deepest nesting of blocks accepted in a prototxt or a settings file (Caffe's deepest
#: real nesting is 4; Python's parsers recurse per level and fail near 300).
MAX_NESTING = 64

#: Largest number of elements of one array a file may declare (a caffemodel blob, an idx
#: data set): 2**31 float32 values are 8 GiB, the most one process is given.
MAX_ELEMENTS = 2 ** 31 - 1

#: Largest image decoded, in pixels (width x height): 100 megapixels are 300 MB as RGB
#: uint8, 1.2 GB as float32. Larger files are refused before decoding (decompression bombs).
MAX_IMAGE_PIXELS = 100_000_000


def short_repr(value, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (and safe for deeply nested values)."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # ValueError: an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


#: What holds no brackets that nest: strings and comments of a prototxt (protobuf text
#: format, both quotes escape with a backslash) and of YAML ('' escapes in single quotes).
PROTOTXT_SKIPPED = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*')
YAML_SKIPPED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'|(?:^|(?<=\s))#[^\n]*', re.M)


def brace_depth(text: str, opening: str = "{<", closing: str = "}>", skipped=PROTOTXT_SKIPPED) -> int:
    """Deepest nesting of brackets in ``text``, strings and comments (``skipped``) left out.

    Counted before parsing: Python's parsers recurse per level (protobuf's text format) or
    slow down with depth (YAML flow collections: 10,000 levels take seconds).
    """
    body = skipped.sub("", text)
    depth = deepest = 0
    for c in body:
        if c in opening:
            depth += 1
            deepest = max(deepest, depth)
        elif c in closing:
            depth -= 1
    return deepest


def element_count(dims, what: str) -> int:
    """The number of elements of shape ``dims`` as a Python int (no int64 wrap-around).

    Raises ValueError with a message that starts with ``what`` when a dimension is negative
    or the count exceeds :data:`MAX_ELEMENTS`.
    """
    count = nominal = 1
    for d in dims:
        d = int(d)
        if d < 0:
            raise ValueError(f"{what}: dimension {d} is negative (shape {list(dims)})")
        count *= d
        nominal *= max(d, 1)  # NumPy refuses such shapes even when a 0 makes them empty
    if nominal > MAX_ELEMENTS:
        size = f"declares {count} elements" if count else "has dimensions whose product (0 aside) is too large"
        raise ValueError(f"{what}: shape {list(dims)} {size}; at most {MAX_ELEMENTS} elements are accepted")
    return count
