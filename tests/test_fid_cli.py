"""`python -m wgan_gp.fid`: folders and archives give the library's numbers on the same
arrays; statistics files round-trip and pytorch-fid's are read; the command line."""

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, subprocess_env
from test_inception import WEIGHTS
from wgan_gp import exit_codes
from wgan_gp import fid as fid_cli
from wgan_gp.data.images import DataError
from wgan_gp.metrics import fid, inception
from wgan_gp.metrics.precision_recall import precision_recall


def _images(seed, count=6, size=64, brightness=0.0):
  """Smooth random RGB images: 8×8 noise upsampled, so Inception sees structure."""
  rng = np.random.default_rng(seed)
  low = rng.uniform(0, 255, (count, 8, 8, 3)) + brightness
  return np.stack([np.asarray(Image.fromarray(np.clip(im, 0, 255).astype(np.uint8)).resize(
      (size, size), Image.Resampling.BILINEAR)) for im in low])


def _write_folder(folder, images):
  folder.mkdir()
  for i, image in enumerate(images):
    Image.fromarray(image).save(folder / f"{i:03d}.png")
  return folder


def _write_zip(path, images):
  with zipfile.ZipFile(path, "w") as archive:
    for i, image in enumerate(images):
      buffer = io.BytesIO()
      Image.fromarray(image).save(buffer, format="PNG")
      archive.writestr(f"faces/{i:03d}.png", buffer.getvalue())
  return path


class _Memoized:
  """The real extractor, computing each distinct array once: the command and the library
  calls below then cost one pass, and the inputs it saw can be checked."""

  def __init__(self, extractor):
    self.extractor, self.seen, self._cache = extractor, [], {}
    self.has_logits, self.logits = extractor.has_logits, extractor.logits

  def __call__(self, images, **kwargs):
    self.seen.append(np.array(images))
    key = (images.shape, images.tobytes())
    if key not in self._cache:
      self._cache[key] = self.extractor(images, value_range=kwargs.get("value_range"))
    return self._cache[key]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("fid_cli")
  a, b = _images(0), _images(1, brightness=60.0)
  return {"a": a, "b": b, "folder_a": _write_folder(tmp / "a", a),
          "zip_b": _write_zip(tmp / "b.zip", b)}


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
  if WEIGHTS is None:
    pytest.skip(f"FID weights not installed: {inception.PIP_INSTALL_WEIGHTS}")
  return _Memoized(inception.InceptionFeatureExtractor(
      cache_dir=tmp_path_factory.mktemp("weights"), batch_size=8))


@pytest.mark.slow
def test_folder_and_zip_give_the_library_numbers_on_the_same_arrays(sets, extractor):
  first = len(extractor.seen)
  results = fid_cli.compare([str(sets["folder_a"]), str(sets["zip_b"])], extractor=extractor)
  # 64×64 PNGs go in unchanged: the arrays the network saw are the ones written.
  np.testing.assert_array_equal(extractor.seen[first], sets["a"])
  np.testing.assert_array_equal(extractor.seen[first + 1], sets["b"])
  fa, fb = extractor(sets["a"]), extractor(sets["b"])
  assert results["num_a"] == results["num_b"] == 6
  assert results["fid"] == pytest.approx(fid.frechet_distance(
      *fid.feature_statistics(fa), *fid.feature_statistics(fb)), rel=1e-12)
  assert results["fid"] == pytest.approx(fid.fid_from_features(fa, fb), rel=1e-6)
  assert results["fid"] > 0
  kid, kid_std = fid.kernel_inception_distance(fa, fb)
  assert (results["kid"], results["kid_std"]) == pytest.approx((kid, kid_std), rel=1e-12)
  expected = precision_recall(fa, fb)
  assert (results["precision"], results["recall"]) == (expected["precision"],
                                                       expected["recall"])
  if not extractor.has_logits:  # fid-helper's weights: IS is left out, and says why
    assert "logits" in results["skipped"]["is"]


@pytest.mark.slow
def test_save_stats_round_trips_and_pytorch_fid_reads_it(sets, extractor, tmp_path):
  out_a, out_b = tmp_path / "a.npz", tmp_path / "b.npz"
  fid_cli.compare([str(sets["folder_a"])], save_stats=str(out_a), extractor=extractor)
  fid_cli.compare([str(sets["zip_b"])], save_stats=str(out_b), extractor=extractor)
  fa = extractor(sets["a"])
  with np.load(out_a) as f:  # as pytorch-fid's and TTUR's loaders read it
    mu, sigma = f["mu"][:], f["sigma"][:]
  expected_mu, expected_sigma = fid.feature_statistics(fa)
  np.testing.assert_array_equal(mu, expected_mu)
  np.testing.assert_array_equal(sigma, expected_sigma)
  np.testing.assert_array_equal(fid.load_stats(out_a).features, fa)
  # Two statistics files give the numbers of the two image sets, without the network.
  from_files = fid_cli.compare([str(out_a), str(out_b)], metrics="fid,kid,pr")
  from_images = fid_cli.compare([str(sets["folder_a"]), str(sets["zip_b"])],
                                metrics="fid,kid,pr", extractor=extractor)
  assert from_files == from_images


