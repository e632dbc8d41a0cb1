"""The one error type of the export package, and checks of file arguments."""
import os


class ExportError(ValueError):
    """A model, argument or .tflite file the export cannot handle; the message names it."""


def check_output_path(path, argument="output_path"):
    """Fail before a long conversion, not after it, when the file cannot be written."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ExportError(f"{argument}={path!r} is a directory; give a file name.")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{argument}={path!r}: directory {directory!r} does not exist.")
    if not os.access(directory, os.W_OK):
        raise PermissionError(f"{argument}={path!r}: directory {directory!r} is not writable.")
    return path


def write_bytes(path, data, argument="output_path"):
    path = check_output_path(path, argument)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:  # e.g. a read-only file in a writable directory, a full disk
        raise type(e)(f"{argument}={path!r}: cannot write the file ({e.strerror}).") from None
    return path
