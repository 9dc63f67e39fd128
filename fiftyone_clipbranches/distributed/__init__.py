"""Running a sharded index on an existing distributed engine (Ray Core).

Optional: ``pip install fiftyone-clipbranches[ray]``. Imports the engine only; Ray
itself is imported when a function here is first called.
"""
