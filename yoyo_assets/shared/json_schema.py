"""One way to say why a JSON value breaks a JSON Schema, for documents, answers and tuples."""

from typing import Any

import jsonschema


def schema_violation(validator: jsonschema.protocols.Validator, instance: Any) -> str | None:
    """`at <json/path>: <message>` for the most relevant error (jsonschema's `best_match`), or
    None when `instance` is valid; `(root)` names the whole value."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        return None
    return f"at {'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
