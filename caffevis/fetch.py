"""Download the official CaffeNet / AlexNet / GoogLeNet / SqueezeNet weights, verify their hash, convert.

``caffevis fetch caffenet`` (or ``alexnet``, ``caffenet-yos``, ``googlenet``, ``squeezenet``;
``python tools/fetch_caffenet.py`` is the same) writes ``model_zoo/<name>/``: the deploy prototxt,
the caffemodel (checked against the sha1 published in the model's readme, or for SqueezeNet v1.0
the sha256 recorded here of the file at a fixed commit of its published repository), and the
converted ``<name>.onnx`` with its JSON sidecar. It also fetches Caffe's ILSVRC 2012 mean image into
``model_zoo/imagenet/`` (what ``settings/caffenet.yaml`` reads); the 1000 class names ship with
caffevis (``caffevis/data/ilsvrc_2012_labels.txt``).

Every download streams to ``<file>.part`` with a tqdm bar and is renamed into place only
after verification; on a hash mismatch (or any error) the partial file is deleted, and a model
folder the failed fetch created is removed again when nothing verified was left in it.
Sources may be ``http(s)://`` or ``file://`` URLs or local paths (``--weights PATH`` for a
caffemodel fetched by other means).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import urllib.error
import urllib.parse
import urllib.request

from .errors import CaffevisError
from .io import save_onnx, sha1_of, sha256_of

from .paths import REPO_ROOT  # noqa: E402
DEFAULT_ZOO = os.path.join(REPO_ROOT, "model_zoo")
_CAFFE_RAW = "https://raw.githubusercontent.com/BVLC/caffe/master"
_DVT_RAW = "https://raw.githubusercontent.com/yosinski/deep-visualization-toolbox/master"


class FetchError(CaffevisError):
    """A download that failed or did not verify (one line; the CLI exits 2)."""


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a Caffe model's files come from and how the weights are verified.

    Attributes
    ----------
    name : str
        Folder under the model zoo and stem of the converted ``.onnx``.
    weights_url, weights_file : str
        Published caffemodel location and the local file name.
    sha1 : str or None
        Published sha1 of the caffemodel (None: none published; the conversion, which
        checks every blob against the prototxt, is then the only check).
    prototxt_url, prototxt_file : str
        Deploy prototxt location and local file name.
    sha256, prototxt_sha256 : str or None
        sha256 of the caffemodel and of the prototxt where no sha1 is published (files pinned
        to one commit of the model's repository).
    imagenet_mean : bool
        The model's settings read Caffe's ILSVRC 2012 mean image (fetched beside it).
    """

    name: str
    weights_url: str
    weights_file: str
    sha1: str | None
    prototxt_url: str
    prototxt_file: str = "deploy.prototxt"
    sha256: str | None = None
    prototxt_sha256: str | None = None
    imagenet_mean: bool = True


#: SqueezeNet v1.0 as published by DeepScale (the repository is now forresti/SqueezeNet), pinned
#: to one commit so that the recorded sha256 of each file stays valid.
_SQUEEZENET_RAW = ("https://raw.githubusercontent.com/forresti/SqueezeNet/"
                   "a47b6f13d30985279789d08053d37013d67d131b/SqueezeNet_v1.0")

