"""Exporting a trained head for the edge: ``.keras`` -> SavedModel + TFLite/LiteRT files + ``export.json``.

``export_head(model_path, out_dir)`` writes, in ``out_dir``:

- ``saved_model/``: a TF SavedModel whose ``serve`` (= ``serving_default``) signature takes ``(None, T, D)``
  float32 windows and returns the ``(None, 2)`` softmax;
- ``head-<variant>.tflite`` per variant, converted from that SavedModel with TFLite *builtin* ops only
  (no Select TF ops, which edge runtimes do not ship): ``float32``; ``float16`` (weights stored in
  float16); ``int8`` (dynamic-range quantization: int8 weights, float activations, no representative
  data; TFLite leaves tensors under 1024 values in float32);
- ``export.json`` LAST: format, the model file and its sha256, ``(T, D)``, each variant's file, sha256
  and size, a probe check, the library versions, and the caller's facts (backbone, streams, ...).

Recurrent layers: Keras runs an LSTM/GRU as a TF while-loop over a TensorList, which builtin TFLite
cannot lower with a dynamic batch. The exported graph is therefore a clone of the model with every
recurrent layer (also inside ``Bidirectional``) set to ``unroll=True`` (T is fixed, so the loop becomes
T plain steps of MatMul/Add/Sigmoid/Tanh) holding the very same weights; the batch stays dynamic, so one
file serves batch 1 and batch N. The probe (a fixed seeded batch, run at batch 1 and 9) compares every
variant with the original Keras model; a float32 export off by more than ``TOLERANCES['float32']`` is
refused. Every file is written atomically; a re-export first removes ``export.json`` (a reader sees
"no export", never a mix), then replaces the files. ``load_export`` checks each file against its
sha256 before running it.
"""

from __future__ import annotations

import hashlib
import logging
import platform
from pathlib import Path

import numpy as np

from nexara_lib.deploy.convert import (
    ExportError,
    builtin_ops_model,
    convert_variant,
    first_line,
    quiet_conversion,
    write_saved_model,
)
from nexara_lib.deploy.head import HeadError, KerasHead, TFLiteHead, head_input_shape, quiet_tensorflow
from nexara_lib.deploy.parity import TOLERANCES, probe_windows
from nexara_lib.io import atomic_path, read_json, to_jsonable, write_json_atomic

EXPORT_FILE = "export.json"
SAVED_MODEL_DIR = "saved_model"
VARIANTS = ("float32", "float16", "int8")  # int8 = dynamic-range quantization (no representative data)
FORMAT = 1
PROBE_WINDOWS = 9  # the probe batch; its first window also runs alone (batch 1)
PROBE_SEED = 0
MANIFEST_KEYS = ("format", "model", "input", "saved_model", "variants", "versions")  # the export's own
RESERVED_KEYS = MANIFEST_KEYS + ("T", "D")  # facts may not use these
REEXPORT = "re-run `nexara export RUN_DIR`"

logger = logging.getLogger("nexara.deploy")


def head_file(variant: str) -> str:
    """The file name of a variant in an export folder."""
    return f"head-{variant}.tflite"


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_variants(variants) -> tuple[str, ...]:
    """The variants to export, in ``VARIANTS`` order; ``ExportError`` for an unknown, repeated or empty list."""
    chosen = [variants] if isinstance(variants, str) else list(variants or ())
    unknown = [v for v in chosen if v not in VARIANTS]
    if not chosen or unknown or len(set(chosen)) != len(chosen):
        raise ExportError(
            f"export variants must be a non-empty list without repeats of {list(VARIANTS)}, "
            f"got {variants!r}; set export_variants accordingly"
        )
    return tuple(v for v in VARIANTS if v in chosen)


# --- the model -------------------------------------------------------------------------


def _load_model(model_path: Path):
    from nexara_lib.training.model_files import load_sequence_model

    if not model_path.is_file():
        raise ExportError(
            f"model file {model_path} does not exist; train the run first (or give the .keras "
            "file of the carried-forward model)"
        )
    try:
        with quiet_conversion():
            return load_sequence_model(model_path)
    except Exception as err:
        raise ExportError(
            f"cannot load model {model_path} ({first_line(err)}); it must be a .keras file saved by this library"
        ) from None


# --- writing -----------------------------------------------------------------------------


