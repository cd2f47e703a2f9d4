"""The face crop follows the face, not the file: one recipe frames the same face on the
89×109 CelebA sample, the 178×218 originals and any uniform rescaling of them."""

import io
import json
import logging
import tarfile
import zipfile

import ml_collections
import numpy as np
import pytest
from PIL import Image

from conftest import CELEBA_TAR, CONFIGS, requires_celeba_tar
from wgan_gp import data, fid, pretrained, validation
from wgan_gp.config import (FACE_CROP_FRACTION, base_config, canonical_config, crop_setting,
                            load_config, resolve_crop, to_json)
from wgan_gp.data.images import load_images, read_images


def test_the_face_fraction_resolves_to_the_tuned_pixels_at_both_sizes():
  assert FACE_CROP_FRACTION == 54 / 89 == 108 / 178
  assert resolve_crop(0, FACE_CROP_FRACTION, 89, 109) == 54
  assert resolve_crop(0, FACE_CROP_FRACTION, 178, 218) == 108
  assert resolve_crop(0, FACE_CROP_FRACTION, 356, 436) == 216
  assert resolve_crop(40, 0.0, 178, 218) == 40  # explicit pixels stay pixels
  assert resolve_crop(0, 0.0, 178, 218) == 0  # neither: the largest square of each image
  for recipe in ("", ":cpu", ":gpu", ":cpu_round1", ":dcgan,halfsize"):
    config = load_config(str(CONFIGS / f"celeba64.py{recipe}"))
    assert crop_setting(config.data) == (0, FACE_CROP_FRACTION), recipe


def test_a_crop_set_twice_is_refused_in_one_line():
  config = load_config(str(CONFIGS / "celeba64.py:cpu"), {"data.crop_size": 54})
  with pytest.raises(ValueError, match=r"^config.data.crop_size=54 and config.data.crop_fraction="
                     r"0.60\d+ both set the crop: set --config.data.crop_fraction=0"):
    validation.check_values(config)
  config.data.crop_fraction = 0.0
  validation.check_values(config)  # pixels alone: fine
  # A config from before crop_fraction (crop_size alone) cropped those pixels.
  assert crop_setting({"crop_size": 54}) == (54, 0.0)
  merged = {**base_config().data.to_dict(),
            **pretrained.legacy_data_record({"image_size": 64, "crop_size": 54})}
  assert crop_setting(merged) == (54, 0.0)


def _faces(count, size=(89, 109), seed=0):
  """Smooth, face-sized test images (low-frequency colour fields): a bicubic 2× upscale
  and the crop-and-resize back to 64 px lose little of them."""
  rng = np.random.default_rng(seed)
  images = []
  for _ in range(count):
    coarse = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    images.append(Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC))
  return images


def _write_folder(folder, images):
  folder.mkdir()
  for i, image in enumerate(images):
    image.save(folder / f"{i + 1:06d}.jpg", quality=95)
  return folder


def _write_zip(path, images):
  with zipfile.ZipFile(path, "w") as archive:
    for i, image in enumerate(images):
      buffer = io.BytesIO()
      image.save(buffer, "JPEG", quality=95)
      archive.writestr(f"img_align_celeba/{i + 1:06d}.jpg", buffer.getvalue())
  return path


def _shifted(image: np.ndarray, offset: float) -> np.ndarray:
  """`image` (float [S, S, 3]) moved right and down by `offset` pixels (bicubic)."""
  moved = [Image.fromarray(image[..., c].astype(np.float32), "F").transform(
      image.shape[1::-1], Image.Transform.AFFINE, (1, 0, -offset, 0, 1, -offset),
      Image.Resampling.BICUBIC) for c in range(3)]
  return np.stack([np.asarray(m, np.float64) for m in moved], -1)


def _recipe_data(path, cache_dir):
  config = load_config(str(CONFIGS / "celeba64.py:cpu"), {
      "data.source": "images", "data.path": str(path), "data.cache_dir": str(cache_dir)})
  return config.data


def _cache_crops(cache_dir):
  return sorted(json.loads(p.read_text())["fields"]["crop_size"]
                for p in cache_dir.glob("*.json"))


