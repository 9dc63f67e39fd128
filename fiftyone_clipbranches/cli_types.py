"""argparse types of the CLI's numeric options: what is wrong is said with the
option's name (argparse adds it), never by an internal check later."""

from __future__ import annotations

import argparse


class CommandLineError(ValueError):
    """Options argparse accepted that the command refuses (they contradict each
    other or the environment, or a value is refused on a closer look): a usage
    error, exit status 2 as argparse's own."""


def finite_number(unit: str, *, zero: bool = False):
    """A finite number of ``unit`` > 0 (>= 0 with ``zero``)."""
    bound = ">= 0" if zero else "> 0"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (value >= 0 if zero else value > 0) or value == float("inf"):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a number of {unit} {bound}"
            )
        return value

    return parse


def whole_number(minimum: int = 0, maximum: int | None = None):
    """A whole number from ``minimum`` (to ``maximum``, when given)."""
    bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if (
            value is None
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number {bounds}")
        return value

    return parse


def non_blank(what: str, *, strip: bool = True):
    """Text that is not empty or white space only (stripped with ``strip``: not a
    name matched as written, such as a tag)."""

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"give {what} (it is blank)")
        return text.strip() if strip else text

    return parse


class Once(argparse.Action):
    """An option given at most once: a second ``--text`` would otherwise replace
    the first silently, where a user may have meant both."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None:
            raise argparse.ArgumentError(
                self, "is given twice: give it once (one query per search)"
            )
        setattr(namespace, self.dest, values)


def ids_in_file(text: str, empty_ok: bool = False) -> list[str] | None:
    """The sample ids a file holds, separated by white space (one per line, as
    ``jq -r '.error.ids[]'`` writes them); None for ``-``, standard input, read
    by :func:`ids_from_stdin` once every option is known. An empty file is
    refused unless ``empty_ok`` (ids seen so far: none yet)."""
    if text == "-":
        return None
    try:
        with open(text, encoding="utf-8") as f:
            content = f.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or "not UTF-8 text"
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: {reason}") from e
    ids = content.split()
    if not ids and not empty_ok:
        raise argparse.ArgumentTypeError(f"{text!r} holds no sample ids")
    return ids


def seen_ids_in_file(text: str) -> list[str] | None:
    """:func:`ids_in_file` of ids seen so far: an empty file is none yet."""
    return ids_in_file(text, empty_ok=True)


def ids_from_stdin(empty_ok: bool = False) -> list[str]:
    """The sample ids standard input holds (:func:`ids_in_file`'s ``-``)."""
    import sys

    ids = sys.stdin.read().split()
    if not ids and not empty_ok:
        raise ValueError("standard input holds no sample ids")
    return ids
