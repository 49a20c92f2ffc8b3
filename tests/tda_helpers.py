"""Shared by the training-data attribution tests: a spy on block writes that can stop a job like a kill."""

from __future__ import annotations

import pytest

from xairepro.explain.block_files import BlockFile


class WriteSpy:
    """Records the blocks ``BlockFile.write`` stores; with ``crash_at=k`` the k-th write raises
    ``KeyboardInterrupt`` before storing anything (a job stopped mid-way).  Set ``crash_at = None`` to let
    the writes through again."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, crash_at: int | None = None) -> None:
        self.blocks: list[int] = []
        self.crash_at = crash_at
        real = BlockFile.write

        def write(file: BlockFile, block: int, *args, **kwargs) -> None:
            self.blocks.append(block)
            if self.crash_at is not None and len(self.blocks) == self.crash_at:
                raise KeyboardInterrupt
            real(file, block, *args, **kwargs)

        monkeypatch.setattr(BlockFile, "write", write)

    def resume(self) -> None:
        """From now on every write goes through; the record starts afresh."""
        self.crash_at = None
        self.blocks.clear()