def _probe(reference: KerasHead, path: Path, variant: str) -> float:
    """max |delta p| of a variant vs the Keras model on the probe batch, at batch 1 and batch 9."""
    x = probe_windows(reference.model, reference.T, reference.D, PROBE_WINDOWS, PROBE_SEED)
    want = reference.predict(x)
    try:
        head = TFLiteHead(path, num_threads=1, variant=variant)
        got = np.concatenate([head.predict(x[:1]), head.predict(x)])
    except (HeadError, ValueError) as err:
        raise ExportError(f"the {variant} export does not run: {err}") from None
    delta = np.abs(got.astype(np.float64) - np.concatenate([want[:1], want]))
    if not np.all(np.isfinite(delta)):
        raise ExportError(
            f"{path}: the {variant} export gives non-finite probabilities on the probe batch; "
            "the conversion is broken, do not deploy it"
        )
    return float(delta.max())


def _versions() -> dict:
    from importlib import metadata

    import keras
    import tensorflow as tf

    try:
        litert = metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        litert = None
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": litert,
        "numpy": np.__version__,
    }


def export_head(model_path, out_dir, *, variants=VARIANTS, facts: dict | None = None) -> dict:
    """Export a trained ``.keras`` head to a SavedModel and TFLite variants, then write ``export.json``.

    Args:
        model_path: the ``.keras`` model (loaded in safe mode).
        out_dir: the export folder (created; an earlier export there is replaced).
        variants: some of ``VARIANTS``.
        facts: JSON-ready facts to record at the top level of ``export.json`` (e.g. backbone, streams,
            threshold), checked later by ``check_export_matches``; may not use ``RESERVED_KEYS``.

    Returns:
        The manifest as written to ``out_dir/export.json``.

    Raises:
        ExportError: unreadable model, bad variants or facts, ops TFLite builtins lack, a broken conversion.
    """
    quiet_tensorflow()
    model_path, out_dir = Path(model_path), Path(out_dir)
    chosen = check_variants(variants)
    facts = dict(facts or {})
    clash = sorted(set(facts) & set(RESERVED_KEYS))
    if clash:
        raise ExportError(f"export facts may not use the manifest's own keys {clash}; rename them")
    try:
        facts = to_jsonable(facts)
    except TypeError as err:
        raise ExportError(f"export facts must be JSON-ready: {err}") from None
    model = _load_model(model_path)
    where = f"model {model_path}"
    if len(model.inputs) != 1:
        raise ExportError(f"{where}: a head has exactly one (N, T, D) input, the model has {len(model.inputs)}")
    try:
        T, D = head_input_shape(model.inputs[0].shape, where)
    except ValueError as err:
        raise ExportError(str(err)) from None
    if len(model.outputs) != 1 or tuple(model.outputs[0].shape[1:]) != (2,):
        raise ExportError(
            f"{where}: a head outputs one (N, 2) softmax, the model outputs {[tuple(o.shape) for o in model.outputs]}"
        )
    reference = KerasHead(model)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / EXPORT_FILE).unlink(missing_ok=True)  # from here until the end: "no export", never a mix
    write_saved_model(builtin_ops_model(model, where), T, D, out_dir / SAVED_MODEL_DIR, where)
    entries = {}
    for variant in chosen:
        blob = convert_variant(out_dir / SAVED_MODEL_DIR, variant, where)
        path = out_dir / head_file(variant)
        with atomic_path(path) as tmp:
            tmp.write_bytes(blob)
        delta = _probe(reference, path, variant)
        if variant == "float32" and delta > TOLERANCES["float32"]:
            raise ExportError(
                f"{path}: the float32 export differs from the Keras model by {delta:.2e} in p(violent) "
                f"on the probe batch (allowed {TOLERANCES['float32']:.0e}); the conversion is wrong, "
                "do not deploy it (report it with the model file)"
            )
        if delta > TOLERANCES[variant]:
            logger.warning(
                "%s: probe max |dp| %.2e exceeds the %s tolerance %.0e; check head_parity on real "
                "clips before deploying it",
                path,
                delta,
                variant,
                TOLERANCES[variant],
            )
        entries[variant] = {
            "file": path.name,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "bytes": len(blob),
            "probe_max_abs_delta": delta,
        }
        logger.info("exported %s (%d bytes, probe max |dp| %.2e)", path, len(blob), delta)
    for variant in set(VARIANTS) - set(chosen):  # a variant not re-exported must not linger
        (out_dir / head_file(variant)).unlink(missing_ok=True)
    manifest = to_jsonable(
        {
            "format": FORMAT,
            "model": {"file": model_path.name, "sha256": sha256_file(model_path), "name": model.name},
            "input": {"T": T, "D": D},
            "saved_model": SAVED_MODEL_DIR,
            "variants": entries,
            "versions": _versions(),
            **facts,
        }
    )
    write_json_atomic(out_dir / EXPORT_FILE, manifest)
    return manifest


