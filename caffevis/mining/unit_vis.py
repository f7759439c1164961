"""Per-unit regularized-optimization images for the viewer's jpgvis pane and pattern mode.

Writes the ``regularized_opt`` part of a ``unit_jpg_vis`` tree, the layout DeepVis reads
(the original shipped no code to make it)::

    <outdir>/regularized_opt/<layer>/<layer>_NNNN_montage.jpg   one per unit
    <outdir>/regularized_opt/<layer>/<layer>_NNNN_info.json     what each run found
    <outdir>/regularized_opt/<layer>/whole_layer.jpg            square sprite sheet

**Montage layout** (what DeepVis' ``crop_to_corner`` expects): a square image made of a
2x2 grid of quadrants; each quadrant has a 2-px border (large padding) around a
``grid`` x ``grid`` grid of cells, each cell an image with a 1-px border (small padding).
Quadrant q (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) holds preset
``MONTAGE_PRESETS[q]`` = q + 1 of the paper's Table 1, so the viewer's corner 2
(bottom-left) shows preset 3, the setting used for most of the paper's figures. Cell k
(row-major) is the run with ``rand_seed = k``; each cell is that run's ``best_X`` image
(0 at grey, as ``best_X.jpg``). ``grid`` is ⌈√seeds⌉: 9 seeds (the original's 3x3) by
default; 1 seed gives one image per quadrant, which ``crop_to_corner`` still crops exactly.
Padding is black.

**whole_layer.jpg**: ⌈√n⌉ x ⌈√n⌉ sprites for the layer's n channels, no gaps, row-major,
each the preset-3 seed-0 image (cut from the unit's montage), black where a unit has no
montage yet.
"""
from __future__ import annotations

import functools
import json
import math
import os
import sys

import numpy as np

from ..errors import InputError, SettingsError
from ..images import write_image
from ..input_space import InputSpace
from ..io import atomic_path
from ..optimize import (BATCH_INVARIANT_ROWS, OptimizeParams, UnitObjective, optimize, preset_params, push_unit_for,
                        render_best_x, unit_blob_shape)
from .layout import LARGE_PAD, SMALL_PAD, crop_to_corner, info_path, montage_path, regularized_dir, whole_layer_path

MONTAGE_PRESETS = (1, 2, 3, 4)
SPRITE_PRESET = 3


# -- layouts (pure functions on uint8 images) ---------------------------------------------------
def quadrant_size(cell: int, grid: int) -> int:
    """Side of one montage quadrant for square cells of side ``cell``."""
    return 2 * LARGE_PAD + grid * (cell + 2 * SMALL_PAD)


