"""The window image: a pure function of the state, the blobs, the back result and images.

:func:`render` composes the panes of DeepVis's window (input, aux, back, control,
layers, jpgvis, status, help overlay) into one BGR uint8 image. It never calls the
model and never loads files; the app passes in everything it needs.

``blobs`` maps blob name -> the blob of one image ((C, H, W) or (n,)); ``back`` is a
:class:`BackResult` or None; ``images`` holds ``'input'`` (RGB square frame),
``'jpgvis'`` (BGR image; None while loading, an empty array when absent) and
``'pattern'`` (BGR sprites (n, h, w, 3); None while loading, empty when absent).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from . import tiles as T
from .keys import BINDINGS, NAV_HELP
from .state import BACK_MODE_LABELS, tile_grid

TITLE = "~ ~ ~ caffevis: deep visualization ~ ~ ~"


@dataclass
class BackResult:
    """One back pass: the diff at the input and at every blob below the seed.

    ``key`` is the state's ``back_key`` it was computed for; a result whose key differs
    from the current one is drawn as stale.
    """

    key: tuple
    input_diff: np.ndarray  # (C, H, W)
    blob_diffs: dict = field(default_factory=dict)  # blob -> (C, H, W) or (n,)


@dataclass
class Layout:
    """Where things were drawn, for mouse hit-testing (filled by :func:`render`)."""

    control_boxes: list = field(default_factory=list)  # (layer_idx, x, y, w, h) in window coordinates
    tiles: tuple | None = None  # (x0, y0, scale, tile_h, tile_w, rows, cols, n)


# -- text -----------------------------------------------------------------------------------
#: Cap height in pixels at font size 1 of DeepVis's (OpenCV 2/3 Hershey) fonts, measured on
#: its published screenshots for COMPLEX_SMALL (14 px); the line advance of typeset text.
LEGACY_CAP = {cv2.FONT_HERSHEY_COMPLEX_SMALL: 14, cv2.FONT_HERSHEY_PLAIN: 12}
LEGACY_CAP_DEFAULT = 22


@lru_cache(maxsize=None)
def _glyph_scale(face):
    """Font-scale factor giving this OpenCV's glyphs the original's cap height.

    OpenCV 5 draws the ``FONT_HERSHEY_*`` ids with a different (larger) font; scaling
    keeps text inside DeepVis's pane geometry. OpenCV 4 draws real Hershey fonts: 1.0.
    """
    if int(cv2.__version__.split(".")[0]) < 5:
        return 1.0
    probe = np.zeros((120, 120), np.uint8)
    cv2.putText(probe, "X", (10, 100), face, 1.0, 255, 1, cv2.LINE_AA)
    rows = np.nonzero((probe > 127).any(axis=1))[0]
    cap = (rows.max() - rows.min() + 1) if len(rows) else 0
    return LEGACY_CAP.get(face, LEGACY_CAP_DEFAULT) / float(cap) if cap else 1.0


def cv_scale(face, fsize):
    """The OpenCV fontScale that draws ``face`` at DeepVis's size ``fsize``."""
    return float(fsize) * _glyph_scale(face)


def line_height(face, fsize):
    return int(round(LEGACY_CAP.get(face, LEGACY_CAP_DEFAULT) * float(fsize)))


def text_size(text, face, fsize, thick):
    """(width, height, baseline) as drawn; height is the original's line height."""
    (w, _), base = cv2.getTextSize(text, face, cv_scale(face, fsize), thick)
    return w, line_height(face, fsize), base


def put_text(img, text, org, face, fsize, clr, thick):
    cv2.putText(img, text, org, face, cv_scale(face, fsize), clr, thick, cv2.LINE_AA)


def styled(text, style, pen=None):
    """A :func:`typeset` item: ``text`` in a :class:`~caffevis.settings.TextStyle` (the viewer's,
    :meth:`~caffevis.viewer.config.ViewerConfig.text_style`), drawn with ``pen`` = (bgr, thick)
    or the style's main colour and thickness."""
    clr, thick = pen or style.pen()
    return text, style.face, style.fsize, clr, thick


