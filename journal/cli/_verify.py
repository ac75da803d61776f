"""``eventstore verify``: renders :func:`eventstore.file.verify`'s report, changing nothing.

Exit 1 on damage; notes alone (what a writer sets aside by itself) exit 0.
"""

from __future__ import annotations

from eventstore.file import VerifyProblem, verify

from ._context import EXIT_FAILED, EXIT_OK, AddCommand, Context, add_session, unknown_session
from ._progress import Progress
from ._render import plural

__all__ = ("add_commands", "verify_command")


def add_commands(command: AddCommand) -> None:
    """Register ``verify``."""
    p = command(
        "verify",
        "Check the files without changing them; exit 1 on any problem. Notes (exit 0) "
        "name what a writer sets aside by itself: .torn files, and a first write a "
        "crash cut off before its manifest entry.",
        verify_command,
    )
    add_session(p, optional=True)


def _problem(problem: VerifyProblem) -> dict[str, object]:
    return {"path": problem.path, "line": problem.line, "message": problem.reason}


async def verify_command(ctx: Context) -> int:
    """``eventstore verify [SESSION]``: exit 1 if anything is damaged."""
    root = ctx.root()
    session_id = ctx.args.session
    # A link is reported by verify, not followed; anything else missing is the user's mistake.
    if session_id is not None:
        folder = root / session_id
        if not folder.is_symlink() and not folder.is_dir():
            raise unknown_session(session_id)
    with Progress("verify", unit="bytes") as progress:
        report = verify(root, session_id, progress=progress)
    if ctx.json:
        ctx.out.json(
            {
                "ok": report.ok,
                "sessions": report.sessions,
                "branches": report.branches,
                "events": report.records,
                "problems": [_problem(problem) for problem in report.damage],
                "notes": [_problem(note) for note in report.notes],
            }
        )
    else:
        for problem in report.damage:
            ctx.out.line(str(problem))
        for note in report.notes:
            ctx.out.line(f"note: {note}")
        counts = (
            f"{plural(report.sessions, 'session')}, "
            f"{plural(report.branches, 'branch', 'branches')}, {plural(report.records, 'event')}"
        )
        if report.ok:
            ctx.out.line(f"OK: {counts} checked")
        else:
            ctx.out.line(f"FAILED: {plural(len(report.damage), 'problem')} in {counts}")
    return EXIT_OK if report.ok else EXIT_FAILED
