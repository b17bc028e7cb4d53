"""TensorBoard scalars: written without TensorFlow, tagged by replica identity.

The event files are read back with tensorboardX's own protobufs (TFRecord
framing: 8-byte length, 4-byte CRC, the Event, 4-byte CRC).
"""

import glob
import os
import struct
import sys

from tensorboardX.proto import event_pb2

from lrr_jax import campaign

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from configs import quickstart  # noqa: E402


def read_scalars(tb_dir) -> dict[str, list[tuple[int, float]]]:
    out = {}
    for path in glob.glob(os.path.join(tb_dir, "events.out.tfevents.*")):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def run(tmp_path, name, num_replicas):
    c = quickstart.get_config()
    c.update({"methods": "imp,lrr", "num_replicas": num_replicas, "perturb_probs": "0,0.2",
              "perturb_every": 1, "mlp_hidden": (8,), "train_limit": 200, "test_limit": 100,
              "batch_size": 100, "eval_batch_size": 100, "levels": 2, "epochs_per_level": 1,
              "warmup_epochs": 1, "progress": False, "tensorboard": True,
              "checkpoint_every_epochs": 0})
    workdir = tmp_path / name
    campaign.run(c, str(workdir))
    return {m: read_scalars(workdir / m / "tb") for m in ("imp", "lrr")}


def test_tags_name_the_replica_not_its_position(tmp_path):
    two = run(tmp_path, "two", 2)
    one = run(tmp_path, "one", 1)
    for method in ("imp", "lrr"):
        tags = set(two[method])
        ids = {"seed_0", "seed_1", "seed_0_p0.2", "seed_1_p0.2"}
        assert {f"level/test_acc/{i}" for i in ids} <= tags
        assert {f"warmup/train_loss/{i}" for i in ids} <= tags
        assert not any("replica" in t for t in tags)
        # 2 levels x 1 epoch: one test_acc point per level, at the global step.
        steps = [s for s, _ in two[method]["level/test_acc/seed_1_p0.2"]]
        assert len(steps) == 2 and steps[0] < steps[1]
        # With 1 seed, seed 0's replicas keep their tags (and, the same computation, values).
        assert set(one[method]) == {t for t in tags if "seed_1" not in t}
        for tag in one[method]:
            a, b = one[method][tag], two[method][tag]
            assert [s for s, _ in a] == [s for s, _ in b], tag
            for (_, x), (_, y) in zip(a, b):
                assert abs(x - y) <= 1e-4 * max(1.0, abs(y)), (tag, x, y)