def typeset(pane, items, loc, line_spacing=0, wrap=False, between=" "):
    """Draw text items left to right from ``loc`` = (row of the first baseline, col).

    ``items``: list of (text, face, fsize, bgr, thick), or None for a line break.
    Wrapping moves an item that would cross the pane's right edge to a new line.
    Returns one (x, y, w, h) box per item (None for breaks), pane coordinates.
    """
    row, col = int(loc[0]), int(loc[1])
    line_h, boxes = 0, []
    for item in items:
        if item is None:
            row += line_h + line_spacing
            col, line_h = int(loc[1]), 0
            boxes.append(None)
            continue
        text, face, fsize, clr, thick = item
        w, h, base = text_size(text, face, fsize, thick)
        if wrap and col > loc[1] and col + w > pane.shape[1]:
            row += line_h + line_spacing
            col, line_h = int(loc[1]), 0
        put_text(pane, text, (col, row), face, fsize, clr, thick)
        boxes.append((col, row - h, w, h + base))
        line_h = max(line_h, h)
        space = text_size(between, face, fsize, thick)[0] if between else 0
        col += w + space
    return boxes


# -- status -----------------------------------------------------------------------------------
def status_text(state, fps=None):
    """The status line: ``fwd conv5:26 | Back: deconv (from conv5_26, disp raw) | Boost: 0/1 | FPS: 0.8``."""
    mode = "pattern" if state.pattern_mode else ("back" if state.layers_show_back else "fwd")
    parts = [f"{mode} {state.layer}:{state.selected_unit}"]
    if state.back_enabled:
        parts.append(f"Back: {BACK_MODE_LABELS[state.back_mode]} (from {state.backprop_layer}_"
                     f"{state.backprop_unit}, disp {state.back_filt_mode})")
    else:
        parts.append("Back: off")
    parts.append(f"Boost: {state.boost_indiv:g}/{state.boost_gamma:g}")
    if fps:
        parts.append(f"FPS: {fps:.1f}")
    if state.message:
        parts.append(state.message)
    return " | ".join(parts)


def back_display(state, back):
    """'disabled', 'stale' or 'normal' (DeepVis's back-pane display rule)."""
    if not state.back_visible():
        return "disabled"
    if state.back_stale or back is None or back.key != state.back_key:
        return "stale"
    return "normal"


# -- panes ------------------------------------------------------------------------------------
def _view(win, box):
    i, j, h, w = box
    return win[i:i + h, j:j + w]


def draw_input(pane, images, config):
    frame = images.get("input")
    if frame is None:
        return
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    else:
        frame = frame[..., 2::-1] if frame.shape[2] >= 3 else np.repeat(frame[..., :1], 3, axis=2)
    # DeepVis stretches the frame to the pane (non-uniform, bilinear)
    pane[...] = cv2.resize(np.ascontiguousarray(frame), (pane.shape[1], pane.shape[0]), interpolation=cv2.INTER_LINEAR)


def net_to_bgr(chw, space):
    """(C, H, W) in the net's channel order -> (H, W, C) BGR for display (C in {1, 3}); the
    channel order is the input space's (:meth:`caffevis.input_space.InputSpace.to_rgb`)."""
    chw = np.asarray(chw, np.float32)
    if chw.shape[0] != 3:
        hwc = chw.transpose(1, 2, 0)
        return hwc[..., :1] if hwc.shape[2] != 1 else hwc
    return space.to_rgb(chw)[..., ::-1]


def back_image(back, config, filt):
    """The back pane's image (uint8 BGR) from a back result."""
    diff = net_to_bgr(back.input_diff, config.input_space_for(back.input_diff.shape))
    img = T.back_filter(diff, filt, config.caffevis_grad_norm_blur_radius)
    img = T.to_uint8(img)
    if img.ndim == 2 or img.shape[2] == 1:
        img = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
    return img


def draw_back(pane, state, back, config):
    """Back pane; returns the image drawn (None when disabled or stale)."""
    disp = back_display(state, back)
    if disp == "disabled":
        return None
    if disp == "stale":
        T.fill(pane, config.stale_background)
        return None
    img = back_image(back, config, state.back_filt_mode)
    T.paste_fit(pane, img)
    return img


