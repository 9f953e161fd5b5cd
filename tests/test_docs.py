"""The README and docs/ as a clone has them: every link lands inside the repository, numbered sections count up."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Files a clone does not have: the workspace beside the repository it was developed in (its contract and
# its notes on the AWS simulator, the stock device, real ROS 2 and DeepRacer training).
OUTSIDE = re.compile(r"\.\./shared|DESIGN\.md|DEEPRACER_(SIM|DEVICE)\.md|ROS2_REAL\.md|TRAINING\.md")


def anchor(heading: str) -> str:
    """GitHub's anchor for a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in listed.splitlines()]


def test_nothing_in_the_repository_points_at_files_a_clone_does_not_have():
    texts = [p for p in tracked_files() if p.suffix in {".md", ".py", ".html", ".js", ".yaml", ".toml", ""}
             and p.is_file() and p.name != "test_docs.py"]
    assert len(texts) > 100
    pointing = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in texts
                for m in OUTSIDE.finditer(p.read_text(errors="replace"))]
    assert pointing == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_link_in_the_docs_opens_a_file_and_heading_of_the_repository(doc):
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file, _, fragment = target.partition("#")
        linked = (doc.parent / file).resolve() if file else doc
        assert linked.is_relative_to(ROOT) and linked.exists(), f"{doc.name}: {target}"
        if fragment:
            assert fragment in {anchor(h) for h in headings(linked)}, f"{doc.name}: {target}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_numbered_sections_count_up_without_repeats(doc):
    numbers = [int(m.group(1)) for h in headings(doc) if (m := re.match(r"(\d+)\. ", h))]
    assert numbers == list(range(1, len(numbers) + 1))


def test_the_simulator_page_gives_the_facts_the_code_cites():
    page = (ROOT / "docs" / "simulator.md").read_text()
    for fact in ("64.74 deg", "0.1328 m", "13.61 deg", "0.142 m", "7.62 cm", "5.08 cm", "0.164 m", "deepracer-simapp"):
        assert fact in page


def make_chromium(chromium: str) -> subprocess.CompletedProcess:
    # SUDO=false: apt-get as a user without root or sudo (it fails, as it would there)
    return subprocess.run(["make", "--no-print-directory", "chromium", f"CHROMIUM={chromium}", "SUDO=false"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_make_test_goes_on_without_root_and_says_the_browser_tests_will_skip(tmp_path):
    without = make_chromium(str(tmp_path / "no-chromium"))
    assert without.returncode == 0, without.stderr
    assert without.stdout == ("make: could not install Debian's chromium (apt-get needs root or sudo): the browser "
                              "tests will be skipped\n")
    present = make_chromium(sys.executable)  # any executable stands for an installed chromium
    assert present.returncode == 0 and present.stdout == ""