#: The models ``caffevis fetch`` knows (sha1s from the models' Caffe readmes; SqueezeNet's sha256
#: is that of the published 5 001 403-byte caffemodel and 9 640-byte prototxt at the pinned commit).
MODELS = {
    "caffenet": ModelSource(
        "bvlc_reference_caffenet",
        "http://dl.caffe.berkeleyvision.org/bvlc_reference_caffenet.caffemodel",
        "bvlc_reference_caffenet.caffemodel", "4c8d77deb20ea792f84eb5e6d0a11ca0a8660a46",
        f"{_CAFFE_RAW}/models/bvlc_reference_caffenet/deploy.prototxt"),
    "alexnet": ModelSource(
        "bvlc_alexnet",
        "http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel",
        "bvlc_alexnet.caffemodel", "9116a64c0fbe4459d18f4bb6b56d647b63920377",
        f"{_CAFFE_RAW}/models/bvlc_alexnet/deploy.prototxt"),
    "googlenet": ModelSource(
        "bvlc_googlenet",
        "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel",
        "bvlc_googlenet.caffemodel", "405fc5acd08a3bb12de8ee5e23a96bec22f08204",
        f"{_CAFFE_RAW}/models/bvlc_googlenet/deploy.prototxt"),
    "caffenet-yos": ModelSource(
        "caffenet_yos",
        "http://c.yosinski.com/caffenet-yos-weights",
        "caffenet-yos-weights", None,
        f"{_DVT_RAW}/models/caffenet-yos/caffenet-yos-deploy.prototxt",
        "caffenet-yos-deploy.prototxt"),
    "squeezenet": ModelSource(
        "squeezenet_v1.0",
        f"{_SQUEEZENET_RAW}/squeezenet_v1.0.caffemodel",
        "squeezenet_v1.0.caffemodel", None,
        f"{_SQUEEZENET_RAW}/deploy.prototxt",
        sha256="9ff8035aada1f9ffa880b35252680d971434b141ec9fbacbe88309f0f9a675ce",
        prototxt_sha256="6e4ecef2a27347e226a5ef8be31d6d1b9d19f5a40afa1986ec259fd5fa3bd91c",
        imagenet_mean=False),  # settings/squeezenet.yaml subtracts per-channel values
}

#: ImageNet helper files: local name -> URL (checked by content: no sha1 is published). The labels
#: ship with caffevis; :func:`fetch_imagenet_files` still checks a labels file given as a source.
IMAGENET_FILES = {
    "ilsvrc_2012_mean.npy": f"{_CAFFE_RAW}/python/caffe/imagenet/ilsvrc_2012_mean.npy",
}


# -- downloading ----------------------------------------------------------------------------
def as_url(source: str) -> str:
    """A URL for a URL or a local path (local paths become ``file://`` URLs)."""
    if urllib.parse.urlparse(source).scheme in ("http", "https", "file", "ftp"):
        return source
    return pathlib.Path(os.path.abspath(source)).as_uri()


def download(source: str, dest: str, sha1: str | None = None, progress: bool = True,
             timeout: float = 60.0, sha256: str | None = None) -> str:
    """Stream ``source`` (URL or local path) to ``dest``, verifying ``sha1`` / ``sha256`` when given.

    The data goes to ``dest + '.part'`` and is renamed to ``dest`` only once complete and
    verified; on any failure the partial file is removed and :class:`FetchError` raised.

    Returns
    -------
    str
        The sha1 of the downloaded file.
    """
    from tqdm import tqdm

    url = as_url(source)
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part = dest + ".part"
    h, h256 = hashlib.sha1(), hashlib.sha256()
    try:
        try:
            response = urllib.request.urlopen(url, timeout=timeout)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise FetchError(f"{url}: download failed ({reason})") from None
        with response, open(part, "wb") as out:
            total = response.headers.get("Content-Length")
            bar = tqdm(total=int(total) if total and total.isdigit() else None, unit="B", unit_scale=True,
                       unit_divisor=1024, desc=os.path.basename(dest), disable=not progress, leave=False)
            with bar:
                while True:
                    try:
                        block = response.read(1 << 20)
                    except (OSError, urllib.error.URLError) as err:
                        raise FetchError(f"{url}: download interrupted ({err})") from None
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    h256.update(block)
                    bar.update(len(block))
            if total and total.isdigit() and out.tell() != int(total):
                raise FetchError(f"{url}: download incomplete ({out.tell()} of {total} bytes)")
        got = h.hexdigest()
        if sha1 and got != sha1.lower():
            raise FetchError(f"{url}: sha1 mismatch: got {got}, expected the published {sha1}; "
                             f"the partial download was deleted")
        if sha256 and h256.hexdigest() != sha256.lower():
            raise FetchError(f"{url}: sha256 mismatch: got {h256.hexdigest()}, expected the recorded {sha256}; "
                             f"the partial download was deleted")
        os.replace(part, dest)
        return got
    finally:
        if os.path.exists(part):
            os.remove(part)


