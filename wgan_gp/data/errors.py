"""The error of input data that cannot be used, shared by the readers and the cache."""


class DataError(ValueError):
  """Input data that cannot be used; the message names the problem and the fix."""
