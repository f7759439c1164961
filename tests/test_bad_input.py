"""Bad input ends in one line, never a traceback, a hang or an out-of-memory (issue 18).

Per class of bad input: a property test (hypothesis) on the function where the value
enters, and a CLI test that the command exits 2 with one line and no traceback, within
30 s under an 8 GB address-space limit.
"""
import gzip
import os
import re
import resource
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from caffevis.model.caffe import schema
from caffevis.model.caffe.reader import blob_to_array, load_caffe
from caffevis.errors import CaffevisError, InputError, ModelError, SettingsError
from caffevis.io import load_npy, save_npz
from caffevis.limits import MAX_ELEMENTS, MAX_NESTING
from caffevis.lenet.mnist import read_idx
from caffevis.settings import KEYS, load_settings, parse_value, value_range
from conftest import REPO, lenet_caffe_paths, shared_path

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ADDRESS_SPACE = 8_000_000_000


def run_cli(*args, cwd, timeout=30):
    """``caffevis ARGS`` in a subprocess limited to 8 GB of address space and ``timeout`` s."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    env = dict(os.environ, PYTHONPATH=REPO, CAFFEVIS_CACHE=os.path.join(str(cwd), "cache"))
    return subprocess.run([sys.executable, "-m", "caffevis", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit)


def assert_one_line(proc, *words):
    """Exit 2, no traceback, one error line holding ``words`` (the provider notice aside)."""
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.splitlines() if l.strip() and not l.startswith("caffevis: running on")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("caffevis "), lines
    for w in words:
        assert w in lines[0], (w, lines[0])


def _nested(depth, opening, closing, inner=""):
    return opening * depth + inner + closing * depth


# -- 3. nesting depth ----------------------------------------------------------------------------
@FUZZ
@given(depth=st.integers(MAX_NESTING + 1, 3000), kind=st.sampled_from(["{}", "<>"]),
       name=st.sampled_from(["foo", "layer", "convolution_param", "include"]))
def test_deep_prototxt_is_one_model_error(depth, kind, name):
    text = 'name: "x"\n' + f"{name} {kind[0]} " * depth + kind[1] * depth + "\n"
    with pytest.raises(ModelError, match=r"^deep\.prototxt: .*nested"):
        load_caffe("deep.prototxt", text=text)


@FUZZ
@given(depth=st.integers(MAX_NESTING + 1, 100_000), style=st.sampled_from(["flow_list", "flow_map", "block"]))
def test_deep_yaml_is_one_settings_error(tmp_path, depth, style):
    if style == "flow_list":
        value = _nested(depth, "[", "]")
    elif style == "flow_map":
        value = _nested(depth, "{a: ", "}", "1")
    else:
        value = "- " * depth + "1"  # block sequences nested on one line
    path = tmp_path / "deep.yaml"
    path.write_text(f"caffevis_label_layers: {value}\n")
    with pytest.raises(SettingsError, match=re.escape(str(path))):
        load_settings(str(path))
    with pytest.raises(SettingsError, match="^--set k"):
        parse_value(value, "--set k")


@pytest.mark.parametrize("case", ["prototxt", "yaml", "set"])
def test_cli_deep_nesting(tmp_path, case):
    proto, weights = lenet_caffe_paths()
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    if case == "prototxt":
        deep = tmp_path / "deep.prototxt"
        deep.write_text(open(proto).read() + "foo { " * 400 + "}" * 400 + "\n")
        proc = run_cli("forward", "--cpu", f"{deep}:{weights}", "--input", "x.npy", "-o", "o.npz", cwd=tmp_path)
        assert_one_line(proc, str(deep), "nested")
    elif case == "yaml":
        (tmp_path / "deep.yaml").write_text("caffevis_label_layers: " + _nested(1000, "[", "]") + "\n")
        assert_one_line(run_cli("live", "--headless", "--cpu", "--settings", "deep.yaml", cwd=tmp_path),
                        "deep.yaml", "nested")
    else:
        proc = run_cli("live", "--headless", "--cpu", "--set", "caffevis_label_layers=" + _nested(1000, "[", "]"),
                       cwd=tmp_path)
        assert_one_line(proc, "caffevis_label_layers", "nested")


# -- 4. caffemodel blob shapes --------------------------------------------------------------------
@FUZZ
@given(dims=st.lists(st.integers(-2 ** 40, 2 ** 40) | st.integers(-3, 8), max_size=6),
       stored=st.integers(0, 64), legacy=st.booleans())
def test_blob_shapes_are_checked_with_python_ints(dims, stored, legacy):
    blob = schema.BlobProto()
    if legacy:
        dims = [max(-2 ** 31, min(d, 2 ** 31 - 1)) for d in (dims + [1, 1, 1, 1])[:4]]  # int32 fields
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(dims)
    blob.data.extend(np.arange(stored, dtype=np.float32))
    count = int(np.prod([int(d) for d in dims], dtype=object)) if dims else 1
    sane = min(dims, default=0) >= 0 and np.prod([max(d, 1) for d in dims], dtype=object) <= MAX_ELEMENTS
    if sane and count == stored:
        assert blob_to_array(blob).shape == tuple(dims)
        return
    with pytest.raises(ModelError) as err:
        blob_to_array(blob)
    msg = str(err.value)
    assert "\n" not in msg
    if sane:
        assert f"needs {count}" in msg  # the true count, never a wrapped one


def _caffemodel_with(tmp_path, edit):
    _, weights = lenet_caffe_paths()
    net = schema.NetParameter()
    with open(weights, "rb") as f:
        net.ParseFromString(f.read())
    layers = net.layer if len(net.layer) else net.layers
    edit({lp.name: lp for lp in layers})
    path = tmp_path / "edited.caffemodel"
    path.write_bytes(net.SerializeToString())
    return path


def test_nan_weights_warn_once_naming_the_blob(tmp_path, capsys):
    def poison(layers):
        layers["conv1"].blobs[0].data[3] = float("nan")
        layers["ip2"].blobs[1].data[0] = float("inf")

    path = _caffemodel_with(tmp_path, poison)
    load_caffe(lenet_caffe_paths()[0], str(path))
    lines = [l for l in capsys.readouterr().err.splitlines() if "NaN" in l]
    assert len(lines) == 1 and str(path) in lines[0] and "conv1[0]" in lines[0] and "ip2[1]" in lines[0]


@pytest.mark.parametrize("dims,words", [([-20, 1, 5, 5], ["negative"]),
                                        ([4294967296, 4294967296], ["18446744073709551616"])])
def test_cli_bad_blob_shape(tmp_path, dims, words):
    def reshape(layers):
        del layers["conv1"].blobs[0].shape.dim[:]
        layers["conv1"].blobs[0].shape.dim.extend(dims)

    path = _caffemodel_with(tmp_path, reshape)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    proc = run_cli("forward", "--cpu", f"{lenet_caffe_paths()[0]}:{path}", "--input", "x.npy", "-o", "o.npz", cwd=tmp_path)
    assert_one_line(proc, str(path), "conv1", *words)


# -- 5. npz member names --------------------------------------------------------------------------
_NAMES = st.sampled_from(["file", "allow_pickle", "fix_imports", "arr_0", "args", "kwds"]) | \
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20)


@FUZZ
@given(names=st.lists(_NAMES, min_size=1, max_size=6, unique=True))
def test_npz_keeps_every_name(tmp_path, names):
    arrays = {n: np.full((2, i + 1), i, np.float32) for i, n in enumerate(names)}
    path = save_npz(str(tmp_path / "out.npz"), arrays)
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == sorted(names)
        for n in names:
            np.testing.assert_array_equal(f[n], arrays[n])


def test_cli_forward_writes_blobs_named_like_savez_keywords(tmp_path):
    proto, weights = lenet_caffe_paths()
    text = re.sub(r'(top|bottom): "prob"', r'\1: "file"', open(proto).read())
    text = re.sub(r'(top|bottom): "ip1"', r'\1: "allow_pickle"', text)
    (tmp_path / "net.prototxt").write_text(text)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    proc = run_cli("forward", "--cpu", f"net.prototxt:{weights}", "--input", "x.npy", "-o", "o.npz", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "o.npz") as f:
        assert {"file", "allow_pickle", "ip2"} <= set(f.files) and f["file"].shape == (1, 10)


# -- 6. settings values the viewer cannot draw ----------------------------------------------------
NUMERIC = sorted(k for k in KEYS if value_range(k) is not None)


def _scalar_key(key):
    return KEYS[key].kind in ("int", "opt_int", "pos", "opt_pos", "nonneg")


@FUZZ
@given(key=st.sampled_from([k for k in NUMERIC if _scalar_key(k)]), data=st.data())
def test_numeric_settings_outside_their_range_are_refused(key, data):
    lo, hi, _ = value_range(key)
    value = data.draw(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: v < lo or v > hi)
                      | st.integers(min_value=int(hi) + 1) | st.integers(max_value=int(np.floor(lo)) - 1)
                      | st.integers(10 ** 300, 10 ** 500))
    with pytest.raises(SettingsError, match=f"override: {key}: expected"):
        load_settings(None, {key: value})


@FUZZ
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
       key=st.sampled_from(["global_scale", "caffevis_labels", "window_panes", "caffevis_data_mean"]))
def test_any_settings_text_loads_or_is_one_settings_error(tmp_path, text, key):
    path = tmp_path / "s.yaml"
    path.write_text(f"{key}: {text}\n", encoding="utf-8", errors="surrogatepass")
    try:
        load_settings(str(path))
    except SettingsError as err:
        assert "\n" not in str(err) and str(path) in str(err)


@pytest.fixture(scope="module")
def lenet_net():
    from caffevis.model.net import Net

    return Net.from_caffe(*lenet_caffe_paths(), force_cpu=True)


def _in_range_value(key, draw):
    lo, hi, _ = value_range(key)
    kind = KEYS[key].kind
    ints = st.integers(int(np.ceil(lo)), int(hi))
    if kind in ("int", "opt_int"):
        return draw(ints)
    if kind == "loc":
        return draw(st.lists(ints, min_size=2, max_size=2))
    return draw(st.floats(max(lo, 1e-9), hi))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_valid_settings_always_draw(lenet_net, data):
    from caffevis.viewer.launch import build_viewer

    keys = [k for k in NUMERIC if KEYS[k].kind in ("int", "pos", "nonneg", "loc")
            and not re.search(r"sleep|heartbeat|pause|cache|_idx$", k)]
    chosen = data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4, unique=True))
    overrides = {k: _in_range_value(k, data.draw) for k in chosen}
    overrides["global_scale"] = data.draw(st.floats(0.1, 1.0))
    s = load_settings(os.path.join(REPO, "settings", "lenet.yaml"), overrides)
    viewer = build_viewer(s, net=lenet_net, canvas=False, headless=True, mnist=True)
    records = viewer.run_headless("w{down}b", frames=3)
    assert len(records) == 3 and records[-1]["image"].shape[:2] == s.window_shape


_VIEWER_CASES = [
    ("global_scale=1000", "global_scale"),
    ("window_panes={input: [0,0,100000,100000]}", "window_panes"),
    ("global_scale=1e-4", "global_scale"),
    ("caffevis_class_thick=1000000000000", "caffevis_class_thick"),
    ("caffevis_control_loc=[100000000000,5]", "caffevis_control_loc"),
    ("caffevis_layers_aspect_ratio=1e300", "caffevis_layers_aspect_ratio"),
    ("caffevis_raw_scale=1e300", "caffevis_raw_scale"),
    ("caffevis_filter_layers_regex=.", "caffevis_filter_layers_regex"),
    ("global_scale=1" + "0" * 400, "global_scale"),
    ("caffevis_data_mean=1e300", "caffevis_data_mean"),
]


@pytest.mark.parametrize("override,key", _VIEWER_CASES)
def test_cli_settings_the_viewer_cannot_draw(tmp_path, override, key):
    shared_path("data", "mnist")
    assert_one_line(run_cli("live", "--headless", "--cpu", "--set", override, cwd=tmp_path), key)


def test_cli_control_characters_in_settings(tmp_path):
    (tmp_path / "nul.yaml").write_bytes(b"global_scale: 1\x00\n")
    assert_one_line(run_cli("live", "--headless", "--cpu", "--settings", "nul.yaml", cwd=tmp_path), "nul.yaml")


# -- 7. hangs --------------------------------------------------------------------------------------
@settings(max_examples=10, deadline=None)
@given(message=st.text(max_size=30), kind=st.sampled_from([OverflowError, ValueError, MemoryError, KeyError]))
def test_a_dying_compute_thread_ends_the_run(lenet_net, message, kind):
    from caffevis.viewer.launch import build_viewer

    s = load_settings(os.path.join(REPO, "settings", "lenet.yaml"))
    viewer = build_viewer(s, net=lenet_net, canvas=False, headless=True, mnist=True)

    def broken():
        raise kind(message)

    viewer.worker.step = broken
    start = time.time()
    with pytest.raises(InputError, match=f"caffevis-compute thread stopped: {kind.__name__}"):
        viewer.run_headless("w", frames=2)
    assert time.time() - start < 30  # ended, not waited out (wait_idle gives up only after 300 s)


@FUZZ
@given(key=st.sampled_from(["caffevis_frame_wait_sleep", "caffevis_jpg_load_sleep", "caffevis_pause_after_keys",
                            "input_updater_sleep_after_read_frame", "caffevis_heartbeat_required",
                            "input_updater_heartbeat_required"]),
       value=st.floats(allow_nan=False) | st.integers(-10 ** 20, 10 ** 20))
def test_sleeps_and_heartbeats_are_bounded(key, value):
    try:
        s = load_settings(None, {key: value})
    except SettingsError:
        return
    assert 0 <= getattr(s, key) <= 3600
    if "heartbeat" in key:
        assert getattr(s, key) >= 1  # a thread's timeout never expires between two frames
    else:
        assert getattr(s, key) <= 1  # no thread sleeps past a frame


@pytest.mark.parametrize("override", ["caffevis_frame_wait_sleep=100", "caffevis_frame_wait_sleep=1e11",
                                      "caffevis_heartbeat_required=1e-6"])
def test_cli_hangs(tmp_path, override):
    shared_path("data", "mnist")
    proc = run_cli("live", "--headless", "--cpu", "--keys", "w{down}", "--set", override, cwd=tmp_path)
    assert_one_line(proc, override.split("=")[0])


# -- 8. data files ---------------------------------------------------------------------------------
_NON_NUMERIC = st.one_of(hnp.unicode_string_dtypes(), hnp.byte_string_dtypes(), hnp.datetime64_dtypes(),
                         hnp.complex_number_dtypes(),
                         hnp.array_dtypes(hnp.scalar_dtypes(), min_size=1, max_size=3),
                         st.just(np.dtype("V8")))


@FUZZ
@given(dtype=_NON_NUMERIC, shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=3))
def test_non_numeric_npy_is_refused(tmp_path, dtype, shape):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(shape, dtype))
    with pytest.raises(InputError, match=r"x\.npy: array of dtype .*expected numbers"):
        load_npy(str(path))


@FUZZ
@given(dims=st.lists(st.integers(0, 2 ** 32 - 1) | st.integers(0, 5), max_size=5), code=st.sampled_from([8, 9, 11, 13]),
       extra=st.integers(-3, 3), gz=st.booleans())
def test_idx_headers_are_checked_before_reading(tmp_path, dims, code, extra, gz):
    itemsize = {8: 1, 9: 1, 11: 2, 13: 4}[code]
    count = int(np.prod(dims, dtype=object)) if dims else 1
    size = max(0, count * itemsize + extra) if count * itemsize < 4096 else 100
    raw = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + bytes(size)
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    try:
        arr = read_idx(str(path))
    except InputError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return
    assert arr.shape == tuple(dims) and size == count * itemsize


@FUZZ
@given(cut=st.integers(0, 200), flips=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=4))
def test_damaged_gzip_idx_is_one_line(tmp_path, cut, flips):
    data = bytearray(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 300) + bytes(range(256)) + bytes(44)))
    for at, x in flips:
        data[at % len(data)] ^= x
    path = tmp_path / "x.idx.gz"
    path.write_bytes(bytes(data[:max(2, len(data) - cut)]))
    try:
        read_idx(str(path))
    except InputError as err:
        assert "\n" not in str(err)


@FUZZ
@given(a=st.integers(-10 ** 12, 10 ** 12), b=st.integers(-10 ** 12, 10 ** 12))
def test_unit_ranges_are_checked_before_they_are_built(a, b):
    from caffevis.commands.optimize import parse_units

    try:
        units = parse_units(f"{a}-{b}", 10)
    except CaffevisError:
        return
    assert units == list(range(a, b + 1)) and 0 <= a <= b < 10


def _idx_overflow(tmp):
    (tmp / "ovf.idx").write_bytes(b"\0\0\x08\x04" + struct.pack(">4I", *[65536] * 4))
    return "ovf.idx"


def _bad_gzip(tmp):
    data = bytearray(gzip.compress(b"\0\0\x08\x03" + struct.pack(">3I", 2, 28, 28) + bytes(2 * 784)))
    data[30] ^= 0xFF
    (tmp / "bad.gz").write_bytes(bytes(data))
    return "bad.gz"


@pytest.mark.parametrize("case", ["str", "void", "proc", "idx", "gzip", "units"])
def test_cli_data_files(tmp_path, case):
    proto, weights = lenet_caffe_paths()
    model = f"{proto}:{weights}"
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    np.save(tmp_path / "str.npy", np.array(["a", "b"]))
    np.save(tmp_path / "void.npy", np.zeros(3, dtype=[("a", "f4"), ("b", "i4")]))
    if case in ("str", "void"):
        proc = run_cli("forward", "--cpu", model, "--input", f"{case}.npy", "-o", "o.npz", cwd=tmp_path)
        words = [f"{case}.npy", "dtype"]
    elif case == "proc":
        proc = run_cli("forward", "--cpu", model, "--input", "x.npy", "-o", "/proc/x.npz", cwd=tmp_path)
        words = ["/proc/x.npz"]
    elif case in ("idx", "gzip"):
        name = (_idx_overflow if case == "idx" else _bad_gzip)(tmp_path)
        proc = run_cli("find-maxes", "--cpu", model, "--images", name, "-o", "m.h5", cwd=tmp_path)
        words = [name]
    else:
        proc = run_cli("optimize", "--cpu", model, "--input-scale", "0.00390625", "--push-layer", "ip2",
                       "--units", "0-9999999999", "--output-prefix", "out/", cwd=tmp_path)
        words = ["--units", "9999999999"]
    assert_one_line(proc, *words)


# -- 9. one bad image in a scan -------------------------------------------------------------------
def _png_bomb(side=20000):
    """A small PNG whose header declares side x side grey pixels (a few rows of data)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(b"\0" * (side + 1) * 64, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def _good_images(rng, n):
    import cv2

    out = []
    for i in range(n):
        img = (rng.random((20 + 3 * i, 24, 3)) * 255).astype(np.uint8)
        out.append(cv2.imencode(".png" if i % 2 else ".jpg", img)[1].tobytes())
    return out


_DAMAGE = st.sampled_from(["empty", "truncated", "crc", "random", "bomb"])


def _damaged(kind, good, rng):
    if kind == "empty":
        return b""
    if kind == "truncated":
        return good[:len(good) // 2]
    if kind == "crc":
        data = bytearray(good)
        data[len(data) // 2] ^= 0xFF
        return bytes(data)
    if kind == "random":
        return rng.bytes(300)
    return _png_bomb()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=st.lists(st.tuples(st.integers(0, 7), _DAMAGE), min_size=1, max_size=4, unique_by=lambda d: d[0]),
       seed=st.integers(0, 99))  # one damage per file: damaging an already emptied file is not a case
def test_unreadable_images_are_skipped_recorded_and_resumed(lenet_net, tmp_path_factory, damage, seed):
    from caffevis.images import read_image
    from caffevis.mining.maxes import load_maxes
    from caffevis.mining.scan import ScanJob, run_scan
    from caffevis.mining.sources import source_spec

    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(seed)
    goods = _good_images(rng, 8)
    files = {i: (f"{i:02d}.{'png' if i % 2 else 'jpg'}", g) for i, g in enumerate(goods)}
    for i, kind in damage:
        files[i] = (files[i][0], _damaged(kind, files[i][1], rng))
    for name, data in files.values():
        (folder / name).write_bytes(data)
    bad = set()
    for i, (name, _) in files.items():
        try:
            read_image(str(folder / name))
        except InputError:
            bad.add(i)
    job = ScanJob(model="lenet", source=source_spec(str(folder)), blobs=["conv1", "ip2"], n=3, batch_size=3,
                  preprocess={"input_scale": 0.00390625, "geometry": "stretch"})
    out = str(folder / "m.h5")
    run_scan(job, out, net=lenet_net, progress=False, max_batches=1)  # an unfinished run ...
    resumed = run_scan(job, out, net=lenet_net, progress=False)  # ... resumed
    whole = run_scan(job, None, net=lenet_net, progress=False)
    assert resumed.complete and resumed.skipped == sorted(bad) == whole.skipped
    assert resumed.tracker == whole.tracker and load_maxes(out).skipped == sorted(bad)
    seen = {int(i) for lm in whole.layers.values() for i in lm.image_index.ravel() if i >= 0}
    assert not seen & bad


def test_cli_find_maxes_over_a_truncated_jpeg_and_a_png_bomb(tmp_path):
    from caffevis.mining.maxes import load_maxes

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    goods = _good_images(rng, 4)
    for i, g in enumerate(goods):
        (folder / f"good{i}.{'png' if i % 2 else 'jpg'}").write_bytes(g)
    (folder / "truncated.jpg").write_bytes(goods[0][:len(goods[0]) // 2])
    (folder / "bomb.png").write_bytes(_png_bomb())
    proto, weights = lenet_caffe_paths()
    args = ["find-maxes", "--cpu", f"{proto}:{weights}", "--images", "imgs", "-o", "m.h5", "--batch-size", "2",
            "--input-scale", "0.00390625", "--layers", "conv1,ip2"]
    for _ in range(2):  # the second run finds the finished file
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    result = load_maxes(str(tmp_path / "m.h5"))
    assert result.complete and [result.images[i] for i in result.skipped] == ["bomb.png", "truncated.jpg"]
    warnings = [l for l in proc.stderr.splitlines() if "warning" in l]
    assert not warnings  # a finished scan reads no image again