def _pytorch_fid_stats(path, features):
  # pytorch-fid's `save_fid_stats`: np.savez_compressed(path, mu=mu, sigma=sigma).
  mu, sigma = np.mean(features, axis=0), np.cov(features, rowvar=False)
  np.savez_compressed(path, mu=mu, sigma=sigma)
  return mu, sigma


def test_reads_pytorch_fid_statistics_and_says_what_they_cannot_give(tmp_path):
  rng = np.random.default_rng(3)
  features_a, features_b = rng.normal(size=(50, 64)), rng.normal(0.1, 1.0, (40, 64))
  mu_a, sigma_a = _pytorch_fid_stats(tmp_path / "theirs.npz", features_a)
  fid.save_stats(tmp_path / "ours.npz", fid.ReferenceStats.from_features(features_b))
  results = fid_cli.compare([str(tmp_path / "theirs.npz"), str(tmp_path / "ours.npz")],
                            metrics=None)
  assert results["fid"] == pytest.approx(fid.frechet_distance(
      mu_a, sigma_a, *fid.feature_statistics(features_b)), rel=1e-12)
  assert results["num_a"] is None and results["num_b"] == 40
  assert set(results["skipped"]) == {"kid", "pr", "is"}  # and no network was loaded for IS
  assert "mu and sigma" in results["skipped"]["kid"]
  with pytest.raises(ValueError, match="mu and sigma"):
    fid_cli.compare([str(tmp_path / "theirs.npz"), str(tmp_path / "ours.npz")], metrics="kid")


def test_npz_of_images_as_sample_exports_them(tmp_path):
  images = _images(4, count=3)
  np.savez(tmp_path / "samples.npz", samples=images)  # wgan_gp.sample --format=npz
  loaded, stats = fid_cli.load_images_or_stats(str(tmp_path / "samples.npz"))
  assert stats is None
  np.testing.assert_array_equal(loaded, images)
  np.savez(tmp_path / "small.npz", arr_0=_images(4, count=3, size=32))
  assert fid_cli.load_images_or_stats(str(tmp_path / "small.npz"))[0].shape == (3, 64, 64, 3)
  np.savez(tmp_path / "other.npz", x=np.zeros(3))
  with pytest.raises(DataError, match="neither statistics"):
    fid_cli.load_images_or_stats(str(tmp_path / "other.npz"))


def test_images_at_the_target_size_skip_the_crop(tmp_path):
  from wgan_gp.data.images import crop_and_resize, read_images
  small, large = _images(6, count=2), _images(7, count=1, size=120)
  folder = _write_folder(tmp_path / "mixed", small)
  Image.fromarray(large[0]).save(folder / "z_large.png")
  images = read_images(str(folder), crop_size=90, image_size=64)
  assert images.shape == (3, 64, 64, 3)
  np.testing.assert_array_equal(images[:2], small)  # 64×64: used as they are
  # 120×120: centre-cropped to 90, then resized, as the training data.
  np.testing.assert_array_equal(images[2], crop_and_resize(Image.fromarray(large[0]), 90, 64))


def test_command_line_prints_fid_and_fails_cleanly(tmp_path):
  rng = np.random.default_rng(5)
  a, b = rng.normal(size=(30, 64)), rng.normal(0.2, 1.0, size=(30, 64))
  _pytorch_fid_stats(tmp_path / "a.npz", a)
  _pytorch_fid_stats(tmp_path / "b.npz", b)

  def run(*args):
    return subprocess.run([sys.executable, "-m", "wgan_gp.fid", *map(str, args)],
                          env=subprocess_env(), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=900)

  result = run(tmp_path / "a.npz", tmp_path / "b.npz", "--json")
  assert result.returncode == 0, result.stderr[-2000:]
  printed = json.loads(result.stdout)
  assert printed["fid"] == pytest.approx(fid.frechet_distance(
      *fid.feature_statistics(a), *fid.feature_statistics(b)), rel=1e-12)
  missing = run(tmp_path / "a.npz", tmp_path / "nowhere")
  assert missing.returncode == exit_codes.BAD_INPUT and "error: " in missing.stderr and "nowhere" in missing.stderr


def test_results_print_as_aligned_lines():
  text = fid_cli.format_results({"num_a": 6, "fid": 12.3456789, "kid": 0.0123, "kid_std": 0.004,
                                 "skipped": {"is": "the weights have no logits layer"}})
  assert text.splitlines() == ["num_a      6", "fid        12.3457", "kid        0.0123 ± 0.004",
                               "is         skipped: the weights have no logits layer"]
