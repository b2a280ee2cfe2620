"""The one exception type for bad user input.

Anything a user can get wrong (unknown recipe or size, empty or unreadable corpus, a
sequence longer than the position table, a tokenizer that does not match a checkpoint)
raises `UserError` with one line that names the problem. Entry points catch it, print
that line and exit non-zero, leaving the workdir as it was.
"""


class UserError(Exception):
  """A problem with the user's input, reported as one line and a non-zero exit."""