def unit_images(state, blobs, back, images, config):
    """The selected layer as unit images in [0, 1] (float) or BGR uint8 sprites.

    Returns (units, kind, pad_bgr): ``units`` (n, h, w) grey or (n, h, w, 3) BGR;
    ``kind`` 'fwd', 'back', 'pattern' or 'none'.
    """
    layer = state.layer
    if state.pattern_mode:
        sprites = images.get("pattern")
        n = state.n_units
        if sprites is None:
            return T.filled((n, 1, 1, 3), config.stale_background), "pattern", config.window_background
        if len(sprites) == 0:
            return np.zeros((n, 1, 1, 3), np.uint8), "pattern", config.window_background
        return np.asarray(sprites), "pattern", config.window_background
    if blobs is None or layer not in blobs:
        return None, "none", config.window_background
    acts = T.as_units(blobs[layer])
    if state.layers_show_back:
        pad = config.caffevis_layer_clr_back_background
        disp = back_display(state, back)
        if disp != "normal":
            color = config.window_background if disp == "disabled" else config.stale_background
            return T.filled(acts.shape + (3,), color), "back", pad
        diff = back.blob_diffs.get(layer)
        diff = np.zeros_like(acts) if diff is None else T.as_units(diff)
        colored = T.signed_to_colors(diff)
        return T.normalize_layer(colored, state.boost_indiv, state.boost_gamma), "back", pad
    return T.normalize_layer(acts, state.boost_indiv, state.boost_gamma), "fwd", config.window_background


def _units_u8(units):
    return units if units.dtype == np.uint8 else T.to_uint8(units)


def pattern_downsample(sprites, pane_hw, rows, cols):
    """Integer-stride downsampling of pattern sprites to fit the grid (DeepVis's rule)."""
    sh, sw = sprites.shape[1:3]
    ds = max(int(np.ceil(sh / max(1.0, pane_hw[0] / rows - 2))), int(np.ceil(sw / max(1.0, pane_hw[1] / cols - 2))), 1)
    return sprites[:, ::ds, ::ds]


def draw_layers(pane, state, units, kind, pad, back, back_img, config, labels, layout, origin):
    """Layers pane: the tile grid (zoom 0), the selected unit (zoom 1) or the back image (zoom 2)."""
    if units is None:
        return
    zoom = state.layers_pane_zoom_mode
    if zoom == 2:  # the back pane drawn again into the layers pane, with its disabled / stale rule
        if back_img is not None:
            T.paste_fit(pane, back_img)
        elif back_display(state, back) == "stale":
            T.fill(pane, config.stale_background)
    elif zoom == 1:
        T.paste_fit(pane, _units_u8(units[state.selected_unit]))
    elif zoom == 0:
        n = len(units)
        rows, cols = tile_grid(n, config.caffevis_layers_aspect_ratio)
        if kind == "pattern" and units.shape[1] > 1:
            units = pattern_downsample(units, pane.shape[:2], rows, cols)
        tiles_u8 = T.enlarge_tiny(_units_u8(units))
        highlights = {}  # the frozen unit's blue ring wins over the cursor's green, as in DeepVis
        if state.cursor_area == "bottom":
            highlights[state.selected_unit] = config.caffevis_layer_clr_cursor
        if state.backprop_selection_frozen and state.backprop_layer == state.layer:
            highlights[state.backprop_unit] = config.caffevis_layer_clr_back_sel
        grid = T.make_tiles(tiles_u8, rows, cols, pad, highlights)
        scale, _, _ = T.paste_fit(pane, grid)
        th, tw = tiles_u8.shape[1:3]
        layout.tiles = (origin[1], origin[0], scale, th, tw, rows, cols, n)
    if labels and state.layer in config.caffevis_label_layers and state.cursor_area == "bottom" \
            and state.selected_unit < len(labels):
        style = config.text_style("caffevis_label")
        typeset(pane, [styled(labels[state.selected_unit], style)], style.loc)


