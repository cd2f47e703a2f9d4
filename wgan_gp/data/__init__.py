"""Data sources, chosen by `config.data.source`.

A source is either sampled on the device inside the step (`on_device`, the 2-D toy
distributions: `sample(key)` draws one example) or read on the host (`batches(...)`
yields each step's uint8 input for this process). Every source has `data_shape`, the
shape of one example.

Image datasets are a registry, `IMAGE_LOADERS` (name -> loader of the decoded images):
a new dataset is one loader module in this package and one entry here.
"""

import logging

import numpy as np

from wgan_gp.config import crop_setting
from wgan_gp.data.cache import CachedImages
from wgan_gp.data.holdout import comparison_indices, split_holdout
from wgan_gp.data.images import DataError, first_image_size, list_images, load_images
from wgan_gp.data.pipeline import host_batches
from wgan_gp.data.toy import DISTRIBUTIONS as TOY_SOURCES, ToySource

__all__ = ["DataError", "IMAGE_LOADERS", "IMAGE_SIZES", "ImageSource", "SOURCES", "TOY_SOURCES",
           "ToySource", "check_source", "create_source", "data_shape", "source_image_size"]


def _load_folder(data_config) -> CachedImages:
  """A folder, .zip or .tar of JPEG/PNG files at `data.path`."""
  crop_size, crop_fraction = crop_setting(data_config)
  return load_images(data_config.path, crop_size, data_config.image_size,
                     data_config.cache_dir, data_config.decode_workers, crop_fraction)


def _load_tfds(data_config) -> CachedImages:
  """CelebA through TensorFlow Datasets."""
  from wgan_gp.data.celeba_tfds import load_celeba_tfds  # TensorFlow on this path only
  return load_celeba_tfds(data_config)


def _folder_image_size(data_config) -> tuple[int, int]:
  path = data_config.path
  return first_image_size(path, list_images(path))


def _tfds_image_size(data_config) -> tuple[int, int]:
  from wgan_gp.data.celeba_tfds import celeba_tfds_image_size
  return celeba_tfds_image_size(data_config)


# data.source -> the loader of its decoded uint8 images (a CachedImages).
IMAGE_LOADERS = {"images": _load_folder, "tfds": _load_tfds}
# data.source -> (width, height) of its source images, against which a crop_fraction
# resolves to pixels (the first image's; reads a header, not the dataset).
IMAGE_SIZES = {"images": _folder_image_size, "tfds": _tfds_image_size}
SOURCES = (*TOY_SOURCES, *IMAGE_LOADERS)


def check_source(name: str) -> None:
  if name not in SOURCES:
    raise DataError(f"unknown config.data.source {name!r}: expected one of "
                    f"{', '.join(SOURCES)}")


class ImageSource:
  """Decoded uint8 images [N, S, S, 3], served in seeded epoch permutations.

  `identity` names the exact content (the decoded cache's key), e.g. to cache FID
  statistics of the dataset. With `holdout` > 0, that many images (`wgan_gp.data.holdout`)
  are never served by `batches`; `images` stays the whole dataset (the evaluation's real
  side, as without a holdout), `holdout_images()` and `comparison_images()` are the two
  sets the critic is scored on.
  """

  on_device = False

  def __init__(self, images: np.ndarray, seed: int, identity: str = "", holdout: int = 0,
               batch_size: int = 1):
    self.images = images
    self.seed = seed
    self.identity = identity
    self.data_shape = tuple(images.shape[1:])
    self.holdout = holdout
    # Rows that training reads (None: all) and rows held out of it.
    self.train_indices, self.holdout_indices = (
        split_holdout(len(images), holdout, batch_size) if holdout else (None, None))

  def __len__(self):
    return len(self.images)

  def holdout_images(self) -> np.ndarray:
    """The held-out images, uint8 [holdout, S, S, 3] (empty without a holdout)."""
    if not self.holdout:
      return self.images[:0]
    return np.asarray(self.images[self.holdout_indices])

  def comparison_images(self) -> np.ndarray:
    """As many fixed training images as are held out, uint8 (empty without a holdout)."""
    if not self.holdout:
      return self.images[:0]
    return np.asarray(self.images[comparison_indices(len(self.images), self.holdout)])

  def batches(self, position: int, n_critic: int, global_batch: int, process_index: int = 0,
              process_count: int = 1):
    """This process's [n_critic, local_batch, S, S, 3] for each step from `position` on."""
    return host_batches(self.images, self.seed, position, n_critic, global_batch,
                        process_index, process_count, rows=self.train_indices)


def create_source(data_config, seed: int, batch_size: int = 1):
  """The source named by `data_config.source`. A `data.holdout` must leave at least
  `batch_size` images (the global batch) to train on."""
  source = data_config.source
  check_source(source)
  holdout = data_config.get("holdout", 0) or 0  # a config from before the field: none
  if source in TOY_SOURCES:
    if holdout:
      raise DataError(f"--config.data.holdout={holdout} holds out images, and {source} is "
                      "2-D toy data sampled afresh each step: set --config.data.holdout=0")
    return ToySource(source)
  cached = IMAGE_LOADERS[source](data_config)
  logging.info("%d images of %dx%d from %s", len(cached.images), data_config.image_size,
               data_config.image_size, data_config.path or "TFDS celeb_a")
  image_source = ImageSource(cached.images, seed, cached.identity, holdout, batch_size)
  if holdout:
    logging.info("Holding out %d of them from training (data.holdout), the same for every "
                 "seed: the critic is scored on them at each evaluation", holdout)
  return image_source


def source_image_size(data_config) -> tuple[int, int] | None:
  """(width, height) of the source images that the crop resolves against; None for the
  2-D toy distributions, which have no crop."""
  check_source(data_config.source)
  if data_config.source in TOY_SOURCES:
    return None
  return IMAGE_SIZES[data_config.source](data_config)


def data_shape(data_config) -> tuple[int, ...]:
  """The shape of one example, known from the config without reading any data."""
  if data_config.source in TOY_SOURCES:
    return ToySource.data_shape
  return (data_config.image_size, data_config.image_size, 3)
