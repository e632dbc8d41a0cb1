"""A long benchmark's finished steps kept on disk, so a run that is stopped part-way (or
run a piece per sitting) resumes where it stopped: each step's record (JSON) and, where a
later step needs it, its model (.keras)."""
import json
import os
import re

from keras_slim.serialization import load_model


class RunCache:
    def __init__(self, directory, settings):
        """directory None: nothing is kept. settings: what every record depends on; a
        directory filled under other settings is refused, never mixed in."""
        self.directory = directory
        if directory is None:
            return
        os.makedirs(directory, exist_ok=True)
        settings = json.loads(json.dumps(settings))  # as it reads back (tuples -> lists)
        path = os.path.join(directory, "settings.json")
        if not os.path.exists(path):
            _write_json(path, settings)
            return
        with open(path) as f:
            saved = json.load(f)
        changed = sorted(k for k in set(saved) | set(settings)
                         if saved.get(k) != settings.get(k))
        if changed:
            raise ValueError(
                f"{directory} holds a run made with other settings ("
                + "; ".join(f"{k}: {saved.get(k)!r} there, {settings.get(k)!r} now"
                            for k in changed)
                + "); give another cache directory.")

    def record(self, key):
        """The kept record of step `key`, or None if that step has not finished."""
        if self.directory is None or not os.path.exists(self._path(key, ".json")):
            return None
        with open(self._path(key, ".json")) as f:
            return json.load(f)

    def model(self, key):
        return load_model(self._path(key, ".keras"))

    def keep(self, key, record, model=None):
        """Keep step `key` done: its model first, the record last (it marks the step)."""
        if self.directory is None:
            return
        if model is not None:
            model.save(self._path(key, ".keras"))
        _write_json(self._path(key, ".json"), record)

    def _path(self, key, extension):
        return os.path.join(self.directory, re.sub(r"[^\w.=-]+", "_", key) + extension)


def _write_json(path, value):
    with open(path + ".tmp", "w") as f:  # a stop mid-write leaves no half record
        json.dump(value, f, indent=1)
    os.replace(path + ".tmp", path)
