"""`python -m wgan_gp.data.celeba_sample`: the half-size CelebA sample from the official
zip (here a fake one of 178x218 JPEGs) is the chosen names, halved, in a byte-reproducible
tar that the project's reader takes; bad input is refused in one line, nothing written."""

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import CELEBA_TAR, REPO_ROOT, requires_celeba_tar, subprocess_env
from wgan_gp import exit_codes
from wgan_gp.data import celeba_sample
from wgan_gp.data.images import list_images, read_images

NUM_FAKE = 12


def _face(i: int) -> Image.Image:
  """A smooth random 178x218 RGB image, different for each i."""
  low = np.random.default_rng(i).uniform(0, 255, (7, 6, 3)).astype(np.uint8)
  return Image.fromarray(low).resize((178, 218), Image.Resampling.BILINEAR)


def _jpeg(image: Image.Image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, "JPEG", quality=95)
  return buffer.getvalue()


@pytest.fixture(scope="module")
def official(tmp_path_factory):
  """A fake img_align_celeba.zip (and the folder it extracts to), laid out as CelebA's."""
  root = tmp_path_factory.mktemp("celeba")
  path = root / "img_align_celeba.zip"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("img_align_celeba/", b"")
    for i in reversed(range(1, NUM_FAKE + 1)):  # out of order: the tool sorts
      archive.writestr(f"img_align_celeba/{i:06d}.jpg", _jpeg(_face(i)))
  with zipfile.ZipFile(path) as archive:
    archive.extractall(root / "extracted")
  return path


def _run(capsys, *args):
  """(exit code, stdout, stderr) of the command's main, in this process."""
  code = celeba_sample.main([str(a) for a in args])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def _members(path):
  with tarfile.open(path) as archive:
    return [(m.name, archive.extractfile(m).read() if m.isfile() else None) for m in archive]


def test_default_sample_is_the_first_names_halved_in_a_reproducible_tar(official, tmp_path,
                                                                         capsys):
  out = tmp_path / "sample.tar"
  code, stdout, stderr = _run(capsys, f"--source={official}", f"--out={out}", "--count=10")
  assert code == exit_codes.FINISHED, stderr
  digest = hashlib.sha256(out.read_bytes()).hexdigest()
  assert stdout.count("\n") == 1 and stdout.startswith("10 images") and digest in stdout

  members = _members(out)
  assert [name for name, _ in members] == (
      ["img_align_celeba"] + [f"img_align_celeba/{i:06d}.jpg" for i in range(1, 11)])
  with tarfile.open(out) as archive:
    infos = archive.getmembers()
  assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in infos} == {
      (celeba_sample.MTIME, 0, 0, "", "")}
  reference = io.BytesIO()
  Image.new("RGB", (89, 109)).save(reference, "JPEG")  # Pillow's default: quality 75
  tables = Image.open(reference).quantization
  for i, (name, data) in enumerate(members[1:], start=1):
    with Image.open(io.BytesIO(data)) as image:
      assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (89, 109))
      assert image.quantization == tables
      halved = np.asarray(_face(i).resize((89, 109), Image.Resampling.BICUBIC), np.float64)
      assert np.abs(np.asarray(image, np.float64) - halved).mean() < 4, name  # this face

  again = tmp_path / "again.tar"
  assert _run(capsys, f"--source={official}", f"--out={again}", "--count=10")[0] == 0
  assert again.read_bytes() == out.read_bytes()
  from_folder = tmp_path / "from_folder.tar"
  assert _run(capsys, f"--source={official.parent / 'extracted'}", f"--out={from_folder}",
              "--count=10")[0] == 0
  assert from_folder.read_bytes() == out.read_bytes()
  assert sorted(os.listdir(tmp_path)) == ["again.tar", "from_folder.tar", "sample.tar"]

  # The project's reader takes it, as it takes the shared sample.
  assert list_images(str(out)) == [name for name, _ in members[1:]]
  assert read_images(str(out), crop_size=54, image_size=32).shape == (10, 32, 32, 3)


def test_seeded_choice_is_documented_draw_and_reproducible(official, tmp_path, capsys):
  paths = [tmp_path / f"seeded{k}.tar" for k in range(2)]
  for path in paths:
    assert _run(capsys, f"--source={official}", f"--out={path}", "--count=10",
                "--seed=3")[0] == 0
  assert paths[0].read_bytes() == paths[1].read_bytes()
  names = [name for name, _ in _members(paths[0])[1:]]
  drawn = np.sort(np.random.default_rng(3).choice(NUM_FAKE, 10, replace=False))
  assert names == [f"img_align_celeba/{i + 1:06d}.jpg" for i in drawn]
  assert names != [f"img_align_celeba/{i:06d}.jpg" for i in range(1, 11)]
  assert celeba_sample.choose([f"{i:06d}.jpg" for i in range(1, 13)], 10, 4) != (
      celeba_sample.choose([f"{i:06d}.jpg" for i in range(1, 13)], 10, 3))


