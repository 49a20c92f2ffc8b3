"""The typer application and the error policy of every command.

Bad usage or input -> one line on stderr, exit code 2, no traceback.
An unexpected failure -> one line on stderr, exit code 1 (``XAIREPRO_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

try:  # typer >= 0.16 vendors click as typer._click, with Exit/Abort in typer.exceptions
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
    from typer.exceptions import Abort, Exit
except ImportError:  # pragma: no cover - older typer re-uses click's exceptions
    from click.exceptions import Abort, ClickException, Exit

    class NoArgsIsHelpError(Exception):  # never raised by old click
        pass

from xairepro import __version__
from xairepro.errors import USER_ERRORS

#: Modules under ``xairepro.cli`` that add commands to ``app`` (each defines ``register(app)``).
COMMAND_MODULES: list[str] = ["reproduce", "report", "saliency", "listing", "train", "data"]

app = typer.Typer(
    name="xairepro",
    help="Explainable-AI research toolkit: LICO, saliency and its faithfulness, label-free explainability, "
    "and one-command reproduction of two published studies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print ``xairepro: error: message`` on stderr and return the Exit to raise."""
    print(f"xairepro: error: {message}", file=sys.stderr)
    return typer.Exit(code)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and text.startswith(("'", '"')):
        text = text[1:-1]
    return text.splitlines()[0]


_registered = False


def _register_commands() -> None:
    """Import every command module (by name: the commands are plug-ins of this app) and register it once."""
    global _registered
    if _registered:
        return
    for name in COMMAND_MODULES:
        importlib.import_module(f"xairepro.cli.{name}").register(app)
    _registered = True


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app and map errors to exit codes."""
    _register_commands()
    debug = os.environ.get("XAIREPRO_DEBUG", "") not in ("", "0")
    try:
        result = app(args=argv, prog_name="xairepro", standalone_mode=False)
        return int(result) if isinstance(result, int) else 0
    except Exit as exc:
        return int(exc.exit_code)
    except NoArgsIsHelpError as exc:
        print(exc.format_message())
        return 0
    except Abort:
        print("xairepro: aborted", file=sys.stderr)
        return 130
    except ClickException as exc:  # usage errors from typer/click: unknown option, bad type
        print(f"xairepro: error: {exc.format_message()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xairepro: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"xairepro: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - last line of defence: never a bare traceback
        if debug:
            raise
        print(f"xairepro: internal error ({type(exc).__name__}): {_one_line(exc)} "
              "(set XAIREPRO_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def _print_version(value: bool) -> None:
    if value:
        print(f"xairepro {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                 callback=_print_version, is_eager=True),
) -> None:
    """Explainable-AI research toolkit."""
