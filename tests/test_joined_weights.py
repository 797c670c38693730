"""Weights shipped in parts are joined once, rejoined when the parts or the stamp change, never left half-joined,
and two processes joining at once end with one whole file."""

import hashlib
import json
import multiprocessing

import pytest

from clonetrain.core import joined_weights
from clonetrain.core.errors import WeightsMissingError


def make_parts(folder, n=4, size=3_000_000):
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(n):
        p = folder / f"part{i}.bin"
        p.write_bytes(bytes([i + 1]) * size)
        parts.append(p)
    return parts


def whole(parts) -> bytes:
    return b"".join(p.read_bytes() for p in parts)


def test_joined_once_and_again_when_the_parts_or_the_stamp_change(tmp_path):
    parts, out = make_parts(tmp_path / "pkg"), tmp_path / "cache" / "model"
    sha = hashlib.sha256(whole(parts)).hexdigest()
    joined = joined_weights.ensure(parts, out, "model.onnx", expected_sha256=sha)
    assert joined.read_bytes() == whole(parts)
    assert json.loads((out / "source.json").read_text())["sha256"] == sha
    first = joined.stat().st_mtime_ns
    assert joined_weights.ensure(parts, out, "model.onnx").stat().st_mtime_ns == first  # reused, not rejoined

    (out / "source.json").write_text("{not json")  # a damaged stamp: joined again, not an error
    joined_weights.ensure(parts, out, "model.onnx")
    assert joined.read_bytes() == whole(parts) and "parts" in json.loads((out / "source.json").read_text())

    parts[2].write_bytes(b"\x09" * 3_000_000)  # another version of a part installed
    joined_weights.ensure(parts, out, "model.onnx")
    assert joined.read_bytes() == whole(parts)


def test_parts_that_do_not_join_into_the_expected_file_leave_nothing(tmp_path):
    parts, out = make_parts(tmp_path / "pkg"), tmp_path / "cache" / "model"
    with pytest.raises(WeightsMissingError, match="do not join into the file they should") as err:
        joined_weights.ensure(parts, out, "model.onnx", expected_sha256="0" * 64, fix="reinstall the parts")
    assert err.value.fix == "reinstall the parts"
    assert {p.name for p in out.iterdir()} == {".lock"}  # no model, no stamp, no temp file


def _join(args):
    """ensure() in a child process, its joins logged (slowed, so that the two children overlap)."""
    import os
    import time

    parts, out, log = args
    real = joined_weights.join

    def logged(*a, **k):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        return real(*a, **k)

    joined_weights.join = logged
    return str(joined_weights.ensure(parts, out, "model.onnx"))


def test_two_processes_joining_at_once_join_once(tmp_path):
    parts, out = make_parts(tmp_path / "pkg", size=20_000_000), tmp_path / "cache" / "model"
    log = tmp_path / "joins.log"
    with multiprocessing.get_context("fork").Pool(2) as pool:
        paths = pool.map(_join, [(parts, out, log)] * 2, chunksize=1)
    assert len(set(paths)) == 1
    assert len(log.read_text().split()) == 1  # the second waited for the first's join and found it current
    assert (out / "model.onnx").read_bytes() == whole(parts)
    assert joined_weights.is_current(out, "model.onnx", parts)
    assert not list(out.glob("*.tmp"))
