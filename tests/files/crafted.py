"""Crafted files that every nnx file loader must refuse with one clear line.

Each builder takes a folder and returns the path of one hostile or broken file. Most start from
a real Trainer checkpoint (which ``nnx.load_model`` also reads: it embeds the architecture), so
that the one thing wrong with the file is the thing named.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

import nnx
from nnx.optim import SGD


def tiny_model() -> nnx.Module:
    return nnx.Sequential(nnx.Linear(3, 4, rng=0), nnx.ReLU(), nnx.Linear(4, 2, rng=1))


def tiny_trainer(model: nnx.Module | None = None) -> nnx.Trainer:
    model = tiny_model() if model is None else model
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    return nnx.Trainer(model, nnx.MSELoss(), opt, device="cpu", metrics=(), progress=False)


def good_checkpoint(folder: Path) -> Path:
    path = folder / "good.npz"
    if not path.exists():
        tiny_trainer().save_checkpoint(path)
    return path


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data, compress_type=method)
    return path


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    buffer = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _patch_central(
    path: Path, member: str, offset: int, fmt: str, value: int | None = None, *, bits_or: int = 0
) -> None:
    """Rewrite one field of ``member``'s central-directory entry (offset from its signature)."""
    data = bytearray(path.read_bytes())
    start = data.rfind(b"PK\x01\x02", 0, data.rindex(member.encode()))
    (old,) = struct.unpack_from(fmt, data, start + offset)
    struct.pack_into(fmt, data, start + offset, (old | bits_or) if value is None else value)
    path.write_bytes(bytes(data))


def truncated(folder: Path) -> Path:
    data = good_checkpoint(folder).read_bytes()
    path = folder / "truncated.npz"
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_member(folder: Path) -> Path:
    """The zip directory is intact but says the last member is longer than the file."""
    path = _zip(folder / "short_member.npz", _members(good_checkpoint(folder)))
    last = list(_members(path))[-1]
    size = len(_members(path)[last]) + 10**6
    _patch_central(path, last, 20, "<I", size)  # compressed size
    _patch_central(path, last, 24, "<I", size)  # uncompressed size
    return path


def bad_compression(folder: Path) -> Path:
    return _zip(folder / "lzma.npz", _members(good_checkpoint(folder)), zipfile.ZIP_LZMA)


def unknown_compression(folder: Path) -> Path:
    path = _zip(folder / "method99.npz", _members(good_checkpoint(folder)))
    _patch_central(path, "__meta__.npy", 10, "<H", 99)
    return path


def encrypted(folder: Path) -> Path:
    path = _zip(folder / "encrypted.npz", _members(good_checkpoint(folder)))
    for name in _members(good_checkpoint(folder)):
        _patch_central(path, name, 8, "<H", bits_or=0x1)
    return path


def huge_header(folder: Path) -> Path:
    members = _members(good_checkpoint(folder))
    members["model/0.weight.npy"] = _npy_header((4 * 10**11,)) + b"\0" * 16
    return _zip(folder / "huge.npz", members)


def zip_bomb(folder: Path) -> Path:
    members = _members(good_checkpoint(folder))
    n = 4 * 2**20  # 32 MiB of zeros deflate to ~32 KiB
    members["model/0.weight.npy"] = _npy_header((n,)) + bytes(8 * n)
    return _zip(folder / "bomb.npz", members, zipfile.ZIP_DEFLATED)


def deep_json(folder: Path) -> Path:
    members = _members(good_checkpoint(folder))
    deep = np.frombuffer(b"[" * 200_000 + b"]" * 200_000, dtype=np.uint8)
    members["__meta__.npy"] = _npy(deep)
    members["__model__.npy"] = _npy(deep)
    return _zip(folder / "deep.npz", members)


def huge_json(folder: Path) -> Path:
    members = _members(good_checkpoint(folder))
    n = 32 * 2**20  # "[]" * n: 64 MiB of JSON
    text = np.frombuffer(b"[" + b"[]," * (n // 3) + b"[]]", dtype=np.uint8)
    members["__meta__.npy"] = _npy(text)
    members["__model__.npy"] = _npy(text)
    return _zip(folder / "huge_json.npz", members)


def object_dtype(folder: Path) -> Path:
    members = _members(good_checkpoint(folder))
    members["model/0.weight.npy"] = _npy(np.array([{"a": 1}] * 12, dtype=object).reshape(3, 4))
    members["x_train.npy"] = _npy(np.array([{"a": 1}] * 3, dtype=object))
    return _zip(folder / "objects.npz", members)


def not_a_zip(folder: Path) -> Path:
    path = folder / "text.npz"
    path.write_text("hello, this is not an archive\n")
    return path


def folder_path(folder: Path) -> Path:
    path = folder / "folder.npz"
    path.mkdir(exist_ok=True)
    return path


def fifo(folder: Path) -> Path:
    path = folder / "fifo.npz"
    if not path.exists():
        os.mkfifo(path)
    return path


def dev_zero(folder: Path) -> Path:
    return Path("/dev/zero")


def torch_pickle(folder: Path) -> Path:
    """What ``torch.save`` wrote before 1.6: a pickle stream (never unpickled by nnx)."""
    path = folder / "model.pt"
    path.write_bytes(pickle.dumps({"state_dict": {"weight": [[1.0, 2.0]]}}, protocol=2))
    return path


def torch_zip(folder: Path) -> Path:
    """What ``torch.save`` writes today: a zip whose members are a pickle and raw storages."""
    return _zip(
        folder / "model_zip.pt",
        {"archive/data.pkl": pickle.dumps({"w": 1}, protocol=2), "archive/data/0": b"\0" * 16},
    )


def huge_architecture(folder: Path) -> Path:
    """A model file whose record declares Linear(20000, 20000) next to 2 stored numbers."""
    meta = {
        "format": "nnx-model",
        "version": 1,
        "architecture": {"type": "Linear", "args": {"in_features": 20000, "out_features": 20000}},
        "ties": [],
    }
    members = {
        "__model__.npy": _npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)),
        "model/weight.npy": _npy(np.ones((1, 1), np.float32)),
        "model/bias.npy": _npy(np.ones(1, np.float32)),
    }
    return _zip(folder / "huge_arch.npz", members)


def huge_embedded_architecture(folder: Path) -> Path:
    """A checkpoint whose embedded model record declares a 20000 x 20000 first layer."""
    members = _members(good_checkpoint(folder))
    meta = json.loads(np.load(io.BytesIO(members["__meta__.npy"])).tobytes())
    meta["model"]["architecture"]["modules"][1]["args"]["in_features"] = 20000
    meta["model"]["architecture"]["modules"][1]["args"]["out_features"] = 20000
    members["__meta__.npy"] = _npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    return _zip(folder / "huge_embedded.npz", members)


CRAFTED = {
    "truncated": truncated,
    "truncated-member": truncated_member,
    "bad-compression": bad_compression,
    "unknown-compression": unknown_compression,
    "encrypted": encrypted,
    "huge-header": huge_header,
    "zip-bomb": zip_bomb,
    "deep-json": deep_json,
    "huge-json": huge_json,
    "object-dtype": object_dtype,
    "not-a-zip": not_a_zip,
    "folder": folder_path,
    "fifo": fifo,
    "dev-zero": dev_zero,
    "torch-pickle": torch_pickle,
    "torch-zip": torch_zip,
    "huge-architecture": huge_architecture,
}
# hostile only to loaders that rebuild the model from the file (load_model, --resume): the
# loaders given a model ignore the embedded architecture
REBUILT = {"huge-embedded-architecture": huge_embedded_architecture}
