"""Many optimizer runs of one blob on a Dask cluster (``caffevis optimize --units ... --scheduler``).

The client plans the runs (a run whose ``info.json`` exists is done), cuts the rest into the
same batches as a single-machine run and submits one task per batch. A worker opens the model
and builds the unit objective once per process (:func:`worker_objective`) and runs its
batches as :func:`caffevis.optimize.optimize` does on one machine. Results stream back as
batches finish and the client writes them with the single-machine writer, so the files and
their tree are the same. Each unit's result is independent of its batch
(:data:`~caffevis.optimize.BATCH_INVARIANT_ROWS`), so the traces equal a one-machine run's
bit for bit.

Failures: Dask reruns the batches of a lost worker elsewhere; a batch that raises is split
and its units rerun one per task, so an exception is reported with the unit it belongs to
while the other units finish.
"""
from __future__ import annotations

import functools
import sys

from ..input_space import InputSpace
from .loop import BATCH_INVARIANT_ROWS, optimize, push_unit_for
from .outputs import DEFAULT_PREFIX, DEFAULT_TEMPLATE, RESULT_FILES, planned_prefix
from .units import plan_runs, save_run


@functools.lru_cache(maxsize=4)
def worker_objective(model: str, layer: str, force_cpu: bool, threads: int):
    """The net and unit objective of this worker process, built on its first batch."""
    from ..model.net import Net
    from .objective import UnitObjective

    net = Net.load(model, force_cpu=force_cpu, threads=threads)
    return net, UnitObjective(net, layer)


def run_batch(model: str, params_list, space: InputSpace, force_cpu=False, threads=0):
    """One batch on a worker: ``(results, provider)`` (results in the order of ``params_list``)."""
    net, objective = worker_objective(model, params_list[0].push_layer, bool(force_cpu), int(threads))
    results = optimize(net, params_list, space, objective=objective, min_rows=BATCH_INVARIANT_ROWS)
    return results, objective.provider


def optimize_units_dask(model, params_list, space: InputSpace, blob_shape, scheduler,
                        output_prefix=DEFAULT_PREFIX, output_template=DEFAULT_TEMPLATE, batch_size=8,
                        brave=False, skipbig=False, progress=True, extra=None, on_result=None, on_error=None,
                        force_cpu=False, ort_threads=None, task=run_batch):
    """Optimize and save many runs of one blob on a Dask cluster; resumable.

    Parameters
    ----------
    model : str
        ``MODEL.onnx`` or ``DEPLOY.prototxt:WEIGHTS.caffemodel``; workers open it under this
        path (on a real cluster: the same path on every machine).
    blob_shape : tuple
        Shape of the pushed blob without the batch axis (checks units and names files).
    scheduler : str
        ``local:N`` or ``tcp://host:port`` (:mod:`caffevis.cluster`).
    on_result : callable(result, prefix), optional
        Called after each run is saved.
    on_error : callable(params, exception), optional
        Called for each run that raised on its own (the others go on).
    ort_threads : int, optional
        ONNX Runtime threads per task (default: the cluster's share, see
        :func:`caffevis.cluster.dask_client`).
    task : callable
        What workers run per batch (default :func:`run_batch`; same signature).

    Returns
    -------
    list of (params, prefix, status) with status 'done', 'skipped' or 'failed' (prefix None
    for failed runs whose file names depend on results).
    """
    from tqdm import tqdm

    from ..cluster import dask_client, parse_scheduler
    from ..io import remove_stale_temporaries

    parse_scheduler(scheduler)
    todo, report = plan_runs(list(params_list), blob_shape, output_prefix, output_template, brave)
    if not todo:
        return report
    for p in todo:  # temporaries of a killed client (the named files are never half written)
        prefix = planned_prefix(p, push_unit_for(p, blob_shape), output_prefix, output_template)
        for name in RESULT_FILES if prefix else ():
            remove_stale_temporaries(prefix + name)
    extra = dict(extra or {})
    bar = tqdm(total=len(todo), unit="unit", disable=not progress, file=sys.stderr,
               desc=f"optimize {todo[0].push_layer} ({scheduler})")
    try:
        with dask_client(scheduler) as (client, share):
            batches = [todo[s:s + batch_size] for s in range(0, len(todo), batch_size)]
            for batch, results, provider, error in stream_batches(
                    client, model, batches, space, force_cpu, share if ort_threads is None else ort_threads, task):
                if error is not None:
                    report.append((batch[0], None, "failed"))
                    if on_error is not None:
                        on_error(batch[0], error)
                else:
                    for p, r in zip(batch, results):
                        prefix = save_run(r, space, output_prefix, output_template, brave, skipbig,
                                          dict(extra, provider=provider))
                        report.append((p, prefix, "done"))
                        if on_result is not None:
                            on_result(r, prefix)
                bar.update(len(batch))
    except KeyboardInterrupt:
        bar.close()
        done = sum(1 for r in report if r[2] == "done")
        print(f"caffevis optimize: interrupted; {done} of {len(todo)} runs saved (run again to resume)",
              file=sys.stderr)
        raise
    bar.close()
    return report


def stream_batches(client, model, batches, space, force_cpu=False, threads=0, task=run_batch):
    """Run ``batches`` (lists of params of one blob) on ``client``; yield them as they finish.

    Yields ``(batch, results, provider, None)`` for a batch that ran, and ``(batch, None, None,
    exception)`` for a single run that raised: a failing batch of several runs is split and its
    runs resubmitted one per task, so every error names its own run and the others go on.
    """
    from dask.distributed import as_completed

    def submit(batch):
        return client.submit(task, model, batch, space, force_cpu, threads, pure=False)

    futures = {submit(b): b for b in batches if b}
    pending = as_completed(list(futures))
    for fut in pending:
        batch = futures.pop(fut)
        error = fut.exception()
        if error is not None and len(batch) > 1:
            for p in batch:
                single = submit([p])
                futures[single] = [p]
                pending.add(single)
        elif error is not None:
            yield batch, None, None, error
        else:
            results, provider = fut.result()
            yield batch, results, provider, None
        fut.release()
