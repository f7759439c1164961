"""Error types. Each message is one line that names the file or field at fault."""


class CaffevisError(Exception):
    """Base class: the CLI prints ``str(err)`` on one line and exits non-zero."""


class ModelError(CaffevisError):
    """A prototxt, caffemodel or ONNX file that cannot be read or converted."""


class SettingsError(CaffevisError):
    """A settings file with an unknown key, a wrong type or a missing file."""


class InputError(CaffevisError):
    """Input data (an image, an array, a data set) of the wrong kind or shape."""
