"""Typed ``--config`` values and one-line schema errors for the tomoflow configuration.

Snakemake parses nested ``--config`` values with YAML's base loader, so ``'recon={"iterations": 30}'``
arrives as ``{"iterations": "30"}``; :func:`coerce_config` converts such strings to the types
``workflow/schemas/config.schema.yaml`` gives before validation, and :func:`schema_error` reports the most
relevant violation as one :class:`~tomoflow.errors.InputError` line naming the key path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import InputError


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        return {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _scalar(value: str, kind: str) -> Any:
    s = value.strip()
    if kind == "integer":
        return int(s)
    if kind == "number":
        f = float(s)
        return int(f) if re.fullmatch(r"[-+]?\d+", s) else f
    if kind == "boolean":
        low = s.lower()
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0"):
            return False
    raise ValueError(value)


def coerce_value(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """``value`` converted to the JSON-schema types of ``schema`` where it is a string spelling of them.

    Snakemake parses nested ``--config`` values (``'recon={"iterations": 30}'``) with YAML's base
    loader, so every scalar inside arrives as a string.  Strings are turned into integers, numbers,
    booleans, arrays and objects as the schema asks, recursively through ``properties``, ``items``,
    ``$ref`` and ``oneOf``/``anyOf``; anything that does not convert is left for the validator to report.
    """
    root = schema if root is None else root
    schema = _resolve(schema, root)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            import jsonschema

            for sub in schema[key]:
                cand = coerce_value(value, sub, root)
                sub_full = {**_resolve(sub, root), "definitions": root.get("definitions", {})}
                if jsonschema.Draft202012Validator(sub_full).is_valid(cand):
                    return cand
            return value
    kind = schema.get("type")
    if isinstance(value, str) and kind in ("array", "object"):
        import yaml

        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        value = parsed if isinstance(parsed, (list, dict)) else value
    if isinstance(value, str) and kind in ("integer", "number", "boolean"):
        try:
            return _scalar(value, kind)
        except ValueError:
            return value
    if isinstance(value, list) and kind == "array" and isinstance(schema.get("items"), Mapping):
        return [coerce_value(v, schema["items"], root) for v in value]
    if isinstance(value, dict) and kind == "object":
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")  # e.g. `models:` entries (name -> overrides)
        return {k: coerce_value(v, props[k], root) if k in props else
                (coerce_value(v, extra, root) if isinstance(extra, Mapping) else v) for k, v in value.items()}
    return value


def coerce_config(config: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Coerce ``config`` in place by :func:`coerce_value` (Snakemake keeps a reference to the dict)."""
    typed = coerce_value(dict(config), schema)
    config.clear()
    config.update(typed)
    return config


def schema_error(config: Mapping[str, Any], schema: Mapping[str, Any], source: str = "config") -> InputError | None:
    """The most relevant schema violation of ``config`` as one-line :class:`InputError`, or None."""
    import jsonschema
    from jsonschema.exceptions import best_match

    err = best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if err is None:
        return None
    path = ".".join(str(p) for p in err.absolute_path)
    where = f"{source} key `{path}`" if path else source
    if err.validator == "additionalProperties":
        allowed = sorted(_resolve(err.schema, schema).get("properties", {}))
        fix = f"remove the key or correct its spelling (allowed here: {', '.join(allowed)})"
    else:
        fix = "use a value allowed by workflow/schemas/config.schema.yaml (see config/README.md)"
    return InputError(where, err.message, fix)


