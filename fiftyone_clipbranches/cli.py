"""The ``clipbranches`` command line."""

from __future__ import annotations

import argparse
import os
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


def _cmd_demo(args) -> int:
    from fiftyone_clipbranches.demo.pipeline import launch_demo_app, run_demo

    report = run_demo(
        images=args.images,
        model=args.model,
        pretrained=args.pretrained,
        n_images=args.n_images,
        query=args.query,
        k=args.k,
        refine_model=args.refine_model,
        dataset_name=args.dataset,
        train_minutes=args.train_minutes,
    )
    print(report.format())
    if not args.no_app:
        launch_demo_app(report.dataset, port=args.port)
    return 0


def _cmd_serve(args) -> int:
    from fiftyone_clipbranches.service.cli_command import run_serve

    return run_serve(args)


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

    from fiftyone_clipbranches.demo.pipeline import DEMO_REFINE_MODEL
    from fiftyone_clipbranches.sdk.settings import MODEL_NAMES

    p = sub.add_parser(
        "demo",
        help="run the product end to end offline on generated images",
        description="Create (or reuse) a dataset, embed it, build the index, search"
        " by text, simulate one round of feedback, report, save the view and open"
        " the App with the panel.",
    )
    p.add_argument("--images", type=Path, help="your own folder of images")
    p.add_argument("--model", help="open_clip model name (default: the demo model)")
    p.add_argument("--pretrained", help="open_clip pretrained tag or checkpoint path")
    p.add_argument("--n-images", type=int, default=3000, help="generated images")
    p.add_argument("--query", default="a red circle", help="the text query")
    p.add_argument("--k", type=int, default=60, help="results shown and labelled")
    p.add_argument(
        "--refine-model",
        default=DEMO_REFINE_MODEL,
        choices=MODEL_NAMES,
    )
    p.add_argument("--dataset", help="FiftyOne dataset name to create or reuse")
    p.add_argument("--train-minutes", type=float, default=5.0)
    p.add_argument("--no-app", action="store_true", help="do not launch the App")
    p.add_argument("--port", type=int, default=5151, help="App port on 127.0.0.1")
    p.set_defaults(func=_cmd_demo)

    from fiftyone_clipbranches.service.cli_command import add_serve_arguments

    p = sub.add_parser("serve", help="run the HTTP search service")
    add_serve_arguments(p)
    p.set_defaults(func=_cmd_serve)

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
        if os.environ.get("CLIPBRANCHES_DEBUG"):
            raise
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"clipbranches {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
