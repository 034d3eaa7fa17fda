"""Read and write weights in the matterport / Keras-2 ``.h5`` layout.

Layout (what matterport's ``mask_rcnn_coco.h5`` and ``save_weights`` of
Keras 2 use, and what :func:`save_weights_h5` writes):

- root attrs ``layer_names`` (every layer of the model, in ``model.layers``
  order), ``backend``, ``keras_version``;
- one group per layer, attr ``weight_names`` ordered like ``layer.weights``
  (empty for layers without weights);
- one dataset per weight at ``<layer>/<weight_name>``, weight names like
  ``conv1/kernel:0``; a nested model stores its inner layers' names, e.g.
  ``rpn_model/rpn_conv_shared/kernel:0``.

Keras 3 native ``.weights.h5`` files (what ``keras_model.save_weights`` writes) load the
same way, whole or by name with ``exclude``: each layer's group there carries the layer's
name (attr ``name`` of ``<path>/vars``), its weights are ``vars/0``, ``vars/1``, ... in
``layer.weights`` order, and a nested model keeps its inner layers under ``layers/``.

Only h5py reads the file: no pickle, nothing from the file is executed.
"""
import logging
import os
import uuid

import h5py
import keras
import numpy as np

logger = logging.getLogger(__name__)

# Keras 2 split attributes bigger than the HDF5 object header limit into
# numbered chunks (layer_names0, layer_names1, ...); we read and write the same.
_HDF5_ATTR_LIMIT = 64512


def _owner_names(layer):
    """Map id(variable) -> name of the innermost layer that owns it."""
    owners = {}
    if isinstance(layer, keras.Model):
        for sub in layer.layers:
            for key, value in _owner_names(sub).items():
                owners.setdefault(key, value)
    for var in layer.weights:
        owners.setdefault(id(var), layer.name)
    return owners


def weight_names(layer):
    """Legacy names of ``layer.weights``, in that order.

    Args:
        layer: a built Keras layer (or a nested ``keras.Model``).

    Returns:
        list of str like ``"conv1/kernel:0"``; for a nested model the inner
        layer's name, e.g. ``"rpn_conv_shared/kernel:0"``.
    """
    owners = _owner_names(layer)
    return [f"{owners.get(id(var), layer.name)}/{var.name}:0" for var in layer.weights]


def _write_str_list(attrs, name, values):
    data = np.array([v.encode("utf8") for v in values], dtype=bytes if values else "S1")
    if data.nbytes <= _HDF5_ATTR_LIMIT:
        attrs[name] = data
        return
    chunks = int(np.ceil(data.nbytes / _HDF5_ATTR_LIMIT))
    for i, part in enumerate(np.array_split(data, chunks)):
        attrs[f"{name}{i}"] = part


