"""tf.distribute: two logical CPU devices, and two workers on loopback.

Each run is a process of its own: logical devices and TF_CONFIG must be set
before TensorFlow starts.
"""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from tfc_sth.runtime import codec

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "distribute_worker.py")
TIMEOUT = 600  # Seconds for one process; they take well under a minute.
# How far one and two replicas' losses may drift apart after the first step.
TRAJECTORY_RTOL = 5e-3


@pytest.fixture(name="photos")
def _photos(tmp_path, smooth_image, png_bytes):
  folder = tmp_path / "photos"
  folder.mkdir()
  for seed in range(4):
    (folder / f"{seed}.png").write_bytes(
        png_bytes(smooth_image(96, 128, seed=seed)))
  return str(folder / "*.png")


def _env(**extra):
  return dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3",
              **extra)


def test_two_replicas_train_as_one_device_does(tmp_path, photos):
  out = tmp_path / "curves.json"
  subprocess.run([sys.executable, WORKER, "mirrored", str(out), photos],
                 check=True, timeout=TIMEOUT, env=_env())
  runs = json.loads(out.read_text())
  assert "does not split evenly over 2 replicas" in runs["uneven"]
  assert runs["default"]["replicas"] == 1
  assert runs["mirrored"]["replicas"] == 2
  # 3 soft + 3 hard steps: the global batch's loss, not one replica's.
  assert len(runs["mirrored"]["losses"]) == 6
  mirrored, default = runs["mirrored"]["losses"], runs["default"]["losses"]
  # The first step's loss is computed on the same weights and batch.
  np.testing.assert_allclose(mirrored[0], default[0], rtol=1e-6)
  # Then the two devices' gradient sums round differently, and Adam
  # magnifies that: its first steps move each weight by about the learning
  # rate in its gradient's sign, which flips for gradients near zero.
  # Measured: up to 1.2e-3 after one step.
  np.testing.assert_allclose(mirrored, default, rtol=TRAJECTORY_RTOL)
  assert runs["mirrored"]["validation"] == runs["default"]["validation"] or (
      _close_csv(runs["mirrored"]["validation"], runs["default"]["validation"]))


def _close_csv(a, b):
  """Same validation rows but for wall-clock seconds, within the float
  noise the losses are allowed."""
  rows = [np.array([[float(v) for i, v in enumerate(line.split(","))
                     if i != 1] for line in text.strip().split("\n")[1:]])
          for text in (a, b)]
  return rows[0].shape == rows[1].shape and np.allclose(
      *rows, rtol=TRAJECTORY_RTOL)


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


class Cluster:
  """Two worker processes on loopback, killed whatever happens."""

  def __init__(self, train_dir, photos):
    self.train_dir = str(train_dir)
    self.photos = photos
    self.processes = []

  def start(self, die_at=None):
    """Starts both workers (worker 1 kills itself at step `die_at`)."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    self.processes = []
    for index in range(2):
      config = {"cluster": {"worker": workers},
                "task": {"type": "worker", "index": index}}
      args = [sys.executable, WORKER, "multi_worker", self.train_dir,
              self.photos]
      if die_at and index == 1:
        args.append(str(die_at))
      self.processes.append(subprocess.Popen(
          args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
          env=_env(TF_CONFIG=json.dumps(config))))

  def wait(self):
    return [p.communicate(timeout=TIMEOUT) + (p.returncode,)
            for p in self.processes]

  def kill(self):
    for p in self.processes:
      if p.poll() is None:
        p.kill()
      p.communicate()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.kill()


def _weights(train_dir, index):
  with np.load(os.path.join(train_dir, f"weights_{index}.npz")) as f:
    return [f[k] for k in sorted(f.files, key=lambda k: int(k[4:]))]


def test_two_workers_train_soft_then_hard_and_the_chief_exports(
    tmp_path, photos, smooth_image):
  with Cluster(tmp_path, photos) as cluster:
    cluster.start()
    results = cluster.wait()
  for out, err, code in results:
    assert code == 0, err[-3000:]
    assert out.strip().split("\n")[-1] == "phase 1 step 8"
  for chief, worker in zip(_weights(tmp_path, 0), _weights(tmp_path, 1),
                           strict=True):
    np.testing.assert_array_equal(chief, worker)
  # Only the chief writes logs, validation and the export.
  assert (tmp_path / "export" / "saved_model.pb").exists()
  assert (tmp_path / "logs").exists()
  assert not (tmp_path / "workers" / "worker_1" / "export").exists()
  coder = codec.Codec(str(tmp_path / "export"))
  image = smooth_image(64, 80)
  decoded, _ = coder.decompress(coder.compress(image))
  assert decoded.shape == image.shape


def test_a_killed_worker_resumes_with_the_other_from_the_checkpoint(
    tmp_path, photos):
  with Cluster(tmp_path, photos) as cluster:
    cluster.start(die_at=5)  # Step 5 is in the hard phase (3 soft steps).
    dead = cluster.processes[1]
    _, err = dead.communicate(timeout=TIMEOUT)
    assert dead.returncode == -signal.SIGKILL, err[-3000:]
    cluster.kill()  # The chief waits on its peer for ever.
    saved = open(tmp_path / "checkpoints" / "checkpoint").read()
    cluster.start()
    results = cluster.wait()
  for out, err, code in results:
    assert code == 0, err[-3000:]
    assert out.strip().split("\n")[-1] == "phase 1 step 8"
    # Both restored the chief's last checkpoint, in the hard phase.
    restored = [line for line in err.split("\n") if "Restored" in line]
    assert restored and "(phase 1)" in restored[0], err[-3000:]
    latest = saved.split("\n")[0]  # model_checkpoint_path: "ckpt-N"
    step = restored[0].split(" at step ")[1].split()[0]
    assert latest == f'model_checkpoint_path: "ckpt-{step}"', (latest, step)
  for chief, worker in zip(_weights(tmp_path, 0), _weights(tmp_path, 1),
                           strict=True):
    np.testing.assert_array_equal(chief, worker)
