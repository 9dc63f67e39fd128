"""A small declarative schema language: one definition validates requests and
produces the OpenAPI 3 / JSON Schema text documenting them.

Validation is strict: JSON types must match exactly (``true`` is not an integer,
``1.0`` is not an integer, ``NaN`` never parses), numbers must lie in range, strings
must match their length and pattern, and objects refuse fields they do not declare.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from fiftyone_clipbranches.service.errors import ValidationError

_MISSING = object()


def _join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


#: Unknown fields an error names (a body of thousands is not echoed back).
_UNKNOWN_SHOWN = 10


def _shown(name: str, width: int = 60) -> str:
    """``name``, cut to ``width`` characters with "..." when longer."""
    return name if len(name) <= width else name[: width - 3] + "..."


class Schema:
    """Base of every schema node: ``validate(value, path) -> value`` and ``to_openapi()``."""

    description: str = ""
    nullable: bool = False

    def validate(self, value, path: str = ""):
        if value is None:
            if self.nullable:
                return None
            raise ValidationError(path, f"must be {self.type_name()}, not null")
        return self._check(value, path)

    def _check(self, value, path: str):
        raise NotImplementedError

    def type_name(self) -> str:
        raise NotImplementedError

    def to_openapi(self) -> dict:
        doc = self._openapi()
        if self.description:
            doc["description"] = self.description
        if self.nullable:
            doc["nullable"] = True
        return doc

    def _openapi(self) -> dict:
        raise NotImplementedError


@dataclass
class Str(Schema):
    min_length: int = 0
    max_length: int = 1000
    pattern: str | None = None
    enum: tuple[str, ...] | None = None
    description: str = ""
    nullable: bool = False
    blank: bool = True  # False: more than white space is needed
    identifier: bool = False  # True: a Python identifier, as index keys are

    def type_name(self) -> str:
        return "a string"

    def _check(self, value, path):
        if not isinstance(value, str):
            raise ValidationError(path, f"must be a string, got {_json_type(value)}")
        try:
            if not value.isascii():  # ids, most names: no encoding to try
                value.encode("utf-8")
        except UnicodeEncodeError:  # JSON's "\ud800" escapes decode to these
            raise ValidationError(
                path, "must be valid Unicode (it holds a lone surrogate)"
            ) from None
        if self.enum is not None and value not in self.enum:
            raise ValidationError(
                path, f"must be one of {list(self.enum)}, got {value!r}"
            )
        if not self.min_length <= len(value) <= self.max_length:
            raise ValidationError(
                path,
                f"length must be in [{self.min_length}, {self.max_length}], "
                f"got {len(value)}",
            )
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ValidationError(path, f"must match {self.pattern!r}")
        if not self.blank and not value.strip():
            raise ValidationError(path, "must hold more than white space")
        if self.identifier and not value.isidentifier():
            raise ValidationError(
                path,
                "must be letters, digits and underscores, not starting with a digit",
            )
        return value

    def _openapi(self):
        doc = {
            "type": "string",
            "minLength": self.min_length,
            "maxLength": self.max_length,
        }
        if self.pattern is not None:
            doc["pattern"] = f"^{self.pattern}$"
        elif not self.blank:
            doc["pattern"] = r"\S"
        if self.enum is not None:
            doc["enum"] = list(self.enum)
        return doc


@dataclass
class Int(Schema):
    """An integer; ``words`` are strings accepted besides (e.g. ``"auto"``)."""

    minimum: int | None = None
    maximum: int | None = None
    description: str = ""
    nullable: bool = False
    words: tuple[str, ...] = ()

    def type_name(self) -> str:
        if self.words:
            return f"an integer or one of {list(self.words)}"
        return "an integer"

    def _check(self, value, path):
        if isinstance(value, str) and value in self.words:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(
                path, f"must be {self.type_name()}, got {_json_type(value)}"
            )
        _check_range(value, self.minimum, self.maximum, path)
        return value

    def _openapi(self):
        doc = _range_doc({"type": "integer"}, self.minimum, self.maximum)
        if self.words:
            return {"oneOf": [doc, {"type": "string", "enum": list(self.words)}]}
        return doc


@dataclass
class Num(Schema):
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""
    nullable: bool = False

    def type_name(self) -> str:
        return "a number"

    def _check(self, value, path):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(path, f"must be a number, got {_json_type(value)}")
        if not math.isfinite(value):
            raise ValidationError(path, "must be a finite number")
        _check_range(value, self.minimum, self.maximum, path)
        return float(value)

    def _openapi(self):
        return _range_doc({"type": "number"}, self.minimum, self.maximum)


@dataclass
class Bool(Schema):
    description: str = ""
    nullable: bool = False

    def type_name(self) -> str:
        return "a boolean"

    def _check(self, value, path):
        if not isinstance(value, bool):
            raise ValidationError(
                path, f"must be true or false, got {_json_type(value)}"
            )
        return value

    def _openapi(self):
        return {"type": "boolean"}


@dataclass
class Array(Schema):
    items: Schema = None
    min_items: int = 0
    max_items: int = 1000
    unique: bool = False
    description: str = ""
    nullable: bool = False
    #: What to do instead, said when the array holds more than ``max_items``.
    too_many: str = ""

    def type_name(self) -> str:
        return "an array"

    def _check(self, value, path):
        if not isinstance(value, list):
            raise ValidationError(path, f"must be an array, got {_json_type(value)}")
        if not self.min_items <= len(value) <= self.max_items:
            raise ValidationError(
                path,
                f"must hold between {self.min_items} and {self.max_items} items, "
                f"got {len(value)}"
                + (
                    f": {self.too_many}"
                    if len(value) > self.max_items and self.too_many
                    else ""
                ),
            )
        out = [self.items.validate(v, _join(path, i)) for i, v in enumerate(value)]
        if self.unique and len(set(out)) != len(out):
            raise ValidationError(path, "must not repeat items")
        return out

    def _openapi(self):
        doc = {
            "type": "array",
            "items": self.items.to_openapi(),
            "minItems": self.min_items,
            "maxItems": self.max_items,
        }
        if self.unique:
            doc["uniqueItems"] = True
        return doc


@dataclass
class Prop:
    """One field of an :class:`Object`: its schema, and its default when optional."""

    schema: Schema
    required: bool = False
    default: object = _MISSING


@dataclass
class Object(Schema):
    """A JSON object with declared fields only; optional fields get their default.

    ``exactly_one_of`` lists groups of field names of which exactly one must be
    given (and not null); fields of at most one of the sets in ``exclusive_sets``
    may be given.
    """

    props: dict[str, Prop] = field(default_factory=dict)
    exactly_one_of: tuple[tuple[str, ...], ...] = ()
    exclusive_sets: tuple[tuple[str, ...], ...] = ()
    description: str = ""
    nullable: bool = False

    def type_name(self) -> str:
        return "an object"

    def _check(self, value, path):
        if not isinstance(value, dict):
            raise ValidationError(
                path, f"must be a JSON object, got {_json_type(value)}"
            )
        unknown = sorted(k for k in value if k not in self.props)
        if unknown:
            named = [_shown(name) for name in unknown[:_UNKNOWN_SHOWN]]
            more = len(unknown) - len(named)
            raise ValidationError(
                path,
                f"unknown field(s) {named}{f' and {more} more' if more else ''};"
                f" allowed: {sorted(self.props)}",
            )
        out = {}
        for name, prop in self.props.items():
            if name in value:
                out[name] = prop.schema.validate(value[name], _join(path, name))
            elif prop.required:
                raise ValidationError(_join(path, name), "is required")
            elif prop.default is not _MISSING:
                out[name] = prop.default
        for group in self.exactly_one_of:
            given = [n for n in group if out.get(n) is not None]
            if len(given) != 1:
                raise ValidationError(
                    path, f"give exactly one of {list(group)}, got {given or 'none'}"
                )
        used = [
            s for s in self.exclusive_sets if any(out.get(n) is not None for n in s)
        ]
        if len(used) > 1:
            raise ValidationError(
                path, f"give fields of only one of {[list(s) for s in used]}"
            )
        return out

    def _openapi(self):
        doc = {
            "type": "object",
            "properties": {},
            "additionalProperties": False,
        }
        for name, prop in self.props.items():
            sub = prop.schema.to_openapi()
            # a default of None means "left out": OpenAPI 3.0 allows a null
            # default only for a nullable schema
            if prop.default is not _MISSING and (
                prop.default is not None or prop.schema.nullable
            ):
                sub["default"] = prop.default
            doc["properties"][name] = sub
        required = [n for n, p in self.props.items() if p.required]
        if required:
            doc["required"] = required
        one_ofs = [
            {"oneOf": [{"required": [name]} for name in group]}
            for group in self.exactly_one_of
        ]
        if self.exclusive_sets:
            clashes = [
                {"required": [a, b]}
                for i, first in enumerate(self.exclusive_sets)
                for second in self.exclusive_sets[i + 1 :]
                for a in first
                for b in second
            ]
            one_ofs.append({"not": {"anyOf": clashes}})
        if len(one_ofs) == 1:
            doc.update(one_ofs[0])
        elif one_ofs:
            doc["allOf"] = one_ofs
        return doc


def _check_range(value, minimum, maximum, path) -> None:
    if minimum is not None and value < minimum:
        raise ValidationError(path, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValidationError(path, f"must be <= {maximum}, got {value}")


def _range_doc(doc: dict, minimum, maximum) -> dict:
    if minimum is not None:
        doc["minimum"] = minimum
    if maximum is not None:
        doc["maximum"] = maximum
    return doc


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
