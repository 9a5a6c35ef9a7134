"""How every ``paperwire`` command refuses: one ``error: ...`` line on stderr and an exit code, no traceback.

Exit 2 is bad usage (an argument, an option, a file the operator gave), 1 a runtime failure (Redis, a failed
run). The services' ``cli.py`` modules and ``paperwire`` share it, so operators see one format whichever command
they ran.
"""

from __future__ import annotations

from pathlib import Path

import typer

USAGE = 2
RUNTIME = 1


def fail(message: str, code: int = USAGE) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise (``raise fail(...) from None``), so the
    command visibly stops at the raise. A multi-line reason (YAML, pydantic) is folded onto the one line."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(code)


def at_least(option: str, value: float, minimum: float) -> None:
    """Refuse a number below ``minimum`` before any work starts: a count of 0 otherwise fails deep inside
    (a division by zero, an empty array) or silently measures something else."""
    if value < minimum:
        raise fail(f"{option} must be at least {minimum}, got {value}")


def file_problem(path: Path | str, exc: OSError | UnicodeDecodeError) -> str:
    """The reason a file could not be used, naming it ("no such file: x.yaml"), instead of an errno repr."""
    if isinstance(exc, UnicodeDecodeError):
        return f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})"
    name = exc.filename or path
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {name}"
    if isinstance(exc, IsADirectoryError):
        return f"{name} is a folder, not a file"
    if isinstance(exc, NotADirectoryError):
        return f"{name}: a part of the path is a file, not a folder"
    if isinstance(exc, PermissionError):
        return f"{name}: permission denied"
    return f"{name}: {exc.strerror or exc}"


def read_text(path: Path) -> str:
    """A UTF-8 file given on the command line, or a usage error that says what is wrong with it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(file_problem(path, exc)) from None


def read_bytes(path: Path) -> bytes:
    """A file given on the command line, or a usage error that says what is wrong with it."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise fail(file_problem(path, exc)) from None


def existing_folder(path: Path, option: str) -> Path:
    """A folder the command reads from (a model, fixtures): it must exist and be a folder."""
    if not path.exists():
        raise fail(f"{option}: no such folder: {path}")
    if not path.is_dir():
        raise fail(f"{option}: {path} is a file, not a folder")
    return path


def output_folder(path: Path, option: str) -> Path:
    """A folder the command writes into: missing is fine (it is made), an existing file is not."""
    if path.exists() and not path.is_dir():
        raise fail(f"{option}: {path} is a file, not a folder")
    return path
