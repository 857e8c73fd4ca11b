"""Validates FHIR R4 resources, one JSON file each, with an implementation no one here wrote:
the `fhir.resources` package's R4B models (R4B equals R4 element for element for the resources
naast serves). Structure, types and cardinality come from the models; codes of required
bindings are checked against the allowed values the models list for each code element.

Usage: python3 validate_fhir.py FILE...   Exits 1 naming every resource that fails.
"""

import importlib
import json
import sys


def model_class(resource_type):
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    return getattr(module, resource_type)


def bad_codes(model, path, found):
    """Coded elements whose value is not among the values the model allows."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        extra = field.json_schema_extra or {}
        allowed = extra.get("enum_values") if isinstance(extra, dict) else None
        # The models list at most four codes and end a longer list with "+": such a list says
        # which codes are allowed only in part, so it cannot refuse one.
        if allowed and "+" in allowed:
            allowed = None
        # CapabilityStatement.format is bound to the MIME types (`json` or any media type such as
        # application/fhir+json); the models list words of its definition instead of codes.
        if f"{path}.{name}" == "CapabilityStatement.format":
            allowed = None
        values = value if isinstance(value, list) else [value]
        for item in values:
            if allowed and isinstance(item, str) and item not in allowed:
                found.append(f"{path}.{name}: {item!r} is not one of {allowed}")
            elif hasattr(type(item), "model_fields"):
                bad_codes(item, f"{path}.{name}", found)


def main(paths):
    failures = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            resource = json.load(f)
        kind = resource.get("resourceType", "?")
        try:
            model = model_class(kind).model_validate(resource)
        except Exception as error:  # the models raise pydantic's ValidationError
            failures.append(f"{path} ({kind}): {error}")
            continue
        codes = []
        bad_codes(model, kind, codes)
        failures.extend(f"{path}: {c}" for c in codes)
    for failure in failures:
        print(failure)
    print(f"{len(paths) - len(failures)} valid, {len(failures)} invalid")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
