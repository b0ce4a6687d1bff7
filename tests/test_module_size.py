"""No module of the app or of the benchmarks grows past LIMIT lines: past it, a module is split along its seams
(bench/run.py into bench/delivery.py and bench/http.py, the outbox's recording into outbox/outcomes.py), not
squeezed. tests/ is not held to it: some test modules are longer."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 450
FOLDERS = ("webapp", "bench")


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def too_long(paths: list[Path]) -> dict[Path, int]:
    """The modules past LIMIT lines, with their lengths."""
    lengths = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in paths}
    return {path: lines for path, lines in lengths.items() if lines > LIMIT}


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_module_of_the_folder_is_within_the_limit(folder):
    found = {path.relative_to(ROOT).as_posix(): lines for path, lines in too_long(modules(folder)).items()}
    assert not found, f"over {LIMIT} lines (split them): {found}"


def test_the_check_reads_every_module_of_both_folders():
    names = {path.relative_to(ROOT).as_posix() for folder in FOLDERS for path in modules(folder)}
    assert {"webapp/outbox/worker.py", "webapp/mail/transport.py", "bench/run.py", "bench/delivery.py",
            "bench/http.py"} <= names


def test_the_check_finds_a_module_past_the_limit(tmp_path):
    at, past = tmp_path / "at.py", tmp_path / "past.py"
    at.write_text("x = 1\n" * LIMIT, encoding="utf-8")
    past.write_text("x = 1\n" * (LIMIT + 1), encoding="utf-8")
    assert too_long([at, past]) == {past: LIMIT + 1}
