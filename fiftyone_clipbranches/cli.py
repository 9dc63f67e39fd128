"""The ``clipbranches`` command line."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import re
import shlex
import sys
import warnings
from pathlib import Path

from fiftyone_clipbranches import __version__
from fiftyone_clipbranches.cli_types import CommandLineError
from fiftyone_clipbranches.sdk.progress import close_open_bars

#: Exit status of a command refused because another process builds or updates the
#: index (sysexits' EX_TEMPFAIL: a script may try again later).
EXIT_BUSY = 75


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
    from fiftyone_clipbranches.doctor import CHECKS, iter_checks

    say = sys.stderr if args.json else sys.stdout  # stdout holds only the JSON
    print("doctor: checking (the first run compiles the kernels: about a minute)",
          file=say)  # fmt: skip
    results = []
    checks = [c for c in CHECKS if not (args.no_app and c[0] == "plugin")]
    for r in iter_checks(checks):
        results.append(r)
        mark = "ok  " if r.ok else "FAIL"
        print(f"[{mark}] {r.name:<9} {r.detail}  ({r.seconds:.1f} s)", file=say,
              flush=True)  # fmt: skip
    failed = [r.name for r in results if not r.ok]
    if args.json:
        checks = [
            {"name": r.name, "ok": r.ok, "detail": r.detail,
             "seconds": round(r.seconds, 3)}
            for r in results
        ]  # fmt: skip
        print(json.dumps({"ok": not failed, "checks": checks}))
        return 1 if failed else 0
    if failed:
        print(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}")
        return 1
    print("doctor: all checks passed")
    return 0


def _cmd_demo(args) -> int:
    from fiftyone_clipbranches.demo.pipeline import (
        check_app_port,
        launch_demo_app,
        link_plugin,
        run_demo,
    )

    if not args.no_app:
        check_app_port(args.port)  # before the minutes of the demo's work
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
        retrain=args.retrain,
    )
    print(report.format())
    if args.no_app:
        link_plugin()  # the App opened later has the panel (and `doctor` passes)
    else:
        launch_demo_app(report.dataset, port=args.port)
    return 0


def _cmd_serve(args) -> int:
    from fiftyone_clipbranches.service.cli_command import run_serve

    return run_serve(args)


def _cmd_verify(args) -> int:
    import fiftyone as fo

    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.cli_workflow import dataset_named

    if args.dataset and args.dataset_option and args.dataset != args.dataset_option:
        return _verify_refused(
            args,
            f"two datasets named ({args.dataset!r} and --dataset"
            f" {args.dataset_option!r}); give one",
            2,
        )
    args.dataset = args.dataset or args.dataset_option
    names = [args.dataset] if args.dataset else fo.list_datasets()
    checked = []  # one dict per index, as --json gives them
    for name in names:
        ds = dataset_named(name)
        keys = sdk.list_indexes(ds)
        if args.index and args.dataset and args.index not in keys:
            there = f"its indexes: {', '.join(keys)}" if keys else "it has none"
            return _verify_refused(
                args,
                f"dataset {name!r} has no clipbranches index {args.index!r} ({there})",
            )
        if args.index and args.index in keys:
            keys = [args.index]
        elif args.index:
            continue
        for key in keys:
            # quoted: a dataset named "a/b" and key "c" is not "a" and "b/c"
            which = f"{name!r} index {key!r}"
            try:
                r = sdk.verify_index(ds, key, level=args.level)
            except sdk.ClipBranchesError as e:
                checked.append(
                    {"dataset": name, "key": key, "ok": False, "error": str(e)}
                )
                if not args.json:
                    print(f"[FAIL] {which}: {e}")
                continue
            checked.append(
                {"dataset": name, "key": key, "ok": True, "files": r.checked,
                 "unchecked": r.unchecked, "n_bytes": r.n_bytes,
                 "seconds": r.seconds, "level": r.level}
            )  # fmt: skip
            if not args.json:
                extra = (
                    f"; no checksum: {', '.join(r.unchecked)}" if r.unchecked else ""
                )
                print(
                    f"[ok  ] {which}: {len(r.checked)} files, {r.n_bytes} bytes "
                    f"checked ({r.level}, {r.seconds:.2f} s): {', '.join(r.checked)}"
                    f"{extra}"
                )
    failures = [f"{c['dataset']!r} index {c['key']!r}" for c in checked if not c["ok"]]
    n_ok = len(checked) - len(failures)
    if not checked and (args.index or args.dataset):
        return _verify_refused(
            args,
            f"no dataset has a clipbranches index {args.index!r}"
            if args.index
            # named: there is nothing it could have verified
            else f"dataset {args.dataset!r} has no clipbranches index"
            " (`clipbranches build-index` makes one)",
        )
    if args.json:
        print(json.dumps({"level": args.level, "indexes": checked, "n_ok": n_ok,
                          "n_failed": len(failures)}))  # fmt: skip
    elif failures:
        print(f"verify: {len(failures)} index(es) failed: {', '.join(failures)}")
    elif not checked:
        print("verify: no clipbranches index found")
    else:
        print(f"verify: {n_ok} index(es) passed ({args.level})")
    return 1 if failures else 0


def _verify_refused(args, message: str, code: int = 1) -> int:
    """``verify``'s refusal of what it was asked: said on stdout, or with
    ``--json`` as ``{"error": ...}`` there and in words on stderr."""
    if args.json:
        print(f"clipbranches verify: error: {message}", file=sys.stderr)
        print(json.dumps({"error": {"type": "VerifyRefused", "message": message}}))
    else:
        print(f"verify: {message}")
    return code


def _cmd_gc(args) -> int:
    import json
    from dataclasses import asdict

    from fiftyone_clipbranches.sdk.gc import collect_garbage

    report = collect_garbage(
        args.root, delete=args.delete, min_age_s=args.min_age_hours * 3600
    )
    failed = args.delete and len(report.removed) < len(report.leftovers)
    if args.json:
        print(json.dumps({**asdict(report), "n_bytes": report.n_bytes}))
        return 1 if failed else 0
    for item in report.leftovers:
        done = "removed" if item.path in report.removed else "found"
        of = f" of dataset {item.dataset!r}" if item.dataset is not None else ""
        print(
            f"{done}: {item.kind}{of} {item.path} ({item.n_bytes} bytes): {item.reason}"
        )
    verb = "removed" if args.delete else "found"
    n = len(report.removed) if args.delete else len(report.leftovers)
    claims = sum(item.kind == "claim" for item in report.leftovers)
    others = (
        f", {report.n_other_database} of another database"
        if report.n_other_database
        else ""
    )
    print(
        f"gc: {verb} {n} leftover(s), {report.n_bytes} bytes, under {report.root}"
        + (f" (counting {claims} dead claim(s) in the database)" if claims else "")
        + "; "
        f"kept {report.n_referenced} index(es) in use, {report.n_young} "
        f"recent directory(ies)"
        + (
            f" (younger than {args.min_age_hours:g} h or being written:"
            " --min-age-hours 0 includes the young ones)"
            if report.n_young and args.min_age_hours > 0
            else ""
        )
        + others
        + (
            f", {report.n_being_written} directory(ies) of datasets a build or"
            " update is running on"
            if report.n_being_written
            else ""
        )
        + ("" if args.delete or not report.leftovers else "; run with --delete")
    )
    if report.unowned:
        print(
            f"gc: kept {len(report.unowned)} folder(s) of datasets not in this"
            " database that record no database (made before databases were"
            " recorded): they may be another database's; remove them by hand once"
            " no database uses this index root:"
        )
        for path in report.unowned:
            print(f"  {path}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    from fiftyone_clipbranches.cli_types import finite_number

    parser = _Parser(
        prog="clipbranches",
        description="Search by classification for FiftyOne datasets.",
        epilog=f"Exit status: 0 done, 1 an error (said in one line), 2 a usage error,"
        f" {EXIT_BUSY} the index is being built or updated by another process (try"
        " again when it is done), 130 interrupted.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "install-plugin",
        help="link the plugin into FiftyOne",
        description="Make the App's CLIP branches panel and operators available: a"
        " link to this package in FiftyOne's plugins directory.",
    )
    p.add_argument("--plugins-dir", type=Path, help="default: fiftyone's plugins_dir")
    p.add_argument("--force", action="store_true", help="replace what is there")
    p.set_defaults(func=_cmd_install_plugin)

    p = sub.add_parser(
        "uninstall-plugin",
        help="remove the plugin link",
        description="Remove the link install-plugin made (nothing else, without"
        " --force).",
    )
    p.add_argument("--plugins-dir", type=Path, help="default: fiftyone's plugins_dir")
    p.add_argument("--force", action="store_true", help="remove foreign content too")
    p.set_defaults(func=_cmd_uninstall_plugin)

    from fiftyone_clipbranches.cli_workflow import add_workflow_commands

    add_workflow_commands(sub)

    from fiftyone_clipbranches.demo.pipeline import DEMO_REFINE_MODEL
    from fiftyone_clipbranches.sdk.models import model_names

    p = sub.add_parser(
        "demo",
        help="run the product end to end offline on generated images",
        description="Create (or reuse) a dataset, embed it, build the index, search"
        " by text, simulate one round of feedback, report, save the view and open"
        " the App with the panel.",
    )
    p.add_argument("--images", type=Path, help="your own folder of images")
    p.add_argument(
        "--model",
        help="open_clip model name, or 'demo' for the small CLIP this package ships"
        " (default: demo; with --images, ViT-B-32 / laion2b_s34b_b79k, whose"
        " weights must be in the local cache offline)",
    )
    p.add_argument(
        "--pretrained",
        help="open_clip pretrained tag, checkpoint path, or 'none' (random weights)",
    )
    p.add_argument(
        "--n-images", type=int, default=3000,
        help="generated images (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--query", default="a red circle",
        help="the text query (default: '%(default)s')",
    )  # fmt: skip
    p.add_argument(
        "--k", type=int, default=60,
        help="results shown and labelled (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--refine-model",
        default=DEMO_REFINE_MODEL,
        choices=model_names(),
        help="the model of the feedback round (default: %(default)s)",
    )
    p.add_argument("--dataset", help="FiftyOne dataset name to create or reuse")
    p.add_argument(
        "--retrain",
        action="store_true",
        help="train the demo CLIP from scratch (about 4 minutes on 2 cores) instead"
        " of unpacking the shipped checkpoint, and compare the two",
    )
    p.add_argument(
        "--train-minutes",
        type=float,
        default=None,
        help="time budget for training; running past it is an error (default: none)",
    )
    p.add_argument("--no-app", action="store_true", help="do not launch the App")
    p.add_argument(
        "--port", type=int, default=5151,
        help="App port on 127.0.0.1 (default: %(default)s)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_demo)

    from fiftyone_clipbranches.service.cli_command import add_serve_arguments

    p = sub.add_parser(
        "serve",
        help="run the HTTP search service",
        description="Serve search and refinement of the datasets' indexes over HTTP"
        " (JSON, bearer token; docs/service.md), for clients other than the App.",
    )
    add_serve_arguments(p)
    p.add_argument(
        "--ray-address",
        metavar="auto|HOST:PORT",
        help="answer sharded indexes through one Ray actor per shard on this Ray "
        "cluster (`ray start --head`; needs fiftyone-clipbranches[ray]; "
        "docs/scale.md); default: in the service's own processes",
    )
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "verify",
        help="check index files against their checksums",
        description="Check every file of the indexes of a dataset (default: every"
        " indexed dataset) against the checksums of its manifests. Exits 1 if any"
        " index fails.",
    )
    p.add_argument("dataset", nargs="?", help="only this dataset (default: every one)")
    p.add_argument(
        "--dataset", dest="dataset_option", metavar="DATASET", help="as DATASET"
    )
    p.add_argument("--key", "--index", dest="index", help="only this index key")
    p.add_argument(
        "--level",
        choices=("fast", "full"),
        default="full",
        help="full: re-hash every byte (default); fast: sizes, headers, samples",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON (level, indexes: dataset, key, ok, files or"
        " error..., n_ok, n_failed)",
    )
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "gc",
        help="report (and remove) leftovers under the index root",
        description="Temp directories of crashed builds and index directories no"
        " dataset's run points at. Reports only, unless --delete. Folders of another"
        " FiftyOne database sharing the index root are left alone.",
    )
    p.add_argument("--root", type=Path, help="index root (default: the configured)")
    p.add_argument("--delete", action="store_true", help="remove what is found")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the report as JSON (root, leftovers, removed, n_referenced,"
        " n_young, n_being_written, n_other_database, unowned, n_bytes)",
    )
    p.add_argument(
        "--min-age-hours",
        type=finite_number("hours", zero=True),
        default=1.0,
        help="keep directories younger than this (default 1), except temp"
        " directories whose writer process is gone",
    )
    p.set_defaults(func=_cmd_gc)

    p = sub.add_parser(
        "doctor",
        help="check database, plugin, numba, torch, device",
        description="Check that everything clipbranches needs works here: numba and"
        " its kernels, torch and the device, the FiftyOne database (and its folder),"
        " the plugin. Exit status 1 when a check fails.",
    )
    p.add_argument(
        "--no-app", action="store_true",
        help="no plugin check: a machine that runs only the CLI, the SDK or the"
        " service, not the FiftyOne App",
    )  # fmt: skip
    p.add_argument(
        "--json", action="store_true",
        help='print {"ok", "checks": [{"name", "ok", "detail", "seconds"}]} (the'
        " lines go to stderr)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_doctor)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"clipbranches: {category.__name__}: {message}\n"


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning on a line of its own, above a progress bar being drawn."""
    from tqdm import tqdm

    text = _one_line_warning(message, category, filename, lineno).rstrip("\n")
    tqdm.write(text, file=file or sys.stderr)


