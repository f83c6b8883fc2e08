"""nnx.data.augment: random crops and flips of image batches on the device, seeded per batch.

References are plain NumPy: ``numpy.pad`` then a slice at torchvision's ``get_params`` corner
(drawn from the same generator), and ``x[..., ::-1]`` for a flip.
"""

import csv
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.data import DataLoader
from nnx.data.augment import (
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    batch_generator,
    gather_crop,
    take_rows,
)

NP_MODES = {"constant": "constant", "edge": "edge", "reflect": "reflect", "symmetric": "symmetric"}


def _padding4(padding):
    if padding is None:
        return (0, 0, 0, 0)
    if isinstance(padding, int):
        return (padding,) * 4
    return tuple(padding) * 2 if len(padding) == 2 else tuple(padding)


def reference_crop(x, seed, size, padding=None, fill=0.0, mode="constant"):
    """Pad with numpy.pad, then cut each sample at a corner drawn like torchvision's get_params."""
    left, top, right, bottom = _padding4(padding)
    widths = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    kw = {"constant_values": fill} if mode == "constant" else {}
    padded = np.pad(x, widths, mode=NP_MODES[mode], **kw)
    rng = np.random.default_rng(seed)
    th, tw = (size, size) if isinstance(size, int) else size
    i = rng.integers(0, padded.shape[-2] - th + 1, size=len(x))
    j = rng.integers(0, padded.shape[-1] - tw + 1, size=len(x))
    return np.stack([padded[k, ..., i[k] : i[k] + th, j[k] : j[k] + tw] for k in range(len(x))])


def reference_flip(x, seed, p=0.5):
    flip = np.random.default_rng(seed).random(len(x)) < p
    return np.where(flip.reshape(-1, *(1,) * (x.ndim - 1)), x[..., ::-1], x)


def test_crop_by_hand():
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # [[1 2 3] [4 5 6] [7 8 9]]
    crop = RandomCrop(3, padding=1, fill=-1)
    # the corner (0, 2) of the 5x5 padded image: padded rows -1..1, columns 1..3
    out = crop.apply(x, {"rows": np.array([[-1, 0, 1]]), "cols": np.array([[1, 2, -1]])})
    assert out.tolist() == [[[[-1, -1, -1], [2, 3, -1], [5, 6, -1]]]]
    shifted = RandomCrop(2, padding=(1, 0)).apply(
        x, {"rows": np.array([[1, 2]]), "cols": np.array([[-1, 0]])}
    )
    assert shifted.tolist() == [[[[0, 4], [0, 7]]]]


@pytest.mark.parametrize(
    "shape, size, padding, mode, fill",
    [
        ((5, 3, 6, 7), (6, 7), 2, "constant", 0.0),
        ((5, 2, 6, 7), 4, (1, 3), "constant", -2.5),
        ((4, 6, 5), (3, 5), (0, 1, 2, 3), "edge", 0.0),
        ((6, 1, 4, 4), 4, 3, "reflect", 0.0),
        ((6, 1, 3, 3), 3, 5, "reflect", 0.0),  # padding wider than the image: folded again
        ((6, 1, 3, 4), (3, 4), (4, 2), "symmetric", 0.0),
        ((3, 2, 2, 3, 3), 3, 1, "constant", 0.0),  # (N, T, C, H, W): every leading axis alike
        ((4, 1, 5, 5), 3, None, "constant", 0.0),  # a plain random crop, no padding
    ],
)
def test_crop_matches_pad_then_slice(shape, size, padding, mode, fill):
    x = np.random.default_rng(1).standard_normal(shape)
    crop = RandomCrop(size, padding=padding, fill=fill, padding_mode=mode)
    expected = reference_crop(x, 7, size, padding, fill, mode)
    np.testing.assert_array_equal(crop(x, rng=7), expected)
    assert crop.output_shape(shape[1:]) == expected.shape[1:]


