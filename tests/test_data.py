import hashlib
import io
import json
import logging
import os
import tarfile
import zipfile

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import CELEBA_TAR, requires_celeba_tar
from wgan_gp import data, parallel
from wgan_gp.data.images import DataError, list_images, load_images, source_fields
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
  images = load_images(str(path), crop_size=20, image_size=8, cache_dir=str(tmp_path / "c"),
                       workers=2).images
  assert images.shape == (3, 8, 8, 3) and images.dtype == np.uint8
  for image, color in zip(images, COLORS):  # the 20 px centre crop holds only the colour
    np.testing.assert_allclose(image.reshape(-1, 3).mean(0), color, atol=1)


def test_unreadable_files_are_skipped_and_logged(tmp_path, caplog):
  folder = _write_folder(tmp_path / "imgs")
  (folder / "broken.jpg").write_bytes(b"not a jpeg")
  with caplog.at_level(logging.WARNING):
    images = load_images(str(folder), crop_size=0, image_size=8, cache_dir=str(tmp_path / "c")).images
  assert len(images) == 3
  assert "Skipped 1 of 4 files" in caplog.text and "broken.jpg" in caplog.text


def _zip_of(path, members):
  with zipfile.ZipFile(path, "w") as archive:
    for name, payload in members.items():
      archive.writestr(name, payload)
  return path


@pytest.mark.parametrize("make,message", [
    (lambda p: p, "not found"),
    (lambda p: (p.mkdir(), p)[1], "no .jpg/.jpeg/.png images"),
    (lambda p: (p.mkdir(), (p / "a.jpg").write_bytes(b"junk"), p)[2], "could be decoded"),
    (lambda p: (p.write_text("hello"), p)[1], "neither a folder"),
    (lambda p: _zip_of(p, {"img/a.jpg": b"junk", "img/b.png": b"also junk"}), "could be decoded"),
    (lambda p: _zip_of(p, {"notes.txt": b"no images here"}), "no .jpg/.jpeg/.png images"),
])
def test_bad_image_sources_fail_clearly(tmp_path, make, message):
  path = make(tmp_path / "data")
  with pytest.raises(DataError, match=message):
    load_images(str(path), crop_size=0, image_size=8, cache_dir=str(tmp_path / "c")).images


