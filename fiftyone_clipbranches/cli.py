"""The ``clipbranches`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_install_plugin(args) -> int:
    from fiftyone_clipbranches.plugin_install import install_plugin

    outcome = install_plugin(args.plugins_dir, force=args.force)
    print(outcome.describe())
    return 0


def _cmd_uninstall_plugin(args) -> int:
    from fiftyone_clipbranches.plugin_install import uninstall_plugin

    outcome = uninstall_plugin(args.plugins_dir, force=args.force)
    print(outcome.describe())
    return 0


def _cmd_doctor(args) -> int:
    from fiftyone_clipbranches.doctor import run_checks

    results = run_checks()
    for r in results:
        mark = "ok  " if r.ok else "FAIL"
        print(f"[{mark}] {r.name:<9} {r.detail}  ({r.seconds:.1f} s)")
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}")
        return 1
    print("doctor: all checks passed")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipbranches",
        description="Search by classification for FiftyOne datasets.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("install-plugin", help="link the plugin into FiftyOne")
    p.add_argument("--plugins-dir", type=Path, help="default: fiftyone's plugins_dir")
    p.add_argument("--force", action="store_true", help="replace what is there")
    p.set_defaults(func=_cmd_install_plugin)

    p = sub.add_parser("uninstall-plugin", help="remove the plugin link")
    p.add_argument("--plugins-dir", type=Path, help="default: fiftyone's plugins_dir")
    p.add_argument("--force", action="store_true", help="remove foreign content too")
    p.set_defaults(func=_cmd_uninstall_plugin)

    p = sub.add_parser("doctor", help="check database, plugin, numba, torch, device")
    p.set_defaults(func=_cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("clipbranches: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a CLI answers with one line, not a traceback
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"clipbranches {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