def test_the_module_runs_as_a_command(official, tmp_path):
  out = tmp_path / "cli.tar"
  result = subprocess.run(
      [sys.executable, "-m", "wgan_gp.data.celeba_sample", f"--source={official}",
       f"--out={out}", "--count=3", "--resample=box", "--workers=1"],
      cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert f"written to {out}, sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}" in (
      result.stdout)
  check = subprocess.run(
      [sys.executable, "-c", "import sys, wgan_gp.data.celeba_sample as c; "
       "sys.exit('tensorflow' in sys.modules)"],
      cwd=REPO_ROOT, env=subprocess_env(), timeout=120)
  assert check.returncode == 0, "the sample tool imports TensorFlow"


def _not_a_zip(root):
  path = root / "img_align_celeba.zip"
  path.write_text("<html>Google Drive: quota exceeded</html>")
  return path


def _truncated_zip(root, official):
  path = root / "img_align_celeba.zip"
  path.write_bytes(official.read_bytes()[:-200])  # cut into the central directory
  return path


def _undecodable_member(root):
  path = root / "img_align_celeba.zip"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("img_align_celeba/000001.jpg", _jpeg(_face(1)))
    archive.writestr("img_align_celeba/000002.jpg", b"not a jpeg")
  return path


@pytest.mark.parametrize("case, extra, message", [
    ("missing", [], "not found: point it at CelebA's img_align_celeba.zip"),
    ("not_a_zip", [], "is neither a .zip nor a folder"),
    ("truncated", [], "is truncated or corrupt"),
    ("empty_folder", [], "no .jpg images in"),
    ("too_few", ["--count=13"], "img_align_celeba.zip' holds 12 .jpg images, fewer than --count=13: give "
     "--count=12 or less"),
    ("zero", ["--count=0"], "--count=0: give at least 1"),
    ("negative_seed", ["--seed=-1"], "--seed=-1: give a seed >= 0"),
    ("negative_workers", ["--workers=-1"], "--workers=-1: give 0"),
    ("undecodable", ["--count=2"], "000002.jpg in"),
    ("out_exists", [], "exists: remove it or give another --out"),
])
def test_bad_input_is_refused_in_one_line_with_nothing_written(official, tmp_path, capsys,
                                                                case, extra, message):
  source = {"missing": lambda: tmp_path / "nowhere.zip",
            "not_a_zip": lambda: _not_a_zip(tmp_path),
            "truncated": lambda: _truncated_zip(tmp_path, official),
            "empty_folder": lambda: (tmp_path / "empty").mkdir() or tmp_path / "empty",
            "undecodable": lambda: _undecodable_member(tmp_path),
            }.get(case, lambda: official)()
  out_folder = tmp_path / "out"
  out_folder.mkdir()
  out = out_folder / "sample.tar"
  if case == "out_exists":
    out.write_bytes(b"an earlier sample")
  code, stdout, stderr = _run(capsys, f"--source={source}", f"--out={out}", *extra)
  assert code == exit_codes.BAD_INPUT
  assert stdout == "" and stderr.count("\n") == 1 and stderr.startswith("error: ")
  assert message in stderr, stderr
  assert os.listdir(out_folder) == (["sample.tar"] if case == "out_exists" else [])
  if case == "out_exists":
    assert out.read_bytes() == b"an earlier sample"


@requires_celeba_tar
def test_default_choice_and_layout_are_those_of_the_shared_sample(tmp_path):
  """The first 10,000 of CelebA's 202,599 names are the shared sample's files, and the
  tar writer packs its files into the shared tar's exact bytes (its sha256 in
  ../shared/data/README.md): only the halving and JPEG encoding are not checked."""
  with tarfile.open(CELEBA_TAR) as archive:
    files = [(os.path.basename(m.name), archive.extractfile(m).read())
             for m in archive if m.isfile()]
  names = [f"{i:06d}.jpg" for i in range(1, celeba_sample.FULL_CELEBA + 1)]
  assert celeba_sample.choose(names, celeba_sample.DEFAULT_COUNT) == [n for n, _ in files]
  rebuilt = tmp_path / "rebuilt.tar"
  celeba_sample.write_tar(str(rebuilt), files)
  assert celeba_sample.sha256(str(rebuilt)) == (
      "248997f1f1204d70ee4ec4b629c9db4914646386aa67d0dfcb60d5fe99dd96a0")
