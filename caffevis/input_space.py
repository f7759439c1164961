"""The net input's value space, in both directions.

A Caffe-style net takes ``net = ((rgb[swap] * raw_scale) - mean) * input_scale`` where
``rgb`` is a 0-255 image, ``swap`` the channel swap (net channel ``i`` is image channel
``swap[i]``; RGB -> BGR by default) and ``mean`` per channel or an image, in net channel
order. :class:`InputSpace` holds those values once (the mean loaded once, at the precision
it is stored in) and answers every question about them: image -> net values
(:meth:`InputSpace.to_net`), net values -> image (:meth:`InputSpace.from_net`), the RGB
order of net channels (:meth:`InputSpace.to_rgb`, for gradients and optimized images), and
the optimizer's view (:attr:`InputSpace.net_mean`, :attr:`InputSpace.pixel_scale`, the
valid range ``[low, high]``). Geometry (crop, resize) is :class:`caffevis.preprocess.Preprocessor`'s.

``std`` (per-channel, dividing after the mean) is kept for nets normalized that way; Caffe
settings leave it unset.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import InputError, SettingsError
from .images import crop_mean, load_mean


@dataclass(frozen=True, eq=False)
class InputSpace:
    """Mean, scales, channel order (and optional std) of a net input of ``shape`` (C, H, W).

    Attributes
    ----------
    shape : tuple of 3 ints
    mean : ndarray or None
        (C, 1, 1) or (C, H, W) float64 in net channel order and 0-255 pixel units (before
        ``input_scale``), as stored (an ``.npy`` keeps float64; numbers from settings are
        taken at float32 precision, as Caffe's Transformer stores them).
    channel_swap : tuple or None
        Net channel ``i`` = image (RGB) channel ``channel_swap[i]``; None: the identity
        (and always for one channel).
    raw_scale : float
    input_scale : float or None
    std : ndarray or None
        Per-channel (C, 1, 1) divisor applied after the mean (and before ``input_scale``).
    """

    shape: tuple
    mean: np.ndarray | None = None
    channel_swap: tuple | None = None
    raw_scale: float = 1.0
    input_scale: float | None = None
    std: np.ndarray | None = None

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def build(cls, input_shape, mean=None, raw_scale=1.0, input_scale=None, channel_swap="auto", std=None):
        """From an input shape (N, C, H, W) or (C, H, W) and the settings' values.

        Parameters
        ----------
        mean : None, number, sequence, ndarray or str
            As ``caffevis_data_mean`` (a list of paths: the first existing one); a larger
            mean image is centre-cropped to the input (offset ``excess // 2``).
        channel_swap : 'auto', None or sequence
            'auto': (2, 1, 0) (RGB -> BGR) for three channels.
        """
        shape = _chw(input_shape)
        c = shape[0]
        if isinstance(channel_swap, str) and channel_swap == "auto":
            channel_swap = (2, 1, 0) if c == 3 else None
        if isinstance(mean, (list, tuple)) and mean and all(isinstance(s, str) for s in mean):
            mean = next((s for s in mean if os.path.isfile(s)), mean[0])
        mean = crop_mean(load_mean(mean, np.float64), c, shape[1:], np.float64)
        return cls(shape, mean, check_channel_swap(channel_swap, c), float(raw_scale),
                   None if input_scale is None else float(input_scale), channel_std(std, c))

    @classmethod
    def from_settings(cls, settings, input_shape):
        """The input space a :class:`caffevis.settings.Settings` describes for ``input_shape``.

        Errors name the settings key (``caffe_net_channel_swap``, ``caffevis_data_std``,
        ``caffevis_data_mean``).
        """
        c = _chw(input_shape)[0]
        try:
            swap = check_channel_swap(settings.caffe_net_channel_swap, c)
        except InputError as err:
            raise SettingsError(f"{settings.where('caffe_net_channel_swap')}: caffe_net_channel_swap: {err}") from None
        std = getattr(settings, "caffevis_data_std", None)
        try:
            channel_std(std, c)
        except InputError as err:
            raise SettingsError(f"{settings.where('caffevis_data_std')}: caffevis_data_std: {err}") from None
        try:
            return cls.build(input_shape, settings.caffevis_data_mean, settings.caffevis_raw_scale,
                             settings.caffevis_input_scale, swap, std)
        except InputError as err:
            raise SettingsError(f"{settings.where('caffevis_data_mean')}: caffevis_data_mean: {err}") from None

    def replace(self, **changes) -> "InputSpace":
        """A copy with fields changed (``mean=None``: the same space without a mean)."""
        return dataclasses.replace(self, **changes)

    # -- sizes ----------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def input_hw(self) -> tuple:
        return tuple(self.shape[1:])

    # -- image -> net -----------------------------------------------------------------------
    @cached_property
    def _mean32(self):
        # preprocessing subtracts the mean at float32 precision, as Caffe's Transformer
        return None if self.mean is None else self.mean.astype(np.float32)

    def to_net(self, chw) -> np.ndarray:
        """(C, H, W) or (N, C, H, W) 0-255 values already in net channel order -> net values.

        Raw scale, mean, std and input scale in float64 arithmetic (as Caffe's Transformer);
        float32 out.
        """
        out = np.asarray(chw).astype(np.float64)
        if self.raw_scale != 1.0:
            out *= self.raw_scale
        if self._mean32 is not None:
            out -= self._mean32
        if self.std is not None:
            out /= self.std
        if self.input_scale is not None:
            out *= self.input_scale
        return out.astype(np.float32)

    def swap_channels(self, chw_rgb) -> np.ndarray:
        """(C, H, W) image channels -> net channel order."""
        return chw_rgb[list(self.channel_swap)] if self.channel_swap is not None else chw_rgb

    # -- net -> image -----------------------------------------------------------------------
    @cached_property
    def rgb_order(self) -> tuple | None:
        """Net channels in image (RGB) order: the inverse of the swap (None: unchanged)."""
        return None if self.channel_swap is None else tuple(int(i) for i in np.argsort(self.channel_swap))

    def to_rgb(self, chw) -> np.ndarray:
        """(C, H, W) or (N, C, H, W) in net channel order -> (..., H, W, C) in image (RGB) order.

        Only the channel order changes (for gradients, crops and optimized images alike).
        """
        x = np.asarray(chw)
        if self.rgb_order is not None and x.shape[-3] == len(self.rgb_order):
            x = x[..., list(self.rgb_order), :, :]
        return np.moveaxis(x, -3, -1)

    def from_net(self, blob, clip=True, rgb=True) -> np.ndarray:
        """Net value blob(s) -> image(s): RGB float32 in 0-255, (H, W, 3) or (N, H, W, 3).

        Inverts input_scale, std, the mean, raw_scale and the channel swap. 1-channel inputs
        are repeated to RGB unless ``rgb=False`` (then (H, W, 1)); ``clip`` limits to [0, 255].
        """
        x = np.asarray(blob, dtype=np.float64)
        single = x.ndim == 3
        if single:
            x = x[None]
        if x.ndim != 4 or x.shape[1:] != self.shape:
            raise InputError(f"blob has shape {np.asarray(blob).shape}; expected (N, {self.channels}, "
                             f"{self.shape[1]}, {self.shape[2]})")
        x = x.copy()
        if self.input_scale is not None:
            x /= self.input_scale
        if self.std is not None:
            x *= self.std
        if self._mean32 is not None:
            x += self._mean32
        if self.raw_scale != 1.0:
            x /= self.raw_scale
        img = self.to_rgb(x)
        if self.channels == 1 and rgb:
            img = np.repeat(img, 3, axis=3)
        if clip:
            img = np.clip(img, 0, 255)
        img = img.astype(np.float32)
        return img[0] if single else img

    # -- the optimizer's view ---------------------------------------------------------------
    @cached_property
    def _per_channel(self) -> np.ndarray:
        """Net units per pixel unit of each channel relative to ``raw_scale * input_scale``: 1 / std."""
        return np.ones((self.channels, 1, 1)) if self.std is None else 1.0 / self.std

    @property
    def pixel_scale(self) -> float:
        """Net units per 0-255 pixel unit (``raw_scale * input_scale``, times the mean of 1 / std
        when there is a std; 1.0 for ImageNet nets): start noise and learning rates scale with it."""
        return self.raw_scale * (1.0 if self.input_scale is None else self.input_scale) * float(self._per_channel.mean())

    @property
    def channel_scale(self):
        """Per-channel factor on :attr:`pixel_scale` (a std divides each channel); None without a std."""
        return None if self.std is None else self._per_channel / float(self._per_channel.mean())

    @cached_property
    def net_mean(self) -> np.ndarray:
        """The mean in net units (``mean * input_scale / std``), input-sized (C, H, W) float64."""
        if self.mean is None:
            return np.zeros(self.shape, np.float64)
        scale = 1.0 if self.input_scale is None else self.input_scale
        return np.ascontiguousarray(np.broadcast_to(self.mean * scale * self._per_channel, self.shape)
                                    .astype(np.float64))

    @property
    def low(self) -> float:
        """Lowest valid net value plus ``net_mean`` (a black pixel)."""
        return 0.0

    @property
    def high(self):
        """Highest valid net value plus ``net_mean`` (a white pixel); per channel (C, 1, 1) with a std."""
        return 255.0 * self.pixel_scale * (1.0 if self.channel_scale is None else self.channel_scale)

    def describe(self) -> dict:
        """What result files record about the space."""
        order = self.rgb_order or (tuple(range(3)) if self.channels == 3 else None)
        high = self.high if self.std is None else [float(v) for v in np.ravel(self.high)]
        return {"pixel_range": [self.low, high], "scale": self.pixel_scale,
                "mean_per_channel": [float(v) for v in self.net_mean.reshape(self.channels, -1).mean(1)],
                "channel_swap_to_rgb": list(order) if order else None}


def channel_std(std, channels):
    """The std divisor as a (C, 1, 1) float64 array (None: no division); one number is every channel's."""
    if std is None:
        return None
    values = np.asarray(std, np.float64).reshape(-1)
    if values.size not in (1, channels) or not (values > 0).all():
        raise InputError(f"std {list(values)}: expected one positive number or {channels} (one per channel)")
    return np.broadcast_to(values, (channels,)).reshape(channels, 1, 1).copy()


def check_channel_swap(channel_swap, channels):
    """The swap as a tuple, or None when there is nothing to swap (1 channel, identity, None)."""
    if channels == 1 or channel_swap is None:
        return None
    swap = tuple(int(c) for c in channel_swap)
    if sorted(swap) != list(range(channels)):
        raise InputError(f"channel swap {list(swap)} is not a permutation of the net's {channels} input channels")
    return None if swap == tuple(range(channels)) else swap


def _chw(input_shape) -> tuple:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"input shape {tuple(input_shape)}: expected (N, C, H, W) or (C, H, W)")
    return shape
