"""Named settings overrides: input conventions of common exporters, and what a model-specific
settings file says about its own model."""
from __future__ import annotations

from ..errors import SettingsError
from .keys import NULL

# Input conventions of common exporters, for ``caffevis live --preset NAME`` (settings keys).
PRESETS = {
    # torchvision (and most PyTorch models): RGB in [0, 1], ImageNet mean and std per channel
    "torchvision": {"caffe_net_channel_swap": [0, 1, 2], "caffevis_raw_scale": 1.0 / 255,
                    "caffevis_data_mean": [0.485, 0.456, 0.406], "caffevis_data_std": [0.229, 0.224, 0.225],
                    "caffevis_input_scale": NULL},
    # RGB in 0-255, nothing subtracted (Keras/TF exports that normalize inside the graph)
    "rgb255": {"caffe_net_channel_swap": [0, 1, 2], "caffevis_raw_scale": 1.0, "caffevis_data_mean": NULL,
               "caffevis_data_std": NULL, "caffevis_input_scale": NULL},
    # Caffe's BGR 0-255 with the ImageNet mean (the Caffe reference models)
    "caffe": {"caffe_net_channel_swap": [2, 1, 0], "caffevis_raw_scale": 1.0,
              "caffevis_data_mean": [104.0, 117.0, 123.0], "caffevis_data_std": NULL, "caffevis_input_scale": NULL},
}


# What the default settings file (LeNet's) says about its own model, cleared when
# ``caffevis live --model X`` opens another model without a settings file.
MODEL_NEUTRAL = {"caffevis_prob_layer": NULL, "caffevis_label_layers": [], "caffevis_labels": NULL,
                 "caffevis_label_names": NULL, "caffevis_jpgvis_layers": [], "caffevis_unit_jpg_dir": NULL,
                 "caffevis_data_mean": NULL, "caffevis_input_scale": NULL, "caffevis_data_std": NULL}


def preset_overrides(name: str) -> dict:
    """Settings overrides of a named input preset (:data:`PRESETS`)."""
    if name not in PRESETS:
        raise SettingsError(f"preset '{name}': expected one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])
