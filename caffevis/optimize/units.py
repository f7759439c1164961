"""Many units of one blob: batches, a progress bar, resume and Ctrl-C."""
from __future__ import annotations

import os
import sys

from ..input_space import InputSpace
from .loop import BATCH_INVARIANT_ROWS, optimize, push_unit_for
from .objective import UnitObjective
from .outputs import DEFAULT_PREFIX, DEFAULT_TEMPLATE, planned_prefix, result_prefix, save_result


def plan_runs(params_list, blob_shape, output_prefix=DEFAULT_PREFIX, output_template=DEFAULT_TEMPLATE,
              brave=False):
    """Split runs into (to do, report of skipped ones): a run whose ``info.json`` exists is done.

    Every run's unit is checked against ``blob_shape`` first, so a bad unit fails before any work.
    """
    todo, report = [], []
    for p in params_list:
        prefix = planned_prefix(p, push_unit_for(p, blob_shape), output_prefix, output_template)
        if prefix and os.path.exists(f"{prefix}info.json") and not brave:
            report.append((p, prefix, "skipped"))
        else:
            todo.append(p)
    return todo, report


def save_run(result, space, output_prefix=DEFAULT_PREFIX, output_template=DEFAULT_TEMPLATE, brave=False,
             skipbig=False, extra=None) -> str:
    """Save one run of a planned batch (:func:`plan_runs`); returns its prefix."""
    prefix = result_prefix(result, output_prefix, output_template)
    # a planned prefix was checked by plan_runs (an info.txt without info.json is a run cut short)
    save_result(result, space, prefix, brave=brave or "%(r." not in output_template, skipbig=skipbig, extra=extra)
    return prefix


def optimize_units(net, params_list, space: InputSpace, output_prefix="optimize_results/opt",
                   output_template=DEFAULT_TEMPLATE, batch_size=8, brave=False, skipbig=False,
                   progress=True, extra=None, on_result=None):
    """Optimize and save many runs of one blob in batches; resumable.

    A run whose ``info.json`` already exists is skipped (so an interrupted layer resumes
    where it stopped) unless ``brave``. Ctrl-C stops the current batch; every run saved so
    far stays on disk. Returns the list of (params, prefix, status) with status 'done',
    'skipped'.
    """
    from tqdm import tqdm

    params_list = list(params_list)
    if not params_list:
        return []
    objective = UnitObjective(net, params_list[0].push_layer)
    todo, report = plan_runs(params_list, objective.blob_shape, output_prefix, output_template, brave)
    extra = dict(extra or {}, provider=objective.provider)
    bar = tqdm(total=sum(p.max_iter for p in todo), unit="it", disable=not progress, file=sys.stderr,
               desc=f"optimize {params_list[0].push_layer}")
    done = 0
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            results = optimize(net, batch, space, objective=objective, progress=bar.update,
                               min_rows=BATCH_INVARIANT_ROWS)
            bar.update(sum(p.max_iter for p in batch) - sum(len(r.ii) for r in results))  # early stops
            for p, r in zip(batch, results):
                prefix = save_run(r, space, output_prefix, output_template, brave, skipbig, extra)
                report.append((p, prefix, "done"))
                done += 1
                if on_result is not None:
                    on_result(r, prefix)
            bar.set_postfix_str(f"units {done}/{len(todo)}")
    except KeyboardInterrupt:
        bar.close()
        print(f"caffevis optimize: interrupted; {done} of {len(todo)} runs saved (run again to resume)",
              file=sys.stderr)
        raise
    bar.close()
    return report
