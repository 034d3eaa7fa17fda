"""Resumable training: checkpoint names and positions, identical batches from both input
pipelines and after a resume, and a SIGKILLed run that resumes to the straight run's weights."""
import os
import signal

import numpy as np
import pytest

from mrcnn import checkpoints
from mrcnn.data import BatchPlan, make_sequence, make_tf_dataset
from tests.conftest import TinyConfig
from tests.multiprocess import Processes, worker_command
from tests.synthetic import BlobDataset


def test_checkpoint_names_positions_and_last(tmp_path):
    assert checkpoints.checkpoint_name("Tiny", 3) == "mask_rcnn_tiny_0003.h5"
    assert checkpoints.checkpoint_name("tiny", 2, 50) == "mask_rcnn_tiny_0003.step000050.h5"
    assert checkpoints.checkpoint_position("mask_rcnn_tiny_0003.h5") == (3, 0)
    assert checkpoints.checkpoint_position("/a/mask_rcnn_tiny_0003.step000050.h5") == (2, 50)
    assert checkpoints.checkpoint_position("mask_rcnn_tiny_0003.state.npz") is None
    assert checkpoints.checkpoint_position("mask_rcnn_tiny_best.h5") is None
    assert checkpoints.state_path("/a/mask_rcnn_tiny_0003.step000050.h5") == \
        "/a/mask_rcnn_tiny_0003.step000050.state.npz"
    run = tmp_path / "tiny20250101T0000"
    run.mkdir()
    for name in ("mask_rcnn_tiny_0001.h5", "mask_rcnn_tiny_0002.step000004.h5",
                 "mask_rcnn_tiny_0002.h5", "mask_rcnn_tiny_0003.step000002.h5",
                 "mask_rcnn_tiny_0003.step000010.h5", "mask_rcnn_tiny_0003.step000010.state.npz",
                 "mask_rcnn_tiny_best.h5"):
        (run / name).write_bytes(b"")
    assert checkpoints.epoch_checkpoints(str(run)) == ["mask_rcnn_tiny_0001.h5",
                                                       "mask_rcnn_tiny_0002.h5"]
    # (2, 10) is the furthest position: two epochs and ten steps of the third.
    assert checkpoints.find_last_checkpoint(str(tmp_path), "tiny") == \
        str(run / "mask_rcnn_tiny_0003.step000010.h5")
    match = checkpoints.CHECKPOINT_PATTERN.match(str(run / "mask_rcnn_tiny_0003.step000010.h5"))
    assert (match.group("epoch"), match.group("step")) == ("0003", "000010")


def test_config_checkpoint_every_steps():
    class Every(TinyConfig):
        CHECKPOINT_EVERY_STEPS = 0

    with pytest.raises(ValueError, match="CHECKPOINT_EVERY_STEPS must be an integer >= 1, got 0"):
        Every()
    assert TinyConfig().CHECKPOINT_EVERY_STEPS is None


def test_batch_plan_shards_global_batches():
    plan = BatchPlan(list(range(10)), steps=3, per_replica=2, replicas=2, seed=5)
    for epoch in (0, 1):
        seen = []
        for step in range(3):
            whole = plan.ids(epoch, step)
            assert plan.ids(epoch, step, 0) + plan.ids(epoch, step, 1) == whole
            seen.extend(whole)
        assert sorted(seen[:10]) == list(range(10))  # a permutation before any repeat
    assert plan.ids(0, 0) != plan.ids(1, 0)


