"""The seed of a backward pass: which blob, which channel (and unit), what diff values."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import InputError


@dataclass
class Seed:
    """A diff placed at one blob.

    Attributes
    ----------
    blob : str
        The blob the diff belongs to.
    values : ndarray
        The diff, shaped like the blob at the batch size of the data (N, ...).
    channel : int, optional
        Set when ``values`` is zero outside this one channel (axis 1) in every image:
        the gradient graph then computes that channel alone at the seeded layer. The
        caller knows it (a unit, a channel's map); None: a general diff.
    """

    blob: str
    values: np.ndarray
    channel: Optional[int] = None

    def __post_init__(self):
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.channel is not None:
            c = self.values.shape[1] if self.values.ndim > 1 else 0
            if not 0 <= self.channel < c:
                raise InputError(f"seed channel {self.channel} out of range (blob '{self.blob}' has {c} channels)")

    @classmethod
    def at_unit(cls, blob, shape, channel, y=None, x=None):
        """1.0 at one unit in every image (spatial centre by default for conv blobs);
        ``shape`` includes the batch."""
        seed = unit_seed(shape, channel, y, x)
        one = np.ndim(channel) == 0
        return cls(blob, seed, int(channel) if one else None)

    @classmethod
    def channel_map(cls, blob, value, channel):
        """The channel's own activation (map or scalar), zeros elsewhere: the viewer's seed."""
        return cls(blob, channel_map_seed(value, channel), int(channel))

    def one_channel(self):
        """The seeded channel's diff alone, (N, 1, ...)."""
        return self.values[:, self.channel:self.channel + 1]


def unit_seed(shape, channel, y=None, x=None, dtype=np.float32):
    """A diff with 1.0 at one unit in every image (spatial centre by default for conv blobs).

    ``shape`` includes the batch; ``channel`` (and ``y``/``x``) may be per-image arrays.
    """
    seed = np.zeros(shape, dtype)
    n = shape[0]
    ch = np.broadcast_to(np.asarray(channel), (n,))
    if len(shape) == 2:
        seed[np.arange(n), ch] = 1.0
        return seed
    ys = np.broadcast_to(np.asarray(shape[2] // 2 if y is None else y), (n,))
    xs = np.broadcast_to(np.asarray(shape[3] // 2 if x is None else x), (n,)) if len(shape) > 3 else None
    if xs is None:
        seed[np.arange(n), ch, ys] = 1.0
    else:
        seed[np.arange(n), ch, ys, xs] = 1.0
    return seed


def channel_map_seed(value, channel):
    """The channel's own activation (map or scalar), zeros elsewhere."""
    seed = np.zeros_like(value)
    seed[:, channel] = value[:, channel]
    return seed
