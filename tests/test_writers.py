"""The metric writer's files, read by code that is not ours: JSON lines, and the event
files through TensorFlow's own record reader and protos (CRCs checked)."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from wgan_gp.writers import MetricWriter


def _events(logdir):
  tf = pytest.importorskip("tensorflow", reason="TensorFlow reads the event files back")
  paths = sorted(logdir.iterdir())
  assert len(paths) == 1 and paths[0].name.startswith("events.out.tfevents.")
  records = tf.data.TFRecordDataset(str(paths[0])).as_numpy_iterator()  # checks the CRCs
  return [tf.compat.v1.Event.FromString(record) for record in records]


def test_scalars_images_and_text_are_read_back_by_tensorflow(tmp_path):
  writer = MetricWriter(str(tmp_path), echo=False)
  evals = writer.sibling("eval.jsonl")
  writer.write_text(0, "config", "lr: 1e-4")
  writer.write_scalars(10, {"critic_loss": -1.25, "steps": np.int32(3)})
  evals.write_scalars(20, {"fid": np.float32(61.5), "bad": float("nan")}, prefix="eval/")
  image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
  writer.write_image(20, "samples/ema", image)
  evals.close()
  writer.close()

  events = _events(tmp_path / "tensorboard")
  assert events[0].file_version == "brain.Event:2"
  values = [(e.step, v) for e in events[1:] for v in e.summary.value]
  scalars = {(step, v.tag): v.simple_value for step, v in values
             if v.WhichOneof("value") == "simple_value"}
  assert scalars[(10, "critic_loss")] == -1.25 and scalars[(10, "steps")] == 3.0
  assert scalars[(20, "eval/fid")] == 61.5 and np.isnan(scalars[(20, "eval/bad")])
  (png,) = [v.image for step, v in values if v.tag == "samples/ema" and step == 20]
  assert (png.height, png.width, png.colorspace) == (4, 6, 3)
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png.encoded_image_string))),
                                image)
  (text,) = [v for _, v in values if v.tag == "config"]
  assert text.metadata.plugin_data.plugin_name == "text"
  assert text.tensor.string_val == [b"lr: 1e-4"]

  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert lines == [{"step": 10, "critic_loss": -1.25, "steps": 3.0}]
  (record,) = [json.loads(l) for l in (tmp_path / "eval.jsonl").read_text().splitlines()]
  assert record == {"step": 20, "eval/fid": 61.5, "eval/bad": "nan"}


def test_a_writer_that_wrote_nothing_leaves_no_files(tmp_path):
  MetricWriter(str(tmp_path / "run")).close()
  assert list((tmp_path / "run").iterdir()) == []
