"""Dask clusters for the commands that spread work over processes or machines.

``--scheduler`` takes ``local:N`` (a cluster of N worker processes on this machine, one
thread each) or the address of a running scheduler (``tcp://host:8786``, started with
``dask scheduler`` and joined by ``dask worker tcp://host:8786`` on each machine).
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager

from .errors import InputError

SCHEDULER_FORMS = "'local:N' (N worker processes here) or a scheduler address 'tcp://HOST:PORT'"


def parse_scheduler(text) -> tuple:
    """``('local', n_workers)`` or ``('address', 'tcp://host:port')`` from a ``--scheduler`` value."""
    text = str(text).strip()
    m = re.fullmatch(r"local:(\d{1,4})", text)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise InputError(f"--scheduler {text}: expected at least one local worker")
        return "local", n
    if re.fullmatch(r"(tcp|tls|inproc|ucx)://\S+", text):
        return "address", text
    raise InputError(f"--scheduler {text}: expected {SCHEDULER_FORMS}")


@contextmanager
def dask_client(scheduler, wait=True):
    """A connected ``dask.distributed.Client``; a local cluster is closed on exit.

    Parameters
    ----------
    scheduler : str
        ``local:N`` or ``tcp://host:port`` (see :func:`parse_scheduler`).
    wait : bool
        Wait (up to two minutes) until at least one worker has joined: a fresh external
        cluster may still be starting.

    Yields
    ------
    (client, ort_threads)
        ``ort_threads`` is the ONNX Runtime thread count each task should use: the local
        workers share this machine's cores instead of each taking all of them; 0 (all
        cores) on an external cluster, whose workers are sized by whoever started them.
    """
    from dask.distributed import Client, LocalCluster

    kind, value = parse_scheduler(scheduler)
    cluster = None
    if kind == "local":
        ort_threads = max(1, (os.cpu_count() or 1) // value)
        cluster = LocalCluster(n_workers=value, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        ort_threads = 0
        try:
            client = Client(value, timeout=30)
        except OSError as err:
            raise InputError(f"--scheduler {value}: cannot connect ({err})") from None
    try:
        if wait:
            client.wait_for_workers(1, timeout=120)
        yield client, ort_threads
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def model_for_workers(settings) -> str:
    """The settings' model as one absolute ``MODEL.onnx`` or ``DEPLOY.prototxt:WEIGHTS.caffemodel``
    (workers open it under this path)."""
    _, paths = settings.model_spec()
    return ":".join(os.path.abspath(p) for p in paths)


def worker_count(client) -> int:
    """Workers connected now (at least 1)."""
    return max(1, len(client.scheduler_info()["workers"]))