@requires_celeba_tar
def test_the_recipe_frames_the_same_face_on_the_sample_and_the_full_size_images(tmp_path):
  """Faces of the 89×109 tar, and the same faces upscaled 2× to img_align_celeba's 178×218
  (a folder and a .zip), decode to the same 64×64 crops with the recipe's settings."""
  assert data.source_image_size(ml_collections.ConfigDict(
      {"source": "images", "path": str(CELEBA_TAR)})) == (89, 109)
  half = []
  with tarfile.open(CELEBA_TAR) as archive:
    for member in archive:
      if member.isfile() and member.name.endswith(".jpg"):
        half.append(Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB"))
        if len(half) == 8:
          break
  full = [image.resize((178, 218), Image.Resampling.BICUBIC) for image in half]
  cache = tmp_path / "cache"
  sources = {"half": _write_folder(tmp_path / "half", half),
             "full": _write_folder(tmp_path / "full", full),
             "full_zip": _write_zip(tmp_path / "img_align_celeba.zip", full)}
  decoded = {name: np.asarray(data.create_source(_recipe_data(path, cache), 0).images,
                              np.float64) for name, path in sources.items()}
  assert _cache_crops(cache) == [54, 108, 108]  # keyed by the resolved pixels
  # Crops are whole source pixels, centred with the margin floored: 89 - 54 = 35 puts the
  # sample's crop at x 17, half a sample pixel left of centre (and likewise up: 109 - 54),
  # where 178 - 108 = 70 centres the full-size crop exactly. Undoing that half pixel
  # (0.59 px of the 64x64 output), the two are the same face to a grey level or two.
  offset = 0.5 * 64 / 54
  for name in ("full", "full_zip"):
    aligned = np.stack([_shifted(image, offset) for image in decoded[name]])
    difference = np.abs(aligned - decoded["half"])[:, 4:-4, 4:-4].mean()
    assert difference < 3.0, (name, difference)  # grey levels of 255
    unaligned = np.abs(decoded[name] - decoded["half"]).mean()  # ~9: the half pixel only
    assert unaligned < 15.0, (name, unaligned)
  # The fixed pixel crop that the recipe had: a patch of the full-size face (~55 apart).
  patch = load_images(str(sources["full"]), 54, 64, cache_dir=str(cache)).images
  assert np.abs(np.asarray(patch, np.float64) - decoded["half"]).mean() > 30
  # The fid CLI frames as training does.
  for name in ("half", "full"):
    images = read_images(str(sources[name]), 0, 64, crop_fraction=FACE_CROP_FRACTION)
    np.testing.assert_array_equal(images, decoded[name].astype(np.uint8))


def test_a_fraction_and_the_pixels_it_resolves_to_share_one_cache(tmp_path):
  folder = _write_folder(tmp_path / "half", _faces(6))
  cache = tmp_path / "cache"
  by_pixels = load_images(str(folder), 54, 64, cache_dir=str(cache)).images
  by_fraction = load_images(str(folder), 0, 64, cache_dir=str(cache),
                            crop_fraction=FACE_CROP_FRACTION)
  np.testing.assert_array_equal(by_fraction.images, by_pixels)
  assert _cache_crops(cache) == [54]  # one cache: the old key of crop_size 54 still serves
  full = _write_folder(tmp_path / "full", [im.resize((178, 218), Image.Resampling.BICUBIC)
                                           for im in _faces(6)])
  load_images(str(full), 0, 64, cache_dir=str(cache), crop_fraction=FACE_CROP_FRACTION)
  assert _cache_crops(cache) == [54, 108]  # 2x the images, 2x the pixels: another cache


def test_a_crop_that_leaves_a_patch_is_named_in_a_warning(tmp_path, caplog):
  full = _write_folder(tmp_path / "full", _faces(3, (178, 218)))
  with caplog.at_level(logging.WARNING):
    load_images(str(full), 54, 32, cache_dir=str(tmp_path / "cache"))
  (warning,) = [r.getMessage() for r in caplog.records if "short side" in r.getMessage()]
  assert warning.startswith("--config.data.crop_size=54 crops 54 px of the 178x218 images, "
                            "30% of their short side")
  assert "--config.data.crop_fraction=0.6067 --config.data.crop_size=0 (108 px here)" in warning
  caplog.clear()
  with caplog.at_level(logging.WARNING):  # the face fraction: no warning
    load_images(str(full), 0, 32, cache_dir=str(tmp_path / "cache"),
                crop_fraction=FACE_CROP_FRACTION)
    read_images(str(full), 60, 32)  # a third of 178 or more: no warning
  assert not [r for r in caplog.records if "short side" in r.getMessage()]
  with caplog.at_level(logging.WARNING):  # the fid CLI names its own flags
    fid.load_images_or_stats(str(full), crop_size=54, image_size=32)
  assert any(r.getMessage().startswith("--crop_size=54 crops 54 px of the 178x218")
             for r in caplog.records)
  with pytest.raises(ValueError, match="--crop_size=54 and --crop_fraction=0.6 both set"):
    fid.load_images_or_stats(str(full), crop_size=54, crop_fraction=0.6)


class _Checkpointer:
  def __init__(self, step):
    self.step = step

  def latest_step(self):
    return self.step


def _legacy_run(tmp_path, data_overrides, recipe="celeba64.py:cpu"):
  """A workdir as a run started before crop_fraction left it: its config.json has
  crop_size in pixels and no crop_fraction field."""
  config = load_config(str(CONFIGS / recipe), data_overrides)
  saved = json.loads(to_json(config))
  del saved["data"]["crop_fraction"]
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(saved))
  return workdir, saved


