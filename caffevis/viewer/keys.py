"""Key bindings: one table from action tag to keys, and key-code decoding.

OpenCV's ``waitKeyEx`` returns platform-specific codes. Letters and digits are matched
on their lowest byte (Linux can report ``j`` as 0x10006a), arrows and page keys on 16
bits (Linux 0xff51..., macOS 0xf700...) or on Windows' 0x250000... codes. Larger masks
are tried first; a code with bits in 0xff00 (a special key) is never read as a letter.
255 (OpenCV 3.2's "no key", returned continuously) and the Shift/Ctrl
codes are ignored silently.
"""
from __future__ import annotations

from collections import namedtuple

Binding = namedtuple("Binding", "tag keys help group")

#: (tag, key names, help text, group). Order = the help overlay's order.
BINDINGS = [
    # base keys (DeepVis live_vis)
    Binding("freeze_cam", ("f",), "Freeze or unfreeze camera / video / canvas capture", "base"),
    Binding("toggle_input_mode", ("c",), "Toggle between live input (camera, video, canvas) and static files", "base"),
    Binding("static_file_increment", ("e", "pgdn"), "Load next static file", "base"),
    Binding("static_file_decrement", ("w", "pgup"), "Load previous static file", "base"),
    Binding("help_mode", ("h",), "Toggle this help screen", "base"),
    Binding("stretch_mode", ("0",), "Toggle between cropping and stretching static files to be square", "base"),
    Binding("debug_level", ("5",), "Cycle debug level between 0 (quiet), 1 (some timing info) and 2 (all timing info)", "base"),
    Binding("clear_canvas", ("x",), "Clear the digit canvas (caffevis; also right-click)", "base"),
    Binding("quit", ("q",), "Quit", "base"),
    # caffevis keys (DeepVis caffevis app)
    Binding("reset_state", ("esc",), "Reset: turn off backprop, reset to layer 0, unit 0, default boost", "caffevis"),
    Binding("sel_left", ("left", "j"), "", "caffevis"),
    Binding("sel_right", ("right", "l"), "", "caffevis"),
    Binding("sel_down", ("down", "k"), "", "caffevis"),
    Binding("sel_up", ("up", "i"), "", "caffevis"),
    Binding("sel_left_fast", ("J",), "", "caffevis"),
    Binding("sel_right_fast", ("L",), "", "caffevis"),
    Binding("sel_down_fast", ("K",), "", "caffevis"),
    Binding("sel_up_fast", ("I",), "", "caffevis"),
    Binding("sel_layer_left", ("u", "U"), "Switch to previous layer", "caffevis"),
    Binding("sel_layer_right", ("o", "O"), "Switch to next layer", "caffevis"),
    Binding("zoom_mode", ("z",), "Cycle zooming through {currently selected unit, backprop results, none}", "caffevis"),
    Binding("pattern_mode", ("s",), "Toggle overlay of preferred input pattern (regularized optimized images)", "caffevis"),
    Binding("ez_back_mode_loop", ("b",), "Cycle through a few common backprop/deconv modes", "caffevis"),
    Binding("freeze_back_unit", ("d",), "Freeze the bprop/deconv origin to be the currently selected unit", "caffevis"),
    Binding("show_back", ("a",), "Toggle between showing forward activations and back/deconv diffs", "caffevis"),
    Binding("back_mode", ("n",), "(expert) Cycle through backprop modes: off, bprop, deconv", "caffevis"),
    Binding("back_mode_guided", ("B",), "(caffevis) Cycle back modes including guided backprop", "caffevis"),
    Binding("back_filt_mode", ("m",), "(expert) Cycle through backprop filter types: raw, gray, norm, normblur", "caffevis"),
    Binding("boost_gamma", ("t",), "Boost contrast using gamma correction", "caffevis"),
    Binding("boost_individual", ("T",), "Boost contrast by scaling each channel to use more of its individual range", "caffevis"),
    Binding("toggle_label_predictions", ("8",), "Turn on or off display of prob label values", "caffevis"),
    Binding("toggle_unit_jpgs", ("9",), "Turn on or off display of loaded jpg visualization", "caffevis"),
]

NAV_HELP = "Navigate with left,right,up,down or j,l,i,k. Use J,L,I,K to move faster."

#: Named (non-character) keys: name -> list of (code, mask).
NAMED_KEYS = {
    "left": [(0xff51, 0xffff), (0xf702, 0xffff), (0x250000, 0xff0000)],
    "up": [(0xff52, 0xffff), (0xf700, 0xffff), (0x260000, 0xff0000)],
    "right": [(0xff53, 0xffff), (0xf703, 0xffff), (0x270000, 0xff0000)],
    "down": [(0xff54, 0xffff), (0xf701, 0xffff), (0x280000, 0xff0000)],
    "pgup": [(0xff55, 0xffff), (0xf72c, 0xffff), (0x210000, 0xff0000)],
    "pgdn": [(0xff56, 0xffff), (0xf72d, 0xffff), (0x220000, 0xff0000)],
    "esc": [(27, 0xff)],
    "enter": [(13, 0xff), (10, 0xff)],
}