def top_classes(probs, labels, k=5):
    """[(label, probability)] of the ``k`` largest probabilities, ties in index order."""
    probs = np.asarray(probs, np.float64).ravel()
    names = labels or []
    return [(names[i] if i < len(names) else str(int(i)), float(probs[i]))
            for i in np.argsort(-probs, kind="stable")[:k]]


def draw_aux(pane, state, blobs, units, config, labels):
    """Aux pane: top-5 of the prob layer (cursor on the list) or the selected unit enlarged."""
    if state.cursor_area == "bottom":
        if units is not None:
            T.paste_fit(pane, _units_u8(units[state.selected_unit]))
        return
    prob_layer = config.caffevis_prob_layer
    if not (labels and state.show_label_predictions and blobs is not None and prob_layer in blobs):
        return
    style = config.text_style("caffevis_class")
    c0 = np.array(style.colours["clr_0"], np.float32)
    c1 = np.array(style.colours["clr_1"], np.float32)
    items = []
    for name, p in top_classes(blobs[prob_layer], labels):
        clr = tuple(int(v) for v in np.round(c1 * p + c0 * (1 - p)))
        items += [styled(f"{p:.2f} {name}", style, (clr, style.thick)), None]
    typeset(pane, items[:-1], style.loc, line_spacing=style.line_spacing)


def control_items(state, config):
    """(text, face, fsize, bgr, thick) of every layer name, coloured as DeepVis does.

    The cursor colour wins on the layer list; with the cursor on the units, a frozen back
    layer keeps its bluish colour even when it is the selected layer.
    """
    style = config.text_style("caffevis_control")
    items = []
    for idx, layer in enumerate(state.layers):
        variant = None
        frozen_here = state.backprop_selection_frozen and layer == state.backprop_layer
        if frozen_here:
            variant = "bp"
        if idx == state.layer_idx:
            if state.cursor_area == "top":
                variant = "cursor"
            elif not frozen_here:
                variant = "selected"
        items.append(styled(config.pretty_name(layer), style, style.pen(variant)))
    return items


def draw_control(pane, state, config, layout, origin):
    style = config.text_style("caffevis_control")
    boxes = typeset(pane, control_items(state, config), style.loc, line_spacing=style.line_spacing, wrap=True)
    # names wrapped below the pane are clipped: they must not catch clicks meant for the tiles
    ph = pane.shape[0]
    layout.control_boxes = [(i, x + origin[1], y + origin[0], w, min(h, ph - y))
                            for i, (x, y, w, h) in enumerate(boxes) if y < ph]


def jpgvis_shown(state, config):
    """Whether the jpgvis pane shows the selected unit (cursor on units, layer listed, key 9 on)."""
    layer = config.caffevis_jpgvis_remap.get(state.layer, state.layer)
    return (state.cursor_area == "bottom" and state.show_unit_jpgs and bool(config.caffevis_unit_jpg_dir)
            and layer in config.caffevis_jpgvis_layers)


def draw_jpgvis(pane, state, images, config):
    if not jpgvis_shown(state, config):
        return
    img = images.get("jpgvis")
    if img is None:
        T.fill(pane, config.stale_background)
    elif img.size:
        T.paste_fit(pane, img)


def draw_status(pane, state, config, fps):
    style = config.text_style("caffevis_status")
    typeset(pane, [styled(status_text(state, fps), style)], style.loc)


def help_lines(bindings=None):
    """(key label, help text) rows of the help overlay; a None label starts a section."""
    bindings = bindings or BINDINGS
    rows = []
    for group, title in (("base", "Base keys"), ("caffevis", "Caffevis keys")):
        rows.append((None, title))
        if group == "caffevis":
            rows.append(("", NAV_HELP))
        for b in bindings:
            if b.group == group and b.help:
                rows.append(("/".join(b.keys), b.help))
    return rows