def _command_parser(parser: argparse.ArgumentParser, command: str):
    """The parser of subcommand ``command`` of ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command, parser)
    return parser


def _unrecognized(extra: list[str], args, command_parser=None) -> str:
    """argparse's error for arguments no option took, with the option meant when
    one is close to a mistyped one, and the way out when sample ids were given
    after one flag (``--positive A B``: B lands among them, or in the dataset's
    place)."""
    message = f"unrecognized arguments: {' '.join(extra)}"
    options = [
        o for a in getattr(command_parser, "_actions", ()) for o in a.option_strings
    ]
    for flag in (a.split("=", 1)[0] for a in extra if a.startswith("--")):
        close = difflib.get_close_matches(flag, options, n=1)
        if close:
            message += f" (did you mean {close[0]}?)"
            break
    given = [*extra, str(getattr(args, "dataset", None))]
    if any(re.fullmatch(r"[0-9a-fA-F]{24}", a) for a in given):
        message += (
            "; --positive, --negative and --sample-id take one id each: repeat the"
            " flag (--positive ID --positive ID)"
        )
    return message


def _interrupted(args, stop: KeyboardInterrupt) -> str:
    """What an interrupted command left, and how to go on."""
    built = getattr(stop, "built", None)  # sdk.build_index: after the build
    if built:
        return f"interrupted; {built}"
    if args.command == "build-index":
        return (
            "interrupted before the index was written; every image embedded by then"
            " is kept: the same command goes on from there"
        )
    if args.command == "update-index" and (args.reembed or args.reembed_view):
        return (
            "interrupted; the index is as it was: run the same command again (an"
            " update without --reembed also finishes it once `clipbranches indexes`"
            " lists samples still to embed again)"
        )
    if args.command == "update-index":
        return (
            "interrupted; the index is as it was and the images embedded so far are"
            " kept: run the same command again"
        )
    if args.command == "label":
        return (
            "interrupted; samples being relabelled may hold both labels: run the"
            " same command again"
        )
    if args.command in ("delete-index", "rename-index"):
        return (
            f"interrupted; `clipbranches indexes {shlex.quote(args.dataset)}` says"
            " which indexes the dataset has now (run the same command again if it"
            " is still there)"
        )
    return "interrupted"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            command_parser = _command_parser(parser, args.command)
            command_parser.error(_unrecognized(extra, args, command_parser))
    except _UsageError as refused:
        refused.parser.print_usage(sys.stderr)
        print(f"{refused.parser.prog}: error: {refused}", file=sys.stderr)
        if "--json" in argv[: argv.index("--") if "--" in argv else len(argv)]:
            # a script reading stdout gets JSON, as for every other error
            _print_json_error({"type": "UsageError", "message": str(refused)})
        raise SystemExit(2) from None
    with _one_line_warnings():
        return _run(args)


class _UsageError(Exception):
    """A command line argparse refused (``parser``: the (sub)command's parser)."""

    def __init__(self, message: str, parser: argparse.ArgumentParser):
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose refusals :func:`main` reports (as argparse does,
    and as JSON too when ``--json`` was given) instead of exiting at once."""

    def error(self, message):
        raise _UsageError(message, self)


@contextlib.contextmanager
def _one_line_warnings():
    """Warnings on one line of their own (no source line under them, above a
    progress bar), for the command's duration."""
    saved = warnings.formatwarning, warnings.showwarning
    warnings.formatwarning, warnings.showwarning = _one_line_warning, _show_warning
    try:
        yield
    finally:
        warnings.formatwarning, warnings.showwarning = saved


def _run(args) -> int:
    """Run the parsed command: its exit status, an error in one line."""
    try:
        from fiftyone_clipbranches.sdk.settings import quiet_bundled_database_validation

        quiet_bundled_database_validation()
        code = args.func(args)
        sys.stdout.flush()  # a reader gone early fails here, not at the exit
        return code
    except KeyboardInterrupt as stop:
        close_open_bars()
        print(
            f"clipbranches {args.command}: {_interrupted(args, stop)}", file=sys.stderr
        )
        return 130
    except BrokenPipeError:  # its reader stopped early (`| head`): nothing to say
        _stdout_to_devnull()
        return 141
    except Exception as e:  # a CLI answers with one line, not a traceback
        from fiftyone_clipbranches.sdk.errors import (
            ContradictoryLabelsError,
            IndexBusyError,
        )
        from fiftyone_clipbranches.sdk.messages import CLI_WEIGHTS_HINT, weights_message

        close_open_bars()  # the error goes on a line of its own
        message = weights_message(e, CLI_WEIGHTS_HINT) or (
            str(e).splitlines()[0] if str(e) else type(e).__name__
        )
        ids = getattr(e, "ids", None) or ()
        if len(ids) > 3 and not getattr(args, "json", False):
            message += f" (--json lists all {len(ids)} ids under error.ids)"
        if ids and isinstance(e, ContradictoryLabelsError):
            message += _relabel_hint(args)
        print(f"clipbranches {args.command}: error: {message}", file=sys.stderr)
        if getattr(args, "json", False):  # a script reading stdout gets JSON too
            error = {"type": type(e).__name__, "message": str(e)}
            ids = getattr(e, "ids", None)
            if ids:  # the samples the message names a few of: every one
                error["ids"] = [str(i) for i in ids]
            _print_json_error(error)
        if os.environ.get("CLIPBRANCHES_DEBUG"):  # the traceback too
            raise
        if isinstance(e, CommandLineError):
            return 2
        return EXIT_BUSY if isinstance(e, IndexBusyError) else 1


def _print_json_error(error: dict) -> None:
    """``{"error": error}`` on stdout; when stdout itself fails (a full disk), the
    error already said on stderr stands alone."""
    try:
        print(json.dumps({"error": error}), flush=True)
    except OSError:
        _stdout_to_devnull()


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null: a failed stdout would fail the exit's flush too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file (in-process, closed)
        pass


def _relabel_hint(args) -> str:
    """The way out of samples tagged both positive and negative, for ``refine``
    labelled by tags (with the tags in use): ``label`` gives each one label."""
    from fiftyone_clipbranches.sdk.settings import DEFAULT_TAGS

    if args.command != "refine" or args.positives or args.negatives:
        return ""  # ids given twice are mended on the command line itself
    tags = (args.positive_tag, args.negative_tag)
    flags = (
        ""
        if tags == DEFAULT_TAGS
        else f" --positive-tag {shlex.quote(tags[0])} --negative-tag"
        f" {shlex.quote(tags[1])}"
    )
    return (
        f"; `clipbranches label {shlex.quote(args.dataset)}{flags} --positives-from"
        " FILE` (or --negatives-from, --clear-from) gives each id of FILE one label"
    )


if __name__ == "__main__":
    sys.exit(main())
