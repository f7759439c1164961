"""Regularized activation maximization (Yosinski et al. 2015): parameters, regularizers,
objective, the loop and its output files; :mod:`.cluster` runs it on a Dask cluster.

The loop is described step by step in :mod:`caffevis.optimize.loop`.
"""
from .loop import (BATCH_INVARIANT_ROWS, DEFAULT_PREFIX, DEFAULT_PRESET, DEFAULT_TEMPLATE, LR_KEYS,  # noqa: F401
                   LR_POLICIES, META_FAILURE, META_GRAD_ZERO, META_SUCCESS, PRESETS, START_AT, InputSpace,
                   OptimizeParams, OptimizeResult, UnitObjective, benchmark, clip_small_abs_benefit,
                   clip_small_benefit, clip_small_norms, clip_small_values, clip_to_pixel_range, gaussian_blur,
                   info_text, initial_x, l2norm, learning_rate, optimize, optimize_units, pixel_benefit, plan_runs,
                   planned_prefix, preset_params, push_unit_for, render_best_x, render_best_xpm, result_prefix,
                   save_result, save_run, software_versions, to_display, update_and_regularize, write_jpg)