def draw_help(win, config):
    """DeepVis's help overlay: darken the window x0.7 and the help box x0.7 again, list the keys."""
    H, W = win.shape[:2]
    win[...] = (win * 0.7).astype(np.uint8)
    t, l, h, w = config.help_pane_loc
    box = win[int(t * H):int((t + h) * H), int(l * W):int((l + w) * W)]
    box[...] = (box * 0.7).astype(np.uint8)
    style = config.text_style("help")
    tw = text_size(TITLE, style.face, style.fsize, style.thick)[0]
    row, col = style.loc
    typeset(box, [styled(TITLE, style)], (row, max(0, (box.shape[1] - tw) // 2)))
    line_h = line_height(style.face, style.fsize) + style.line_spacing
    key_col = 120
    row += 2 * line_h
    for label, text in help_lines():
        if label is None:
            row += line_h // 2
            typeset(box, [styled(text, style)], (row, col))
        else:
            kw = text_size(label, style.face, style.fsize, style.thick)[0]
            typeset(box, [styled(label, style)], (row, col + key_col - kw))
            typeset(box, [styled(text, style)], (row, col + key_col + 15))
        row += line_h


def draw_debug_panes(win, config):
    for name, (i, j, h, w) in config.window_panes.items():
        cv2.rectangle(win, (j, i), (j + w - 1, i + h - 1), (0, 0, 255), 1)
        cv2.putText(win, f"{name} {i},{j} {h}x{w}", (j + 5, i + 15), cv2.FONT_HERSHEY_PLAIN, 1, (0, 0, 255), 1)


# -- the window --------------------------------------------------------------------------------
def render(state, blobs, back, images, config, labels=None, fps=None, layout=None):
    """The whole window (BGR uint8, ``config.window_shape``).

    Parameters
    ----------
    state : ViewerState
    blobs : dict or None
        Blob name -> the forward blob of the current image.
    back : BackResult or None
    images : dict
        ``'input'``, ``'jpgvis'``, ``'pattern'`` (see the module doc).
    config : ViewerConfig
    labels : list of str, optional
        Class labels (``caffevis_labels``).
    fps : float, optional
        Shown in the status line when given.
    layout : Layout, optional
        Filled with the control-pane boxes and the tile geometry (mouse hit-testing).
    """
    layout = layout if layout is not None else Layout()
    win = T.filled(config.window_shape + (3,), config.window_background)
    panes = config.window_panes
    if "input" in panes:
        draw_input(_view(win, panes["input"]), images, config)
    back_img = None
    if "caffevis_back" in panes:
        back_img = draw_back(_view(win, panes["caffevis_back"]), state, back, config)
    elif back_display(state, back) == "normal":
        back_img = back_image(back, config, state.back_filt_mode)
    units, kind, pad = unit_images(state, blobs, back, images, config)
    if "caffevis_layers" in panes:
        box = panes["caffevis_layers"]
        draw_layers(_view(win, box), state, units, kind, pad, back, back_img, config, labels, layout, box[:2])
    if "caffevis_aux" in panes:
        draw_aux(_view(win, panes["caffevis_aux"]), state, blobs, units, config, labels)
    if "caffevis_control" in panes:
        box = panes["caffevis_control"]
        draw_control(_view(win, box), state, config, layout, box[:2])
    if "caffevis_jpgvis" in panes:
        draw_jpgvis(_view(win, panes["caffevis_jpgvis"]), state, images, config)
    if "caffevis_status" in panes:
        draw_status(_view(win, panes["caffevis_status"]), state, config, fps)
    if config.debug_window_panes:
        draw_debug_panes(win, config)
    if state.help_mode:
        draw_help(win, config)
    return win


# -- hit testing ------------------------------------------------------------------------------
def hit_test(layout, state, x, y):
    """What a click at window pixel (x, y) selects: ('layer', idx), ('unit', idx) or None."""
    for idx, bx, by, bw, bh in layout.control_boxes:
        if bx <= x < bx + bw and by <= y < by + bh:
            return ("layer", idx)
    if layout.tiles is not None and state.layers_pane_zoom_mode == 0:
        x0, y0, scale, th, tw, rows, cols, n = layout.tiles
        gx, gy = (x - x0) / scale, (y - y0) / scale
        if gx >= 0 and gy >= 0:
            c, r = int(gx // (tw + 2)), int(gy // (th + 2))
            if r < rows and c < cols and r * cols + c < n:
                return ("unit", r * cols + c)
    return None
