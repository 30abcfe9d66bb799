"""Error types with one-line, actionable messages."""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """Bad input: a file, array or setting that tomoflow cannot use.

    The message is one line, ``"<where>: <problem>. Fix: <fix>"``, so that a rule log and the
    Snakemake error summary show the user what to change.

    Parameters
    ----------
    where : str or path-like
        The file (or config key / array name) that is wrong.
    problem : str
        What is wrong with it.
    fix : str
        How to fix it.
    """

    def __init__(self, where: str | PathLike[str], problem: str, fix: str) -> None:
        self.where = str(where)
        self.problem = problem
        self.fix = fix
        msg = f"{self.where}: {problem}. Fix: {fix}"
        super().__init__(" ".join(msg.split()))
