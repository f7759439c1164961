"""Reading settings YAML safely: data only, bounded nesting, one-line errors with the line.

A settings file (or a ``--set KEY=VALUE`` value) is parsed with PyYAML's ``SafeLoader``:
a tag is refused (settings hold data, never code), nesting is capped at
:data:`~caffevis.limits.MAX_NESTING`, and every problem is a one-line
:class:`~caffevis.errors.SettingsError` naming the file and line. The values are checked
afterwards by :mod:`.loader` against the key table.
"""
from __future__ import annotations

import contextlib
import os
import re
from collections import OrderedDict

import yaml

from ..errors import SettingsError
from ..limits import MAX_NESTING, YAML_SKIPPED, brace_depth, short_repr


def read_settings_yaml(path):
    """Top-level mapping of a settings file -> (OrderedDict key -> value, key -> line)."""
    if not os.path.isfile(path):
        raise SettingsError(f"{path}: settings file not found")
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise SettingsError(f"{path}: cannot read settings file ({err})") from None
    with _yaml_document(text, path) as (loader, node):
        if node is None:
            return OrderedDict(), {}
        if not isinstance(node, yaml.MappingNode):
            raise SettingsError(f"{path}:{node.start_mark.line + 1}: a settings file must be a mapping of key: value")
        values, lines = OrderedDict(), {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise SettingsError(f"{path}:{line}: setting names must be strings, got {short_repr(key)}")
            if key in values:
                raise SettingsError(f"{path}:{line}: {key}: given twice (first on line {lines[key]})")
            values[key] = loader.construct_object(value_node, deep=True)
            lines[key] = line
        return values, lines


def parse_value(text: str, where: str):
    """A settings value given as YAML text (a CLI ``--set KEY=VALUE``), under the rules of
    settings files; SettingsError naming ``where`` otherwise."""
    with _yaml_document(text, where) as (loader, node):
        return None if node is None else loader.construct_object(node, deep=True)


@contextlib.contextmanager
def _yaml_document(text, where):
    """(loader, root node or None) of one YAML document under the settings rules: data only
    (a tag is refused), nesting at most :data:`MAX_NESTING` deep; every problem, in the
    body too, is a one-line SettingsError naming ``where`` (and the line)."""
    _check_flow_depth(text, where)
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters: a NUL is a ReaderError (a YAMLError)
        node = loader.get_single_node()
        if node is not None:
            _check_depth(node, where)
        yield loader, node
    except yaml.constructor.ConstructorError as err:
        mark = err.problem_mark
        at = f"{where}:{mark.line + 1}" if mark else where
        problem = (err.problem or "").split(" for the tag")[0].strip()
        tag = re.search(r"tag '([^']*)'", str(err))
        if tag:
            raise SettingsError(f"{at}: YAML tag '{tag.group(1)}' is not allowed "
                                f"(settings files hold data only, never code)") from None
        raise SettingsError(f"{at}: invalid YAML ({problem})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else where
        problem = getattr(err, "problem", None) or getattr(err, "reason", None) or str(err).splitlines()[0]
        problem = "".join(c if c.isprintable() else "?" for c in str(problem))
        raise SettingsError(f"{at}: YAML syntax error ({problem})") from None
    except RecursionError:
        raise SettingsError(f"{where}: values nested too deep (at most {MAX_NESTING} levels)") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_flow_depth(text, where):
    """SettingsError when [ ] / { } nest deeper than :data:`MAX_NESTING` (before parsing)."""
    depth = brace_depth(text, "[{", "]}", YAML_SKIPPED)
    if depth > MAX_NESTING:
        raise SettingsError(f"{where}: values nested {depth} levels deep; at most {MAX_NESTING} are accepted")


def _check_depth(root, where):
    """SettingsError when YAML nodes nest deeper than :data:`MAX_NESTING` (iterative walk)."""
    todo = [(root, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > MAX_NESTING:
            raise SettingsError(f"{where}:{node.start_mark.line + 1}: values nested more than {MAX_NESTING} "
                                f"levels deep")
        if isinstance(node, yaml.SequenceNode):
            todo += [(n, depth + 1) for n in node.value]
        elif isinstance(node, yaml.MappingNode):
            todo += [(n, depth + 1) for pair in node.value for n in pair]
