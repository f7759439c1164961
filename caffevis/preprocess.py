"""Image -> net input and back, with DeepVis' (Caffe ``Transformer``) semantics.

Pipeline of :meth:`Preprocessor.preprocess` (images are RGB in 0-255, as
:func:`caffevis.images.read_image` returns them):

1. geometry, by ``mode``:
   ``'crop'`` (default) centre-crop to a square, then ``cv2.resize`` (bilinear) to the net
   input; ``'stretch'`` resize straight to the input (``static_file_stretch_mode``);
   ``'offline'`` the offline tools' variant (DeepVis ``find_maxes``: Caffe
   ``Classifier(image_dims=(256, 256))``): resize to 256x256, then take the centre crop of
   the input size (offset 14 for 227);
2. 1-channel nets: RGB -> grey (``cv2.COLOR_RGB2GRAY``; grey input is used as it is);
3. HWC -> CHW, channel swap (``caffe_net_channel_swap``, RGB -> BGR by default;
   channel ``i`` of the net input is image channel ``swap[i]``);
4. ``* raw_scale`` (1.0: the 0-255 image is used as it is, as in the viewer; Caffe tools
   that load images in [0, 1] use 255, which is the same thing);
5. ``- mean`` (per channel, or a mean image centre-cropped to the input);
6. ``* input_scale`` (if set; LeNet 0.00390625);
7. stacked into float32 NCHW.

:meth:`Preprocessor.deprocess` inverts steps 3-6 for display. Steps 3-6 are the
:class:`~caffevis.input_space.InputSpace`'s (the one object the viewer, optimizer, mining and
renderers share).
"""
from __future__ import annotations

import numpy as np

from .errors import InputError
from .images import square_crop, to_rgb
from .input_space import InputSpace

MODES = ("crop", "stretch", "offline")