def verify_file(path: str, sha1: str | None, sha256: str | None = None) -> None:
    """Check an existing file against its published sha1 / recorded sha256 (FetchError naming both)."""
    for name, want, got_of in (("sha1", sha1, sha1_of), ("sha256", sha256, sha256_of)):
        if want:
            got = got_of(path)
            if got != want.lower():
                raise FetchError(f"{path}: {name} {got} does not match the published {want}; delete it "
                                 f"(or pass --force) to download it again")


@contextlib.contextmanager
def removed_if_left_empty(folder: str):
    """Run a block that may create ``folder``; if it fails and had created it, an empty
    ``folder`` is removed (a failed fetch leaves no empty model folder behind)."""
    existed = os.path.isdir(folder)
    try:
        yield
    except BaseException:
        if not existed and os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
        raise


# -- models ---------------------------------------------------------------------------------
def fetch_model(source: ModelSource, dest_dir: str | None = None, weights: str | None = None,
                prototxt: str | None = None, convert: bool = True, force: bool = False,
                progress: bool = True, log=print) -> dict:
    """Fetch (or verify) a model's prototxt and weights, then convert them to ONNX.

    Parameters
    ----------
    source : ModelSource
        What to fetch (see :data:`MODELS`).
    dest_dir : str, optional
        Target folder; default ``model_zoo/<source.name>``.
    weights, prototxt : str, optional
        Local paths or URLs replacing the published locations.
    convert : bool
        Also write ``<name>.onnx`` (+ ``.json`` sidecar).
    force : bool
        Download again even when the files are present.

    Returns
    -------
    dict
        Paths written: ``prototxt``, ``weights``, ``onnx`` (None without ``convert``).
    """
    dest_dir = dest_dir or os.path.join(DEFAULT_ZOO, source.name)
    with removed_if_left_empty(dest_dir):
        return _fetch_model(source, dest_dir, weights, prototxt, convert, force, progress, log)


def _fetch_model(source, dest_dir, weights, prototxt, convert, force, progress, log):
    proto_path = os.path.join(dest_dir, source.prototxt_file)
    weights_path = os.path.join(dest_dir, source.weights_file)

    if force or prototxt or not os.path.isfile(proto_path):
        log(f"fetching {source.prototxt_file} from {prototxt or source.prototxt_url}")
        download(prototxt or source.prototxt_url, proto_path, progress=False, sha256=source.prototxt_sha256)
    else:
        verify_file(proto_path, None, source.prototxt_sha256)
    _check_prototxt(proto_path)

    if force or weights or not os.path.isfile(weights_path):
        log(f"fetching {source.weights_file} from {weights or source.weights_url}")
        got = download(weights or source.weights_url, weights_path, sha1=source.sha1, progress=progress,
                       sha256=source.sha256)
    else:
        log(f"{weights_path}: present; verifying")
        verify_file(weights_path, source.sha1, source.sha256)
        got = sha1_of(weights_path) if not source.sha1 else source.sha1
    if source.sha256:
        log(f"{weights_path}: sha256 {source.sha256} (matches the recorded sha256)")
    else:
        log(f"{weights_path}: sha1 {got}" + (" (matches the published sha1)" if source.sha1 else
                                             " (no sha1 published; checked by conversion)"))
    onnx_path = None
    if convert:
        onnx_path = os.path.join(dest_dir, source.name + ".onnx")
        convert_to_onnx(proto_path, weights_path, onnx_path)
        log(f"wrote {onnx_path}")
    return {"prototxt": proto_path, "weights": weights_path, "onnx": onnx_path}


def _check_prototxt(path):
    from .model.caffe.reader import read_prototxt
    from .errors import ModelError

    try:
        read_prototxt(path)
    except ModelError as err:
        raise FetchError(f"downloaded prototxt is not usable: {err}") from None


