"""Data sources, chosen by `config.data.source`.

A source is either sampled on the device inside the step (`on_device`, the 2-D toy
distributions: `sample(key)` draws one example) or read on the host (`batches(...)`
yields each step's uint8 input for this process). Every source has `data_shape`, the
shape of one example.
"""

import logging

import numpy as np

from wgan_gp.config import IMAGE_SOURCES, TOY_SOURCES
from wgan_gp.data.images import DataError, decode_all
from wgan_gp.data.pipeline import (AXIS_NAME, host_batches, prefetch_to_devices, replicate,
                                   shard_batch, unreplicate)
from wgan_gp.data.toy import ToySource

__all__ = [
    "AXIS_NAME", "DataError", "ImageSource", "ToySource", "create_source",
    "prefetch_to_devices", "replicate", "shard_batch", "unreplicate",
]


class ImageSource:
  """Decoded uint8 images [N, S, S, 3], served in seeded epoch permutations."""

  on_device = False

  def __init__(self, images: np.ndarray, seed: int):
    self.images = images
    self.seed = seed
    self.data_shape = tuple(images.shape[1:])

  def __len__(self):
    return len(self.images)

  def batches(self, position: int, n_critic: int, global_batch: int, process_index: int = 0,
              process_count: int = 1):
    """This process's [n_critic, local_batch, S, S, 3] for each step from `position` on."""
    return host_batches(self.images, self.seed, position, n_critic, global_batch,
                        process_index, process_count)


def create_source(data_config, seed: int):
  """The source named by `data_config.source`."""
  source = data_config.source
  if source in TOY_SOURCES:
    return ToySource(source)
  if source == "images":
    logging.info("Decoding images from %s (crop %d, size %d)", data_config.path,
                 data_config.crop_size, data_config.image_size)
    images = decode_all(data_config.path, data_config.crop_size, data_config.image_size,
                        data_config.decode_workers)
    logging.info("Decoded %d images", len(images))
    return ImageSource(images, seed)
  raise DataError(f"unknown data.source {source!r}: expected one of "
                  f"{IMAGE_SOURCES[:1] + TOY_SOURCES}")


def data_shape(data_config) -> tuple[int, ...]:
  """The shape of one example, known from the config without reading any data."""
  if data_config.source in TOY_SOURCES:
    return ToySource.data_shape
  return (data_config.image_size, data_config.image_size, 3)