def test_flip_and_compose_match_references():
    x = np.random.default_rng(2).standard_normal((64, 2, 5, 5))
    np.testing.assert_array_equal(RandomHorizontalFlip(0.3)(x, rng=4), reference_flip(x, 4, 0.3))
    flips = (
        RandomHorizontalFlip(0.5).draw(np.random.default_rng(s), 64, (2, 5, 5)) for s in (0, 1)
    )
    assert 10 < int(next(flips)["flip"].sum()) < 54 and next(flips)["flip"].any()
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(x), x)
    # Compose draws in order from one generator: the crop's corners first, then the flips
    both = Compose([RandomCrop(5, padding=2), RandomHorizontalFlip()])
    rng = np.random.default_rng(9)
    cropped = reference_crop(x, 9, 5, 2)
    for _ in range(2):
        rng.integers(0, 5, size=64)  # advance past the crop's two draws
    flip = rng.random(64) < 0.5
    expected = np.where(flip[:, None, None, None], cropped[..., ::-1], cropped)
    np.testing.assert_array_equal(both(x, rng=9), expected)
    # the crop and flip fused into one gather equal the two applied one after the other
    params = both.draw(np.random.default_rng(3), 64, (2, 5, 5))
    crop, hflip = both.transforms
    np.testing.assert_array_equal(
        both.apply(x, params), hflip.apply(crop.apply(x, params[0]), params[1])
    )


def test_every_backend_matches_numpy_and_stays_on_the_device(backend):
    host = np.random.default_rng(3).standard_normal((6, 2, 5, 4)).astype(np.float32)
    x = backend.asarray(host)
    cases = [
        (RandomCrop((5, 4), padding=2, fill=0.5), lambda: reference_crop(host, 0, (5, 4), 2, 0.5)),
        (RandomCrop(3, padding=1, padding_mode="reflect"), None),
        (RandomHorizontalFlip(), lambda: reference_flip(host, 0)),
        (Compose([RandomCrop((5, 4), padding=1), RandomHorizontalFlip(0.7)]), None),
    ]
    for transform, reference in cases:
        out = transform(x, rng=0)
        assert backend.owns(out) and out.dtype == x.dtype, transform
        expected = transform(host, rng=0) if reference is None else reference()
        np.testing.assert_array_equal(nnx.to_numpy(out), expected, err_msg=repr(transform))
    params = RandomCrop(3, padding=1).draw(np.random.default_rng(0), 0, (2, 5, 4))
    empty = RandomCrop(3, padding=1).apply(x[:0, ...], params)
    assert backend.owns(empty) and tuple(empty.shape) == (0, 2, 3, 3)


def test_jax_without_x64_crops_float32():
    jax = pytest.importorskip("jax")
    with jax.enable_x64(False):
        be = nnx.get_backend("jax")
        host = np.random.default_rng(4).standard_normal((3, 1, 4, 4)).astype(np.float32)
        out = Compose([RandomCrop(4, padding=2), RandomHorizontalFlip()])(be.asarray(host), 5)
        assert str(out.dtype) == "float32"
        both = Compose([RandomCrop(4, padding=2), RandomHorizontalFlip()])
        np.testing.assert_array_equal(np.asarray(out), both(host, 5))


def test_seeded_choices_repeat_and_shards_of_a_batch_join_up():
    x = np.random.default_rng(5).standard_normal((10, 1, 6, 6))
    augment = Compose([RandomCrop(6, padding=2), RandomHorizontalFlip()])
    np.testing.assert_array_equal(augment(x, rng=3), augment(x, rng=3))
    assert not np.array_equal(augment(x, rng=3), augment(x, rng=4))
    assert not np.array_equal(
        augment(x, batch_generator(0, 0, 1)), augment(x, batch_generator(0, 1, 0))
    )
    # data-parallel training: each rank applies its rows of the global batch's choices
    params = augment.draw(batch_generator(1, 2, 3), 10, (1, 6, 6))
    shards = [augment.apply(x[a:b], take_rows(params, a, b)) for a, b in ((0, 4), (4, 7), (7, 10))]
    np.testing.assert_array_equal(np.concatenate(shards), augment.apply(x, params))


def test_bad_options_and_inputs_are_clear_errors():
    for kwargs, message in [
        ({"size": 0}, "size must be a positive integer"),
        ({"size": (3, 3, 3)}, "size must be a positive integer"),
        ({"size": 3, "padding": -1}, "padding must be an integer >= 0"),
        ({"size": 3, "padding": (1, 2, 3)}, "sequence of 2 or 4"),
        ({"size": 3, "fill": float("nan")}, "fill must be a finite number"),
        ({"size": 3, "padding_mode": "wrap"}, "padding_mode must be one of constant"),
    ]:
        with pytest.raises(ValueError, match=message):
            RandomCrop(**kwargs)
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\], got 1.5"):
        RandomHorizontalFlip(1.5)
    with pytest.raises(TypeError, match="expected nnx.augment transforms"):
        Compose([RandomCrop(3), "flip"])
    with pytest.raises(ValueError, match=r"image samples .* got samples of shape \(4,\)"):
        RandomCrop(3, padding=1)(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"image samples .* got samples of shape \(4,\)"):
        RandomHorizontalFlip()(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="crop 9x9 is larger than the padded image 7x7"):
        RandomCrop(9, padding=1)(np.zeros((2, 1, 5, 5)))
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator or a seed"):
        RandomCrop(3)(np.zeros((2, 1, 5, 5)), rng=-1)
    with pytest.raises(ValueError, match="3 rows and 3 cols drawn for a batch of 2"):
        gather_crop(np.zeros((2, 1, 3, 3)), np.zeros((3, 3), int), np.zeros((3, 3), int))


