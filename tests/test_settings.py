"""Settings: the shipped YAML files, DeepVis defaults, path rules, validation errors."""
import os
import re

import pytest

from caffevis import settings as S
from caffevis.errors import SettingsError
from caffevis.settings import KEYS, REPO_ROOT, load_settings
from conftest import shared_path

SETTINGS_DIR = os.path.join(REPO_ROOT, "settings")


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def error_of(fn, *args, **kwargs):
    with pytest.raises(SettingsError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, "settings errors are one line"
    return msg


# -- the shipped settings files ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["caffenet", "caffenet_yos", "alexnet", "googlenet", "squeezenet", "lenet"])
def test_every_shipped_settings_file_loads(name):
    shared_path("data", "imagenet")  # mean and labels fall back to ../shared
    s = load_settings(os.path.join(SETTINGS_DIR, f"{name}.yaml"))
    assert s.caffevis_prob_layer == "prob"
    assert s.source.endswith(f"{name}.yaml")
    if name != "lenet":
        labels = s.labels()
        assert len(labels) == 1000 and labels[0] == "tench"


@pytest.mark.parametrize("name,fetch_arg", [("caffenet", "caffenet"), ("alexnet", "alexnet"),
                                            ("caffenet_yos", "caffenet-yos"), ("googlenet", "googlenet")])
def test_missing_weights_load_but_opening_says_how_to_fetch(name, fetch_arg):
    shared_path("data", "imagenet")
    s = load_settings(os.path.join(SETTINGS_DIR, f"{name}.yaml"))
    if os.path.isfile(s.caffevis_network_weights):
        pytest.skip("weights already downloaded here")
    msg = error_of(s.open_net)
    # the prototxt comes with the weights for GoogLeNet (../shared has no copy)
    key = "caffevis_deploy_prototxt" if not os.path.isfile(s.caffevis_deploy_prototxt) else "caffevis_network_weights"
    assert f"{key}: file not found" in msg
    assert f"{name}.yaml:" in msg  # names the settings file and line
    assert f"caffevis fetch {fetch_arg}" in msg


def test_squeezenet_settings_open_the_real_net_and_its_names():
    shared_path("models", "squeezenet_v1.0")
    s = load_settings(os.path.join(SETTINGS_DIR, "squeezenet.yaml"))
    net = s.open_net()
    s.check_net(net)
    assert net.input_shape[1:] == (3, 227, 227)
    # DeepVis' squeezenet template: fire->f, expand->e, squeeze->s, 1x1 dropped
    assert s.caffevis_layer_pretty_name_fn("fire2/squeeze1x1") == "f2/s"
    assert s.caffevis_layer_pretty_name_fn("fire2/expand3x3") == "f2/e3x3"
    assert s.caffevis_layer_pretty_name_fn("fire9/concat") == "f9/c"
    assert s.caffevis_filter_layers("fire2/squeeze1x1_split_0")
    layers = s.visible_layers(net.blob_names + ["fire2/concat_split_1"])
    assert layers[0] == "conv1" and "data" not in layers and not any("_split_" in b for b in layers)
    # the layout without the jpgvis pane (squeezenet template)
    assert "caffevis_jpgvis" not in s.window_panes
    assert s.window_panes["caffevis_layers"] == (45, 300, 855, 1200)
    assert s.window_shape == (930, 1500)


def test_lenet_settings_are_a_grey_28x28_net_with_digit_labels():
    s = load_settings(os.path.join(SETTINGS_DIR, "lenet.yaml"))
    kind, (proto, weights) = s.model_spec()
    assert kind == "caffe" and os.path.isfile(proto) and os.path.isfile(weights)
    assert s.caffevis_input_scale == 0.00390625 and s.caffevis_data_mean is None
    assert s.labels() == [str(d) for d in range(10)]


# -- defaults --------------------------------------------------------------------------------
def test_defaults_are_deepvis_defaults():
    s = load_settings()
    assert s.window_shape == (930, 1500)
    assert s.window_panes["caffevis_layers"] == (30, 300, 870, 900)
    assert s.caffe_net_channel_swap == (2, 1, 0)
    assert s.caffevis_boost_indiv_choices == (0, .3, .5, .8, 1)
    assert s.caffevis_boost_gamma_choices == (1, .7, .5, .3)
    assert s.caffevis_jpg_cache_size == 2000 * 1024 ** 2
    assert s.input_updater_sleep_after_read_frame == pytest.approx(1 / 20)
    assert s.caffevis_mode_gpu is True and s.use_cpu is False
    assert s.caffevis_control_face == "FONT_HERSHEY_COMPLEX_SMALL"
    assert s.caffevis_layer_pretty_name_fn("pool1") == "pool1"
    assert not s.caffevis_filter_layers("anything")


def test_global_scale_gives_the_readme_screenshot_size(tmp_path):
    # DeepVis' README screenshot is 1350 x 837: the default layout at global_scale 0.9
    s = load_settings(write(tmp_path, "global_scale: 0.9\n"))
    assert s.window_shape == (837, 1350)
    assert s.window_panes["input"] == (0, 0, 270, 270)


def test_font_size_defaults_follow_global_font_size_but_explicit_values_win(tmp_path):
    s = load_settings(write(tmp_path, "global_font_size: 0.8\ncaffevis_class_fsize: 1.5\n"))
    assert s.help_fsize == pytest.approx(0.8) and s.caffevis_status_fsize == pytest.approx(0.8)
    assert s.caffevis_class_fsize == 1.5


def test_window_panes_merge_over_the_default_and_null_removes(tmp_path):
    s = load_settings(write(tmp_path, "window_panes:\n  caffevis_jpgvis: null\n  caffevis_layers: [30, 300, 870, 1200]\n"))
    assert "caffevis_jpgvis" not in s.window_panes
    assert s.window_panes["caffevis_layers"] == (30, 300, 870, 1200)
    assert s.window_panes["input"] == (0, 0, 300, 300)


# -- path rules ------------------------------------------------------------------------------
def test_relative_paths_resolve_from_the_settings_file(tmp_path):
    sub = tmp_path / "conf"
    sub.mkdir()
    (tmp_path / "labels.txt").write_text("a\n\nb\n")
    s = load_settings(write(sub, "caffevis_labels: ../labels.txt\n"))
    assert s.caffevis_labels == str(tmp_path / "labels.txt")
    assert s.labels() == ["a", "b"]


def test_dvt_root_is_the_repository(tmp_path):
    s = load_settings(write(tmp_path, "caffevis_unit_jpg_dir: '%DVT_ROOT%/model_zoo/x'\n"))
    assert s.caffevis_unit_jpg_dir == os.path.join(REPO_ROOT, "model_zoo", "x")
    assert os.path.isfile(os.path.join(REPO_ROOT, "caffevis", "settings", "loader.py"))


def test_candidate_list_takes_the_first_existing(tmp_path):
    (tmp_path / "second.txt").write_text("x\n")
    s = load_settings(write(tmp_path, "caffevis_labels: [first.txt, second.txt]\n"))
    assert s.caffevis_labels == str(tmp_path / "second.txt")


def test_overrides_apply_after_the_file_relative_to_cwd(tmp_path, monkeypatch):
    (tmp_path / "l.txt").write_text("x\n")
    path = write(tmp_path, "caffevis_raw_scale: 2.0\nglobal_scale: 0.5\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings(path, {"caffevis_raw_scale": 3.0, "caffevis_labels": "l.txt", "global_scale": None})
    assert s.caffevis_raw_scale == 3.0 and s.global_scale == 0.5  # None overrides are ignored
    assert s.caffevis_labels == str(tmp_path / "l.txt")
    assert s.replace(caffevis_force_cpu=True).use_cpu and s.replace(caffevis_force_cpu=True).caffevis_raw_scale == 3.0


def test_null_override_sets_a_key_to_null():
    shared_path("models", "squeezenet_v1.0")
    path = os.path.join(SETTINGS_DIR, "squeezenet.yaml")
    assert load_settings(path).caffevis_data_mean == (104, 117, 123)
    assert load_settings(path, {"caffevis_data_mean": None}).caffevis_data_mean == (104, 117, 123)
    assert load_settings(path, {"caffevis_data_mean": S.NULL}).caffevis_data_mean is None


def test_a_model_override_replaces_the_files_model_form(tmp_path):
    shared_path("models", "lenet_caffe")
    s = load_settings(os.path.join(SETTINGS_DIR, "lenet.yaml"), S.model_overrides("x.onnx"))
    assert s.caffevis_deploy_prototxt is None and s.caffevis_onnx_model.endswith("x.onnx")
    assert "caffevis_onnx_model: file not found" in error_of(s.open_net)


def test_settings_are_read_only():
    s = load_settings()
    with pytest.raises(AttributeError):
        s.global_scale = 2


# -- validation errors ------------------------------------------------------------------------
def test_unknown_key_names_file_line_and_the_closest_key(tmp_path):
    path = write(tmp_path, "global_scale: 1.0\ncaffevis_lables: x.txt\n")
    msg = error_of(load_settings, path)
    assert f"{path}:2" in msg and "caffevis_lables" in msg and "did you mean 'caffevis_labels'" in msg


@pytest.mark.parametrize("text,key,expected", [
    ("caffevis_raw_scale: abc\n", "caffevis_raw_scale", "a number in [1e-06, 1e+06]"),
    ("static_file_stretch_mode: 'yes please'\n", "static_file_stretch_mode", "true or false"),
    ("window_background: [1, 2]\n", "window_background", "RGB colour"),
    ("caffe_net_channel_swap: [2, 2, 0]\n", "caffe_net_channel_swap", "permutation"),
    ("caffevis_jpg_cache_size: 1000\n", "caffevis_jpg_cache_size", "an integer in [10485760, "),
    ("help_face: Arial\n", "help_face", "OpenCV font name"),
    ("caffevis_filter_layers_regex: '(unclosed'\n", "caffevis_filter_layers_regex", "regular expression"),
    ("caffevis_pretty_name_replacements: [[pool]]\n", "caffevis_pretty_name_replacements", "[from, to]"),
    ("static_files_input_mode: camera\n", "static_files_input_mode", "directory"),
    ("caffevis_boost_gamma_default_idx: 4\n", "caffevis_boost_gamma_default_idx", "below 4"),
])
def test_wrong_types_name_key_and_expected_value(tmp_path, text, key, expected):
    path = write(tmp_path, text)
    msg = error_of(load_settings, path)
    assert path in msg and f"{key}:" in msg and expected in msg


def test_yaml_numbers_without_a_dot_are_accepted():
    # PyYAML reads 1e-4 as a string; a float key must still take it
    assert load_settings(None, {"caffevis_input_scale": "1e-4"}).caffevis_input_scale == 1e-4


def test_overrides_are_validated_too():
    assert "override: caffevis_raw_scale: expected a number in [1e-06, 1e+06]" in error_of(load_settings, None, {"caffevis_raw_scale": -1})
    assert "unknown setting 'nope'" in error_of(load_settings, None, {"nope": 1})


def test_missing_data_files_fail_at_load_with_the_hint(tmp_path):
    path = write(tmp_path, "caffevis_fetch_hint: run the fetcher\ncaffevis_data_mean: missing_mean.npy\n")
    msg = error_of(load_settings, path)
    assert f"{path}:2: caffevis_data_mean: file not found: {tmp_path / 'missing_mean.npy'}" in msg
    assert msg.endswith("; run the fetcher")


def test_missing_settings_file():
    assert "settings file not found" in error_of(load_settings, "/nonexistent/caffevis.yaml")


def test_python_tags_are_rejected_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path, f"global_scale: !!python/object/apply:os.system ['touch {marker}']\n")
    msg = error_of(load_settings, path)
    assert "python/object/apply:os.system" in msg and "not allowed" in msg and f"{path}:1" in msg
    assert not marker.exists()
    msg = error_of(load_settings, write(tmp_path, "x: !!python/name:os.system\n", "t.yaml"))
    assert "not allowed" in msg


def test_yaml_syntax_errors_and_non_mappings(tmp_path):
    assert re.search(r"s\.yaml:2: YAML syntax error", error_of(load_settings, write(tmp_path, "a: 1\nb: x: 2\n")))
    assert "must be a mapping" in error_of(load_settings, write(tmp_path, "- 1\n- 2\n", "l.yaml"))
    assert "given twice" in error_of(load_settings, write(tmp_path, "print_dots: true\nprint_dots: false\n", "d.yaml"))


def test_deepvis_function_keys_say_what_replaces_them(tmp_path):
    msg = error_of(load_settings, write(tmp_path, "caffevis_layer_pretty_name_fn: x\n"))
    assert "caffevis_pretty_name_replacements" in msg
    msg = error_of(load_settings, write(tmp_path, "default_window_panes: {}\n", "w.yaml"))
    assert "override window_panes" in msg


def test_both_model_forms_in_one_file_is_an_error(tmp_path):
    msg = error_of(load_settings, write(tmp_path, "caffevis_onnx_model: a.onnx\ncaffevis_deploy_prototxt: b.prototxt\n"))
    assert "not both" in msg


def test_bad_pane_and_missing_input_pane(tmp_path):
    assert "window_panes: caffevis_aux" in error_of(load_settings, write(tmp_path, "window_panes: {caffevis_aux: [0, 0, -3, 3]}\n"))
    assert "'input' pane is required" in error_of(load_settings, write(tmp_path, "window_panes: {input: null}\n", "i.yaml"))


# -- documentation ----------------------------------------------------------------------------
def test_docs_list_every_key():
    with open(os.path.join(REPO_ROOT, "docs", "settings.md"), encoding="utf-8") as f:
        text = f.read()
    missing = [k for k in KEYS if f"`{k}`" not in text]
    assert not missing, f"docs/settings.md lacks {missing}"


def test_shipped_settings_by_name(tmp_path, monkeypatch):
    from caffevis.settings import load_settings

    monkeypatch.chdir(tmp_path)  # no settings/ folder here
    by_name = load_settings("squeezenet")
    assert by_name.source.endswith(os.path.join("settings", "squeezenet.yaml"))
    assert load_settings("lenet.yaml").caffevis_input_scale == 0.00390625


def test_text_style_groups_the_font_keys(tmp_path):
    """The five text blocks are TextStyle groups: one typed view of the flat DeepVis keys."""
    from caffevis.settings import VALIDATORS, TextStyle

    s = load_settings(write(tmp_path, "caffevis_status_clr: [0.1, 0.2, 0.3]\ncaffevis_class_thick: 3\n"
                                      "help_fsize: 2.5\n"))
    status = s.text_style("caffevis_status")
    assert isinstance(status, TextStyle) and status.clr == (0.1, 0.2, 0.3) and status.line_spacing == 5
    assert s.text_style("caffevis_class").thick == 3 and set(s.text_style("caffevis_class").colours) == {"clr_0", "clr_1"}
    assert s.text_style("help").fsize == 2.5 and s.text_style("caffevis_label").line_spacing is None
    control = s.text_style("caffevis_control")
    assert set(control.thick_variants) == {"selected", "cursor", "bp"} and status.thick_variants == {}
    assert control.pen("bp") == (s.caffevis_control_clr_bp, s.caffevis_control_thick_bp)
    assert control.pen() == (s.caffevis_control_clr, s.caffevis_control_thick)
    for prefix in ("help", "caffevis_control", "caffevis_status", "caffevis_class", "caffevis_label"):
        style = s.text_style(prefix)
        assert (style.face, style.loc, style.thick) == tuple(getattr(s, f"{prefix}_{k}") for k in ("face", "loc", "thick"))
    assert {spec.kind for spec in KEYS.values()} <= set(VALIDATORS)  # every kind has its validator
