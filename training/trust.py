"""Only trusted models are loaded: a skops artifact whose types are on an explicit allowlist,
whose bytes hash to what was recorded when it was registered.

A model directory is hashed file by file (relative path and content), so a model file
swapped in the artifact store, or an MLmodel file edited to name another flavor, is
refused before anything in it is deserialized.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "MLmodel").write_text("flavors: {}")
>>> len(artifact_sha256(d))
64
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no hints; types-PyYAML is no dependency

# Beyond the types skops trusts by default (scikit-learn estimators, numpy arrays), the
# recipes in training/recipes.py produce exactly these. Nothing a model file names is
# trusted because it names it.
ALLOWED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.compose._column_transformer.make_column_selector",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
HASH_TAG = "driftctl.artifact_sha256"


class UntrustedModel(Exception):
    """A model artifact that is not loaded: wrong flavor or format, unknown types, or a hash mismatch."""


def artifact_sha256(directory: Path) -> str:
    """sha256 over every file below `directory`: its relative path, its size and its bytes."""
    digest = hashlib.sha256()
    root = Path(directory)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix().encode()
        digest.update(len(relative).to_bytes(4, "big") + relative + path.stat().st_size.to_bytes(8, "big"))
        with open(path, "rb") as source:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def untrusted_types(model: Any) -> list[str]:
    """Types in `model` that neither skops nor the allowlist trusts (empty for every recipe)."""
    import skops.io

    return [t for t in skops.io.get_untrusted_types(data=skops.io.dumps(model)) if t not in ALLOWED_TYPES]


def load_trusted(directory: Path, expected_sha256: str | None, what: str) -> Any:
    """Load the scikit-learn model in an MLflow model `directory`, or raise `UntrustedModel`."""
    import skops.io

    directory = Path(directory)
    if not expected_sha256:
        raise UntrustedModel(f"{what}: no artifact hash was recorded at registration ({HASH_TAG}); not loaded")
    actual = artifact_sha256(directory)
    if actual != expected_sha256:
        raise UntrustedModel(f"{what}: artifact sha256 {actual[:16]}... differs from the one recorded at "
                             f"registration {expected_sha256[:16]}...; not loaded")
    try:
        flavors = yaml.safe_load((directory / "MLmodel").read_text())["flavors"]
        sklearn = flavors["sklearn"]
    except Exception as exc:
        raise UntrustedModel(f"{what}: no scikit-learn flavor in its MLmodel file ({exc}); not loaded") from None
    if sklearn.get("serialization_format") != "skops":
        raise UntrustedModel(f"{what}: serialization format {sklearn.get('serialization_format')!r} refused; "
                             "only 'skops' is loaded")
    path = directory / sklearn["pickled_model"]
    found = [t for t in skops.io.get_untrusted_types(file=path) if t not in ALLOWED_TYPES]
    if found:
        raise UntrustedModel(f"{what}: types outside the allowlist: {', '.join(sorted(found))}; not loaded")
    return skops.io.load(path, trusted=list(ALLOWED_TYPES))
