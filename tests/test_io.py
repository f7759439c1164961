"""File helpers: atomic writes leave either the old file or the new one, never a part."""
import os

import pytest

from caffevis.io import atomic_path


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    with atomic_path(str(target)) as tmp, open(tmp, "w") as f:
        f.write("one")
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp, open(tmp, "w") as f:
            f.write("two, half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "one"
    assert os.listdir(target.parent) == ["f.txt"]
