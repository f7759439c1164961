"""Regularized activation maximization (Yosinski et al. 2015), as DeepVis' ``optimize_image.py``.

One module per part: :mod:`.params` (a run's parameters and the paper's presets),
:mod:`.regularizers` (small ``(x, grad) -> x`` steps, composed in the original's order),
:mod:`.objective` (blob value and unit gradient in one ORT run), :mod:`.loop` (the iteration,
described step by step there), :mod:`.outputs` (images and info files), :mod:`.units` (many
units with resume and a progress bar), :mod:`.cluster` (the same on a Dask cluster). The
image lives in the net's :class:`~caffevis.input_space.InputSpace`.
"""
from ..input_space import InputSpace
from .loop import (BATCH_INVARIANT_ROWS, META_FAILURE, META_GRAD_ZERO, META_SUCCESS, OptimizeResult, benchmark,
                   clip_to_pixel_range, initial_x, l2norm, learning_rate, optimize, push_unit_for)
from .objective import UnitObjective, unit_blob_shape
from .outputs import (DEFAULT_PREFIX, DEFAULT_TEMPLATE, info_text, planned_prefix, render_best_x, render_best_xpm,
                      result_prefix, save_result, software_versions, to_display)
from .params import DEFAULT_PRESET, LR_KEYS, LR_POLICIES, PRESETS, START_AT, OptimizeParams, preset_params
from .regularizers import (clip_small_abs_benefit, clip_small_benefit, clip_small_norms, clip_small_values, compose,
                           gaussian_blur, pixel_benefit, regularizer_steps, update_and_regularize)
from .units import optimize_units, plan_runs, save_run

__all__ = ["InputSpace", "BATCH_INVARIANT_ROWS", "META_FAILURE", "META_GRAD_ZERO", "META_SUCCESS", "OptimizeResult",
           "benchmark", "clip_to_pixel_range", "initial_x", "l2norm", "learning_rate", "optimize", "push_unit_for",
           "UnitObjective", "unit_blob_shape", "DEFAULT_PREFIX", "DEFAULT_TEMPLATE", "info_text", "planned_prefix", "render_best_x",
           "render_best_xpm", "result_prefix", "save_result", "software_versions", "to_display", "DEFAULT_PRESET",
           "LR_KEYS", "LR_POLICIES", "PRESETS", "START_AT", "OptimizeParams", "preset_params",
           "clip_small_abs_benefit", "clip_small_benefit", "clip_small_norms", "clip_small_values", "compose",
           "gaussian_blur", "pixel_benefit", "regularizer_steps", "update_and_regularize", "optimize_units", "plan_runs",
           "save_run"]
