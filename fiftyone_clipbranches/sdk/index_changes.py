"""What an update of an index changed, counted (``IndexInfo.changes``)."""

from __future__ import annotations

from dataclasses import dataclass

from fiftyone_clipbranches.sdk.messages import counted


@dataclass(frozen=True)
class IndexChanges:
    """Samples an update of an index changed, by what happened to them.

    ``added``: rows of samples new to the index (added to the dataset, or whose
    image was read this time); ``dropped``: rows of samples deleted from the
    dataset; ``replaced``: rows embedded or read again (``reembed``, moved
    files, an interrupted re-embedding); ``lost``: samples that had a row and, read
    again, were left out (their image is unreadable now); ``left_out``: samples
    new to the index that could not be read; ``no_vector``: samples new to the
    index left out for lack of a vector (an index of unknown CLIP model,
    ``skip_missing``); ``moved_kept``: samples whose rows were kept at their new
    filepaths (``keep_moved``); ``unreadable_again``: samples left out before,
    tried again (``retry_failed``, ``reembed``) and left out still.
    """

    added: int = 0
    dropped: int = 0
    replaced: int = 0
    lost: int = 0
    left_out: int = 0
    moved_kept: int = 0
    no_vector: int = 0
    unreadable_again: int = 0

    def describe(self, read: str = "embedded again") -> str | None:
        """The changes in words (``read``: how the replaced rows were read), or
        None when the update changed nothing."""
        again = ""
        if self.replaced or self.lost:
            again += f", {counted(self.replaced, 'sample')} {read}"
        if self.lost:
            again += f", {self.lost} left out (image unreadable now)"
        if self.left_out:
            again += f", {self.left_out} more left out (image unreadable)"
        if self.no_vector:
            again += f", {self.no_vector} more left out (no vector)"
        if self.moved_kept:
            again += f", {counted(self.moved_kept, 'moved sample')} kept (new paths)"
        if self.unreadable_again:
            still = f"{counted(self.unreadable_again, 'sample')} left out before"
            if not (self.added or self.dropped or again):
                return f"nothing changed: {still} tried again, still left out"
            again += f", {still} tried again, still left out"
        if not (self.added or self.dropped or again):
            return None
        return (
            f"{counted(self.added, 'sample')} added, {self.dropped} dropped (deleted"
            f" from the dataset){again}"
        )


def count_changes(
    *,
    reread: set[str],
    read_again: set[str],
    new_rows: set[str],
    newly_unreadable: set[str],
    n_dropped: int,
    n_moved_kept: int,
    without_vector: set[str] = frozenset(),
    unreadable_again: set[str] = frozenset(),
) -> IndexChanges:
    """Count an update's changes from the sample ids it handled: ``read_again``,
    those it embedded or read again, of which ``reread`` had a row; ``new_rows``,
    the samples it wrote rows for; ``newly_unreadable``, those it recorded as
    unreadable that were not before, of which ``without_vector`` had no vector;
    ``unreadable_again``, those left out before that it tried again in vain."""
    return IndexChanges(
        added=len(new_rows - reread),
        dropped=n_dropped,
        replaced=len(reread & new_rows),
        lost=len(reread - new_rows),
        left_out=len(newly_unreadable - read_again - without_vector),
        moved_kept=n_moved_kept,
        no_vector=len((newly_unreadable - read_again) & without_vector),
        unreadable_again=len(unreadable_again),
    )
