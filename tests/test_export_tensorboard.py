"""`mergemix tensorboard`: metrics logs and search traces become TensorBoard scalars (read back)."""

import json
import struct

import pytest

from mergemix_jax.cli.main import main
from mergemix_jax.export.tensorboard import write_tensorboard

event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")  # the `tensorboard` extra


def read_scalars(folder) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in the folder's event file (TFRecord framing: length, crc, data, crc)."""
    (path,) = folder.glob("events.out.tfevents.*")
    data, out, at = path.read_bytes(), [], 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
        at += 12 + length + 4
        out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


def fake_run(tmp_path):
    run = tmp_path / "run"
    for name, losses in (("base", [5.0, 4.0, 3.5]), ("experts/code", [3.0, 2.5])):
        folder = run / name
        folder.mkdir(parents=True)
        lines = [json.dumps({"step": i + 1, "loss": v, "learning_rate": 3e-3, "time": 1000.0 + i}) for i, v in enumerate(losses)]
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n{\"step\": 9, \"loss\"")  # a torn last line is skipped
    (run / "search").mkdir()
    (run / "search" / "cmaes.json").write_text(json.dumps({"search": {"trace": [3.0, 2.0, 2.0, 1.5]}}))
    return run


def test_metrics_and_traces_are_written_and_a_rewrite_replaces_them(tmp_path):
    run = fake_run(tmp_path)
    written = write_tensorboard(run)
    assert written == {"train/base": 6, "train/experts/code": 4, "search/cmaes": 4}
    write_tensorboard(run)  # rerun: the old event files are replaced, not duplicated
    base = run / "tensorboard" / "train" / "base"
    assert len(list(base.glob("events.out.tfevents.*"))) == 1
    scalars = read_scalars(base)
    assert [(step, value) for tag, step, value in scalars if tag == "train/loss"] == [(1, 5.0), (2, 4.0), (3, 3.5)]
    assert [v for _, _, v in read_scalars(run / "tensorboard" / "search" / "cmaes")] == [3.0, 2.0, 2.0, 1.5]


def test_cli_explains_an_empty_folder(tmp_path, capsys):
    assert main(["tensorboard", str(tmp_path)]) == 2
    assert "mergemix tensorboard: no metrics.jsonl" in capsys.readouterr().err