def convert_to_onnx(prototxt: str, weights: str, onnx_path: str) -> str:
    """Convert with :func:`caffevis.model.convert_caffe` and save ``.onnx`` plus a ``.json`` sidecar."""
    from .model.net import convert_caffe

    model = convert_caffe(prototxt, weights)
    save_onnx(model, onnx_path)
    meta = {p.key: p.value for p in model.metadata_props}
    if "caffevis_info" in meta:
        with open(os.path.splitext(onnx_path)[0] + ".json", "w") as f:
            json.dump(json.loads(meta["caffevis_info"]), f, indent=1)
    return onnx_path


def fetch_imagenet_files(dest_dir: str | None = None, force: bool = False, sources: dict | None = None,
                         log=print) -> dict:
    """Fetch Caffe's ILSVRC 2012 mean (.npy, 3x256x256 BGR) (and a labels file given in ``sources``).

    No sha1 is published for these, so each is checked by content instead.
    """
    dest_dir = dest_dir or os.path.join(DEFAULT_ZOO, "imagenet")
    sources = dict(IMAGENET_FILES, **(sources or {}))
    with removed_if_left_empty(dest_dir):
        return _fetch_imagenet_files(dest_dir, force, sources, log)


def _fetch_imagenet_files(dest_dir, force, sources, log):
    out = {}
    for name, url in sources.items():
        path = os.path.join(dest_dir, name)
        if force or not os.path.isfile(path):
            log(f"fetching {name} from {url}")
            download(url, path, progress=False)
        try:
            _check_imagenet_file(path)
        except FetchError:
            os.remove(path)
            raise
        out[name] = path
    return out


def _check_imagenet_file(path):
    from .errors import InputError
    from .images import load_mean, read_labels

    try:
        if path.endswith(".npy"):
            mean = load_mean(path)
            if mean.shape != (3, 256, 256):
                raise FetchError(f"{path}: mean has shape {mean.shape}; expected (3, 256, 256); deleted")
        else:
            n = len(read_labels(path))
            if n != 1000:
                raise FetchError(f"{path}: {n} labels; expected 1000; deleted")
    except InputError as err:
        raise FetchError(f"{err}; deleted") from None


# -- command line ---------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", choices=sorted(MODELS), help="which model to fetch")
    p.add_argument("--dest", help="target folder (default model_zoo/<model name>)")
    p.add_argument("--weights", help="use this caffemodel (path or URL) instead of the published URL; "
                                     "still verified against the published hash (default: the published URL)")
    p.add_argument("--prototxt", help="use this deploy prototxt (path or URL) (default: the published URL)")
    p.add_argument("--imagenet-dir", help="where the ILSVRC mean goes (default model_zoo/imagenet)")
    p.add_argument("--no-imagenet", action="store_true", help="do not fetch the ILSVRC mean")
    p.add_argument("--no-convert", action="store_true", help="do not convert to ONNX")
    p.add_argument("--force", action="store_true", help="download again even when present")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    paths = fetch_model(MODELS[args.model], dest_dir=args.dest, weights=args.weights, prototxt=args.prototxt,
                        convert=not args.no_convert, force=args.force, progress=not args.quiet)
    if MODELS[args.model].imagenet_mean and not args.no_imagenet:
        fetch_imagenet_files(args.imagenet_dir, force=args.force)
    print(f"{args.model}: ready in {os.path.dirname(paths['weights'])}")
    return 0


def register(subparsers) -> None:
    """Add ``caffevis fetch`` (for :mod:`caffevis.commands`)."""
    p = subparsers.add_parser("fetch", help="download, verify (published sha1 / recorded sha256) and convert "
                                            "the weights of " + ", ".join(sorted(MODELS)),
                              description=__doc__.splitlines()[0])
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv=None) -> int:
    """``tools/fetch_caffenet.py``: errors print as one line, exit code 2."""
    import sys

    parser = argparse.ArgumentParser(prog="fetch_caffenet.py", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except CaffevisError as err:
        print(f"fetch_caffenet: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fetch_caffenet: interrupted (partial downloads removed)", file=sys.stderr)
        return 130
