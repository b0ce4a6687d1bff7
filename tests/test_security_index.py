"""Every item of ../shared/SECURITY.md has a test named after it, `test_security_<n>_...`.

A reader looking for item n greps `test_security_<n>_`; this test fails, naming the items, when a rename or a
deletion leaves an item without one.
"""
import ast
import re
from pathlib import Path

ITEMS = range(1, 43)
TESTS = Path(__file__).parent
NAMED = re.compile(r"test_security_(\d+)_")


def all_test_names() -> set[str]:
    """Names of every test function (module level or in a class) across tests/, read with ast."""
    names = set()
    for path in TESTS.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                names.add(node.name)
    return names


def test_every_security_item_has_a_test_named_after_it():
    covered = {int(match.group(1)) for name in all_test_names() if (match := NAMED.match(name))}
    missing = [item for item in ITEMS if item not in covered]
    assert not missing, f"SECURITY.md items without a test_security_<n>_ test: {missing}"


def test_no_test_names_an_item_that_does_not_exist():
    named = {name for name in all_test_names() if (match := NAMED.match(name)) and int(match.group(1)) not in ITEMS}
    assert not named, f"tests named after no SECURITY.md item: {sorted(named)}"