# ------------------------------------------------------------------ the Trainer


class Recorder(nnx.Module):
    """A linear classifier that keeps every batch it is given, with the mode it ran in."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.net = nnx.Sequential(nnx.Flatten(), nnx.Linear(n_in, n_out, rng=0))
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, nnx.to_numpy(x).copy()))
        return self.net(x)

    def backward(self, grad_out):
        return self.net.backward(grad_out)


def _images(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 4, 4)).astype(np.float32), rng.integers(0, 3, n)


def test_trainer_augments_training_batches_only():
    (x, y), (xv, yv) = _images(), _images(12, 1)
    model = Recorder(16, 3)
    augment = Compose([RandomCrop(4, padding=1), RandomHorizontalFlip()])
    opt = nnx.optim.SGD(model.parameters(), lr=0.1)
    trainer = nnx.Trainer(
        model, nnx.CrossEntropyLoss(), opt, seed=5, progress=False, augment=augment
    )
    trainer.fit((x, y), (xv, yv), epochs=2, batch_size=16, eval_batch_size=32)
    loader = DataLoader(nnx.data.ArrayDataset(x, y), 16, seed=5)
    expected = []
    for epoch in range(2):
        order = loader.permutation(epoch)
        for b in range(3):
            xb = x[order[16 * b : 16 * (b + 1)]]
            params = augment.draw(batch_generator(5, epoch, b), len(xb), (1, 4, 4))
            expected.append((True, augment.apply(xb, params)))
        expected.append((False, xv))  # the validation pass: never augmented
    assert len(model.seen) == len(expected)
    for (mode, got), (want_mode, want) in zip(model.seen, expected, strict=True):
        assert mode == want_mode
        np.testing.assert_array_equal(got, want)
    model.seen.clear()
    trainer.evaluate((xv, yv))
    trainer.predict(xv)
    for mode, got in model.seen:
        assert not mode
        np.testing.assert_array_equal(got, xv)


def _model():
    return nnx.Sequential(
        nnx.Flatten(), nnx.Linear(16, 8, rng=0), nnx.ReLU(), nnx.Linear(8, 3, rng=1)
    )


def _fit(device, epochs, load=None, save=None, jit=False):
    model = _model()
    opt = nnx.optim.Adam(model.parameters(), lr=0.01)
    augment = Compose([RandomCrop(4, padding=2, padding_mode="reflect"), RandomHorizontalFlip()])
    trainer = nnx.Trainer(
        model,
        nnx.CrossEntropyLoss(),
        opt,
        device=device,
        seed=2,
        progress=False,
        augment=augment,
        jit=jit,
    )
    if load is not None:
        trainer.load_checkpoint(load)
    trainer.fit(_images(), _images(8, 1), epochs=epochs, batch_size=16)
    if save is not None:
        trainer.save_checkpoint(save)
    return trainer


@pytest.mark.parametrize("device", ["numpy", "strict:device1"])  # the choices are host-drawn
def test_trainer_resumes_exactly_with_augmentation(tmp_path, device):
    straight = _fit(device, 4)
    _fit(device, 2, save=tmp_path / "half.npz")
    resumed = _fit(device, 4, load=tmp_path / "half.npz")
    assert straight.history.records[0]["train_loss"] != _plain_first_loss(device)
    for a, b in zip(straight.history.records, resumed.history.records, strict=True):
        assert {k: v for k, v in a.items() if k not in ("seconds", "samples_per_s")} == {
            k: v for k, v in b.items() if k not in ("seconds", "samples_per_s")
        }
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_compiled_jax_steps_train_on_the_same_augmented_batches():
    # the augmentation runs before the step that jax.jit compiles: the same crops and flips,
    # so the compiled JAX run follows the NumPy run (float32 rounding apart)
    pytest.importorskip("jax")
    eager, compiled = _fit("numpy", 2), _fit("jax", 2, jit=True)
    for a, b in zip(eager.history.records, compiled.history.records, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    for (name, a), (_, b) in zip(
        eager.model.state_dict().items(), compiled.model.state_dict().items(), strict=True
    ):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=name)


def _plain_first_loss(device):
    """The first epoch's loss without augmentation: augmentation must change it."""
    model = _model()
    opt = nnx.optim.Adam(model.parameters(), lr=0.01)
    trainer = nnx.Trainer(model, nnx.CrossEntropyLoss(), opt, device=device, seed=2, progress=False)
    return trainer.fit(_images(), None, epochs=1, batch_size=16).records[0]["train_loss"]


