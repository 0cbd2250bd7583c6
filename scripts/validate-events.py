#!/usr/bin/env python3
"""Validates JSON lines against a JSON Schema (2020-12).

usage: memwarden run | scripts/validate-events.py schema/event.schema.json [--types TYPE,...]

Reads one JSON object a line on stdin. Lines whose "type" is not in --types
(when given) are skipped. Prints one result line per checked input line:
"ok <line number>" or "invalid <line number>: <path>: <message>" for each
problem; exits 1 when any line is invalid, 2 on a bad schema or usage.
"""
import json
import sys

import jsonschema


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    types = None
    if len(argv) > 3 and argv[2] == "--types":
        types = set(argv[3].split(","))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    bad = 0
    for number, line in enumerate(sys.stdin, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            print(f"invalid {number}: $: not JSON: {error}")
            bad += 1
            continue
        if types is not None and value.get("type") not in types:
            continue
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            bad += 1
            for error in errors:
                path = "$" + "".join(f"[{p!r}]" for p in error.absolute_path)
                print(f"invalid {number}: {path}: {error.message}")
        else:
            print(f"ok {number}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