def test_crop_larger_than_images_fails_clearly(tmp_path):
  folder = _write_folder(tmp_path / "imgs")
  with pytest.raises(DataError, match="exceeds the image size 40x30"):
    load_images(str(folder), crop_size=108, image_size=8, cache_dir=str(tmp_path / "c")).images


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
  sharded = parallel.shard_batch(batch)
  devices = jax.local_device_count()
  assert sharded.shape == (devices, 2, 4 // devices, 3)
  np.testing.assert_array_equal(np.asarray(sharded).swapaxes(0, 1).reshape(2, 4, 3), batch)


def test_prefetch_surfaces_producer_errors():
  def failing():
    yield np.zeros((1, 2, 2), np.float32)
    raise RuntimeError("reader broke")
  iterator = parallel.prefetch_to_devices(failing(), size=2)
  next(iterator)
  with pytest.raises(RuntimeError, match="reader broke"):
    next(iterator)


@requires_celeba_tar
def test_shared_celeba_tar_through_the_reader(tmp_path):
  names = list_images(str(CELEBA_TAR))
  assert len(names) == 10_000 and names[0] == "img_align_celeba/000001.jpg"
  images = load_images(str(CELEBA_TAR), crop_size=54, image_size=32, cache_dir=str(tmp_path)).images
  assert images.shape == (10_000, 32, 32, 3)
  assert 60 < images.mean() < 200 and images.std() > 30  # real photographs, not blanks


def test_cache_is_reused_and_keyed_by_settings(tmp_path, monkeypatch):
  folder = _write_folder(tmp_path / "imgs")
  cache = tmp_path / "cache"
  first = load_images(str(folder), crop_size=20, image_size=8, cache_dir=str(cache)).images
  assert isinstance(first.base, np.memmap) or isinstance(first, np.memmap)
  assert len(list(cache.glob("*.npy"))) == 1 and len(list(cache.glob("*.json"))) == 1

  # A hit decodes nothing.
  monkeypatch.setattr("wgan_gp.data.images.decode_image",
                      lambda *a: pytest.fail("decoded again despite a valid cache"))
  again = load_images(str(folder), crop_size=20, image_size=8, cache_dir=str(cache)).images
  np.testing.assert_array_equal(again, first)
  monkeypatch.undo()

  # Another crop or size is another cache, never the old one misused.
  other = load_images(str(folder), crop_size=30, image_size=8, cache_dir=str(cache)).images
  assert len(list(cache.glob("*.npy"))) == 2
  assert not np.array_equal(other, first)

  # A changed file changes the key of a folder source.
  (folder / "000000.png").write_bytes(_image_bytes((0, 0, 0)))
  changed = load_images(str(folder), crop_size=20, image_size=8, cache_dir=str(cache)).images
  assert len(list(cache.glob("*.npy"))) == 3
  np.testing.assert_allclose(changed[0].reshape(-1, 3).mean(0), (0, 0, 0), atol=1)


def test_archive_cache_follows_its_bytes_not_its_path_or_mtime(tmp_path, monkeypatch):
  archive = _write_tar(tmp_path / "a.tar")
  cache = str(tmp_path / "cache")
  first = load_images(str(archive), crop_size=20, image_size=8, cache_dir=cache)

  # A copy elsewhere with another modification time (a remount, say) is a hit.
  copy = tmp_path / "elsewhere" / "b.tar"
  copy.parent.mkdir()
  copy.write_bytes(archive.read_bytes())
  os.utime(copy, ns=(1, 1))
  monkeypatch.setattr("wgan_gp.data.images.decode_image",
                      lambda *a: pytest.fail("decoded again despite the same bytes"))
  again = load_images(str(copy), crop_size=20, image_size=8, cache_dir=cache)
  monkeypatch.undo()
  assert again.identity == first.identity
  np.testing.assert_array_equal(again.images, first.images)

  # Other bytes under the same name, size and modification time are another cache.
  stat = copy.stat()
  data = bytearray(copy.read_bytes())
  payload_start = 512  # the first member's data follows its 512-byte tar header
  data[payload_start + 100] ^= 0xFF
  copy.write_bytes(bytes(data))
  os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  assert copy.stat().st_size == stat.st_size
  assert source_fields(str(copy)) != source_fields(str(archive))


def test_a_folder_cache_from_before_the_16_bit_fix_is_not_reused(tmp_path, monkeypatch):
  """The decoder's version keys a folder's cache; an archive's identity, which keys the FID
  statistics already computed for it, is the same as before the version was added."""
  from wgan_gp.data import images as images_lib
  folder, cache = tmp_path / "imgs", str(tmp_path / "cache")
  folder.mkdir()
  Image.fromarray(np.full((20, 20), 0x8080, np.uint16)).save(folder / "grey16.png")
  with monkeypatch.context() as old:  # the decoder before the fix: Pillow clips to white
    old.setattr(images_lib, "DECODER_VERSION", 1)
    old.setattr(images_lib, "to_rgb", lambda image: image.convert("RGB"))
    stale = load_images(str(folder), crop_size=0, image_size=8, cache_dir=cache)
    assert stale.images.min() == 255
  fixed = load_images(str(folder), crop_size=0, image_size=8, cache_dir=cache)
  assert fixed.identity != stale.identity
  np.testing.assert_allclose(fixed.images, 128, atol=1)

  archive = _write_tar(tmp_path / "a.tar")  # its key as the archive-hash commit made it
  before = {"version": 1, "kind": "archive", "crop_size": 20, "image_size": 8,
            "resample": "pillow-bicubic",
            "sha256": hashlib.sha256(archive.read_bytes()).hexdigest()}
  expected = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:24]
  assert load_images(str(archive), crop_size=20, image_size=8,
                     cache_dir=cache).identity == expected


def test_interrupted_first_pass_leaves_no_cache(tmp_path, monkeypatch):
  folder = _write_folder(tmp_path / "imgs")
  cache = tmp_path / "cache"
  calls = []

  def decode_then_die(*args):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return np.zeros((8, 8, 3), np.uint8)

  monkeypatch.setattr("wgan_gp.data.images.decode_image", decode_then_die)
  with pytest.raises(KeyboardInterrupt):
    load_images(str(folder), crop_size=20, image_size=8, cache_dir=str(cache), workers=1).images
  monkeypatch.undo()
  assert list(cache.iterdir()) == []
  images = load_images(str(folder), crop_size=20, image_size=8, cache_dir=str(cache)).images
  assert len(images) == 3 and images.mean() > 50


def test_resuming_from_a_position_continues_the_same_sequence():
  examples = np.arange(23)[:, None]
  straight = host_batches(examples, seed=5, position=0, n_critic=2, global_batch=3)
  sequence = [next(straight) for _ in range(9)]  # crosses two epoch boundaries
  resumed = host_batches(examples, seed=5, position=4 * 2 * 3, n_critic=2, global_batch=3)
  for expected in sequence[4:]:
    np.testing.assert_array_equal(next(resumed), expected)
