"""Shared test fixtures: the reference material in ../shared (skipped only outside CI)."""
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared")
FIXTURES = os.path.join(SHARED, "fixtures", "caffe")
CASES = ["lenet", "squeezenet_v1.0", "caffenet_small", "alexnet_small"]


def shared_path(*parts):
    """Path under ../shared; skip when it is absent (a user's clone), fail in CI."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing in CI")
        pytest.skip(f"{path} not present (../shared is only beside the repo in CI)")
    return path


def cli(*args, env=None):
    """``python -m caffevis ARGS`` in a subprocess; the CompletedProcess with text output."""
    return subprocess.run([sys.executable, "-m", "caffevis", *map(str, args)], capture_output=True, text=True,
                          env=env)


def lenet_caffe_paths():
    """(deploy prototxt, weights) of Caffe's trained LeNet in ../shared."""
    d = shared_path("models", "lenet_caffe")
    return os.path.join(d, "lenet.prototxt"), os.path.join(d, "lenet_iter_10000.caffemodel")


_nets = {}


def fixture_net(case):
    """The fixture's Net (converted once per test session)."""
    from caffevis.model.net import Net

    if case not in _nets:
        d = shared_path("fixtures", "caffe", case)
        _nets[case] = Net.from_caffe(os.path.join(d, "deploy.prototxt"), os.path.join(d, "weights.caffemodel"))
    return _nets[case]


def fixture_arrays(case, name):
    path = shared_path("fixtures", "caffe", case, name)
    return np.load(path) if path.endswith((".npz", ".npy")) else path


def rel_err(got, ref):
    scale = float(np.abs(ref).max()) or 1.0
    return float(np.abs(np.asarray(got, np.float64) - ref).max()) / scale


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAFFEVIS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(autouse=True, scope="session")
def session_cache(tmp_path_factory):
    """Conversions and gradient graphs go to a temporary cache, not model_zoo/cache in the checkout
    (subprocesses inherit it); ``tmp_cache`` gives a test its own."""
    previous = os.environ.get("CAFFEVIS_CACHE")
    os.environ["CAFFEVIS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("CAFFEVIS_CACHE", None)
    else:
        os.environ["CAFFEVIS_CACHE"] = previous


def basis_directions(shape, flat_indices=None):
    """The unit vectors of ``shape`` (those at ``flat_indices``, default every element): along
    these, :func:`assert_directional_derivatives` checks the gradient element by element."""
    for i in range(int(np.prod(shape))) if flat_indices is None else flat_indices:
        v = np.zeros(shape)
        v.flat[i] = 1.0
        yield v


def assert_directional_derivatives(objective, x, grad, rng, label, bound, trials=3, eps=1e-6, directions=None):
    """``grad`` against float64 central differences of ``objective`` along directions ``v``:
    ``|fd - grad . v| <= bound(fd, grad, v)`` for each. The directions are ``trials`` random
    normal ones unless given (``basis_directions(x.shape)``: every element)."""
    if directions is None:
        directions = (rng.normal(size=x.shape) for _ in range(trials))
    for trial, v in enumerate(directions):
        fd = (objective(x + eps * v) - objective(x - eps * v)) / (2 * eps)
        analytic = float((np.asarray(grad, np.float64) * v).sum())
        assert abs(fd - analytic) <= bound(fd, grad, v), (label, trial, fd, analytic)
