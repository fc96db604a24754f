"""Artifact format: atomic writes, schema version and checksum checks."""
import json
import shutil

import pytest

from runtimes.artifact import MANIFEST_NAME, load_artifact, read_manifest, staging_dir, update_manifest
from runtimes.errors import ArtifactError


@pytest.fixture
def artifact_copy(tiny_artifacts, tmp_path):
    dst = tmp_path / "art"
    shutil.copytree(tiny_artifacts["text-classification", "onnxruntime"], dst)
    return dst


def test_manifest_records_what_design_asks_for(tiny_artifacts):
    m = load_artifact(tiny_artifacts["question-answering", "onnxruntime"]).manifest
    assert (m.schema_version, m.task, m.backend, m.precision) == (1, "question-answering", "onnxruntime", "fp32")
    assert [t.name for t in m.inputs] == ["input_ids", "attention_mask"]
    assert [t.name for t in m.outputs] == ["start_logits", "end_logits"]
    assert m.shape_profile["max"]["sequence"] == 512
    assert m.source["kind"] == "builtin" and m.source["name"] == "tiny"
    assert {"torch", "transformers", "onnx", "onnxruntime"} <= set(m.versions)
    assert {"model.onnx", "tokenizer.json"} <= set(m.files)
    assert all(len(d) == 64 for d in m.files.values())
    assert m.parity["export_validation"]["passed"] is True


def test_tampered_model_file_is_rejected(artifact_copy):
    model = artifact_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model.onnx: sha256 mismatch.*re-export"):
        load_artifact(artifact_copy)


def test_truncated_model_file_is_rejected(artifact_copy):
    model = artifact_copy / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_artifact(artifact_copy)


def test_missing_file_is_rejected(artifact_copy):
    (artifact_copy / "tokenizer.json").unlink()
    with pytest.raises(ArtifactError, match="tokenizer.json: missing"):
        load_artifact(artifact_copy)


def test_unknown_schema_version_is_rejected(artifact_copy):
    mfile = artifact_copy / MANIFEST_NAME
    data = json.loads(mfile.read_text())
    data["schema_version"] = 99
    mfile.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"schema version 99 is not supported.*reads version 1"):
        load_artifact(artifact_copy)


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_artifact(tmp_path / "nope")
    with pytest.raises(ArtifactError, match="no manifest.json"):
        load_artifact(tmp_path)


def test_staging_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staging_dir(target) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_staging_dir_replaces_an_artifact_only_when_complete(artifact_copy):
    before = read_manifest(artifact_copy)
    with pytest.raises(RuntimeError):
        with staging_dir(artifact_copy):
            raise RuntimeError("boom")
    assert read_manifest(artifact_copy) == before
    assert sorted(p.name for p in artifact_copy.parent.iterdir()) == ["art"]


def test_staging_dir_refuses_to_clobber_other_directories(tmp_path):
    (tmp_path / "precious.txt").write_text("keep")
    with pytest.raises(ArtifactError, match="not a directory this tool wrote"):
        with staging_dir(tmp_path):
            pass
    assert (tmp_path / "precious.txt").read_text() == "keep"


def test_update_manifest_keeps_checksums_valid(artifact_copy):
    update_manifest(artifact_copy, parity={"suite": {"passed": True}})
    assert load_artifact(artifact_copy).manifest.parity == {"suite": {"passed": True}}