def test_trainer_refuses_augmentation_that_does_not_fit():
    def trainer(augment):
        model = nnx.Sequential(nnx.Flatten(), nnx.Linear(16, 3, rng=0))
        opt = nnx.optim.SGD(model.parameters(), lr=0.1)
        return nnx.Trainer(model, nnx.CrossEntropyLoss(), opt, progress=False, augment=augment)

    with pytest.raises(TypeError, match="augment must be an nnx.augment transform"):
        trainer(lambda x: x)
    x, y = _images()
    with pytest.raises(
        ValueError, match=r"turns samples of shape \(1, 4, 4\) into \(1, 3, 3\); it must keep"
    ):
        trainer(RandomCrop(3)).fit((x, y), epochs=1)
    with pytest.raises(ValueError, match=r"does not fit: .*got samples of shape \(16,\)"):
        trainer(RandomHorizontalFlip()).fit((x.reshape(40, 16), y), epochs=1)


# ------------------------------------------------------------------ the training command


def _main(capsys, *args):
    from nnx.cli.main import main

    capsys.readouterr()
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def _history(folder):
    rows = list(csv.DictReader((Path(folder) / "history.csv").read_text().splitlines()))
    return [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in rows]


DIGITS = ["--dataset", "digits", "--device", "cpu", "--hidden", "16", "--quiet"]


def test_command_line_augmentation_resumes_exactly_and_refuses_changes(tmp_path, capsys):
    pytest.importorskip("sklearn")
    import json

    from nnx.io.checkpoint import read_checkpoint

    args = [*DIGITS, "--random-crop", 1, "--hflip"]
    assert _main(capsys, *args, "--epochs", 4, "--out", tmp_path / "straight")[0] == 0
    assert _main(capsys, *args, "--epochs", 2, "--out", tmp_path / "split")[0] == 0
    code, _, err = _main(capsys, "--resume", tmp_path / "split" / "last.npz", "--epochs", 4)
    assert code == 0, err
    assert _history(tmp_path / "split") == _history(tmp_path / "straight")
    _, a = read_checkpoint(tmp_path / "straight" / "last.npz")
    _, b = read_checkpoint(tmp_path / "split" / "last.npz")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    settings = json.loads((tmp_path / "split" / "config.json").read_text())["settings"]
    assert settings["random_crop"] == 1 and settings["hflip"] is True
    assert _main(capsys, *DIGITS, "--epochs", 1, "--out", tmp_path / "plain")[0] == 0
    assert _history(tmp_path / "plain")[0] != _history(tmp_path / "straight")[0]
    for flag, name in ((["--random-crop", 2], "--random-crop"), (["--no-hflip"], "--hflip")):
        code, _, err = _main(
            capsys, "--resume", tmp_path / "split" / "last.npz", "--epochs", 5, *flag
        )
        assert code == 2 and f"{name} cannot change when resuming" in err, err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "spiral", "--random-crop", 2], "--random-crop needs image data"),
        (["--dataset", "vertical", "--hflip"], "--hflip needs image data"),
        (["--random-crop", -1], "--random-crop must be >= 0, got '-1'"),
        (["--random-crop", 1.5], "--random-crop must be an integer"),
        (["--model", "lstm", "--hflip"], "--random-crop and --hflip augment images"),
    ],
)
def test_command_line_refuses_augmentation_that_cannot_apply(tmp_path, capsys, args, message):
    code, _, err = _main(capsys, *args, "--epochs", 1, "--out", tmp_path / "r", "--quiet")
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_command_line_cnn_preset_on_cifar10_images_with_crop_and_flip(tmp_path, capsys):
    import json

    from tests.datasets.test_cifar import _files

    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name, data in _files().items():
        (folder / name).write_bytes(data)
    args = ["--dataset", "cifar10", "--data-dir", tmp_path, "--model", "cnn", "--device", "cpu"]
    code, _, err = _main(
        capsys, *args, "--random-crop", 4, "--hflip", "--epochs", 1, "--out", tmp_path / "r",
        "--quiet",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["dataset"] == "cifar10" and summary["epochs"] == 1