def test_pydataset_shares_of_a_global_batch():
    """Two processes (replicas=2) feed the two halves of the global batch of BatchPlan: the
    image ids of its slices and the tf.data pipeline's replica generators
    (batch_rng(seed, epoch, step, replica, 2)); replicas=1 is the whole batch."""
    from mrcnn.data import AnchorCache, batch_rng, build_batch, input_names
    config = TinyConfig()
    dataset = BlobDataset(count=6, max_objects=2)
    plan = BatchPlan(dataset.image_ids, 3, config.BATCH_SIZE, 2, seed=0)
    shares = [make_sequence(dataset, config, steps=3, seed=0, workers=1, epoch=1, replica=r,
                            replicas=2) for r in (0, 1)]
    for step in range(3):
        assert shares[0].batch_image_ids(step) + shares[1].batch_image_ids(step) == \
            plan.ids(1, step)
        for replica, share in enumerate(shares):
            assert share.batch_image_ids(step) == plan.ids(1, step, replica)
    (item,) = shares[1][2]
    expected = build_batch(dataset, config, plan.ids(1, 2, 1), AnchorCache(config),
                           batch_rng(0, 1, 2, 1, 2))
    assert item["input_rpn_bbox"].shape[0] == config.BATCH_SIZE
    for name, array in zip(input_names(config), expected):
        np.testing.assert_array_equal(item[name], array, err_msg=name)
    whole = make_sequence(dataset, config, steps=3, seed=0, workers=1, epoch=1)
    assert whole.batch_image_ids(0) == BatchPlan(dataset.image_ids, 3, config.BATCH_SIZE, 1,
                                                 seed=0).ids(1, 0)
    with pytest.raises(ValueError, match=r"replica must be an integer in \[0, 2\), got 2"):
        make_sequence(dataset, config, steps=3, replica=2, replicas=2)


def test_pydataset_epoch_is_counted_before_the_next_epoch_loads():
    """Keras' adapter starts an epoch's loading threads before it calls on_epoch_begin, and
    calls on_epoch_end once before the first epoch: the items of epoch e + 1 must be epoch
    e + 1's as soon as epoch e has ended, whatever on_epoch_begin's timing (it was counted
    there, and the first items of an epoch could take the previous epoch's batches)."""
    config = TinyConfig()
    dataset = BlobDataset(count=6, max_objects=1)
    plan = BatchPlan(dataset.image_ids, 2, config.BATCH_SIZE, 1, seed=0)
    sequence = make_sequence(dataset, config, steps=2, seed=0, workers=1, epoch=3, start=1)
    sequence.on_epoch_end()  # Keras' reset before the first epoch: not an epoch
    assert len(sequence) == 1 and sequence.batch_image_ids(0) == plan.ids(3, 1)
    sequence.on_epoch_begin()
    assert sequence.batch_image_ids(0) == plan.ids(3, 1)
    sequence.on_epoch_end()
    # Epoch 4 is whole; its items are right before on_epoch_begin is called.
    assert len(sequence) == 2
    assert [sequence.batch_image_ids(i) for i in range(2)] == [plan.ids(4, 0), plan.ids(4, 1)]
    sequence.on_epoch_begin()
    sequence.on_epoch_end()
    sequence.on_epoch_end()  # a second end without a begin counts nothing
    assert sequence.batch_image_ids(0) == plan.ids(5, 0)
    assert plan.ids(4, 0) != plan.ids(5, 0)


def test_tf_data_pipeline_equals_pydataset_and_resumes_mid_epoch():
    """One replica: the tf.data elements are the PyDataset's items, array for array; a
    pipeline started at (epoch 1, step 1) yields what the full one yields there."""
    config = TinyConfig()
    dataset = BlobDataset(count=5, max_objects=3)
    steps = 3
    sequence = make_sequence(dataset, config, steps=steps, seed=0, workers=1, epoch=1)
    plan = BatchPlan(dataset.image_ids, steps, config.BATCH_SIZE, 1, seed=0)
    full = list(make_tf_dataset(dataset, config, plan, 1, 2, parallel_calls=2))
    assert len(full) == steps
    for index, element in enumerate(full):
        (expected,) = sequence[index]
        assert sequence.batch_image_ids(index) == plan.ids(1, index)
        for name, array in expected.items():
            got = element[name].numpy()
            if name == "input_gt_masks":
                assert got.dtype == np.uint8
                got = got.astype(bool)
            assert got.dtype == array.dtype, name
            np.testing.assert_array_equal(got, array, err_msg=name)
    resumed = list(make_tf_dataset(dataset, config, plan, 1, 2, first_step=1))
    late = make_sequence(dataset, config, steps=steps, seed=0, workers=1, epoch=1, start=1)
    assert len(resumed) == len(late) == steps - 1
    for index, element in enumerate(resumed):
        np.testing.assert_array_equal(element["input_image"].numpy(),
                                      full[index + 1]["input_image"].numpy())
        np.testing.assert_array_equal(late[index][0]["input_rpn_match"],
                                      full[index + 1]["input_rpn_match"].numpy())
    with pytest.raises(ValueError, match="start must be in \\[0, 3\\), got 3"):
        make_sequence(dataset, config, steps=steps, start=3)


