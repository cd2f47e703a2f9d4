"""Where the workdir lock reaches: a warning on mounts whose file locks stay on one host."""

import logging
import os

import pytest

from wgan_gp import workdir_lock


@pytest.fixture
def fake_mounts(tmp_path, monkeypatch):
  """A /proc/mounts for folders under tmp_path/mnt: (mounts file, mnt folder)."""
  mnt = os.path.realpath(tmp_path) + "/mnt"
  mounts = tmp_path / "mounts"
  mounts.write_text(
      f"server:/a {mnt}/nolock nfs rw,vers=3,nolock,proto=tcp 0 0\n"
      f"server:/b {mnt}/flock nfs4 rw,vers=4.2,local_lock=flock 0 0\n"
      f"server:/c {mnt}/flock/shared nfs4 rw,vers=4.2,local_lock=none 0 0\n"  # nested: wins
      f"server:/d {mnt}/nfs nfs4 rw,vers=4.2,local_lock=none 0 0\n"
      f"//srv/e {mnt}/smb cifs rw,nobrl 0 0\n"
      f"me@host:/f {mnt}/with\\040space fuse.sshfs rw,user_id=0 0 0\n"
      f"mgs@tcp:/g {mnt}/lustre lustre rw,flock 0 0\n"
      "/dev/sda1 / ext4 rw,relatime 0 0\n")  # last: the longest mount point wins anyway
  monkeypatch.setattr(workdir_lock, "MOUNTS_FILE", str(mounts))
  monkeypatch.setattr(workdir_lock, "_warned_mounts", set())
  return str(mounts), mnt


@pytest.mark.parametrize("folder,why", [
    ("nolock/run", "nfs mounted nolock"), ("flock/run", "nfs4 mounted local_lock=flock"),
    ("flock/shared/run", None), ("nfs/run", None), ("smb/run", "cifs mounted nobrl"),
    ("with space/run", "fuse.sshfs"), ("lustre/run", None), ("flockish/run", None)])
def test_host_local_mounts_are_told_apart_from_shared_locks(fake_mounts, folder, why):
  mounts, mnt = fake_mounts
  found = workdir_lock.host_local_mount(os.path.join(mnt, folder), mounts)
  assert (found and found[1]) == why
  if why:
    assert found[0] == os.path.join(mnt, os.path.dirname(folder))


def test_a_lock_on_a_host_local_mount_warns_once_per_mount(fake_mounts, caplog):
  _, mnt = fake_mounts
  with caplog.at_level(logging.WARNING):
    for run in ("a", "b"):  # two runs under one mount: one warning
      with workdir_lock.hold(os.path.join(mnt, "flock", run)):
        pass
    with workdir_lock.hold(os.path.join(mnt, "nfs", "run")):  # the server holds this one
      pass
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert warnings == [f"The workdir lock of {mnt}/flock/a covers this host only ({mnt}/flock "
                      "is nfs4 mounted local_lock=flock): a run on another host is not "
                      "stopped from using the same workdir; start runs in it from one host"]


def test_unreadable_mounts_say_nothing(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, "MOUNTS_FILE", str(tmp_path / "absent"))
  assert workdir_lock.host_local_mount(str(tmp_path)) is None
