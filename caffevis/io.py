"""Small file readers with one-line errors."""
import os

import numpy as np

from .errors import InputError


def load_npy(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as err:
        raise InputError(f"{path}: not a readable .npy array ({err})") from None