def test_a_run_from_before_crop_fraction_resumes_with_no_changed_settings(tmp_path, caplog):
  folder = _write_folder(tmp_path / "faces", _faces(4))
  data_overrides = {"data.source": "images", "data.path": str(folder),
                    "data.crop_size": 54, "data.crop_fraction": 0.0}
  workdir, saved = _legacy_run(tmp_path, data_overrides)
  assert saved["data"]["crop_size"] == 54 and "crop_fraction" not in saved["data"]
  recipe = load_config(str(CONFIGS / "celeba64.py:cpu"),
                       {"data.source": "images", "data.path": str(folder)})
  with caplog.at_level(logging.WARNING):
    validation.check_workdir(recipe, str(workdir), _Checkpointer(100))
    # Finished (step >= num_train_steps): a changed setting would be refused; none is.
    validation.check_workdir(recipe, str(workdir), _Checkpointer(recipe.num_train_steps))
  assert not [r for r in caplog.records if "changed settings" in r.getMessage()]
  # A crop that frames other pixels is a change, named in pixels of these images.
  recipe.data.crop_fraction = 0.7
  assert validation.setting_changes(saved, recipe, lambda: (89, 109)) == [
      "data.crop_size: 54 -> 62"]
  with caplog.at_level(logging.WARNING):
    validation.check_workdir(recipe, str(workdir), _Checkpointer(100))
  assert any("changed settings" in r.getMessage() and "data.crop_size: 54 -> 62" in
             r.getMessage() for r in caplog.records)
  # On full-size images the old 54 px is not the recipe's framing: a change.
  recipe.data.crop_fraction = FACE_CROP_FRACTION
  assert validation.setting_changes(saved, recipe, lambda: (178, 218)) == [
      "data.crop_size: 54 -> 108"]
  # An old run that took the largest square is not silently given the face crop.
  old_square = {**saved, "data": {**saved["data"], "crop_size": 0}}
  assert validation.setting_changes(old_square, recipe, lambda: (89, 109)) == [
      "data.crop_size: 0 -> 54"]


def test_an_old_toy_run_resumes_with_no_changed_settings(tmp_path):
  config = load_config(str(CONFIGS / "toy2d.py"))
  saved = json.loads(to_json(config))
  saved["data"]["crop_size"] = 108  # the old base config's, meaningless for 2-D points
  del saved["data"]["crop_fraction"]
  assert validation.setting_changes(saved, config, lambda: None) == []
  assert canonical_config(saved, None)["data"]["crop_size"] == 0


def test_an_export_records_the_framing(tmp_path):
  record = pretrained._data_record(load_config(str(CONFIGS / "celeba64.py:cpu")).data)
  assert record == {"image_size": 64, "crop_size": 0, "crop_fraction": FACE_CROP_FRACTION}
  legacy = {"image_size": 64, "crop_size": 54}  # a shipped info.json from before
  assert pretrained.legacy_data_record(legacy) == {**legacy, "crop_fraction": 0.0}


@pytest.mark.slow
def test_the_cpu_recipe_trains_on_the_face_of_full_size_images_through_main(tmp_path):
  """The battery's case: `:cpu` on 178×218 CelebA-shaped images used to train on a 54 px
  patch with no word. Through `main`, it now crops 108 px, and warns of nothing."""
  from test_main import _run_main
  folder = _write_folder(tmp_path / "img_align_celeba", _faces(12, size=(178, 218)))
  result = _run_main("celeba64.py:cpu,smoke", tmp_path / "run", "--config.data.source=images",
                     f"--config.data.path={folder}", f"--config.data.cache_dir={tmp_path / 'cache'}")
  assert _cache_crops(tmp_path / "cache") == [108]
  assert "a patch, not a face" not in result.stderr
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert crop_setting(saved["data"]) == (0, FACE_CROP_FRACTION)
