"""Operators' identity decisions, read from the corrections stream beside document corrections
(`<data root>/corrections/*.jsonl`, docs/corrections.md):

- `{"same": ["<identity id>", "<identity id>"], "by", "at"}`: the two are one entity; the graph
  keeps the older id and points the other at it (`merged_into`), so yesterday's ids resolve;
- `{"not_same": {"document": "<SHA-256>", "name": "<form>", "identity": "<id>"}, "by", "at"}`:
  that form of that document does not name that identity; it is moved to an identity of its
  own in its document.

Each line is checked with `DECISION_SCHEMA` and refused with its reason like any other
corrections line. A decision's id is the SHA-256 of its canonical JSON: applying it twice
changes nothing, and no later night undoes it (graph_identity.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import jsonschema
from pydantic import Field, ValidationError

from ...shared.json_schema import schema_violation
from ..extraction.batch import (MAX_KEY_CHARS, MAX_PATH_CHARS, SafeText, Sha256, StrictModel,
                                describe)

#: The keys that make a corrections line an identity decision.
DECISION_KEYS = ("same", "not_same")

_ID = {"type": "string", "minLength": 1, "maxLength": MAX_PATH_CHARS}
DECISION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "same": {"type": "array", "items": _ID, "minItems": 2, "maxItems": 2},
        "not_same": {"type": "object", "properties": {
            "document": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS},
            "identity": _ID},
            "required": ["document", "name", "identity"], "additionalProperties": False},
        "by": {"type": "string", "minLength": 1, "maxLength": 200},
        "at": {"type": "string", "minLength": 1, "maxLength": 64},
    },
    "required": ["by", "at"],
    "oneOf": [{"required": ["same"]}, {"required": ["not_same"]}],
    "additionalProperties": False,
}
_VALIDATOR = jsonschema.Draft202012Validator(DECISION_SCHEMA)


class IdentityDecision(StrictModel):
    """One decision as the graph applies it: its `id`, `kind`, the two `identities` (`same`:
    both; `not_same`: the identity the form is not), for `not_same` the `document` and form
    `name`, who (`by`) and when (`at`, UTC)."""

    id: Sha256
    kind: Literal["same", "not_same"]
    identities: list[SafeText(MAX_PATH_CHARS)] = Field(min_length=1, max_length=2)
    document: Sha256 | Literal[""] = ""
    name: SafeText(MAX_KEY_CHARS, min_length=0) = ""
    by: SafeText(200)
    at: SafeText(64)


def is_decision(record: Any) -> bool:
    """True when a parsed corrections line is an identity decision."""
    return isinstance(record, dict) and any(key in record for key in DECISION_KEYS)


def parse_decision(record: dict, at: str) -> IdentityDecision:
    """The decision a corrections line holds; `at` its time already made UTC.

    Raises:
        ValueError: breaks DECISION_SCHEMA or the model's rules (the message names the field),
            or `same` names one identity twice.
    """
    problem = schema_violation(_VALIDATOR, record)
    if problem:
        raise ValueError(problem)
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    if "same" in record:
        if record["same"][0] == record["same"][1]:
            raise ValueError("at same: an identity is the same as itself")
        fields = {"kind": "same", "identities": record["same"]}
    else:
        apart = record["not_same"]
        fields = {"kind": "not_same", "identities": [apart["identity"]],
                  "document": apart["document"], "name": apart["name"]}
    try:
        return IdentityDecision.model_validate({
            "id": hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest(),
            "by": record["by"], "at": at, **fields})
    except ValidationError as exc:
        raise ValueError(describe(exc)) from None
