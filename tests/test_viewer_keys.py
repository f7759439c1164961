"""Key table: every DeepVis binding, Linux/macOS/Windows codes, ignored codes, key scripts."""
import pytest

from caffevis.viewer.keys import BINDINGS, KeyTable, linux_code, parse_key_script

# DeepVis §2.10: tag -> its keys, as the original binds them (plus caffevis' x and B).
DEEPVIS_BINDINGS = {
    "freeze_cam": "f", "toggle_input_mode": "c", "static_file_increment": "e", "static_file_decrement": "w",
    "help_mode": "h", "stretch_mode": "0", "debug_level": "5", "quit": "q",
    "sel_left": "j", "sel_right": "l", "sel_down": "k", "sel_up": "i",
    "sel_left_fast": "J", "sel_right_fast": "L", "sel_down_fast": "K", "sel_up_fast": "I",
    "sel_layer_left": "uU", "sel_layer_right": "oO", "zoom_mode": "z", "pattern_mode": "s",
    "ez_back_mode_loop": "b", "freeze_back_unit": "d", "show_back": "a", "back_mode": "n",
    "back_filt_mode": "m", "boost_gamma": "t", "boost_individual": "T",
    "toggle_label_predictions": "8", "toggle_unit_jpgs": "9",
}


@pytest.fixture(scope="module")
def table():
    return KeyTable()


@pytest.mark.parametrize("tag,chars", sorted(DEEPVIS_BINDINGS.items()))
def test_every_deepvis_letter_binding(table, tag, chars):
    for ch in chars:
        assert table.decode(ord(ch)) == tag
        # Linux GTK/Qt may add modifier flags above the low byte (0x10006a for 'j')
        assert table.decode(0x100000 | ord(ch)) == tag


@pytest.mark.parametrize("name,codes,tag", [
    ("left", (0xff51, 0xf702, 0x250000), "sel_left"),
    ("up", (0xff52, 0xf700, 0x260000), "sel_up"),
    ("right", (0xff53, 0xf703, 0x270000), "sel_right"),
    ("down", (0xff54, 0xf701, 0x280000), "sel_down"),
    ("pgup", (0xf72c, 0xff55, 0x210000), "static_file_decrement"),
    ("pgdn", (0xf72d, 0xff56, 0x220000), "static_file_increment"),
])
def test_arrow_and_page_keys_on_every_platform(table, name, codes, tag):
    for code in codes:
        assert table.decode(code) == tag, hex(code)


def test_escape_resets(table):
    assert table.decode(27) == "reset_state"


@pytest.mark.parametrize("code", [-1, 255, 0xffe1, 0xffe2, 0xffe3, 0xffe4])
def test_no_key_255_and_modifiers_are_ignored(table, code):
    assert table.decode(code) is None
    assert table.is_ignored(code)


def test_special_keys_are_not_read_as_letters(table):
    # Linux Insert (0xff63) has 'c' as its low byte; End (0xff57) has 'W'; Home 0xff50 'P'
    for code in (0xff63, 0xff57, 0xff50, 0xf728):
        assert table.decode(code) is None, hex(code)
    # Linux left (0xff51) has 'Q' as its low byte: it must stay 'left', never 'quit'
    assert table.decode(0xff51) == "sel_left"


def test_unbound_key_is_not_ignored(table):
    assert table.decode(ord("y")) is None
    assert not table.is_ignored(ord("y"))


def test_no_key_is_bound_twice():
    seen = {}
    for b in BINDINGS:
        for k in b.keys:
            assert k not in seen, f"{k} bound to {seen.get(k)} and {b.tag}"
            seen[k] = b.tag
    KeyTable()  # raises on a duplicate code too


def test_key_script_parsing():
    events = parse_key_script("jk{left}{esc}{click:310,12}{draw:1,2,3,4,5,6}{wait}{pgdn}")
    assert events == [("key", ord("j")), ("key", ord("k")), ("key", 0xff51), ("key", 27), ("click", 310, 12),
                      ("draw", [(1, 2), (3, 4), (5, 6)]), ("wait",), ("key", 0xff56)]
    assert linux_code("right") == 0xff53
    with pytest.raises(ValueError, match="unknown key"):
        parse_key_script("{nosuchkey}")
    with pytest.raises(ValueError, match="closing"):
        parse_key_script("{left")
    with pytest.raises(ValueError, match="pairs"):
        parse_key_script("{draw:1,2,3}")


def test_script_keys_decode_to_the_intended_tags(table):
    tags = [table.decode(code) for kind, code in parse_key_script("kln{up}{down}T")]
    assert tags == ["sel_down", "sel_right", "back_mode", "sel_up", "sel_down", "boost_individual"]


def test_modifiers_with_lock_flags_are_ignored(table):
    # GTK reports Shift pressed with NumLock on as 0x10ffe1: no "not bound" message for it
    for code in (0x10ffe1, 0x10ffe2, 0x10ffe3, 0x10ffe4):
        assert table.is_ignored(code) and table.decode(code) is None
    assert table.decode(0x10004a) == "sel_left_fast"  # Shift+j arrives as 'J' with flags
    assert not table.is_ignored(0x10006a)


def test_bad_click_scripts_say_what_was_expected():
    with pytest.raises(ValueError, match=r"\{click:a,b\}: expected integer"):
        parse_key_script("{click:a,b}")
    with pytest.raises(ValueError, match=r"expected \{rclick:X,Y\}"):
        parse_key_script("{rclick:1,2,3}")
    with pytest.raises(ValueError, match="expected integer"):
        parse_key_script("{draw:1,2,x,4}")
