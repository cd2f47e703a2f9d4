"""CelebA through TensorFlow Datasets (`celeb_a`), decoded once into the image cache.

TensorFlow and TFDS are imported here only. TFDS's own download of CelebA goes through
Google Drive, which often fails on quota and never works offline, so this reader never
downloads: it uses a prepared `celeb_a` in the TFDS data dir, or prepares one from the
five CelebA files placed in TFDS's manual dir (`MANUAL_FILES`).
"""

import logging
import os

from PIL import Image

from wgan_gp.config import crop_setting
from wgan_gp.data.cache import CachedImages, load_or_build
from wgan_gp.data.images import (RESAMPLE_NAME, DataError, crop_and_resize, dataset_crop,
                                 decode_into)

MANUAL_FILES = ("img_align_celeba.zip", "list_eval_partition.txt", "list_attr_celeba.txt",
                "list_landmarks_align_celeba.txt", "identity_CelebA.txt")


def _import_tfds():
  try:
    import tensorflow as tf
    import tensorflow_datasets as tfds
  except ImportError as error:
    raise DataError(f"data.source='tfds' needs TensorFlow Datasets ({error}): "
                    "pip install -e '.[tfds]', or train from the CelebA zip with "
                    "--config.data.source=images --config.data.path=.../img_align_celeba.zip") \
        from None
  # TensorFlow must not take the accelerators JAX trains on.
  tf.config.set_visible_devices([], "GPU")
  return tfds


def _prepared_builder(data_config):
  tfds = _import_tfds()
  builder = tfds.builder("celeb_a", data_dir=data_config.tfds_data_dir or None)
  if builder.is_prepared():
    return builder
  manual_dir = data_config.tfds_manual_dir or os.path.join(builder.data_dir_root, "downloads",
                                                           "manual")
  missing = [f for f in MANUAL_FILES if not os.path.exists(os.path.join(manual_dir, f))]
  if missing:
    raise DataError(
        f"TFDS celeb_a is not prepared in {builder.data_dir_root} and its manual dir "
        f"{manual_dir} lacks {', '.join(missing)}: TFDS's Google Drive download fails on quota "
        f"and never works offline, so place {', '.join(MANUAL_FILES)} in that folder (or set "
        "--config.data.tfds_manual_dir), or train from the zip alone with "
        "--config.data.source=images --config.data.path=/path/to/img_align_celeba.zip")
  logging.info("Preparing TFDS celeb_a from the files in %s", manual_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def _image_size(builder, dataset_of_split) -> tuple[int, int]:
  """(width, height) of the split's images: the feature's shape (178×218 for celeb_a),
  else the first image's."""
  height, width = builder.info.features["image"].shape[:2]
  if height is None or width is None:
    import tensorflow_datasets as tfds
    dataset = dataset_of_split()
    first = next(iter(tfds.as_numpy(dataset.take(1))))["image"]
    height, width = first.shape[:2]
  return int(width), int(height)


def celeba_tfds_image_size(data_config) -> tuple[int, int]:
  """(width, height) of the celeb_a images that the crop resolves against."""
  builder = _prepared_builder(data_config)
  return _image_size(builder, lambda: builder.as_dataset(split=data_config.tfds_split,
                                                         shuffle_files=False))


def load_celeba_tfds(data_config) -> CachedImages:
  """The split's images, cropped and resized like the image-folder path, uint8 [N, S, S, 3]."""
  builder = _prepared_builder(data_config)
  split = data_config.tfds_split
  try:
    dataset = builder.as_dataset(split=split, shuffle_files=False)
  except (KeyError, ValueError) as error:
    raise DataError(f"data.tfds_split={split!r} cannot be read from celeb_a ({error}): use "
                    "'train', 'validation', 'test' or a TFDS slice such as 'train[:10%]'") \
        from None
  num_images = int(dataset.cardinality())
  crop_size = dataset_crop(*crop_setting(data_config), *_image_size(builder, lambda: dataset))
  fields = {"kind": "tfds", "dataset": "celeb_a", "version": str(builder.info.version),
            "data_dir": os.path.abspath(builder.data_dir), "split": split,
            "num_images": num_images, "crop_size": crop_size,
            "image_size": data_config.image_size, "resample": RESAMPLE_NAME}

  def fill(out, progress):
    import tensorflow_datasets as tfds
    images = tfds.as_numpy(dataset.map(lambda example: example["image"]))
    convert = lambda pixels: crop_and_resize(Image.fromarray(pixels), crop_size,
                                             data_config.image_size)
    return decode_into(out, ((str(i), pixels) for i, pixels in enumerate(images)), convert,
                       data_config.decode_workers, progress)

  return load_or_build(data_config.cache_dir, fields, num_images, data_config.image_size, fill)