def _decode(value):
    return value.decode("utf8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _read_str_list(attrs, name):
    """A list-of-strings attribute (maybe chunked, bytes or str); None if absent."""
    if name in attrs:
        parts = [attrs[name]]
    elif f"{name}0" in attrs:
        parts, i = [], 0
        while f"{name}{i}" in attrs:
            parts.append(attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    out = []
    for part in parts:
        out.extend(_decode(v) for v in np.atleast_1d(np.asarray(part, dtype=object)).tolist())
    return out


def save_weights_h5(model, filepath):
    """Write the weights of ``model`` in the matterport / Keras-2 layout.

    The file is written beside ``filepath`` under a temporary name and then
    moved over ``filepath`` (``os.replace``), so an interrupted save never
    leaves a truncated file at ``filepath``.

    Args:
        model: a built ``keras.Model``.
        filepath: str or path-like; its folder must exist.
    """
    filepath = os.fspath(filepath)
    folder = os.path.dirname(os.path.abspath(filepath))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder of the weights file does not exist: {folder!r}")
    tmp = os.path.join(folder, f".{os.path.basename(filepath)}.{uuid.uuid4().hex}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            _write_str_list(f.attrs, "layer_names", [layer.name for layer in model.layers])
            f.attrs["backend"] = np.bytes_(keras.backend.backend())
            f.attrs["keras_version"] = np.bytes_(keras.__version__)
            for layer in model.layers:
                group = f.create_group(layer.name)
                names = weight_names(layer)
                _write_str_list(group.attrs, "weight_names", names)
                for name, var in zip(names, layer.weights):
                    group.create_dataset(name, data=np.asarray(keras.ops.convert_to_numpy(var)))
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    logger.info("Saved the weights of %d layers (all %d layers listed) to %s",
                sum(1 for layer in model.layers if layer.weights), len(model.layers), filepath)


def _legacy_root(f):
    """The group holding ``layer_names`` (root, or ``model_weights`` of a full Keras-2 save)."""
    for group in (f, f.get("model_weights")):
        if group is not None and _read_str_list(group.attrs, "layer_names") is not None:
            return group
    return None


def _is_native_keras3(f):
    return "layers" in f and "vars" in f


def _normalize_exclude(exclude):
    if exclude is None:
        return []
    if isinstance(exclude, str):
        return [exclude]
    try:
        names = list(exclude)
    except TypeError:
        raise TypeError(f"exclude must be a list of layer names, got {exclude!r}") from None
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"exclude must hold layer names (str), got {bad!r}")
    return names


def _match_order(file_names, model_names):
    """Permutation p with file value p[i] for model weight i.

    By name when the file's names equal the model's (so a differently ordered
    file still loads right); otherwise by position (file names may carry other
    prefixes, e.g. from TimeDistributed wrappers).
    """
    def key(name):
        return name[:-2] if name.endswith(":0") else name

    file_keys = [key(n) for n in file_names]
    model_keys = [key(n) for n in model_names]
    if sorted(file_keys) == sorted(model_keys) and len(set(file_keys)) == len(file_keys):
        return [file_keys.index(k) for k in model_keys]
    return list(range(len(model_names)))


def load_weights_h5(model, filepath, by_name=False, exclude=None, rename=None):
    """Load ``.h5`` weights (matterport / Keras-2 layout, or Keras 3 native) into ``model``.

    Nothing is assigned unless every selected layer checks out, so an error
    leaves the model unchanged.

    Args:
        model: a built ``keras.Model``.
        filepath: str or path-like of an HDF5 file.
        by_name: False: the file must hold every weighted layer of the model
            (not excluded) and no weighted layer the model lacks. True: load the
            layers whose names match and skip (and log) the others.
        exclude: list of layer names not to load (e.g. the class-count
            dependent ``mrcnn_class_logits``, ``mrcnn_bbox_fc``, ``mrcnn_mask``).
        rename: optional {file layer name: model layer name} applied to the file's
            layer names before matching (e.g. Keras-applications ImageNet files).

    Returns:
        dict with lists of layer names: "loaded" and "skipped_in_file"
        (weighted layers in the file that the model lacks), both in file
        order; "missing_in_file" (weighted model layers that the file lacks),
        in ``model.layers`` order; "excluded" (the ``exclude`` names found in
        the file or the model).

    Layers are matched by name in both modes. Within a layer, weights are
    matched by name when the file's weight names equal the model's (so the
    order does not matter), otherwise by position in ``weight_names`` order.

    Raises:
        FileNotFoundError: no file at ``filepath``.
        ValueError: not an HDF5 file; a weight count that differs; weight shapes that
            differ (one message naming every such layer, each weight and both shapes, and
            the ``exclude`` list that loads the rest); layers missing with ``by_name=False``.
    """
    filepath = os.fspath(filepath)
    exclude = _normalize_exclude(exclude)
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"weights file not found: {filepath!r}")
    if not h5py.is_hdf5(filepath):
        raise ValueError(f"not an HDF5 weights file: {filepath!r}")

    model_layers = {layer.name: layer for layer in model.layers if layer.weights}
    unknown = [n for n in exclude if n not in model_layers]
    if unknown:
        logger.info("exclude names layers without weights in the model: %s", unknown)

    try:
        handle = h5py.File(filepath, "r")
    except OSError as err:  # h5py's messages ("truncated file: eof = ...") omit the file
        raise OSError(f"cannot read the weights file {filepath!r} (truncated or damaged? "
                      f"{os.path.getsize(filepath)} bytes): {err}") from None
    with handle as f:
        root = _legacy_root(f)
        if root is None:
            native = _is_native_keras3(f)
        else:
            plan, report = _plan_legacy(root, model_layers, filepath, by_name, exclude,
                                        dict(rename or {}))

    if root is None:
        if not native:
            raise ValueError(
                f"{filepath!r} is HDF5 but neither the legacy Keras-2 weight layout "
                "(root attr 'layer_names') nor a Keras 3 '.weights.h5' file"
            )
        return _load_native(model, filepath, by_name, exclude, model_layers)

    for var, value in plan:
        var.assign(value)
    logger.info("Loaded the weights of %d of the model's %d layers with weights from %s",
                len(report["loaded"]), len(model_layers), filepath)
    if report["skipped_in_file"]:
        logger.info("Layers in %s not in the model (skipped): %s", filepath, report["skipped_in_file"])
    if report["missing_in_file"]:
        logger.warning("Weighted layers not in %s (left as they are): %s",
                       filepath, report["missing_in_file"])
    return report


def _plan_legacy(root, model_layers, filepath, by_name, exclude, rename):
    """Check the file against the model; return ([(variable, value)], report)."""
    file_layers = _read_str_list(root.attrs, "layer_names")
    excluded = set(exclude)
    plan, loaded, skipped, seen, mismatched = [], [], [], set(), {}
    for file_name in file_layers:
        if file_name not in root:
            continue
        group = root[file_name]
        names = _read_str_list(group.attrs, "weight_names") or []
        if not names:
            continue
        name = rename.get(file_name, file_name)
        seen.add(name)
        if name in excluded:
            continue
        layer = model_layers.get(name)
        if layer is None:
            skipped.append(name)
            continue
        variables = layer.weights
        if len(names) != len(variables):
            raise ValueError(
                f"layer {name!r}: {filepath!r} holds {len(names)} weights {names}, "
                f"the model layer has {len(variables)} {weight_names(layer)}"
            )
        order = _match_order(names, weight_names(layer))
        values = [np.asarray(group[names[idx]]) for idx in order]
        bad = _shape_mismatches(variables, values, [names[idx] for idx in order])
        if bad:
            mismatched[name] = bad
            continue
        plan.extend((var, value.astype(var.dtype)) for var, value in zip(variables, values))
        loaded.append(name)
    _raise_mismatches(mismatched, filepath)
    return plan, _load_report(filepath, model_layers, seen, loaded, skipped, exclude, by_name)


def _load_report(filepath, model_layers, file_layers, loaded, skipped, exclude, by_name):
    """The report of a load plan; raises ValueError when by_name=False and the layers differ.

    model_layers / file_layers: names of the weighted layers of the model / of the file.
    loaded, skipped: names loaded, and file layers not in the model. exclude: names excluded.
    Returns {"loaded", "skipped_in_file", "missing_in_file", "excluded"}: lists of names.
    """
    missing = [n for n in model_layers if n not in file_layers and n not in exclude]
    if not by_name and (missing or skipped):
        raise ValueError(
            f"{filepath!r} does not hold the same weighted layers as the model (by_name=False): "
            f"model layers missing in the file: {missing}; file layers missing in the model: {skipped}. "
            "Use by_name=True (and exclude=[...]) to load a subset."
        )
    return {
        "loaded": loaded,
        "skipped_in_file": skipped,
        "missing_in_file": missing,
        "excluded": [n for n in exclude if n in file_layers or n in model_layers],
    }


def _shape_mismatches(variables, values, names):
    """['name: file shape -> model shape', ...] for the values whose shape differs."""
    return [f"{n} {tuple(v.shape)} in the file, {tuple(var.shape)} in the model"
            for var, v, n in zip(variables, values, names) if tuple(v.shape) != tuple(var.shape)]


def _raise_mismatches(mismatched, filepath):
    """One ValueError naming every layer whose weight shapes differ, suggesting ``exclude``."""
    if not mismatched:
        return
    details = "; ".join(f"{layer}: {', '.join(bad)}" for layer, bad in mismatched.items())
    raise ValueError(
        f"{filepath!r}: the weights of {len(mismatched)} layer(s) differ in shape from the "
        f"model: {details}. A different NUM_CLASSES (or backbone) than the file's? Load the "
        f"rest with load_weights(path, by_name=True, exclude={list(mismatched)!r})"
    )


def _native_groups(f):
    """{top-level layer name: {owner layer name: [h5py datasets in weight order]}}.

    Reads a Keras 3 ``.weights.h5`` file: ``layers/<key>/vars`` (attr ``name``) holds a
    layer's own weights ``0, 1, ...``; a nested model has its layers under ``layers/<key>/
    layers/``. Layers without weights are left out.
    """
    def own(group):
        vars_group = group.get("vars")
        if vars_group is None:
            return None, []
        name = vars_group.attrs.get("name")
        return (None if name is None else _decode(name),
                [vars_group[str(i)] for i in range(len(vars_group))])

    def collect(group, into):
        name, values = own(group)
        if name is not None and values:
            into[name] = values
        for key in (group.get("layers") or {}):
            collect(group["layers"][key], into)

    layers = {}
    for key in f["layers"]:
        name, _ = own(f["layers"][key])
        if name is None:
            continue
        owners = {}
        collect(f["layers"][key], owners)
        if owners:
            layers[name] = owners
    return layers


def _owned_weights(layer):
    """[(owner layer name, index in the owner's weights, variable)] in ``layer.weights`` order."""
    if isinstance(layer, keras.Model):
        out = []
        for inner in layer.layers:
            out.extend(_owned_weights(inner))
        return out
    return [(layer.name, i, var) for i, var in enumerate(layer.weights)]


def _load_native(model, filepath, by_name, exclude, model_layers):
    """Plan, check and assign a Keras 3 native file, with load_weights_h5's rules."""
    excluded = set(exclude)
    plan, loaded, skipped, mismatched = [], [], [], {}
    with h5py.File(filepath, "r") as f:
        file_layers = _native_groups(f)
        for name, owners in file_layers.items():
            if name in excluded:
                continue
            layer = model_layers.get(name)
            if layer is None:
                skipped.append(name)
                continue
            owned = _owned_weights(layer)
            if len(owned) != len(layer.weights) or sum(map(len, owners.values())) != len(owned):
                raise ValueError(
                    f"layer {name!r}: {filepath!r} holds {sum(map(len, owners.values()))} "
                    f"weights, the model layer has {len(layer.weights)} {weight_names(layer)}")
            try:
                values = [np.asarray(owners[owner][i]) for owner, i, _ in owned]
            except (KeyError, IndexError):
                raise ValueError(
                    f"layer {name!r}: the inner layers in {filepath!r} ({sorted(owners)}) are not "
                    f"the model's ({sorted({o for o, _, _ in owned})})") from None
            variables = [var for _, _, var in owned]
            bad = _shape_mismatches(variables, values, [f"{o}/{i}" for o, i, _ in owned])
            if bad:
                mismatched[name] = bad
                continue
            plan.extend((var, value.astype(var.dtype)) for var, value in zip(variables, values))
            loaded.append(name)
    _raise_mismatches(mismatched, filepath)
    report = _load_report(filepath, model_layers, file_layers, loaded, skipped, exclude, by_name)
    missing = report["missing_in_file"]
    for var, value in plan:
        var.assign(value)
    logger.info("Loaded %d layers from the Keras 3 weights file %s", len(loaded), filepath)
    if skipped:
        logger.info("Layers in %s not in the model (skipped): %s", filepath, skipped)
    if missing:
        logger.warning("Weighted layers not in %s (left as they are): %s", filepath, missing)
    return report