def test_killed_run_resumes_to_the_straight_run(tmp_path):
    """Straight: 2 epochs x 2 steps. Killed: SIGKILL after step 1 (its mid-epoch checkpoint
    on disk), then a new process resumes from find_last() for the remaining 3 steps (the
    rest of epoch 1, then epoch 2). The weights agree within the 2-worker test's tolerance
    (same arithmetic in the same order: measured bitwise equal). The faults this test
    caught while it was written (the ROI sampler's random state not restored, a PyDataset
    epoch counted twice) moved the weights by 2e-3 to 6e-3."""
    args = ["--steps", "2", "--epochs", "2", "--checkpoint-every", "1", "--layers", "all"]
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight_dir.mkdir()
    killed_dir.mkdir()
    with Processes(str(tmp_path)) as processes:
        straight = processes.start("straight", worker_command(straight_dir, "single", *args))
        killed = processes.start("killed", worker_command(killed_dir, "single", *args,
                                                          "--kill-after-step", "1"))
        processes.wait_for_file(str(killed_dir / "killme"), killed)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=60) == -signal.SIGKILL
        (run,) = os.listdir(killed_dir / "logs_single")
        folder = killed_dir / "logs_single" / run
        last = checkpoints.find_last_checkpoint(str(killed_dir / "logs_single"), "tiny")
        assert os.path.basename(last) == "mask_rcnn_tiny_0001.step000001.h5"
        state = np.load(checkpoints.state_path(last))
        names = list(state["names"])
        assert (int(state["epoch"]), int(state["step"])) == (0, 1)
        assert int(state[f"v{names.index('MomentumSGD/iteration')}"]) == 1
        momentum = state[f"v{names.index('MomentumSGD/conv1_kernel_momentum')}"]
        assert np.abs(momentum).max() > 0
        assert not (folder / "mask_rcnn_tiny_0001.h5").exists()
        resumed = processes.start("resumed", worker_command(killed_dir, "single", *args,
                                                            "--resume"))
        processes.wait(resumed)
        processes.wait(straight)

    with np.load(straight_dir / "weights_single.npz") as a, \
            np.load(killed_dir / "weights_single.npz") as b:
        assert len(a.files) == len(b.files) > 300
        for key in a.files:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert sorted(f for f in os.listdir(folder) if f.endswith(".h5")) == [
        "mask_rcnn_tiny_0001.h5", "mask_rcnn_tiny_0001.step000001.h5",
        "mask_rcnn_tiny_0002.h5", "mask_rcnn_tiny_0002.step000001.h5"]


def test_tf_data_pipeline_carries_keypoints():
    """Keypoint models get input_gt_keypoints from the tf.data pipeline too, as the PyDataset."""
    from samples.keypoints import SmallKeypointsConfig, make_dataset

    config = SmallKeypointsConfig()
    dataset = make_dataset(3, seed=1)
    plan = BatchPlan(dataset.image_ids, 1, config.BATCH_SIZE, 1, seed=0)
    (element,) = list(make_tf_dataset(dataset, config, plan, 0, 1))
    (expected,) = make_sequence(dataset, config, steps=1, seed=0, workers=1)[0]
    assert set(element) == set(expected) and "input_gt_keypoints" in element
    np.testing.assert_array_equal(element["input_gt_keypoints"].numpy(),
                                  expected["input_gt_keypoints"])
