"""Atomic publishing and version choice in the model repository."""

from __future__ import annotations

import pytest

from models.errors import TrainerError
from models.export import choose_version, existing_versions, publish, validate_model_name


def test_publish_renames_a_complete_hidden_folder(tmp_path):
    seen = {}

    def write(folder):
        (folder / "saved_model.pb").write_bytes(b"x")
        seen["tmp"] = folder.name
        seen["final_visible_while_writing"] = (tmp_path / "m" / "1").exists()
        return "result"

    path, result = publish(tmp_path, "m", 1, write)
    assert result == "result" and path == tmp_path / "m" / "1"
    assert (path / "saved_model.pb").read_bytes() == b"x"
    assert seen["tmp"].startswith(".tmp-1-") and not seen["final_visible_while_writing"]
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["1"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failed_write_leaves_nothing(tmp_path, error):
    def write(folder):
        (folder / "variables").mkdir()
        (folder / "variables" / "half").write_bytes(b"x" * 100)
        raise error

    with pytest.raises(type(error)):
        publish(tmp_path, "m", 1, write)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_existing_versions(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    with pytest.raises(RuntimeError):
        publish(tmp_path, "m", 2, lambda folder: (_ for _ in ()).throw(RuntimeError("x")))
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["1"]


def test_version_published_meanwhile_is_not_overwritten(tmp_path):
    def write(folder):
        (tmp_path / "m" / "1").mkdir()
        (tmp_path / "m" / "1" / "theirs").write_text("x")

    with pytest.raises(TrainerError, match="meanwhile"):
        publish(tmp_path, "m", 1, write)
    assert [p.name for p in (tmp_path / "m" / "1").iterdir()] == ["theirs"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]


def test_choose_version(tmp_path):
    assert choose_version(tmp_path, "m", None) == 1
    for name in ("1", "7", ".tmp-8-ab", "latest", "0"):
        (tmp_path / "m" / name).mkdir(parents=True)
    assert existing_versions(tmp_path / "m") == [1, 7]
    assert choose_version(tmp_path, "m", None) == 8
    assert choose_version(tmp_path, "m", 3) == 3
    with pytest.raises(TrainerError, match="already exists"):
        choose_version(tmp_path, "m", 7)
    with pytest.raises(TrainerError, match="positive"):
        choose_version(tmp_path, "m", 0)


@pytest.mark.parametrize("name", ["iris", "a.b-c_d", "A1"])
def test_valid_model_names(name):
    assert validate_model_name(name) == name


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "a..b", "x" * 129, "-a"])
def test_invalid_model_names(name):
    with pytest.raises(TrainerError, match="invalid model name"):
        validate_model_name(name)
