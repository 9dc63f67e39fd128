"""FiftyOne panels over the SDK glue."""

from fiftyone_clipbranches.panels.panel import RelevancePanel

PANELS: list = [RelevancePanel]
