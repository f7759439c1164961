"""Whole-layer optimization on Dask (issue 17): equal results, resume after kill -9, failures, --units."""
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from caffevis import optimize as O
from caffevis.commands.optimize import parse_units
from caffevis.errors import InputError, SettingsError
from caffevis.optimize_cluster import optimize_units_dask, run_batch
from conftest import REPO

LENET = os.path.join(REPO, "settings", "lenet.yaml")
MODEL_DIR = os.path.join(REPO, "model_zoo", "lenet")
MODEL = f"{MODEL_DIR}/lenet.prototxt:{MODEL_DIR}/lenet.caffemodel"
FILES = ("best_X.jpg", "best_Xpm.jpg", "info.h5", "info.json", "info.txt")


def cli_args(prefix, *extra):
    return ["optimize", "--settings", LENET, "--push-layer", "ip2", "--units", "all", "--preset", "4",
            "--max-iter", "50", "--quiet", "--output-prefix", prefix, *extra]


def run_cli(*args):
    from caffevis.cli import main

    return main(list(args))


def traces(folder):
    """{file stem: info.json's results} for every run in ``folder``."""
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith("info.json"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                out[name[:-len("info.json")]] = json.load(f)["results"]
    return out


def assert_same_runs(a, b):
    ta, tb = traces(a), traces(b)
    assert sorted(ta) == sorted(tb) and ta
    for stem in ta:
        for key in ("obj", "lr", "norm", "idxmax", "best_obj", "best_ii", "majority_ii", "meta_result"):
            assert ta[stem][key] == tb[stem][key], (stem, key)  # exact: same bits
        for name in ("best_X.jpg", "best_Xpm.jpg"):
            with open(os.path.join(a, stem + name), "rb") as fa, open(os.path.join(b, stem + name), "rb") as fb:
                assert fa.read() == fb.read(), stem + name
        with h5py.File(os.path.join(a, stem + "info.h5"), "r") as ha, h5py.File(os.path.join(b, stem + "info.h5"), "r") as hb:
            assert set(ha) == set(hb)
            for k in ha:
                assert np.array_equal(ha[k][()], hb[k][()]), (stem, k)


# -- --units ----------------------------------------------------------------------------------------
def test_units_parsing():
    assert parse_units("all", 10) == list(range(10))
    assert parse_units("3-5", 10) == [3, 4, 5]
    assert parse_units(" 7, 1-2 ,9", 10) == [7, 1, 2, 9]
    assert parse_units("2,2,1-3", 10) == [2, 1, 3]  # each unit once, first-mention order
    assert parse_units("4-4", 10) == [4]
    t = time.perf_counter()
    with pytest.raises(InputError, match="9999999999 is out of range .*10 channels"):
        parse_units("0-9999999999", 10)  # checked before the range is expanded
    assert time.perf_counter() - t < 1  # generous: a materialized range takes minutes and gigabytes
    with pytest.raises(InputError, match="10 is out of range"):
        parse_units("0,10", 10)
    with pytest.raises(SettingsError, match="names no unit"):
        parse_units("5-2", 10)
    for bad in ("", "a", "1-", "-1", "1,,2", "1.5"):
        with pytest.raises(SettingsError, match="--units"):
            parse_units(bad, 10)


def test_scheduler_values():
    from caffevis.cluster import parse_scheduler

    assert parse_scheduler("local:2") == ("local", 2)
    assert parse_scheduler(" tcp://10.0.0.5:8786 ") == ("address", "tcp://10.0.0.5:8786")
    for bad in ("local:0", "local:", "local:-1", "2", "10.0.0.5:8786", "http://h:1", "tcp://"):
        with pytest.raises(InputError, match="--scheduler"):
            parse_scheduler(bad)


def test_cli_units_errors_are_one_line(tmp_path, capsys):
    prefix = str(tmp_path / "o" / "opt")
    assert run_cli(*cli_args(prefix, "--units", "0-9999999999")) == 2  # the last --units counts
    assert "out of range" in capsys.readouterr().err
    assert run_cli("optimize", "--settings", LENET, "--push-layer", "ip2", "--scheduler", "local:2") == 2
    assert "--units" in capsys.readouterr().err
    assert run_cli(*cli_args(prefix, "--scheduler", "http://x")) == 2
    assert "local:N" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


# -- equal results ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """The interface's command without --scheduler (batches of 8: 8 + 2 units)."""
    folder = tmp_path_factory.mktemp("single")
    assert run_cli(*cli_args(str(folder / "opt"))) == 0
    return str(folder)


def test_local_cluster_writes_the_same_runs(single_run, tmp_path, capsys):
    assert run_cli(*cli_args(str(tmp_path / "opt"), "--scheduler", "local:2")) == 0
    assert "10 runs written, 0 already done (skipped), 0 failed" in capsys.readouterr().out
    assert_same_runs(single_run, str(tmp_path))
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]