#: Codes ignored silently: OpenCV 3.2's continuous 255, Shift/Ctrl, Caps/Alt/Super.
IGNORED_CODES = {255, 0xffe1, 0xffe2, 0xffe3, 0xffe4, 0xffe5, 0xffe9, 0xffea, 0xffeb, 0xffec}


def _key_codes(name):
    if name in NAMED_KEYS:
        return NAMED_KEYS[name]
    if len(name) != 1:
        raise ValueError(f"unknown key name '{name}'")
    return [(ord(name), 0xff)]


class KeyTable:
    """Decode OpenCV key codes into action tags.

    Parameters
    ----------
    bindings : list of Binding
        Defaults to :data:`BINDINGS`. A key bound twice is an error.
    """

    def __init__(self, bindings=None):
        self.bindings = list(bindings or BINDINGS)
        self.by_mask = {}
        for b in self.bindings:
            for name in b.keys:
                for code, mask in _key_codes(name):
                    table = self.by_mask.setdefault(mask, {})
                    if code in table:
                        raise ValueError(f"key '{name}' bound to both '{table[code]}' and '{b.tag}'")
                    table[code] = b.tag
        self.masks = sorted(self.by_mask, reverse=True)

    def decode(self, code):
        """Tag for an OpenCV key code; None for "no key", ignored or unbound codes."""
        if self.is_ignored(code):
            return None
        for mask in self.masks:
            # a special key's low byte is not a letter (Linux Insert 0xff63 is not 'c'), and
            # Windows' 0x250000-style codes carry nothing in their low 16 bits
            if mask == 0xff and code & 0xff00:
                continue
            if mask == 0xff0000 and code & 0xffff:
                continue
            tag = self.by_mask[mask].get(code & mask)
            if tag is not None:
                return tag
        return None

    def is_ignored(self, code):
        """True for no key, 255 and a modifier pressed alone (GTK may add lock flags: 0x10ffe1)."""
        if code is None or code < 0:
            return True
        return code in IGNORED_CODES or (code > 0xffff and (code & 0xffff) in IGNORED_CODES)


def linux_code(name):
    """The key code OpenCV reports on Linux for a key name (``'j'``, ``'left'``, ``'esc'``)."""
    return _key_codes(name)[0][0]


#: Browser ``KeyboardEvent.key`` values of the named keys (a one-character key is itself).
BROWSER_KEYS = {"ArrowLeft": "left", "ArrowUp": "up", "ArrowRight": "right", "ArrowDown": "down",
                "PageUp": "pgup", "PageDown": "pgdn", "Escape": "esc", "Enter": "enter"}


def browser_code(key):
    """The OpenCV (Linux) code of a browser ``KeyboardEvent.key``; None for keys the table cannot name.

    The web viewer feeds these codes to the same :class:`KeyTable` as the window.
    """
    if not isinstance(key, str):
        return None
    if key in BROWSER_KEYS:
        return linux_code(BROWSER_KEYS[key])
    if len(key) == 1 and 32 <= ord(key) < 127:
        return ord(key)
    return None


def parse_key_script(script):
    """Split a headless key script into events.

    Characters are keys; ``{name}`` is a named key (``{left}``, ``{esc}``, ``{pgdn}``),
    ``{click:X,Y}`` a left click at window pixel (X, Y), ``{rclick:X,Y}`` a right click,
    ``{draw:X1,Y1,X2,Y2,...}`` a left-button drag through the points, ``{wait}`` a frame
    with no key. Returns a list of ``('key', code)``, ``('click', x, y)``,
    ``('rclick', x, y)``, ``('draw', [(x, y), ...])`` and ``('wait',)``.
    """
    events, i = [], 0
    while i < len(script):
        ch = script[i]
        if ch == "{":
            end = script.find("}", i)
            if end < 0:
                raise ValueError(f"key script: '{{' at {i} has no closing '}}'")
            token = script[i + 1:end]
            i = end + 1
            name, _, arg = token.partition(":")
            if name in ("click", "rclick"):
                nums = _ints(token, arg)
                if len(nums) != 2:
                    raise ValueError(f"key script: {{{token}}}: expected {{{name}:X,Y}}")
                events.append((name, nums[0], nums[1]))
            elif name == "draw":
                nums = _ints(token, arg)
                if len(nums) < 4 or len(nums) % 2:
                    raise ValueError(f"key script: {{draw:...}} needs pairs of x,y (got '{arg}')")
                events.append(("draw", list(zip(nums[0::2], nums[1::2]))))
            elif name == "wait":
                events.append(("wait",))
            elif name in NAMED_KEYS or len(name) == 1:
                events.append(("key", linux_code(name)))
            else:
                raise ValueError(f"key script: unknown key '{{{token}}}' (named keys: {', '.join(NAMED_KEYS)})")
            continue
        events.append(("key", linux_code(ch)))
        i += 1
    return events


def _ints(token, arg):
    try:
        return [int(v) for v in arg.split(",")]
    except ValueError:
        raise ValueError(f"key script: {{{token}}}: expected integer window pixels after ':'") from None
