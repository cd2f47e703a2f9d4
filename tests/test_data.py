import io
import logging
import tarfile
import zipfile

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import CELEBA_TAR, requires_celeba_tar
from wgan_gp import data
from wgan_gp.data.images import DataError, decode_all, list_images
from wgan_gp.data.pipeline import ExampleStream, host_batches
from wgan_gp.metrics.toy import mode_coverage


@pytest.mark.parametrize("name,num_modes", [("25gaussians", 25), ("8gaussians", 8)])
def test_toy_mixtures_match_their_modes(name, num_modes):
  source = data.ToySource(name)
  samples = np.asarray(jax.jit(source.sample_batch, static_argnums=1)(jax.random.PRNGKey(0), 4000))
  result = mode_coverage(samples, source.modes, source.mode_std)
  assert result["modes_captured"] == num_modes
  # Within 3σ of a 2-D Gaussian's centre: 1 - exp(-9/2) = 98.9% of the mass.
  assert 97.5 < result["high_quality_pct"] < 99.9
  # The paper's scaling puts the data at roughly unit standard deviation.
  assert 0.7 < samples.std() < 1.3


def test_swissroll_range():
  source = data.ToySource("swissroll")
  samples = np.asarray(source.sample_batch(jax.random.PRNGKey(0), 2000))
  assert samples.shape == (2000, 2) and source.modes is None
  radius = np.linalg.norm(samples, axis=1)
  assert radius.min() < 0.8 and 1.6 < radius.max() < 2.1  # t from 1.5π to 4.5π, /7.5


def _image_bytes(color, size=(40, 30), fmt="PNG"):
  buffer = io.BytesIO()
  pixels = np.zeros((size[1], size[0], 3), np.uint8)
  pixels[...] = color
  pixels[:, : size[0] // 4] = 255 - np.array(color)  # a left border the centre crop removes
  Image.fromarray(pixels).save(buffer, format=fmt)
  return buffer.getvalue()


COLORS = [(200, 10, 10), (10, 200, 10), (10, 10, 200)]


def _write_folder(path):
  path.mkdir()
  for i, color in enumerate(COLORS):
    (path / f"{i:06d}.png").write_bytes(_image_bytes(color))
  return path


def _write_zip(path):
  with zipfile.ZipFile(path, "w") as archive:
    for i, color in enumerate(COLORS):
      archive.writestr(f"img_align_celeba/{i:06d}.png", _image_bytes(color))
  return path


def _write_tar(path):
  with tarfile.open(path, "w") as archive:
    for i, color in enumerate(COLORS):
      payload = _image_bytes(color)
      info = tarfile.TarInfo(f"img_align_celeba/{i:06d}.png")
      info.size = len(payload)
      archive.addfile(info, io.BytesIO(payload))
  return path


@pytest.mark.parametrize("writer,name", [(_write_folder, "folder"), (_write_zip, "a.zip"),
                                         (_write_tar, "a.tar")])
def test_folder_zip_and_tar_decode_to_cropped_resized_uint8(tmp_path, writer, name):
  path = writer(tmp_path / name)
  images = decode_all(str(path), crop_size=20, image_size=8, workers=2)
  assert images.shape == (3, 8, 8, 3) and images.dtype == np.uint8
  for image, color in zip(images, COLORS):  # the 20 px centre crop holds only the colour
    np.testing.assert_allclose(image.reshape(-1, 3).mean(0), color, atol=1)


def test_unreadable_files_are_skipped_and_logged(tmp_path, caplog):
  folder = _write_folder(tmp_path / "imgs")
  (folder / "broken.jpg").write_bytes(b"not a jpeg")
  with caplog.at_level(logging.WARNING):
    images = decode_all(str(folder), crop_size=0, image_size=8)
  assert len(images) == 3
  assert "Skipped 1 of 4 files" in caplog.text and "broken.jpg" in caplog.text


@pytest.mark.parametrize("make,message", [
    (lambda p: p, "not found"),
    (lambda p: (p.mkdir(), p)[1], "no .jpg/.jpeg/.png images"),
    (lambda p: (p.mkdir(), (p / "a.jpg").write_bytes(b"junk"), p)[2], "could be decoded"),
    (lambda p: (p.write_text("hello"), p)[1], "neither a folder"),
])
def test_bad_image_sources_fail_clearly(tmp_path, make, message):
  path = make(tmp_path / "data")
  with pytest.raises(DataError, match=message):
    decode_all(str(path), crop_size=0, image_size=8)


def test_crop_larger_than_images_fails_clearly(tmp_path):
  folder = _write_folder(tmp_path / "imgs")
  with pytest.raises(DataError, match="exceeds the image size 40x30"):
    decode_all(str(folder), crop_size=108, image_size=8)


def test_stream_is_a_permutation_per_epoch_across_batch_boundaries():
  stream = ExampleStream(num_examples=10, seed=3)
  first_two_epochs = np.concatenate([stream.indices(p, 3) for p in range(0, 21, 3)])[:20]
  assert sorted(first_two_epochs[:10]) == list(range(10))
  assert sorted(first_two_epochs[10:]) == list(range(10))
  assert not np.array_equal(first_two_epochs[:10], first_two_epochs[10:])
  np.testing.assert_array_equal(stream.indices(7, 6), first_two_epochs[7:13])


def test_process_shards_are_disjoint_and_make_the_global_batch():
  examples = np.arange(50)[:, None]
  whole = next(host_batches(examples, 0, 13, n_critic=2, global_batch=6))
  parts = [next(host_batches(examples, 0, 13, 2, 6, process_index=p, process_count=3))
           for p in range(3)]
  np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
  with pytest.raises(ValueError, match="not divisible by the 4 processes"):
    next(host_batches(examples, 0, 0, 2, 6, process_index=0, process_count=4))


def test_shard_batch_layout():
  batch = np.arange(2 * 4 * 3).reshape(2, 4, 3).astype(np.float32)
  sharded = data.shard_batch(batch)
  devices = jax.local_device_count()
  assert sharded.shape == (devices, 2, 4 // devices, 3)
  np.testing.assert_array_equal(np.asarray(sharded).swapaxes(0, 1).reshape(2, 4, 3), batch)


def test_prefetch_surfaces_producer_errors():
  def failing():
    yield np.zeros((1, 2, 2), np.float32)
    raise RuntimeError("reader broke")
  iterator = data.prefetch_to_devices(failing(), size=2)
  next(iterator)
  with pytest.raises(RuntimeError, match="reader broke"):
    next(iterator)


@requires_celeba_tar
def test_shared_celeba_tar_through_the_reader():
  names = list_images(str(CELEBA_TAR))
  assert len(names) == 10_000 and names[0] == "img_align_celeba/000001.jpg"
  images = decode_all(str(CELEBA_TAR), crop_size=54, image_size=32)
  assert images.shape == (10_000, 32, 32, 3)
  assert 60 < images.mean() < 200 and images.std() > 30  # real photographs, not blanks
