"""caffevis fetch caffenet|alexnet|caffenet-yos: download, verify sha1, convert."""
from ..fetch import register  # noqa: F401