def test_batch_composition_does_not_change_a_unit(single_run, tmp_path):
    # batches of 3 (the last unit alone) and 1, one machine: the same bits as batches of 8
    for bs in ("3", "1"):
        assert run_cli(*cli_args(str(tmp_path / bs / "opt"), "--batch-size", bs)) == 0
        assert_same_runs(single_run, str(tmp_path / bs))


# -- resume, lost workers, failures ------------------------------------------------------------------
def test_resume_after_sigkill(single_run, tmp_path):
    """kill -9 of the client and its local workers mid-layer; the rerun redoes no finished unit."""
    prefix = str(tmp_path / "opt")
    cmd = [sys.executable, "-m", "caffevis"] + cli_args(prefix, "--scheduler", "local:2", "--batch-size", "1")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=REPO), start_new_session=True)
    deadline = time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None and len(traces_done(tmp_path)) < 2:
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the client and the worker processes it started
        proc.wait()
    finished = traces_done(tmp_path)
    assert 2 <= len(finished) < 10, "the run was not cut short"
    mtimes = {p: os.stat(p).st_mtime_ns for p in finished}
    with open(finished[0], encoding="utf-8") as f:
        json.load(f)  # complete files only (atomic writes)
    assert run_cli(*cli_args(prefix, "--scheduler", "local:2")) == 0
    assert {p: os.stat(p).st_mtime_ns for p in finished} == mtimes  # not recomputed
    assert_same_runs(single_run, str(tmp_path))
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]


def traces_done(folder):
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith("info.json"))


def lenet_space():
    from caffevis.settings import load_settings

    settings = load_settings(LENET)
    net = settings.open_net()
    return O.InputSpace.from_settings(settings, net), tuple(net.blob_shapes["ip2"][1:])


def fail_on_unit_3(model, params_list, space, force_cpu=False, threads=0):
    """A worker task that raises for channel 3 (runs in the workers' threads of the test's cluster)."""
    if any(p.push_channel == 3 for p in params_list):
        raise FloatingPointError("unit 3 diverged")
    return run_batch(model, params_list, space, force_cpu, threads)


def test_failing_unit_is_reported_and_the_others_finish(tmp_path):
    from dask.distributed import LocalCluster

    space, shape = lenet_space()
    params = [O.preset_params(4, push_layer="ip2", push_channel=c, max_iter=5) for c in range(6)]
    errors = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        report = optimize_units_dask(MODEL, params, space, shape, cluster.scheduler_address, str(tmp_path / "opt"),
                                     batch_size=4, progress=False, on_error=lambda p, e: errors.append((p, e)),
                                     task=fail_on_unit_3)
    status = {p.push_channel: s for p, _, s in report}
    assert status == {0: "done", 1: "done", 2: "done", 3: "failed", 4: "done", 5: "done"}
    assert [(p.push_channel, str(e)) for p, e in errors] == [(3, "unit 3 diverged")]
    assert len(traces_done(tmp_path)) == 5 and not os.path.exists(tmp_path / "opt_ip2_0003_0_info.txt")
    O.optimize_units(lenet_net(), params, space, str(tmp_path / "ref" / "opt"), batch_size=8, progress=False)
    got, ref = traces(str(tmp_path)), traces(str(tmp_path / "ref"))
    for c in (0, 1, 2, 4, 5):  # units rerun alone after their batch failed: the same bits
        stem = f"opt_ip2_{c:04d}_0_"
        assert got[stem]["obj"] == ref[stem]["obj"]


def lenet_net():
    from caffevis.settings import load_settings

    return load_settings(LENET).open_net()


def test_lost_worker_is_replaced_and_its_batch_rerun(tmp_path):
    from dask.distributed import Client, LocalCluster

    space, shape = lenet_space()
    params = [O.preset_params(4, push_layer="ip2", push_channel=c, max_iter=150) for c in range(6)]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        killed = []

        def kill_a_worker(result, prefix):
            if not killed:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        report = optimize_units_dask(MODEL, params, space, shape, cluster.scheduler_address, str(tmp_path / "opt"),
                                     batch_size=1, progress=False, on_result=kill_a_worker)
    assert killed
    assert sorted(p.push_channel for p, _, s in report if s == "done") == list(range(6))
    assert len(traces_done(tmp_path)) == 6


def test_make_unit_vis_regularized_on_dask_writes_the_same_tree(tmp_path):
    """make-unit-vis --regularized --scheduler: the viewer's regularized_opt tree, the same bytes."""
    def make(name, *extra):
        out = tmp_path / name
        assert run_cli("make-unit-vis", "-o", str(out), "--regularized", "--settings", LENET, "--layers", "ip2",
                       "--idx-end", "3", "--opt-max-iter", "6", "--opt-seeds", "2", *extra) == 0
        return out / "regularized_opt" / "ip2"

    here, there = make("here"), make("dask", "--scheduler", "local:2")
    names = sorted(os.listdir(here))
    assert names == sorted(os.listdir(there))
    assert {"ip2_0000_montage.jpg", "ip2_0002_info.json", "whole_layer.jpg"} <= set(names)
    assert "ip2_0003_montage.jpg" not in names
    for name in names:
        assert (here / name).read_bytes() == (there / name).read_bytes(), name
