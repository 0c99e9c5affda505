"""The test tree itself: pytest imports test folders without __init__.py by basename (rootdir
mode), so two test files of one name in different folders stop the whole suite at collection.
Running a single folder does not show it; this does.
"""
from collections import defaultdict
from pathlib import Path

TEST_ROOT = Path(__file__).resolve().parent


def test_test_modules_have_unique_basenames():
    by_name = defaultdict(list)
    for path in TEST_ROOT.rglob("test_*.py"):
        by_name[path.name].append(str(path.relative_to(TEST_ROOT)))
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not clashes, f"rename one of each (pytest collects them as one module): {clashes}"