# --- reading -----------------------------------------------------------------------------


def read_export(out_dir) -> dict:
    """The manifest of the export in ``out_dir``; ``ExportError`` when there is none or it is unreadable."""
    out_dir = Path(out_dir)
    path = out_dir / EXPORT_FILE
    try:
        manifest = read_json(path)
    except ValueError as err:
        raise ExportError(f"{err}; or {REEXPORT}") from None
    if manifest is None:
        raise ExportError(f"no export in {out_dir} ({EXPORT_FILE} is missing): run `nexara export RUN_DIR`")
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("variants"), dict)
        or not isinstance(manifest.get("input"), dict)
    ):
        raise ExportError(f"{path} is not an export manifest of format {FORMAT}; {REEXPORT}")
    return manifest


def load_export(out_dir, variant: str = "float32", num_threads: int = 2) -> tuple[TFLiteHead, dict]:
    """The exported head of ``variant`` in ``out_dir``, checked against ``export.json``, and the manifest.

    Raises:
        ExportError: no export; the variant was not exported; its file is missing or its sha256 differs
            from the manifest (truncated, corrupt or replaced); its input is not the manifest's (T, D).
    """
    out_dir = Path(out_dir)
    manifest = read_export(out_dir)
    variants = manifest["variants"]
    if variant not in variants:
        raise ExportError(
            f"the export in {out_dir} has no {variant!r} variant; exported: {sorted(variants)}. "
            f"Choose one of those, or add it to export_variants and {REEXPORT}"
        )
    entry = variants[variant]
    path = out_dir / str(entry.get("file", ""))
    if not path.is_file():
        raise ExportError(f"{path} is missing though {out_dir / EXPORT_FILE} lists it; {REEXPORT}")
    size, digest = path.stat().st_size, sha256_file(path)
    if digest != entry.get("sha256"):
        raise ExportError(
            f"{path} does not match {out_dir / EXPORT_FILE}: it has {size} bytes "
            f"(sha256 {digest[:12]}…), the export wrote {entry.get('bytes')} bytes "
            f"(sha256 {str(entry.get('sha256'))[:12]}…); "
            f"the file is truncated, corrupt or replaced: re-export ({REEXPORT})"
        )
    try:
        head = TFLiteHead(path, num_threads=num_threads, variant=variant)
    except ValueError as err:
        raise ExportError(str(err)) from None
    expected = (manifest["input"].get("T"), manifest["input"].get("D"))
    if (head.T, head.D) != expected:
        raise ExportError(f"{path} takes (T, D) = {(head.T, head.D)} but {EXPORT_FILE} says {expected}; {REEXPORT}")
    return head, manifest


def _facts(manifest: dict) -> dict:
    """What a run can be checked against: the recorded facts, plus T and D (from ``input``, or given flat)."""
    flat = {k: v for k, v in manifest.items() if k not in MANIFEST_KEYS}
    if isinstance(manifest.get("input"), dict):
        flat.update({k: manifest["input"][k] for k in ("T", "D") if k in manifest["input"]})
    return flat


def check_export_matches(manifest: dict, expected: dict, where: str | None = None) -> None:
    """Refuse an export made for another run: every key in both ``expected`` and the export must be equal.

    Args:
        manifest: from ``load_export`` / ``read_export`` (or a flat dict of facts with T and D).
        expected: what the run has, e.g. ``{"T": 16, "D": 1024, "streams": [...], "backbone": "..."}``.
        where: the export folder, for the message.

    Raises:
        ExportError: listing every mismatch as "<key>: export has X, the run has Y".
    """
    have = to_jsonable(_facts(manifest))
    want = to_jsonable(dict(expected))
    mismatches = [
        f"{key}: export has {have[key]!r}, the run has {want[key]!r}"
        for key in sorted(set(have) & set(want))
        if have[key] != want[key]
    ]
    if mismatches:
        place = f" in {where}" if where else ""
        raise ExportError(
            f"the export{place} was made for a different run:\n  "
            + "\n  ".join(mismatches)
            + f"\n{REEXPORT} to export this run's model"
        )