class Preprocessor:
    """Turns RGB images into the net's input blob and back: the geometry, then the values of
    its :class:`~caffevis.input_space.InputSpace` (``space``).

    Parameters
    ----------
    input_shape : tuple
        The net input, (N, C, H, W) or (C, H, W).
    channel_swap : sequence of int or None
        Net channel ``i`` = image channel ``channel_swap[i]``; ignored for 1-channel nets.
    raw_scale : float
        Multiplies the 0-255 image (after the swap, before the mean).
    mean : None, number, sequence, ndarray or str
        As :func:`caffevis.images.load_mean` accepts; fitted with
        :func:`caffevis.images.crop_mean`.
    input_scale : float or None
        Multiplies after mean subtraction.
    std : None, number or sequence
        Per-channel divisor after mean subtraction, before ``input_scale`` (torchvision's
        normalization: raw_scale 1/255, mean and std per channel).
    stretch : bool
        Default geometry: stretch instead of centre-crop (``static_file_stretch_mode``).
    offline_dims : (int, int)
        Resize size of the ``'offline'`` mode before its centre crop.
    space : InputSpace, optional
        The values, instead of ``channel_swap``, ``raw_scale``, ``mean`` and ``input_scale``.
    """

    def __init__(self, input_shape, channel_swap=(2, 1, 0), raw_scale=1.0, mean=None, input_scale=None,
                 stretch=False, offline_dims=(256, 256), std=None, space=None):
        self.space = space or InputSpace.build(input_shape, mean, raw_scale, input_scale, channel_swap, std)
        self.channels, self.height, self.width = self.space.shape
        self.stretch = bool(stretch)
        self.offline_dims = tuple(int(v) for v in offline_dims)

    @classmethod
    def from_settings(cls, settings, input_shape):
        """A Preprocessor from :class:`caffevis.settings.Settings` and the net's input shape.

        ``caffevis_data_hw`` (when set) replaces the input's spatial size.
        """
        shape = tuple(int(v) for v in input_shape)
        if len(shape) == 3:
            shape = (1,) + shape
        if settings.caffevis_data_hw:
            shape = shape[:2] + tuple(settings.caffevis_data_hw)
        return cls(shape, space=InputSpace.from_settings(settings, shape), stretch=settings.static_file_stretch_mode)

    @property
    def input_hw(self):
        return self.height, self.width

    # -- geometry -----------------------------------------------------------------------
    def to_square(self, image: np.ndarray, stretch=None) -> np.ndarray:
        """The frame as DeepVis shows it in the input pane: centre-cropped to a square, or
        unchanged in stretch mode."""
        stretch = self.stretch if stretch is None else stretch
        return image if stretch else square_crop(image)

    def resize(self, image: np.ndarray, mode=None) -> np.ndarray:
        """Apply the geometry of ``mode`` (see the module doc): (H, W[, C]) -> input size."""
        mode = mode or ("stretch" if self.stretch else "crop")
        if mode not in MODES:
            raise InputError(f"preprocess mode '{mode}': expected one of {', '.join(MODES)}")
        image = np.asarray(image)
        if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
            raise InputError(f"image has shape {image.shape}; expected (H, W) or (H, W, C)")
        if image.dtype not in (np.uint8, np.float32):
            image = image.astype(np.float32)
        if mode == "crop":
            image = square_crop(image)
        if mode == "offline":
            oh, ow = self.offline_dims
            if oh < self.height or ow < self.width:
                raise InputError(f"offline resize {oh}x{ow} is smaller than the net input {self.height}x{self.width}")
            image = _resize(image, oh, ow)
            top, left = (oh - self.height) // 2, (ow - self.width) // 2
            return image[top:top + self.height, left:left + self.width]
        return _resize(image, self.height, self.width)

    # -- values ---------------------------------------------------------------------------
    def transform(self, image: np.ndarray) -> np.ndarray:
        """An image already at the input size (H, W[, C]) -> the input blob (C, H, W) float32."""
        import cv2

        image = np.asarray(image)
        if image.shape[:2] != (self.height, self.width):
            raise InputError(f"image is {image.shape[0]}x{image.shape[1]}; transform needs the net input "
                             f"size {self.height}x{self.width} (use preprocess to resize)")
        x = image.astype(np.float32, copy=False)
        if self.channels == 1:
            if x.ndim == 3 and x.shape[2] == 1:
                x = x[:, :, 0]
            elif x.ndim == 3:
                x = cv2.cvtColor(np.ascontiguousarray(to_rgb(x)), cv2.COLOR_RGB2GRAY)
            chw = x[None]
        else:
            x = to_rgb(x) if x.ndim == 2 or x.shape[2] in (1, 4) else x
            if x.shape[2] != self.channels:
                raise InputError(f"image has {x.shape[2]} channels; the net takes {self.channels}")
            chw = self.space.swap_channels(x.transpose(2, 0, 1))
        return self.space.to_net(chw)

    def preprocess(self, images, mode=None) -> np.ndarray:
        """RGB image(s) in 0-255 -> the net input, float32 (N, C, H, W).

        Parameters
        ----------
        images : ndarray or list of ndarray
            One image (H, W), (H, W, 1) or (H, W, 3); a batch (N, H, W, C); a batch of grey
            images (N, H, W) (a 3-D array whose last axis is not 1, 3 or 4); or a list of
            images of any sizes.
        mode : {'crop', 'stretch', 'offline'}, optional
            Geometry; default crop, or stretch when ``stretch`` was set.
        """
        if isinstance(images, np.ndarray) and (images.ndim == 4 or (images.ndim == 3 and images.shape[2] not in (1, 3, 4))):
            batch = list(images)  # (N, H, W, C), or (N, H, W) grey images such as MNIST digits
        elif isinstance(images, (list, tuple)):
            batch = list(images)
        else:
            batch = [images]
        if not batch:
            raise InputError("preprocess: no images given")
        return np.stack([self.transform(self.resize(im, mode)) for im in batch])

    def deprocess(self, blob, clip=True, rgb=True) -> np.ndarray:
        """Input blob(s) -> image(s) for display (:meth:`InputSpace.from_net`)."""
        return self.space.from_net(blob, clip=clip, rgb=rgb)


def _resize(image, height, width):
    import cv2

    if image.shape[:2] == (height, width):
        return image
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    if image.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]  # cv2 drops a single channel axis
    return out


def preprocess_file(path: str, preprocessor: Preprocessor, mode=None) -> np.ndarray:
    """Read an image file and preprocess it: (1, C, H, W) float32."""
    from .images import read_image

    return preprocessor.preprocess(read_image(path), mode=mode)
