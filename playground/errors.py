"""Errors a user can cause. The UI shows their message as it is; the CLI prints it after `error: `."""


class PlaygroundError(Exception):
    """A problem with the user's input or settings, worded for the user."""


class DataError(PlaygroundError):
    """A dataset file or source that cannot be used; the message names the file, row and field."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        shown = problems[:10]
        more = f"\n  … and {len(problems) - 10} more" if len(problems) > 10 else ""
        if len(shown) == 1:
            message = f"{source}: {shown[0]}"
        else:
            message = f"{source}: {len(problems)} problems\n  " + "\n  ".join(shown) + more
        super().__init__(message)
