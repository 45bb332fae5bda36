"""The builder's record of skipped and converted source images: what goes into the manifest's
`problems` list, the --strict refusal, and the one-line-per-kind summary it prints."""

import collections

from progan_tf.errors import UserInputError


def note_problems(result, problems, strict):
    """Appends what the decode `result` of one image reports (a conversion note, a skip) to
    `problems`; with `strict` either is a UserInputError."""
    if result.note:
        problems.append({"file": result.name, "reason": result.note, "fatal": False})
    if result.skip_reason:
        problems.append({"file": result.name, "reason": result.skip_reason, "fatal": True})
    if strict and (result.note or result.skip_reason):
        raise UserInputError(fatal_problem_message(problems[-1]))


def fatal_problem_message(problem) -> str:
    """The --strict refusal of one problem."""
    return (
        f"{problem['file']}: {problem['reason']}; refusing because of --strict "
        f"(without it the file is {'skipped' if problem['fatal'] else 'converted'} and reported)"
    )


def summarize_problems(problems: list, max_files: int = 5) -> list:
    """One line per kind of problem: count, reason and the first few files."""
    groups = collections.defaultdict(list)
    for problem in problems:
        groups[(problem["fatal"], problem["reason"].split(" (")[0])].append(problem["file"])
    lines = []
    for (skipped, reason), files in sorted(groups.items()):
        shown = ", ".join(files[:max_files]) + (
            f", ... ({len(files) - max_files} more)" if len(files) > max_files else ""
        )
        lines.append(f"{'skipped' if skipped else 'converted'} {len(files)}: {reason}: {shown}")
    return lines