def make_montage(quadrants, grid, cell_shape):
    """Assemble the 2x2-of-grid x grid montage.

    Parameters
    ----------
    quadrants : list of up to 4 lists of (H, W, 3) uint8 images (None: left black)
    grid : int
        Cells per quadrant side.
    cell_shape : (H, W)
        H == W is required by the square montage.
    """
    h, w = cell_shape
    if h != w:
        raise InputError(f"montage cells must be square; got {h}x{w}")
    q = quadrant_size(h, grid)
    out = np.zeros((2 * q, 2 * q, 3), np.uint8)
    for qi, cells in enumerate(quadrants):
        if len(cells) > grid * grid:
            raise InputError(f"quadrant {qi} has {len(cells)} images; a {grid}x{grid} grid holds {grid * grid}")
        top, left = (qi // 2) * q, (qi % 2) * q
        for k, img in enumerate(cells):
            if img is None:
                continue
            r, c = divmod(k, grid)
            y = top + LARGE_PAD + r * (h + 2 * SMALL_PAD) + SMALL_PAD
            x = left + LARGE_PAD + c * (w + 2 * SMALL_PAD) + SMALL_PAD
            out[y:y + h, x:x + w] = img
    return out


def montage_cell(img, corner, index, grid):
    """Cell ``index`` (row-major) of quadrant ``corner``, cut as the viewer crops the quadrant."""
    if img.shape[0] != img.shape[1] or img.shape[0] % 2:
        raise InputError(f"montage is {img.shape[1]}x{img.shape[0]}; expected a square with an even side")
    quad = crop_to_corner(img, corner, SMALL_PAD, LARGE_PAD)
    cell = (quad.shape[0] - 2 * SMALL_PAD * (grid - 1)) // grid
    r, c = divmod(index, grid)
    y, x = r * (cell + 2 * SMALL_PAD), c * (cell + 2 * SMALL_PAD)
    return quad[y:y + cell, x:x + cell]


def montage_grid(montage_side, cell):
    """The grid of a montage of side ``montage_side`` with cells of side ``cell``."""
    grid = (montage_side // 2 - 2 * LARGE_PAD) / (cell + 2 * SMALL_PAD)
    if grid != int(grid) or grid < 1:
        raise InputError(f"a {montage_side}-px montage does not hold {cell}-px cells")
    return int(grid)


def make_sprite_sheet(sprites, n, sprite_shape):
    """Square sheet of ⌈√n⌉ x ⌈√n⌉ sprites, no gaps, row-major; None entries stay black."""
    side = int(math.ceil(math.sqrt(n)))
    h, w = sprite_shape
    out = np.zeros((side * h, side * w, 3), np.uint8)
    for i, img in enumerate(sprites):
        if img is None:
            continue
        r, c = divmod(i, side)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = img
    return out


# -- the driver -----------------------------------------------------------------------------------
def _resolve(net, settings_or_params, space):
    """(overrides dict, InputSpace) from a Settings object or a mapping of parameter overrides."""
    overrides = {}
    if settings_or_params is None:
        pass
    elif hasattr(settings_or_params, "caffevis_data_mean"):  # a caffevis.settings.Settings
        space = space or InputSpace.from_settings(settings_or_params, net.input_shape)
    elif isinstance(settings_or_params, OptimizeParams):
        overrides = {k: v for k, v in settings_or_params.as_dict().items()
                     if k in ("start_at", "push_dir", "push_spatial", "max_iter")}
    elif isinstance(settings_or_params, dict):
        overrides = dict(settings_or_params)
    else:
        raise SettingsError(f"settings_or_params: expected Settings, OptimizeParams or a mapping, "
                            f"got {type(settings_or_params).__name__}")
    for key in ("push_layer", "push_channel", "rand_seed"):
        if key in overrides:
            raise SettingsError(f"settings_or_params: '{key}' is set per unit and seed by the montage maker")
    return overrides, space or InputSpace.build(net.input_shape)


def make_regularized_opt_tree(net, settings_or_params, layer, units, outdir, *, space=None,
                              presets=MONTAGE_PRESETS, seeds=9, batch_size=8, brave=False, progress=True,
                              write_whole_layer=True, scheduler=None, model=None):
    """Optimize each unit with the four presets and write montages and the sprite sheet.

    Parameters
    ----------
    net : caffevis.model.Net
    settings_or_params : Settings, dict, OptimizeParams or None
        Settings give the input space (mean, scales, channel swap). A dict gives parameter
        overrides applied to every preset (e.g. ``{'max_iter': 50}`` for a quick look; not
        push_layer / push_channel / rand_seed, which the maker sets).
    layer : str
        Blob whose units are visualized.
    units : iterable of int or None
        Channels; None: all.
    outdir : str
        Root of the ``unit_jpg_vis`` tree.
    space : InputSpace, optional
        Overrides the one derived from settings (default: no mean, 0-255).
    presets : sequence of up to 4 preset numbers
        Quadrant order (default 1, 2, 3, 4).
    seeds : int
        Runs per preset (rand_seed 0 .. seeds-1); 9 fills the original's 3x3 quadrants.
    batch_size : int
        Runs per ORT batch (a unit's runs are never split across batches when they fit).
    brave : bool
        Recompute units whose montage exists (otherwise they are skipped: resumable).
    write_whole_layer : bool
        Rebuild ``whole_layer.jpg`` from every montage of the layer at the end (also after
        Ctrl-C, so it shows what is done).
    scheduler, model : str, optional
        Run the batches on Dask (``local:N`` or ``tcp://host:port``), the workers opening
        ``model`` (``MODEL.onnx`` or ``DEPLOY.prototxt:WEIGHTS.caffemodel``, the path ``net``
        came from); the montages are the same bits as without (a run's result does not depend
        on its batch). A unit with a failing run gets no montage and is listed in ``failed``.

    Returns
    -------
    dict with ``done``, ``skipped``, ``failed`` (unit lists), ``montages`` (paths) and ``whole_layer``.
    """
    presets = tuple(presets)
    if not 1 <= len(presets) <= 4 or any(p not in (1, 2, 3, 4) for p in presets):
        raise SettingsError(f"presets: expected up to four of 1, 2, 3, 4; got {list(presets)}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise SettingsError(f"seeds: expected an integer >= 1, got {seeds!r}")
    overrides, space = _resolve(net, settings_or_params, space)
    blob_shape = unit_blob_shape(net, layer)  # the gradient session is opened only where runs are local
    n_channels = blob_shape[0]
    units = list(range(n_channels)) if units is None else [int(u) for u in units]
    grid = int(math.ceil(math.sqrt(seeds)))
    cell_shape = space.shape[1:]
    jobs_of = {}
    for u in units:
        jobs_of[u] = [preset_params(p, push_layer=layer, push_channel=u, rand_seed=s, **overrides)
                      for p in presets for s in range(seeds)]
        push_unit_for(jobs_of[u][0], blob_shape)  # validate every unit before any work
    skipped = [u for u in units if os.path.exists(montage_path(outdir, layer, u)) and not brave]
    todo = [u for u in units if u not in skipped]
    os.makedirs(regularized_dir(outdir, layer), exist_ok=True)
    per_unit = len(presets) * seeds
    batches_of = _plan_batches(todo, jobs_of, per_unit, batch_size)
    write = functools.partial(_write_unit, outdir, layer, presets=presets, seeds=seeds, grid=grid,
                              cell_shape=cell_shape, space=space)
    failed = []
    try:
        if scheduler:
            done, failed = _run_on_cluster(model, net.force_cpu, space, jobs_of, batches_of, scheduler, write,
                                           progress, layer)
        else:
            done = _run_here(net, UnitObjective(net, layer), space, per_unit, batches_of, write, progress, layer)
    except KeyboardInterrupt:
        if write_whole_layer:  # it shows what is done
            write_whole_layer_sheet(outdir, layer, n_channels, cell_shape, presets)
        raise
    whole = write_whole_layer_sheet(outdir, layer, n_channels, cell_shape, presets) if write_whole_layer else None
    return {"done": done, "skipped": skipped, "failed": failed,
            "montages": [montage_path(outdir, layer, u) for u in units],
            "whole_layer": whole, "grid": grid, "presets": list(presets)}


def _plan_batches(todo, jobs_of, per_unit, batch_size):
    """{units of one chunk: their runs cut into batches}; a unit's runs share a batch when they fit."""
    units_per_batch = max(1, batch_size // per_unit)
    batches_of = {}
    for start in range(0, len(todo), units_per_batch):
        chunk = tuple(todo[start:start + units_per_batch])
        jobs = [j for u in chunk for j in jobs_of[u]]
        batches_of[chunk] = [jobs[s:s + batch_size] for s in range(0, len(jobs), max(batch_size, 1))]
    return batches_of


def _run_here(net, objective, space, per_unit, batches_of, write, progress, layer):
    """The batches in this process, a unit's montage written as soon as its runs are done."""
    from tqdm import tqdm

    total = sum(j.max_iter for batches in batches_of.values() for b in batches for j in b)
    bar = tqdm(total=total, unit="it", disable=not progress, file=sys.stderr, desc=f"regularized_opt {layer}")
    done = []
    try:
        for chunk, batches in batches_of.items():
            results = []
            for part in batches:
                results += optimize(net, part, space, objective=objective, progress=bar.update,
                                    min_rows=BATCH_INVARIANT_ROWS)
                bar.update(sum(j.max_iter for j in part) - sum(len(r.ii) for r in results[-len(part):]))
            for i, u in enumerate(chunk):
                write(u, results[i * per_unit:(i + 1) * per_unit])
                done.append(u)
            bar.set_postfix_str(f"units {len(done)}/{sum(map(len, batches_of))}")
    except KeyboardInterrupt:
        bar.close()
        print(f"caffevis: interrupted; {len(done)} units written (run again to resume)", file=sys.stderr)
        raise
    bar.close()
    return done


def _run_on_cluster(model, force_cpu, space, jobs_of, batches_of, scheduler, write, progress, layer):
    """The batches on Dask; the client writes a unit's montage once all its runs are back."""
    from tqdm import tqdm

    from ..cluster import dask_client
    from ..optimize.cluster import stream_batches

    if not model:
        raise SettingsError("a regularized_opt tree on Dask needs the model path for the workers")
    got = {u: {} for chunk in batches_of for u in chunk}
    done, failed = [], set()
    bar = tqdm(total=len(got), unit="unit", disable=not progress, file=sys.stderr,
               desc=f"regularized_opt {layer} ({scheduler})")
    with dask_client(scheduler) as (client, threads), bar:
        batches = [b for bs in batches_of.values() for b in bs]
        for batch, results, _, error in stream_batches(client, model, batches, space, force_cpu, threads):
            for i, p in enumerate(batch):
                u = p.push_channel
                got[u][jobs_of[u].index(p)] = results[i] if error is None else None
                if error is not None and u not in failed:
                    failed.add(u)
                    print(f"caffevis: {layer} unit {u} failed: {type(error).__name__}: {error}", file=sys.stderr)
                if len(got[u]) == len(jobs_of[u]):
                    if u not in failed:
                        write(u, [got[u][k] for k in range(len(jobs_of[u]))])
                        done.append(u)
                    bar.update(1)
    return done, sorted(failed)


def regularized_opt_tree_from_runs(results_dir, layer, units, outdir, n_channels, cell_shape, *, seeds=None,
                                   brave=False, write_whole_layer=True):
    """The regularized_opt tree of ``layer`` from saved ``caffevis optimize`` runs, optimizing nothing.

    ``results_dir`` holds the files of one or more ``caffevis optimize --units ... --preset P
    [--rand-seed S] --output-prefix results_dir/NAME`` runs (one NAME per preset and seed, so
    their files do not collide). Quadrant q of a unit's montage shows preset q + 1 and cell k
    seed k, from the runs' ``info.h5`` best images, laid out exactly as
    :func:`make_regularized_opt_tree` lays out its own runs: for the same runs both write the
    same files. Presets and seeds without a run stay black (one default ``optimize --units
    all`` run, preset 3 seed 0, fills the quadrant the viewer shows and ``whole_layer.jpg``).
    A unit with no run at all gets no montage and is listed in ``failed``.

    Parameters
    ----------
    seeds : int, optional
        Cells per quadrant (default: the highest seed found + 1).

    Returns
    -------
    dict as :func:`make_regularized_opt_tree`'s.
    """
    from ..optimize.outputs import load_run

    presets = MONTAGE_PRESETS
    found = _saved_runs(results_dir, layer)
    if seeds is None:
        seeds = max((s for (_, _, s) in found), default=0) + 1
    grid = int(math.ceil(math.sqrt(seeds)))
    units = [int(u) for u in units]
    skipped = [u for u in units if os.path.exists(montage_path(outdir, layer, u)) and not brave]
    done, failed = [], []
    os.makedirs(regularized_dir(outdir, layer), exist_ok=True)
    for u in (u for u in units if u not in skipped):
        runs = [load_run(found[(u, p, s)]) if (u, p, s) in found else None for p in presets for s in range(seeds)]
        stored = [r for r in runs if r is not None]
        if not stored:
            print(f"caffevis: {layer} unit {u}: no saved optimize run in {results_dir}", file=sys.stderr)
            failed.append(u)
            continue
        space_record = stored[0][1].get("input_space") or {}
        to_rgb = space_record.get("channel_swap_to_rgb")
        swap = None if not to_rgb else tuple(int(i) for i in np.argsort(to_rgb))
        space = InputSpace.build(stored[0][0].best_x.shape, channel_swap=swap)  # only its channel order is used
        _write_unit(outdir, layer, u, [r and r[0] for r in runs], presets=presets, seeds=seeds, grid=grid,
                    cell_shape=cell_shape, space=space, space_record=space_record)
        done.append(u)
    whole = write_whole_layer_sheet(outdir, layer, n_channels, cell_shape, presets) if write_whole_layer else None
    return {"done": done, "skipped": skipped, "failed": failed,
            "montages": [montage_path(outdir, layer, u) for u in units],
            "whole_layer": whole, "grid": grid, "presets": list(presets)}


def _saved_runs(results_dir, layer) -> dict:
    """{(unit, preset, rand_seed): prefix} of the finished optimize runs of ``layer`` in a folder."""
    if not os.path.isdir(results_dir):
        raise InputError(f"{results_dir}: not a folder of optimize results")
    found = {}
    for name in sorted(os.listdir(results_dir)):
        if not name.endswith("info.json"):
            continue
        path = os.path.join(results_dir, name)
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            params = record["params"]
            key = (int(params["push_channel"]), record.get("preset"), int(params["rand_seed"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not an optimize result
        if params.get("push_layer") == layer and key[1] in MONTAGE_PRESETS:
            found.setdefault(key, path[:-len("info.json")])
    return found


def _write_unit(outdir, layer, unit, results, *, presets, seeds, grid, cell_shape, space, space_record=None):
    quadrants = []
    for qi in range(len(presets)):
        runs = results[qi * seeds:(qi + 1) * seeds]
        quadrants.append([render_best_x(r.best_x, space) if r is not None and r.best_x is not None else None
                          for r in runs])
    record = {"layer": layer, "unit": unit, "grid": grid, "seeds": seeds,
              "quadrants": {str(q): f"preset {p}" for q, p in enumerate(presets)},
              "runs": [{"preset": presets[i // seeds], "rand_seed": r.params.rand_seed,
                        "push_unit": list(r.push_unit), "best_obj": r.best_obj, "best_ii": r.best_ii,
                        "majority_ii": r.majority_ii, "meta_result": r.meta_result,
                        "iterations": len(r.ii), "params": r.params.as_dict()}
                       for i, r in enumerate(results) if r is not None],
              "input_space": space_record or space.describe()}
    path = info_path(outdir, layer, unit)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    # the montage is written last: its presence marks the unit as done
    write_image(montage_path(outdir, layer, unit), make_montage(quadrants, grid, cell_shape))


def write_whole_layer_sheet(outdir, layer, n_channels, cell_shape, presets=MONTAGE_PRESETS):
    """Rebuild ``whole_layer.jpg`` from the layer's montages; returns its path (None if none yet)."""
    import cv2

    corner = presets.index(SPRITE_PRESET) if SPRITE_PRESET in presets else 0
    sprites, found = [], 0
    for u in range(n_channels):
        path = montage_path(outdir, layer, u)
        img = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.exists(path) else None
        if img is None:
            sprites.append(None)
            continue
        grid = montage_grid(img.shape[0], cell_shape[0])
        sprites.append(montage_cell(img[:, :, ::-1], corner, 0, grid))
        found += 1
    if not found:
        return None
    path = whole_layer_path(outdir, layer)
    write_image(path, make_sprite_sheet(sprites, n_channels, cell_shape))
    return path
